"""What a finished evaluator reports, read into the status: its summary (the pod's termination
message), the scores, failures and usage that go into `status`, the results it stored, and why a
completed run is no result (`NoScore`) or not a clean one (`Degraded`: its scores, or its results
not stored)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.cost import Cost, Pricing
from nejumi_eval.api.v1alpha1.status import ResultsStatus
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, StoredResults, Summary
from nejumi_operator.status.observation import Termination
from nejumi_operator.status.text import clip, readable, sentence


def parse_summary(message: str) -> Summary | None:
    """The evaluator's summary, or None when the message is not one (e.g. a log tail)."""
    data = summary_data(message)
    if data is None:
        return None
    try:
        return Summary.model_validate(data)
    except ValidationError:
        return None


def summary_data(message: str) -> dict[str, Any] | None:
    if not message.strip().startswith("{"):
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _wandb_url(path: str | None) -> str | None:
    parts = (path or "").split("/")
    if len(parts) == 3 and all(parts) and not (path or "").startswith("/"):
        entity, project, run_id = parts
        return f"https://wandb.ai/{entity}/{project}/runs/{run_id}"
    return None


def summary_fields(summary: Summary) -> dict[str, Any]:
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
            "truncatedAnswers": summary.truncated_answers,
        },
        "usage": summary.usage.model_dump(by_alias=True),
        "cost": summary.cost.model_dump(by_alias=True) if summary.cost is not None else None,
        "runtime": {f"{to_camel(k)}Seconds": v for k, v in summary.runtime_seconds.items()},
        "degraded": summary.degraded,
        "capped": summary.capped or any(b.capped for b in benchmarks),
        "syntheticJudge": summary.synthetic_judge or any(b.synthetic_judge for b in benchmarks),
        "resultsDir": summary.results_dir,
        "results": results_fields(summary.results),
        "wandbRunPath": summary.wandb_run_path,
        "wandbRunUrl": _wandb_url(summary.wandb_run_path),
    }


def cost_fields(
    cost: Mapping[str, Any] | None, gpu_seconds_held: float | None, pricing: Pricing | None
) -> dict[str, Any]:
    """`status.cost` and `costDisplay`: the evaluator's figures, with the GPU-seconds held as the
    operator observed them (`runtime.gpuSeconds`: the Jobs that held GPUs, wall time × GPUs; the
    one `run` Job's the evaluator cannot know) priced with the operator's table."""
    if not cost:
        return {}
    priced = Cost.model_validate(cost).with_held(gpu_seconds_held, pricing)
    return {"cost": priced.model_dump(by_alias=True), "costDisplay": priced.display()}


def results_fields(stored: StoredResults | None) -> dict[str, Any] | None:
    """`status.results`: where the results of record are and the manifest that proves them complete
    (the leaderboard's `--cluster` follows it). Counts only with a manifest: without one there is
    nothing a reader would take."""
    if stored is None:
        return None
    if not stored.stored:
        return ResultsStatus(uri=stored.uri, stored=False).model_dump(by_alias=True, exclude_none=True)
    status = ResultsStatus(
        uri=stored.uri,
        stored=True,
        manifest_sha256=stored.manifest_sha256,
        objects=stored.objects,
        bytes=stored.bytes,
    )
    return status.model_dump(by_alias=True, exclude_none=True)


def results_not_stored(summary: Summary) -> str | None:
    """Why a completed evaluation's results are not in its store, and what to do (None: stored, or
    no store). The scores stand; only the record is missing, and a rerun on the same workspace
    costs no request: every answer and judgment is in the response cache."""
    stored = summary.results
    if stored is None or stored.stored:
        return None
    where = f"the workspace at {summary.results_dir}" if summary.results_dir else "the workspace"
    why = sentence(stored.error or "no reason given").rstrip(".")
    return (
        f"the results were not stored in {stored.uri}: {why}. "
        f"The scores stand, and the results are in {where}; to store them, run the evaluation again "
        "on the same workspace (workspace.retain: true keeps the operator's PVC when the evaluation is "
        "deleted; workspace.pvcName names an existing one): every answer and judgment comes from the "
        "response cache, so no model or judge request is sent"
    )


