"""The compact run summary: what the evaluator hands the operator through the pod's termination
message, and what `nejumi-eval run` prints at the end.

Light on purpose (pydantic only): the operator parses it. Kubernetes keeps at most 4096 bytes of a
termination message, so `Summary.to_json` shortens a longer summary (and marks it `truncated`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.cost import Cost

SUMMARY_MAX_BYTES = 4096


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class BenchmarkSummary(_Camel):
    """One benchmark's outcome, in the same shape for every benchmark (keyed by its name)."""

    scored: bool = Field(
        True, description="False: outputs were generated but not scored (e.g. MT-bench without a judge)."
    )
    avg: float | None = Field(None, description="The benchmark's score; null when incomplete or not scored.")
    categories: dict[str, float | None] = Field(default_factory=dict, description="Category → score.")
    scores: dict[str, float] = Field(
        default_factory=dict, description="Finer scores, e.g. jaster's per dataset (`<dataset>_<metric>`)."
    )
    samples: int = Field(0, description="Scored units (jaster test samples, MT-bench judgments).")
    failures: int = Field(0, description="Model requests that failed after retries (scored as empty).")
    invalid: int = Field(0, description="Units the scorer could not score (e.g. invalid judgments).")
    truncated_answers: int = Field(
        0,
        description="Model answers over the answer-size cap, cut to it before anything stored or "
        "scored them (a server ignoring max_tokens).",
    )
    degraded: bool = Field(False, description="The score rests on failures: not clean.")
    capped: bool = Field(False, description="Fewer samples, questions or tokens than the protocol.")
    synthetic_judge: bool = Field(
        False, description="Scored by the synthetic judge: a fixed rule, not a real judge's ratings."
    )


class Usage(_Camel):
    """Tokens and requests of this pod's run (answers from the response cache spend none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    judge_tokens: int = Field(0, description="The judges' prompt + completion tokens.")
    judge_prompt_tokens: int | None = Field(
        None, description="The judges' prompt tokens (null: an evaluator that did not split them)."
    )
    judge_completion_tokens: int | None = Field(None, description="The judges' completion tokens.")
    requests_sent: int = 0
    cache_hits: int = 0


class StoredResults(_Camel):
    """Where the results of record went (`results.uri`): stored, or why not."""

    uri: str = Field(description="The evaluation's prefix, s3://bucket/prefix/<key>/.")
    stored: bool = Field(False, description="Every object and the manifest were written.")
    manifest_sha256: str | None = Field(None, description="sha256:<hex> of the manifest as stored.")
    objects: int = Field(0, description="Objects the manifest lists.")
    bytes: int = Field(0, description="Their total size.")
    uploaded: int = Field(0, description="Objects written by this run (the rest were already stored).")
    error: str | None = Field(None, description="Not stored: why (the results stay in the workspace).")


class Summary(_Camel):
    """One evaluation's outcome, small enough for a termination message."""

    status: Literal["completed", "failed"]
    model: str
    stage: str | None = Field(
        None,
        description="The stage this pod ran when it was not the last (fetch, serve: "
        "`api.v1alpha1.stages`); its summary has no scores. Absent: the evaluation's own summary.",
    )
    overall: float | None = None
    degraded: bool = False
    capped: bool = Field(
        False, description="Some benchmark was capped: a smoke test, not a leaderboard score."
    )
    synthetic_judge: bool = Field(False, description="Some score comes from the synthetic judge.")
    truncated_answers: int = Field(
        0,
        description="Answers cut to the answer-size cap in this run, the model's and the judges' "
        "(each benchmark counts its model answers).",
    )
    benchmarks: dict[str, BenchmarkSummary] = Field(default_factory=dict, description="By benchmark name.")
    usage: Usage = Field(default_factory=Usage)
    cost: Cost | None = Field(
        None,
        description="What the evaluation spent: GPU-seconds held and busy, model and judge tokens, "
        "judge and GPU cost (`api.v1alpha1.cost`); a serve stage's has its model tokens and busy seconds.",
    )
    runtime_seconds: dict[str, float] = Field(default_factory=dict)
    results_dir: str | None = None
    results: StoredResults | None = Field(None, description="The results of record in object storage.")
    wandb_run_path: str | None = None
    error: str | None = None

    def to_json(self) -> str:
        """Serialise by alias, within the termination-message limit (`SUMMARY_MAX_BYTES`).

        A summary that would not fit is shortened, never refused (a completed run must not end in
        an error because its report is long), and says so with `"truncated": true` (a key the model
        ignores when it reads the summary back, so every reader still parses it). First, losslessly,
        fields equal to their defaults are left out; then, until it fits: the error (kept to its
        first few hundred characters), the per-dataset `scores`, the rest of the error, category
        scores, runtimes, usage, paths, the model name's tail, and at last the benchmarks. Status,
        overall, the flags and each benchmark's avg and counts go last.
        """
        import json  # the module stays light: only this rare path needs it

        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) <= SUMMARY_MAX_BYTES:
            return text
        data = json.loads(self.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True))
        data["truncated"] = True

        def dump() -> str:
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

        def fits() -> bool:
            return len(dump().encode()) <= SUMMARY_MAX_BYTES

        def cut(key: str, keep_at_least: int, original: str | None = None) -> None:
            """Set string `key` to the longest prefix of its value (or `original`) that fits, but
            not shorter than `keep_at_least` characters (binary search: bytes are not characters)."""
            value = original if original is not None else data.get(key)
            if not isinstance(value, str):
                return
            data[key] = value
            if fits() or len(value) <= keep_at_least:
                return
            lo, hi = keep_at_least, len(value) - 1  # lo: the answer when nothing longer fits
            while lo < hi:
                mid = (lo + hi + 1) // 2
                data[key] = value[:mid] + "…"
                lo, hi = (mid, hi) if fits() else (lo, mid - 1)
            data[key] = value[:lo] + "…"

        def drop(field: str) -> None:
            for bench in (data.get("benchmarks") or {}).values():
                if fits():
                    return
                bench.pop(field, None)

        error = data.get("error")
        cut("error", 300)
        if not fits():
            drop("scores")
            cut("error", 300, error)  # as much of the error as fits now
        cut("error", 40)
        drop("categories")
        for key in ("runtimeSeconds", "usage", "cost", "wandbRunPath", "resultsDir", "error"):
            if not fits():
                data.pop(key, None)
        cut("model", 64)
        benchmarks = data.get("benchmarks") or {}
        while benchmarks and not fits():  # hundreds of plugin benchmarks: the last ones go
            benchmarks.pop(next(reversed(benchmarks)))
        return dump()
