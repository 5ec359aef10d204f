"""What the operator observes of an evaluation, and how its pods are read: the `Observation` the
controller gathers (the Job, its pods, the Job's events, Kueue's Workload, the evaluator's last
report, or what was refused before any Job), the evaluator container's terminations in attempt
order, and which pod is the current attempt. The Job's `active` count is not evidence of running:
it counts pending pods too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.cost import Pricing
from nejumi_eval.api.v1alpha1.progress import ProgressReport, StageOutcome
from nejumi_operator.reconcile.job import CONTAINER

IMAGE_PULL_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
NOT_STARTED_REASONS = frozenset({"StartError", "ContainerCannotRun"})
"""Terminated reasons of a container that never ran (its process did not start)."""
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Termination:
    """How the evaluator container of one pod ended."""

    exit_code: int
    message: str = ""
    reason: str | None = None
    finished_at: str | None = None
    pod: str | None = None
    started_at: str | None = None


@dataclass(frozen=True)
class GroupState:
    """A serving group as observed (the serve stage of a model across nodes, `reconcile.group`):
    the Observation's `job` is then the group read as a Job (`group.as_job`)."""

    size: int
    """Its pods: the leader and `size - 1` workers, one per node."""
    leader: str
    """The leader pod's name (`<LeaderWorkerSet>-0`): the evaluator runs there."""
    pods: Sequence[Mapping[str, Any]] = ()
    """Every pod of the group as it is now (LWS recreates them all when one restarts)."""
    outcome: StageOutcome | None = None
    """The leader's last reported attempt (`progress.OUTCOME_KEY`), if this group's."""


@dataclass(frozen=True)
class Observation:
    """Everything the reducer needs, gathered by the caller."""

    generation: int
    job_name: str
    job: Mapping[str, Any] | None = None
    """The batch/v1 Job (camelCase, as the API returns it), or None when it does not exist."""
    termination: Termination | None = None
    """The evaluator container's latest termination over the Job's pods (`last_termination`)."""
    spec_error: str | None = None
    """Set when the operator rejected the spec: no Job is created."""
    gpus: int = 0
    queue_name: str | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    """The Job's pods (camelCase pod dicts)."""
    job_events: Sequence[Mapping[str, Any]] = ()
    """The Job's core/v1 Events (read only when no pod is live: `needs_job_events`)."""
    job_rejected: str | None = None
    """The API server's message when it refused to create the Job or what it needs (final:
    `JobRejected`)."""
    refused: str | None = None
    """What was refused when not the Job itself: `PersistentVolumeClaim x`, `ServiceAccount y`, …"""
    refusal: tuple[str, str] | None = None
    """(reason, message): the operator refused to make the Job (`NameConflict`, `SecretNotUsable`):
    final, like `spec_error`."""
    waiting: tuple[str, str] | None = None
    """(reason, message): the create handler waits before making the Job (`BEFORE_JOB_WAITS`)."""
    workload: Mapping[str, Any] | None = None
    """Kueue's Workload for a suspended Job in a queue (why it waits, or that it was preempted)."""
    progress: ProgressReport | None = None
    """The evaluator's last live-progress report (`reconcile.progress.parse_report`), if any."""
    stage: str | None = None
    """The stage `job` runs (fetch, serve, judge: `api.v1alpha1.stages`); None: one Job for all."""
    next_stage: str | None = None
    """The stage after `stage` (None: `job` is the last, its summary is the evaluation's)."""
    stages: Sequence[Mapping[str, Any]] = ()
    """`status.stages` so far (`reconcile.stages.StageJobs.records`), the current one last."""
    stage_refusal: tuple[str, str] | None = None
    """(reason, message): the next stage's Job could not be made (`controller.advance`): final."""
    group: GroupState | None = None
    """Set when the stage is a serving group: what the reducer reads instead of a Job's pods."""
    pricing: Pricing | None = None
    """The operator's price table: the GPU-seconds it observes held are priced with it (`status.cost`)."""


def stamp(at: dt.datetime) -> str:
    """A time as the API server writes one (RFC 3339, UTC, to the second)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    return stamp(dt.datetime.now(dt.UTC))


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def time_or_epoch(value: str | None) -> dt.datetime:
    return parse_time(value) or _EPOCH


def evaluator_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == CONTAINER), {})


def pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name") or "")


def pod_ended(pod: Mapping[str, Any]) -> bool:
    """The pod's evaluator attempt is over: container terminated or pod phase final."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return True
    return "terminated" in (evaluator_status(pod).get("state") or {})


