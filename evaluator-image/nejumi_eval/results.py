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


class JasterSummary(_Camel):
    avg: float | None = Field(None, description="Mean of the 7 category means; null unless all 16 scored.")
    categories: dict[str, float | None]
    datasets: dict[str, float]
    samples: int = Field(description="Scored test samples over all datasets.")
    failures: int = Field(0, description="Requests that failed after retries (scored as empty answers).")
    degraded: bool = False
    capped: bool = Field(False, description="Fewer test samples than the protocol: a smoke test.")


class MtbenchSummary(_Camel):
    judged: bool
    avg: float | None = None
    categories: dict[str, float | None] = Field(default_factory=dict)
    judgments: int = 0
    invalid: int = 0
    generation_failures: int = 0
    degraded: bool = False
    capped: bool = Field(False, description="Fewer questions than the protocol: a smoke test.")


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
    jaster: JasterSummary | None = None
    mtbench: MtbenchSummary | None = None
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