def _has_number(b: BenchmarkSummary) -> bool:
    return any(v is not None for v in (b.avg, *b.categories.values(), *b.scores.values()))


def no_score_problems(summary: Summary) -> list[str]:
    """Why a *completed* summary is no evaluation result: one line per enabled benchmark that was
    meant to be scored and produced no score. Empty: the evaluation succeeded.

    The rule (protocol-mtbench.md §6 counts invalid judgments; more than 2% = degraded):
    - `scored: false` with no scored unit (`samples` 0, `invalid` 0) is a benchmark *not scored by
      design* (MT-bench without a judge: answers only). It is not a failure.
    - A scored benchmark with units but no valid one (`invalid >= samples > 0`: a judge that is
      reachable but fails every judgment) has no score → NoScore.
    - A scored benchmark without any number (avg, categories and per-dataset scores all null) has
      no score → NoScore.
    - A scored, uncapped benchmark whose average is null because of invalid units (a category
      with no valid judgment: §6 makes the MT-bench score null) has no score → NoScore. A capped
      run (a smoke test) may lack categories by design, and a jaster dataset subset has a null
      average with no invalid unit: both still succeed.
    - Otherwise invalid units only degrade the run (the evaluator's `degraded`, above 2%)."""
    problems = []
    for name, b in summary.benchmarks.items():
        if not b.scored:
            if b.samples or b.invalid:
                problems.append(f"{name} was not scored ({b.invalid} of {b.samples} units invalid)")
            continue
        if b.samples > 0 and b.invalid >= b.samples:
            problems.append(f"{name} has no score: all {b.samples} scored units were invalid")
        elif not _has_number(b):
            problems.append(f"{name} has no score: it reported no number")
        elif b.avg is None and b.invalid > 0 and not b.capped:
            problems.append(
                f"{name} has no score: {b.invalid} of {b.samples} scored units were invalid and "
                "left a category without a valid one"
            )
    return problems


def not_scored_notes(summary: Summary) -> list[str]:
    return [
        f"{name}: not scored (no judge configured)"
        for name, b in summary.benchmarks.items()
        if not b.scored and not b.samples and not b.invalid
    ]


def degraded_reason(summary: Summary) -> tuple[str, str]:
    parts = []
    for name, b in summary.benchmarks.items():
        if b.failures or b.invalid:
            of = f" of {b.samples}" if b.samples else ""
            parts.append(f"{name}: {b.failures} failed requests, {b.invalid}{of} unscorable")
    failures = sum(b.failures for b in summary.benchmarks.values())
    invalid = sum(b.invalid for b in summary.benchmarks.values())
    reason = c.INVALID_JUDGMENTS if invalid and not failures else c.REQUEST_FAILURES
    return reason, "; ".join(parts) or "the evaluator marked the run degraded"


def failure_message(term: Termination | None, summary: Summary | None) -> str:
    if summary and summary.error:
        return clip(summary.error)
    if term and term.message:
        return clip(readable(term.message) or term.message)
    if term:
        return f"the evaluator exited with code {term.exit_code} ({term.reason or 'no reason'})"
    return ""


def failure_cause(term: Termination, summary: Summary | None) -> str:
    """One sentence: why an attempt ended (for in-progress messages)."""
    if summary and summary.error:
        text = sentence(summary.error)
    elif term.message:
        text = sentence(term.message)
    else:
        text = ""
    return f"exited {term.exit_code}" + (f": {text}" if text else f" ({term.reason or 'no reason'})")


def overall_display(overall: float | None, fields: Mapping[str, Any]) -> str | None:
    if overall is None:
        return None
    marks = [
        label
        for label, key in (
            ("capped", "capped"),
            ("synthetic judge", "syntheticJudge"),
            ("degraded", "degraded"),
        )
        if fields.get(key)
    ]
    return f"{overall:.4f}" + (f" ({', '.join(marks)})" if marks else "")
