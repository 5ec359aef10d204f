"""Observations → status: a pure reducer.

What the operator sees (the Job, the evaluator container's last termination with its message =
the evaluator's `Summary` JSON, or a spec it cannot run) becomes the whole `status`: four
conditions (set from the first visit on), the phase derived from them, and scores, failures,
usage and runtimes from the summary. `lastTransitionTime` changes only when a condition's status
does, so writing the same observation twice is a no-op.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_operator.api import conditions as c
from nejumi_operator.api.status import EvaluationStatus
from nejumi_operator.reconcile.job import CONTAINER

MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class Termination:
    """How the evaluator container of one pod ended."""

    exit_code: int
    message: str = ""
    reason: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything the reducer needs, gathered by the caller."""

    generation: int
    job_name: str
    job: Mapping[str, Any] | None = None
    """The batch/v1 Job (camelCase, as the API returns it), or None when it does not exist."""
    termination: Termination | None = None
    """The evaluator container's latest termination over the Job's pods."""
    spec_error: str | None = None
    """Set when the operator rejected the spec: no Job is created."""
    gpus: int = 0
    queue_name: str | None = None


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_termination(pods: Iterable[Mapping[str, Any]]) -> Termination | None:
    """The most recently finished evaluator container among `pods` (camelCase pod dicts)."""
    found: list[Termination] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (status.get("state") or {}).get("terminated")
            if status.get("name") != CONTAINER or not term:
                continue
            found.append(
                Termination(
                    exit_code=int(term.get("exitCode", -1)),
                    message=term.get("message") or "",
                    reason=term.get("reason"),
                    finished_at=term.get("finishedAt"),
                )
            )
    return max(found, key=lambda t: t.finished_at or "", default=None)


def parse_summary(message: str) -> Summary | None:
    """The evaluator's summary, or None when the message is not one (e.g. a log tail)."""
    if not message.strip().startswith("{"):
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return Summary.model_validate(data)
    except ValidationError:
        return None


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_LIMIT else "…" + text[-(MESSAGE_LIMIT - 1) :]


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    cond = c.find((job.get("status") or {}).get("conditions"), type_)
    return cond if cond and cond.get("status") == c.TRUE else None


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _wandb_url(path: str | None) -> str | None:
    parts = (path or "").split("/")
    if len(parts) == 3 and all(parts) and not (path or "").startswith("/"):
        entity, project, run_id = parts
        return f"https://wandb.ai/{entity}/{project}/runs/{run_id}"
    return None


def _summary_fields(summary: Summary) -> dict[str, Any]:
    benchmarks = summary.benchmarks.values()
    return {
        "scores": {
            "overall": summary.overall,
            "benchmarks": {
                name: {"avg": b.avg, "categories": b.categories}
                for name, b in summary.benchmarks.items()
                if b.scored
            },
        },
        "failures": {
            "generation": sum(b.failures for b in benchmarks),
            "judge": sum(b.invalid for b in benchmarks),
        },
        "usage": summary.usage.model_dump(by_alias=True),
        "runtime": {f"{to_camel(k)}Seconds": v for k, v in summary.runtime_seconds.items()},
        "degraded": summary.degraded,
        "capped": summary.capped or any(b.capped for b in benchmarks),
        "syntheticJudge": summary.synthetic_judge or any(b.synthetic_judge for b in benchmarks),
        "resultsDir": summary.results_dir,
        "wandbRunPath": summary.wandb_run_path,
        "wandbRunUrl": _wandb_url(summary.wandb_run_path),
    }


def _degraded_message(summary: Summary) -> str:
    parts = [
        f"{name}: {b.failures} failed requests, {b.invalid} unscorable"
        for name, b in summary.benchmarks.items()
        if b.failures or b.invalid
    ]
    return "; ".join(parts) or "the evaluator marked the run degraded"


def _failure_message(term: Termination | None, summary: Summary | None) -> str:
    if summary and summary.error:
        return _clip(summary.error)
    if term and term.message:
        return _clip(term.message)
    if term:
        return f"the evaluator exited with code {term.exit_code} ({term.reason or 'no reason'})"
    return ""


