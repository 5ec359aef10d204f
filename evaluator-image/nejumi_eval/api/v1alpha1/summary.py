"""The compact run summary: what the evaluator hands the operator through the pod's termination
message, and what `nejumi-eval run` prints at the end.

Light on purpose (pydantic only): the operator parses it. Kubernetes keeps at most 4096 bytes of a
termination message, so `Summary.to_json` refuses to produce more.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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
    degraded: bool = Field(False, description="The score rests on failures: not clean.")
    capped: bool = Field(False, description="Fewer samples, questions or tokens than the protocol.")
    synthetic_judge: bool = Field(
        False, description="Scored by the synthetic judge: a fixed rule, not a real judge's ratings."
    )


class Usage(_Camel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judge_tokens: int = 0
    requests_sent: int = 0
    cache_hits: int = 0


class Summary(_Camel):
    """One evaluation's outcome, small enough for a termination message."""

    status: Literal["completed", "failed"]
    model: str
    overall: float | None = None
    degraded: bool = False
    capped: bool = Field(
        False, description="Some benchmark was capped: a smoke test, not a leaderboard score."
    )
    synthetic_judge: bool = Field(False, description="Some score comes from the synthetic judge.")
    benchmarks: dict[str, BenchmarkSummary] = Field(default_factory=dict, description="By benchmark name.")
    usage: Usage = Field(default_factory=Usage)
    runtime_seconds: dict[str, float] = Field(default_factory=dict)
    results_dir: str | None = None
    wandb_run_path: str | None = None
    error: str | None = None

    def to_json(self) -> str:
        """Serialise by alias; refuse (ValueError) to exceed the termination-message limit."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        size = len(text.encode())
        if size > SUMMARY_MAX_BYTES:
            raise ValueError(f"summary is {size} bytes, over the {SUMMARY_MAX_BYTES}-byte limit")
        return text
