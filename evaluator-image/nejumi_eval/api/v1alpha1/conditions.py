"""Condition types, reasons and phases: the status API (one module, named constants only).

Types name states and never change meaning. All are set on first visit (`Unknown` is fine). The
operator observes four (Accepted, Running, Succeeded, Degraded); the rest is derived from them here,
so every reader (the reducer, kubectl, GitOps tools) gets one answer: `phase` for `kubectl get`
(`phase_of`), and the conditions kstatus reads (`kstatus_conditions`: Ready, Reconciling, Stalled),
which is how Flux, Helm 4's `--wait` and `kubectl wait --for=condition=Ready` tell a running
evaluation from a finished or failed one.
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
OBSERVED_TYPES = (ACCEPTED, RUNNING, SUCCEEDED, DEGRADED)
"""The conditions the reducer sets from what it observes."""
READY = "Ready"
"""kstatus: True only when the evaluation of the current generation succeeded (Succeeded=True; a
degraded success stays Ready, with Degraded=True); False otherwise, with the reason and message of
what decides the phase (queued, pending, running, failed…). `kubectl wait --for=condition=Ready`."""
RECONCILING = "Reconciling"
"""kstatus ("abnormal-true"): True while the evaluation is under way (Queued, Pending, Running,
finishing, retrying) or a new generation is not observed yet, with what it is doing; False once
finished. kstatus reads True as InProgress."""
STALLED = "Stalled"
"""kstatus ("abnormal-true"): True when the evaluation failed (phase Failed), with the failure
reason (InvalidSpec, NoScore, SecretNotUsable, NameConflict, DeadlineExceeded…); kstatus reads it as
Failed. False otherwise: a pod that cannot start yet (Unschedulable, a missing Secret) is Pending,
not stalled, since it starts once the cause is fixed."""
KSTATUS_TYPES = (READY, RECONCILING, STALLED)
"""The conditions derived from the observed ones (`kstatus_conditions`), in the kstatus convention
(sigs.k8s.io/cli-utils/pkg/kstatus)."""
CONDITION_TYPES = (*OBSERVED_TYPES, *KSTATUS_TYPES)

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
GROUP_RESTARTING = "GroupRestarting"
"""A pod of a serving group (a model served across nodes) stopped — a worker lost, the leader's
attempt failed: LeaderWorkerSet recreates the whole group and the evaluation resumes from the
response cache (phase Pending until the group serves again)."""
FINISHING = "Finishing"
"""The evaluator exited; the Job controller has not marked the Job Complete/Failed yet."""
STAGE_COMPLETED = "StageCompleted"
"""A stage before the last (fetch, serve: `api.v1alpha1.stages`) completed; the next stage's Job is
being made — phase Running (the evaluation goes on)."""
STAGE_STARTING = "StageStarting"
"""A later stage's pod is on its way (no pod yet, or scheduled and starting) after the earlier
stages completed — phase Running: the evaluation does not go back to Pending between its stages.
A stage that waits for quota is Queued; one whose pod cannot start says why (Unschedulable, …)."""
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
LATEST_GENERATION_NOT_OBSERVED = "LatestGenerationNotObserved"
"""The status describes an earlier generation than `metadata.generation` (a spec edit the operator
has not taken up yet): not Ready, Reconciling. kstatus's own reason for the same state."""

PENDING_PROBLEMS = (
    SECRET_NOT_FOUND,
    POD_CREATION_FAILED,
    UNSCHEDULABLE,
    CREATE_CONTAINER_CONFIG_ERROR,
    IMAGE_PULL_ERROR,
    CONTAINER_WAITING,
)
"""Running=False reasons that need someone to act (a Warning Event is posted for each)."""

