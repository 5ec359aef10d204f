"""The one status writer: read the evaluation, its Job and pods, reduce, write `/status`.

Several triggers call it (the create handler, Job events, the resync timer); the write carries the
`resourceVersion` it was computed from, so a status derived from older observations never
overwrites a newer one (409 → read again, recompute).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient

from nejumi_eval.api.v1alpha1.spec import ResourcesSpec
from nejumi_operator.api.conditions import is_finished
from nejumi_operator.kube import calls
from nejumi_operator.reconcile.job import job_name
from nejumi_operator.reconcile.status import Observation, last_termination, reduce_status, status_patch

ATTEMPTS = 5


def observe(api: ApiClient, evaluation: Mapping[str, Any]) -> Observation:
    meta = evaluation["metadata"]
    generation = int(meta.get("generation") or 1)
    name = job_name(meta["name"], generation)
    job = calls.read_job(api, meta["namespace"], name)
    pods = calls.job_pods(api, meta["namespace"], name) if job else []
    spec = evaluation.get("spec") or {}
    gpus = (spec.get("resources") or {}).get("gpus", ResourcesSpec.model_fields["gpus"].default)
    return Observation(
        generation=generation,
        job_name=name,
        job=job,
        termination=last_termination(pods),
        gpus=int(gpus or 0),
        queue_name=spec.get("queueName"),
    )


def sync_status(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """Bring the evaluation's status up to date; returns it (None: the evaluation is gone).
    A finished evaluation's status is final and is left alone."""
    for _ in range(ATTEMPTS):
        evaluation = calls.read_evaluation(api, namespace, name)
        if evaluation is None or evaluation["metadata"].get("deletionTimestamp"):
            return None
        old = evaluation.get("status") or {}
        generation = int(evaluation["metadata"].get("generation") or 1)
        if is_finished(old) and old.get("observedGeneration") == generation:
            return old
        new = reduce_status(old, observe(api, evaluation))
        if new == old:
            return old
        try:
            calls.patch_status(
                api, namespace, name, status_patch(old, new), evaluation["metadata"]["resourceVersion"]
            )
        except calls.Conflict:
            continue
        return new
    raise calls.Conflict(f"{namespace}/{name}: status kept changing during {ATTEMPTS} attempts")
