"""Condition types, reasons and phases: the status API (one module, named constants only).

Types name states and never change meaning. All four are set on first visit (`Unknown` is fine).
`phase` exists for `kubectl get` only and is derived from the conditions (`phase_of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nejumi_eval.api.v1alpha1.contract import EXIT_CONFIG, EXIT_INFRA

# ---- types --------------------------------------------------------------------------------------
ACCEPTED = "Accepted"
"""The spec was accepted and the evaluation Job exists."""
RUNNING = "Running"
"""The evaluator container of the current attempt has started (containerStatuses state.running), and
the Job has not finished yet: True also in the short gap between the container's exit and the Job
being marked Complete/Failed (reason Finishing), so the phase never steps back on that gap. False
with the reason it is not running: queued, unschedulable, a missing Secret, an image pull error…"""
SUCCEEDED = "Succeeded"
"""The evaluation finished: True with scores, False with a failure reason, Unknown while in progress."""
DEGRADED = "Degraded"
"""A finished evaluation is not clean (True): some requests failed after retries or judgments were
invalid, so the scores are not clean, or the results of record were not stored (`spec.results`);
False: all went through and everything was stored."""
CONDITION_TYPES = (ACCEPTED, RUNNING, SUCCEEDED, DEGRADED)

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# ---- reasons ------------------------------------------------------------------------------------
JOB_CREATED = "JobCreated"
JOB_NOT_FOUND = "JobNotFound"
JOB_REJECTED = "JobRejected"
"""The API server refused the Job (400/422, quota, PodSecurity on the Job…): final, nothing runs."""
JOB_PENDING = "JobPending"
"""The Job exists and has no pod yet (the Job controller creates one in a moment)."""
JOB_RUNNING = "JobRunning"
"""The evaluator container is running."""
SUSPENDED = "Suspended"
"""The Job is suspended: queued for admission (Kueue) — phase Queued. The message quotes Kueue's
Workload (`QuotaReserved=False`: why it does not fit) when there is one."""
PREEMPTED = "Preempted"
"""Kueue evicted the running Job (preemption) and requeued it — phase Queued; readmitted, the next
pod resumes from the workspace's response cache."""
QUEUED_REASONS = (SUSPENDED, PREEMPTED)
POD_CREATION_FAILED = "PodCreationFailed"
"""The Job controller cannot create the pod (its FailedCreate event): PodSecurity, quota, a webhook."""
UNSCHEDULABLE = "Unschedulable"
"""The scheduler cannot place the pod (not enough GPUs, no matching node, a missing PVC…)."""
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
"""The kubelet cannot build the container's environment: a missing Secret/ConfigMap or key."""
IMAGE_PULL_ERROR = "ImagePullError"
"""The kubelet cannot pull the evaluator image (ErrImagePull, ImagePullBackOff, InvalidImageName…)."""
CONTAINER_WAITING = "ContainerWaiting"
"""The container waits for another reason the kubelet reports (CreateContainerError…)."""
POD_STARTING = "PodStarting"
"""The pod is scheduled (or being scheduled) and its container is being created: normal, brief."""
RETRYING = "Retrying"
"""An attempt failed and the Job controller will start another (backoffLimit not reached)."""
FINISHING = "Finishing"
"""The evaluator exited; the Job controller has not marked the Job Complete/Failed yet."""
IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
EVALUATION_COMPLETED = "EvaluationCompleted"
INVALID_SPEC = "InvalidSpec"
NAME_CONFLICT = "NameConflict"
"""An object the operator needs (its Job, workspace PVC, ServiceAccount, Role, RoleBinding or progress
ConfigMap) exists under the expected name and is not this evaluation's: final, nothing is used."""
SECRET_NOT_USABLE = "SecretNotUsable"
"""A referenced Secret has not consented to being used by evaluations (nejumi_operator.policy): final."""
SECRET_NOT_FOUND = "SecretNotFound"
"""A referenced Secret does not exist (yet): no Job until it does and its consent is checked."""
WAITING_FOR_CLEANUP = "WaitingForCleanup"
"""A deleted evaluation of the same name still has objects the garbage collector is removing."""
BEFORE_JOB_WAITS = (SECRET_NOT_FOUND, WAITING_FOR_CLEANUP)
"""Pending reasons the create handler writes before the Job exists (a resync leaves them be)."""
REPLACED = "Replaced"
"""In `status.history`: a generation a spec edit stopped before it finished (its Job was deleted)."""
INFRASTRUCTURE_FAILURE = "InfrastructureFailure"
EVALUATOR_ERROR = "EvaluatorError"
JOB_FAILED = "JobFailed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
"""The Job ran longer than its activeDeadlineSeconds and was stopped."""
NO_SCORE = "NoScore"
"""The evaluator completed, but an enabled, scored benchmark produced no score (`no_score_problems`)."""
REQUEST_FAILURES = "RequestFailures"
INVALID_JUDGMENTS = "InvalidJudgments"
"""Degraded because scorer units (judgments) were invalid above the protocol's threshold."""
RESULTS_NOT_STORED = "ResultsNotStored"
"""Degraded because the upload to `results.uri` failed after its retries: the scores stand (Succeeded
stays True) and the results are in the workspace, but not in the store the leaderboard reads; a
rerun on the same workspace stores them from the response cache, without a model or judge request.
The reason wins over the scores' own Degraded reasons (the message names both): it is the one a
person must act on for the evaluation to count."""
NO_FAILURES = "NoFailures"
NOT_EVALUATED = "NotEvaluated"