UNDER_WAY_REASONS = (
    JOB_NOT_FOUND,
    *BEFORE_JOB_WAITS,
    *QUEUED_REASONS,
    JOB_PENDING,
    POD_STARTING,
    RETRYING,
    GROUP_RESTARTING,
    *(reason for reason in PENDING_PROBLEMS if reason not in BEFORE_JOB_WAITS),
    JOB_RUNNING,
    FINISHING,
    STAGE_COMPLETED,
    STAGE_STARTING,
)
"""Reasons of an evaluation under way (Queued, Pending, Running: the Running condition's, or
Accepted's before the Job exists): Ready=False and Reconciling=True with it."""
FAILURE_REASONS = (
    INVALID_SPEC,
    NAME_CONFLICT,
    SECRET_NOT_USABLE,
    JOB_REJECTED,
    INFRASTRUCTURE_FAILURE,
    EVALUATOR_ERROR,
    JOB_FAILED,
    DEADLINE_EXCEEDED,
    NO_SCORE,
)
"""Succeeded=False reasons (phase Failed): Ready=False and Stalled=True with it."""
DEGRADED_REASONS = (REQUEST_FAILURES, INVALID_JUDGMENTS, RESULTS_NOT_STORED)
"""Degraded=True reasons: a success that is not clean, still Ready."""

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


def deciding(conditions: Sequence[Mapping[str, Any]], phase: str) -> Mapping[str, Any] | None:
    """The condition whose reason and message explain `phase` (`status.reason`/`message`): Degraded
    for a degraded success, Succeeded once finished, Accepted before the Job exists, else Running."""
    if phase == PHASE_SUCCEEDED:
        degraded = find(conditions, DEGRADED)
        if degraded and degraded.get("status") == TRUE:
            return degraded
        return find(conditions, SUCCEEDED)
    if phase == PHASE_FAILED:
        return find(conditions, SUCCEEDED)
    if phase == PHASE_PENDING:
        accepted = find(conditions, ACCEPTED)
        if accepted and accepted.get("status") != TRUE:
            return accepted
    return find(conditions, RUNNING)


def kstatus_conditions(status: Mapping[str, Any], generation: int) -> dict[str, tuple[str, str, str]]:
    """Ready, Reconciling and Stalled (type → (status, reason, message)) for a `status` holding the
    observed conditions, on an object at `metadata.generation` = `generation`.

    The kstatus convention (sigs.k8s.io/cli-utils/pkg/kstatus, read by Flux and Helm 4's `--wait`):
    Reconciling=True reads as InProgress, Stalled=True as Failed, neither (with Ready=True) as
    Current. So: under way → Ready=False, Reconciling=True with what it is doing; succeeded (clean
    or degraded) → Ready=True with Succeeded's reason; failed → Stalled=True with the failure reason.
    A status that describes an earlier generation (`observedGeneration` behind: an edit not taken
    up yet) is Reconciling and not Ready, whatever it said of that generation. The reducer passes
    the status it writes (always its own generation's); a reader of an object passes
    `status` and `metadata.generation` and gets what the operator would say of it.

    The messages of the "abnormal-true" types are empty when False: kstatus reads them only when
    True, and the status already says the same words in `status.message`."""
    conditions = status.get("conditions") or []
    observed = status.get("observedGeneration")
    if observed is not None and int(observed) < generation:
        message = f"generation {generation} is not observed yet: the status describes generation {observed}"
        return {
            READY: (FALSE, LATEST_GENERATION_NOT_OBSERVED, message),
            RECONCILING: (TRUE, LATEST_GENERATION_NOT_OBSERVED, message),
            STALLED: (FALSE, LATEST_GENERATION_NOT_OBSERVED, ""),
        }
    phase = phase_of(conditions)
    if phase in (PHASE_SUCCEEDED, PHASE_FAILED):
        succeeded = find(conditions, SUCCEEDED) or {}
        reason, message = str(succeeded.get("reason") or phase), str(succeeded.get("message") or "")
        ok = phase == PHASE_SUCCEEDED
        return {
            READY: (TRUE if ok else FALSE, reason, message),
            RECONCILING: (FALSE, reason, ""),
            STALLED: (FALSE, reason, "") if ok else (TRUE, reason, message),
        }
    decides = deciding(conditions, phase) or {}
    reason, message = str(decides.get("reason") or IN_PROGRESS), str(decides.get("message") or "")
    return {
        READY: (FALSE, reason, message),
        RECONCILING: (TRUE, reason, message),
        STALLED: (FALSE, reason, ""),
    }


def is_finished(status: Mapping[str, Any] | None) -> bool:
    """Whether Succeeded is True or False (the evaluation will not change any more)."""
    succeeded = find((status or {}).get("conditions"), SUCCEEDED)
    return succeeded is not None and succeeded.get("status") in (TRUE, FALSE)
