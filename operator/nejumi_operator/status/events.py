"""Which Kubernetes Events a status change deserves: one per transition (Job created, queued,
a pod that cannot run, started, retrying, succeeded, failed, rejected), never one for a new
message alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nejumi_eval.api.v1alpha1 import conditions as c

RANK = {c.PHASE_QUEUED: 0, c.PHASE_PENDING: 1, c.PHASE_RUNNING: 2, c.PHASE_SUCCEEDED: 3, c.PHASE_FAILED: 3}
"""Phases in the order an evaluation goes through them (a retry or a requeue may go back)."""


@dataclass(frozen=True)
class Transition:
    """One Kubernetes Event to post on the evaluation."""

    type: str  # Normal or Warning
    reason: str
    message: str


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Transition]:
    """The Events that going from status `old` to `new` deserves: Job created, queued, a pod that
    cannot run (the Pending reason), started, retrying, succeeded, failed, rejected. Nothing for a
    status that changed within the same phase, reason and attempt (a new message alone)."""
    old = old or {}
    out: list[Transition] = []
    o_conds, n_conds = old.get("conditions") or [], new.get("conditions") or []
    o_accepted, n_accepted = c.find(o_conds, c.ACCEPTED) or {}, c.find(n_conds, c.ACCEPTED) or {}
    if n_accepted.get("status") == c.TRUE and o_accepted.get("status") != c.TRUE:
        out.append(Transition("Normal", "JobCreated", str(n_accepted.get("message") or "")))
    phase, reason, message = new.get("phase"), new.get("reason"), str(new.get("message") or "")
    o_attempt, n_attempt = old.get("attempt"), new.get("attempt")
    if (old.get("phase"), old.get("reason"), o_attempt) == (phase, reason, n_attempt):
        return out
    if o_attempt and n_attempt and n_attempt > o_attempt and phase not in (c.PHASE_SUCCEEDED, c.PHASE_FAILED):
        out.append(
            Transition("Warning", "Retrying", message if reason == c.RETRYING else f"attempt {n_attempt}")
        )
        if reason == c.RETRYING:
            return out
    if phase == c.PHASE_QUEUED and reason == c.PREEMPTED and old.get("reason") != c.PREEMPTED:
        out.append(Transition("Warning", c.PREEMPTED, message))
    elif phase == c.PHASE_QUEUED and old.get("phase") != c.PHASE_QUEUED:
        out.append(Transition("Normal", "Queued", message))
    elif phase == c.PHASE_PENDING and reason in c.PENDING_PROBLEMS:
        out.append(Transition("Warning", str(reason), message))
    elif phase == c.PHASE_PENDING and reason == c.RETRYING and not out:
        out.append(Transition("Warning", "Retrying", message))
    elif phase == c.PHASE_RUNNING:
        if old.get("phase") != c.PHASE_RUNNING or o_attempt != n_attempt:
            out.append(Transition("Normal", "Started", message))
    elif phase == c.PHASE_SUCCEEDED:
        if RANK.get(str(old.get("phase")), -1) < RANK[c.PHASE_RUNNING]:  # it ran between two looks
            out.append(Transition("Normal", "Started", "the evaluator started"))
        scores = new.get("scores") or {}
        parts = [f"Overall {new['overallDisplay']}"] if new.get("overallDisplay") else []
        parts += [
            f"{name} {b['avg']:.4f}"
            for name, b in (scores.get("benchmarks") or {}).items()
            if b.get("avg") is not None
        ]
        text = (
            str(new.get("reason"))
            + (f" ({', '.join(parts)})" if parts else "")
            + (f": {message}" if message else "")
        )
        out.append(Transition("Normal", "Succeeded", text))
    elif phase == c.PHASE_FAILED:
        accepted_ok = n_accepted.get("status") == c.TRUE
        kind = "Failed" if accepted_ok else "Rejected"
        out.append(Transition("Warning", kind, f"{reason}: {message}" if message else str(reason)))
    return out
