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
"""An evaluator pod is running now."""
SUCCEEDED = "Succeeded"
"""The evaluation finished: True with scores, False with a failure reason, Unknown while in progress."""
DEGRADED = "Degraded"
"""Some requests failed after retries, so the scores are not clean (True), or all went through (False)."""
CONDITION_TYPES = (ACCEPTED, RUNNING, SUCCEEDED, DEGRADED)

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# ---- reasons ------------------------------------------------------------------------------------
JOB_CREATED = "JobCreated"
JOB_NOT_FOUND = "JobNotFound"
JOB_PENDING = "JobPending"
JOB_RUNNING = "JobRunning"
SUSPENDED = "Suspended"
IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
EVALUATION_COMPLETED = "EvaluationCompleted"
INVALID_SPEC = "InvalidSpec"
INFRASTRUCTURE_FAILURE = "InfrastructureFailure"
EVALUATOR_ERROR = "EvaluatorError"
JOB_FAILED = "JobFailed"
REQUEST_FAILURES = "RequestFailures"
NO_FAILURES = "NoFailures"
NOT_EVALUATED = "NotEvaluated"

EXIT_CODE_REASONS = {EXIT_CONFIG: INVALID_SPEC, EXIT_INFRA: INFRASTRUCTURE_FAILURE}
"""`nejumi-eval` exit code → Succeeded=False reason (see nejumi_eval.errors); any other: EVALUATOR_ERROR."""


def failure_reason(exit_code: int | None) -> str:
    """The Succeeded=False reason for an evaluator that exited with `exit_code` (None: no exit seen)."""
    if exit_code is None:
        return JOB_FAILED
    return EXIT_CODE_REASONS.get(exit_code, EVALUATOR_ERROR)


# ---- phases (derived) ---------------------------------------------------------------------------
PHASE_PENDING = "Pending"
PHASE_RUNNING = "Running"
PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
PHASES = (PHASE_PENDING, PHASE_RUNNING, PHASE_SUCCEEDED, PHASE_FAILED)


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def phase_of(conditions: Sequence[Mapping[str, Any]]) -> str:
    """Succeeded decides a finished evaluation; Running a live one; anything else is Pending."""
    succeeded = find(conditions, SUCCEEDED)
    if succeeded and succeeded.get("status") == TRUE:
        return PHASE_SUCCEEDED
    if succeeded and succeeded.get("status") == FALSE:
        return PHASE_FAILED
    running = find(conditions, RUNNING)
    if running and running.get("status") == TRUE:
        return PHASE_RUNNING
    return PHASE_PENDING


def is_finished(status: Mapping[str, Any] | None) -> bool:
    """Whether Succeeded is True or False (the evaluation will not change any more)."""
    succeeded = find((status or {}).get("conditions"), SUCCEEDED)
    return bool(succeeded) and succeeded.get("status") in (TRUE, FALSE)
