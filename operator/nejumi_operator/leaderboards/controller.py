"""A leaderboard computed and its status written: what `nejumi_operator.debounce` runs.

Read the leaderboard (gone: nothing to do), check what it may read (the policy's
`leaderboardNamespaces`), compute it in the child process, write the status. The status is the
leaderboard's only state: the members it remembers (what keeps a deleted evaluation on the board),
the digest of the last published board (what spares an unchanged page a write), the counter of
computations. Only the operator writes it; a write carries the `resourceVersion` it was computed
from and is recomputed from a fresh read on a conflict.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from nejumi_eval.api.v1alpha1.conditions import INVALID_SPEC
from nejumi_eval.api.v1alpha1.leaderboard import ComputeResult, LeaderboardSpec
from nejumi_eval.api.v1alpha1.names import API_VERSION, LEADERBOARD_KIND, LEADERBOARD_PLURAL
from nejumi_operator.kube import calls
from nejumi_operator.leaderboards.compute import (
    RETRY_SECONDS,
    ComputeError,
    build_request,
    compute_failed_status,
    computed_status,
    failed_status,
    refused_namespaces_status,
    run_child,
)
from nejumi_operator.leaderboards.report import build_report_job
from nejumi_operator.policy import LABEL_USABLE_BY_EVALUATIONS
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status import status_patch

ATTEMPTS = 5
log = logging.getLogger(__name__)


def write_status(
    api: ApiClient, namespace: str, name: str, make: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> dict[str, Any] | None:
    """`make(old status) → new status`, written with the resourceVersion it was made from."""
    for _ in range(ATTEMPTS):
        body = calls.read_evaluation(api, namespace, name, LEADERBOARD_PLURAL)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        old = body.get("status") or {}
        new = make(old)
        if new == old:
            return new
        try:
            calls.patch_status(
                api,
                namespace,
                name,
                status_patch(old, new),
                body["metadata"]["resourceVersion"],
                plural=LEADERBOARD_PLURAL,
            )
        except calls.Conflict:
            continue
        return new
    raise calls.Conflict(f"{namespace}/{name}: status kept changing during {ATTEMPTS} attempts")


def ranking_digest(result: ComputeResult) -> str:
    """What a W&B report shows of the board: its ranked rows (a change in an unfinished evaluation's
    phase makes no new report)."""
    rows = [r.model_dump(mode="json") for r in result.status.top]
    return "sha256:" + hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def start_report(
    api: ApiClient, config: OperatorConfig, body: Mapping[str, Any], spec: LeaderboardSpec, digest: str
) -> str:
    """The W&B report Job of this board (one per digest: an existing one is left as it is), after
    the key's Secret consented; what happened, in words, for `status.wandbReport`."""
    assert spec.publish is not None and spec.publish.wandb is not None
    meta = body["metadata"]
    namespace = meta["namespace"]
    secret = spec.publish.wandb.api_key_secret_ref.name
    policy = config.policy
    if policy.enabled and secret not in policy.usable_secrets:
        labels = calls.secret_labels(api, namespace, secret)
        if labels is None:
            return f"no report: Secret {secret} (spec.publish.wandb.apiKeySecretRef) not found"
        if labels.get(LABEL_USABLE_BY_EVALUATIONS) != "true":
            return (
                f"no report: Secret {secret} (spec.publish.wandb.apiKeySecretRef) has not consented: "
                f'label it {LABEL_USABLE_BY_EVALUATIONS}="true"'
            )
    job = build_report_job(body, spec, digest, config)
    job["metadata"]["ownerReferences"] = [
        {
            "apiVersion": body.get("apiVersion") or API_VERSION,
            "kind": LEADERBOARD_KIND,
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    try:
        _, created = calls.create_or_get(api, namespace, job)
    except ApiException as exc:
        return f"no report: the API server refused Job {job['metadata']['name']}: {exc.reason}"
    return f"Job {job['metadata']['name']} {'started' if created else 'already exists'} for this board"


async def compute_leaderboard(api: ApiClient, config: OperatorConfig, key: Hashable) -> float | None:
    """Compute the leaderboard `key` = (namespace, name) and write its status; the delay to try
    again after (a failed computation), or None."""
    namespace, name = str(key[0]), str(key[1])  # type: ignore[index]
    body = await asyncio.to_thread(calls.read_evaluation, api, namespace, name, LEADERBOARD_PLURAL)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    generation = int(body["metadata"].get("generation") or 1)
    where = f"{namespace}/{name}"
    try:
        spec = LeaderboardSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:  # the CRD admitted it: a newer schema than this operator's
        message = f"spec: {exc.errors()[0]['msg']}"
        await asyncio.to_thread(
            write_status,
            api,
            namespace,
            name,
            lambda old: failed_status(old, INVALID_SPEC, message, generation),
        )
        return None
    if problems := config.policy.unreadable_namespaces(namespace, spec.namespaces):
        log.warning("leaderboard %s: %s", where, "; ".join(problems))
        await asyncio.to_thread(
            write_status,
            api,
            namespace,
            name,
            lambda old: refused_namespaces_status(old, problems, generation),
        )
        return None
    request = build_request(body, spec, config)
    try:
        result = await run_child(request, config)
    except ComputeError as exc:
        error = str(exc)
        log.warning("leaderboard %s: %s", where, error)
        await asyncio.to_thread(
            write_status, api, namespace, name, lambda old: compute_failed_status(old, error, generation)
        )
        return RETRY_SECONDS
    report = None
    if spec.publish is not None and spec.publish.wandb is not None and result.status.top:
        ranking = ranking_digest(result)
        report = await asyncio.to_thread(start_report, api, config, body, spec, ranking)

    def computed(old: Mapping[str, Any]) -> dict[str, Any]:
        new = computed_status(old, result, spec, generation)
        if report is not None:
            new["wandbReport"] = report
        elif old.get("wandbReport") and spec.publish is not None and spec.publish.wandb is not None:
            new["wandbReport"] = old["wandbReport"]
        return new

    await asyncio.to_thread(write_status, api, namespace, name, computed)
    log.info(
        "leaderboard %s computed: %d evaluations in %.1fs, %d bytes read, peak %.0f MiB",
        where,
        result.evaluations,
        result.seconds,
        result.bytes_read,
        result.peak_rss_mib,
    )
    return None
