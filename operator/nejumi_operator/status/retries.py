"""Attempts and retries of the evaluation Job: how many attempts failed, whether the Job
controller will start another (backoffLimit, the podFailurePolicy's FailJob exit codes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_operator.reconcile.job import CONTAINER
from nejumi_operator.status.observation import evaluator_status

DEFAULT_BACKOFF_LIMIT = 6  # batch/v1 Job's default


def failed_attempts(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> int:
    """Failed attempts so far: the Job's count (with pods not yet counted), or the failed pods
    seen, whichever is larger (a pod the Job ignores, e.g. a disrupted one, is still an attempt)."""
    jstatus = job.get("status") or {}
    uncounted = len((jstatus.get("uncountedTerminatedPods") or {}).get("failed") or [])
    seen = 0
    for pod in pods:
        term = (evaluator_status(pod).get("state") or {}).get("terminated")
        if (pod.get("status") or {}).get("phase") == "Failed" or (term and term.get("exitCode") != 0):
            seen += 1
    return max(int(jstatus.get("failed") or 0) + uncounted, seen)


def counted_failures(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> int:
    """Failures the Job counts against backoffLimit: its own count, or the failed pods seen that no
    Ignore rule of its podFailurePolicy exempts (the Job may not have counted the latest yet)."""
    jstatus = job.get("status") or {}
    uncounted = len((jstatus.get("uncountedTerminatedPods") or {}).get("failed") or [])
    seen = 0
    for pod in pods:
        term = (evaluator_status(pod).get("state") or {}).get("terminated")
        failed = (pod.get("status") or {}).get("phase") == "Failed" or (term and term.get("exitCode") != 0)
        if failed and fails_the_job(job, pod, int((term or {}).get("exitCode", -1))) is not False:
            seen += 1
    return max(int(jstatus.get("failed") or 0) + uncounted, seen)


def backoff_limit(job: Mapping[str, Any]) -> int:
    value = (job.get("spec") or {}).get("backoffLimit")
    return DEFAULT_BACKOFF_LIMIT if value is None else int(value)


def fails_the_job(job: Mapping[str, Any], pod: Mapping[str, Any], exit_code: int) -> bool | None:
    """What the Job's podFailurePolicy does with this pod: True FailJob, False Ignore (retry,
    uncounted), None no rule matched (count it against backoffLimit)."""
    pod_conds = (pod.get("status") or {}).get("conditions") or []
    for rule in ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []:
        on_codes = rule.get("onExitCodes")
        matched = False
        if on_codes and on_codes.get("containerName") in (None, CONTAINER):
            values = set(on_codes.get("values") or [])
            inside = exit_code in values
            matched = inside if on_codes.get("operator") == "In" else (not inside and exit_code != 0)
        for pattern in rule.get("onPodConditions") or []:
            cond = c.find(pod_conds, pattern.get("type", ""))
            if cond and cond.get("status") == pattern.get("status", c.TRUE):
                matched = True
        if matched:
            action = rule.get("action")
            if action == "FailJob":
                return True
            if action == "Ignore":
                return False
            return None
    return None