def _observe(obs: Observation) -> tuple[dict[str, tuple[str, str, str]], dict[str, Any]]:
    """Condition type → (status, reason, message), and the other status fields."""
    conds: dict[str, tuple[str, str, str]] = {}
    fields: dict[str, Any] = {}
    job, term = obs.job, obs.termination
    summary = parse_summary(term.message) if term else None

    if obs.spec_error:
        msg = _clip(obs.spec_error)
        conds[c.ACCEPTED] = (c.FALSE, c.INVALID_SPEC, msg)
        conds[c.RUNNING] = (c.FALSE, c.INVALID_SPEC, "no Job is created for an invalid spec")
        conds[c.SUCCEEDED] = (c.FALSE, c.INVALID_SPEC, msg)
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = "rejected: invalid spec"
        return conds, fields

    if job is None:
        conds[c.ACCEPTED] = (c.UNKNOWN, c.JOB_NOT_FOUND, f"Job {obs.job_name} does not exist (yet)")
        conds[c.RUNNING] = (c.FALSE, c.JOB_NOT_FOUND, "")
        conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        fields["progress"] = "waiting for the Job"
        return conds, fields

    jstatus = job.get("status") or {}
    fields["jobName"] = obs.job_name
    fields["startTime"] = jstatus.get("startTime")
    conds[c.ACCEPTED] = (c.TRUE, c.JOB_CREATED, f"Job {obs.job_name} created")
    complete, failed = _job_condition(job, "Complete"), _job_condition(job, "Failed")

    if complete or failed:
        end = jstatus.get("completionTime") or (failed or complete or {}).get("lastTransitionTime")
        fields["completionTime"] = end
        start, stop = _parse_time(jstatus.get("startTime")), _parse_time(end)
        if summary and summary.status == "completed":
            fields.update(_summary_fields(summary))
        if start and stop and obs.gpus:
            fields.setdefault("runtime", {})["gpuSeconds"] = round(
                (stop - start).total_seconds() * obs.gpus, 3
            )

    if complete and summary and summary.status == "completed":
        conds[c.RUNNING] = (c.FALSE, c.COMPLETED, f"Job {obs.job_name} completed")
        conds[c.SUCCEEDED] = (c.TRUE, c.EVALUATION_COMPLETED, _clip(summary.error or ""))
        if summary.degraded:
            conds[c.DEGRADED] = (c.TRUE, c.REQUEST_FAILURES, _degraded_message(summary))
        else:
            conds[c.DEGRADED] = (c.FALSE, c.NO_FAILURES, "")
        marks = [
            m for m, key in (("capped", "capped"), ("synthetic judge", "syntheticJudge")) if fields.get(key)
        ]
        fields["progress"] = "completed" + (
            f" ({', '.join(marks)}: a smoke test, not a leaderboard score)" if marks else ""
        )
    elif complete or failed:
        if complete:  # exit 0 without a readable summary: the evaluator broke its contract
            reason, message = c.EVALUATOR_ERROR, "the evaluator exited 0 without a readable summary"
        elif term:
            reason, message = c.failure_reason(term.exit_code), _failure_message(term, summary)
        else:
            reason = c.JOB_FAILED
            message = (
                f"Job {obs.job_name} failed: {failed.get('reason', '')} {failed.get('message', '')}".strip()
            )  # type: ignore[union-attr]
        conds[c.RUNNING] = (c.FALSE, c.FAILED, f"Job {obs.job_name} failed")
        conds[c.SUCCEEDED] = (c.FALSE, reason, message)
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = "failed"
    else:
        attempts = int(jstatus.get("failed") or 0)
        retry = ""
        if attempts and term:
            last = _failure_message(term, summary)
            retry = f" (attempt {attempts + 1}; the last exited {term.exit_code}: {last})"
        suspended = job.get("spec", {}).get("suspend") or _job_condition(job, "Suspended")
        if suspended:
            queue = f" in LocalQueue {obs.queue_name}" if obs.queue_name else ""
            conds[c.RUNNING] = (
                c.FALSE,
                c.SUSPENDED,
                f"Job {obs.job_name} is suspended, waiting for admission{queue}",
            )
            fields["progress"] = "queued"
        elif int(jstatus.get("active") or 0) > 0:
            conds[c.RUNNING] = (c.TRUE, c.JOB_RUNNING, _clip(f"Job {obs.job_name}: evaluator running{retry}"))
            fields["progress"] = "evaluating" + (f" (attempt {attempts + 1})" if attempts else "")
        else:
            conds[c.RUNNING] = (
                c.FALSE,
                c.JOB_PENDING,
                _clip(f"Job {obs.job_name}: waiting for a pod{retry}"),
            )
            fields["progress"] = "pending"
        conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")
    return conds, fields


def reduce_status(old: Mapping[str, Any] | None, obs: Observation, at: str | None = None) -> dict[str, Any]:
    """The new `status` (camelCase JSON, no nulls) for observation `obs`, given the current one."""
    old_conds = {cond.get("type"): cond for cond in (old or {}).get("conditions") or []}
    stamp = at or now()
    observed, fields = _observe(obs)
    conditions = []
    for type_ in c.CONDITION_TYPES:
        status, reason, message = observed[type_]
        previous = old_conds.get(type_)
        same = (
            previous is not None and previous.get("status") == status and previous.get("lastTransitionTime")
        )
        conditions.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": previous["lastTransitionTime"] if same else stamp,  # type: ignore[index]
                "observedGeneration": obs.generation,
            }
        )
    doc = {
        **fields,
        "phase": c.phase_of(conditions),
        "conditions": conditions,
        "observedGeneration": obs.generation,
    }
    # Validate against the status model (= the CRD schema) and drop nulls.
    return EvaluationStatus.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_none=True)


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` (removed top-level fields become null)."""
    patch: dict[str, Any] = {k: None for k in (old or {}) if k not in new}
    patch.update(new)
    return patch
