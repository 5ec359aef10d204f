"""kopf wiring only: each handler takes the kwargs it uses and calls plain functions.

- create/resume: build the Job (pure), adopt it, create it (409 = already there), write status;
  a spec the CRD admitted but the evaluator cannot run → status InvalidSpec + `kopf.PermanentError`.
- Job events (label `nejumi.wandb.ai/evaluation`) and a resync timer: status from observations.

Run: `python -m nejumi_operator` or `kopf run --standalone -m nejumi_operator.handlers`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from nejumi_operator.api.conditions import is_finished
from nejumi_operator.api.names import GROUP, KIND, LABEL_EVALUATION, PLURAL, VERSION
from nejumi_operator.kube import calls
from nejumi_operator.kube.client import make_api_client
from nejumi_operator.kube.sync import sync_status
from nejumi_operator.reconcile.job import InvalidEvaluation, build_job, job_name
from nejumi_operator.reconcile.status import Observation, reduce_status, status_patch
from nejumi_operator.settings import ENV_RESYNC, OperatorConfig

# Decorator arguments are fixed at import time, so the timer's interval is read here.
RESYNC_SECONDS = float(os.environ.get(ENV_RESYNC) or 30)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    config = OperatorConfig.from_env()
    # Our own group for kopf's bookkeeping; progress in annotations only (status has a strict schema).
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.watching.server_timeout = config.server_timeout_seconds
    memo.config = config
    memo.api = make_api_client()
    logger.info("evaluator image %s, command %s", config.image, list(config.command))


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The pod's ServiceAccount, else $KUBECONFIG as it is now (the client library reads it at import)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    api = getattr(memo, "api", None)
    if api is not None:
        api.close()


@kopf.on.resume(GROUP, VERSION, PLURAL, retries=10, backoff=5)
@kopf.on.create(GROUP, VERSION, PLURAL, retries=10, backoff=5)
def ensure_job(
    body: kopf.Body,
    name: str,
    namespace: str,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: logging.Logger,
    **_: Any,
) -> None:
    if is_finished(status):
        return
    try:
        job = build_job(body, memo.config)
    except InvalidEvaluation as exc:
        generation = int(body.meta.get("generation") or 1)
        obs = Observation(generation=generation, job_name=job_name(name, generation), spec_error=str(exc))
        patch.status.update(status_patch(status, reduce_status(status, obs)))
        raise kopf.PermanentError(str(exc)) from None
    # Owner reference → the Job and its pods are garbage-collected with the evaluation. (Not
    # kopf.adopt: it would copy the evaluation's labels, e.g. a Kueue queue label, onto the Job.)
    kopf.append_owner_reference(job, owner=body)
    job, created = calls.create_or_get_job(memo.api, namespace, job)
    logger.info("Job %s %s", job["metadata"]["name"], "created" if created else "already exists")
    sync_status(memo.api, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_EVALUATION: kopf.PRESENT})
def job_changed(body: kopf.Body, namespace: str, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    owner = next(
        (
            ref
            for ref in body.meta.get("ownerReferences") or []
            if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
        ),
        None,
    )
    if owner is None:
        return
    try:
        sync_status(memo.api, namespace, owner["name"])
    except calls.Conflict as exc:  # event handlers are not retried; the resync timer catches up
        logger.warning("status not written: %s", exc)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=RESYNC_SECONDS,
    initial_delay=RESYNC_SECONDS,
    when=lambda status, **_: not is_finished(status),
)
def resync(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    """A safety net for missed Job events (e.g. while the operator was down)."""
    sync_status(memo.api, namespace, name)