PENDING_PROBLEMS = (
    SECRET_NOT_FOUND,
    POD_CREATION_FAILED,
    UNSCHEDULABLE,
    CREATE_CONTAINER_CONFIG_ERROR,
    IMAGE_PULL_ERROR,
    CONTAINER_WAITING,
)
"""Running=False reasons that need someone to act (a Warning Event is posted for each)."""

EXIT_CODE_REASONS = {EXIT_CONFIG: INVALID_SPEC, EXIT_INFRA: INFRASTRUCTURE_FAILURE}
"""`nejumi-eval` exit code → Succeeded=False reason (see nejumi_eval.errors); any other: EVALUATOR_ERROR."""


def failure_reason(exit_code: int | None) -> str:
    """The Succeeded=False reason for an evaluator that exited with `exit_code` (None: no exit seen)."""
    if exit_code is None:
        return JOB_FAILED
    return EXIT_CODE_REASONS.get(exit_code, EVALUATOR_ERROR)


# ---- phases (derived) ---------------------------------------------------------------------------
PHASE_QUEUED = "Queued"
PHASE_PENDING = "Pending"
PHASE_RUNNING = "Running"
PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
PHASES = (PHASE_QUEUED, PHASE_PENDING, PHASE_RUNNING, PHASE_SUCCEEDED, PHASE_FAILED)


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def phase_of(conditions: Sequence[Mapping[str, Any]]) -> str:
    """Succeeded decides a finished evaluation; Running a live one (Queued when its reason is
    Suspended); anything else is Pending."""
    succeeded = find(conditions, SUCCEEDED)
    if succeeded and succeeded.get("status") == TRUE:
        return PHASE_SUCCEEDED
    if succeeded and succeeded.get("status") == FALSE:
        return PHASE_FAILED
    running = find(conditions, RUNNING)
    if running and running.get("status") == TRUE:
        return PHASE_RUNNING
    if running and running.get("reason") in QUEUED_REASONS:
        return PHASE_QUEUED
    return PHASE_PENDING


def is_finished(status: Mapping[str, Any] | None) -> bool:
    """Whether Succeeded is True or False (the evaluation will not change any more)."""
    succeeded = find((status or {}).get("conditions"), SUCCEEDED)
    return succeeded is not None and succeeded.get("status") in (TRUE, FALSE)