def pod_order(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key: a later attempt sorts after an earlier one.

    The evaluation Job runs one pod at a time (parallelism 1, completions 1) and, having a
    podFailurePolicy, replaces a pod only once it has *failed* (podReplacementPolicy Failed), after
    the Job controller's backoff (10 s, doubling). So attempts are strictly sequential: a later
    attempt's pod is created after the earlier one ended, and counted attempts are ≥10 s apart, so
    `creationTimestamp` orders them even at its one-second resolution. Ties (a disrupted pod,
    replaced without backoff, in the same second) go to the pod still live, then to the later
    container restart (`restartCount`), exit and start, and finally the name (deterministic).
    `finishedAt` alone does not decide: two attempts can end within the same second."""
    meta = pod.get("metadata") or {}
    ev = evaluator_status(pod)
    state = ev.get("state") or {}
    term = state.get("terminated") or {}
    live = not pod_ended(pod) and not meta.get("deletionTimestamp")
    return (
        time_or_epoch(meta.get("creationTimestamp")),
        live,
        int(ev.get("restartCount") or 0),
        time_or_epoch(term.get("finishedAt")),
        time_or_epoch(term.get("startedAt") or (state.get("running") or {}).get("startedAt")),
        pod_name(pod),
    )


def terminations(pod: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], Termination]]:
    """The evaluator's terminations in this pod (the current one, and the previous restart's),
    each with its sort key."""
    ev = evaluator_status(pod)
    out = []
    for which, restart_offset in (("lastState", -1), ("state", 0)):
        term = (ev.get(which) or {}).get("terminated")
        if not term:
            continue
        key = list(pod_order(pod))
        key[2] += restart_offset
        key[3] = time_or_epoch(term.get("finishedAt"))
        out.append(
            (
                tuple(key),
                Termination(
                    exit_code=int(term.get("exitCode", -1)),
                    message=term.get("message") or "",
                    reason=term.get("reason"),
                    finished_at=term.get("finishedAt"),
                    pod=pod_name(pod) or None,
                    started_at=term.get("startedAt"),
                ),
            )
        )
    return out


_FAILED_POD = re.compile(r"\bfor pod (?:[\w.-]+/)?([\w.-]+)")


def last_termination(
    pods: Iterable[Mapping[str, Any]], job: Mapping[str, Any] | None = None
) -> Termination | None:
    """The evaluator termination that tells how the Job went (camelCase pod dicts).

    When the Job is marked, its own word decides: Complete → the attempt that exited 0 (after a
    success no further pod is created); Failed by the podFailurePolicy → the pod its condition
    message names (`… for pod ns/name failed with exit code 2 …`). Otherwise, and as a fallback,
    the latest attempt by `pod_order` (not by the one-second `finishedAt` strings alone)."""
    found = [item for pod in pods for item in terminations(pod)]
    if not found:
        return None
    if job is not None:
        if job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet"):
            ok = [item for item in found if item[1].exit_code == 0]
            if ok:
                return max(ok, key=lambda item: item[0])[1]
        failed = job_condition(job, "Failed") or job_condition(job, "FailureTarget")
        named = _FAILED_POD.search(str((failed or {}).get("message") or ""))
        if named:
            match = [item for item in found if item[1].pod == named.group(1)]
            if match:
                return max(match, key=lambda item: item[0])[1]
    return max(found, key=lambda item: item[0])[1]


def current_pod(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The latest attempt's pod (`pod_order`), preferring one that is not being deleted."""
    pods = list(pods)
    kept = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")] or pods
    return max(kept, key=pod_order, default=None)


def needs_job_events(job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the Job's events can tell more than its pods: an unfinished, unsuspended Job with
    no live pod may be failing to create one (FailedCreate); then the caller lists its events."""
    if job is None or job_finished(job) or job_suspended(job):
        return False
    pods = list(pods)
    if not pods and not (job.get("status") or {}).get("startTime"):
        return False  # the Job controller has not looked at it yet: it cannot have failed to create
    if any((p.get("status") or {}).get("phase") == "Succeeded" for p in pods):
        return False  # done: the Job is about to be marked complete, no pod is to be created
    return all(pod_ended(p) for p in pods)


def job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    cond = c.find((job.get("status") or {}).get("conditions"), type_)
    return cond if cond and cond.get("status") == c.TRUE else None


def job_finished(job: Mapping[str, Any]) -> bool:
    return bool(job_condition(job, "Complete") or job_condition(job, "Failed"))


def job_suspended(job: Mapping[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend") or job_condition(job, "Suspended"))
