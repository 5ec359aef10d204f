"""Live progress: what the evaluator reports while it runs, and the operator shows in status.

The channel is one ConfigMap per evaluation (`<evaluation>-progress`, key `progress.json`). The
operator creates it, and a Role that lets the evaluation's own ServiceAccount `get`/`patch` that
one ConfigMap by name and nothing else. The evaluator overwrites the key every few seconds; the
operator parses it with this model — bounded, strict — and copies only the validated fields into
`status.progress`/`status.liveProgress`. So an evaluator can neither write the status (phase,
conditions, scores stay the operator's observations) nor touch another evaluation, and a report
it garbles is ignored, not shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

PROGRESS_KEY = "progress.json"
"""The ConfigMap key holding the report (JSON)."""
MAX_COUNT = 10_000_000
MAX_COUNTERS = 16

Step = Literal["prepare", "generate", "judge", "score", "report"]
"""Where the run is: preparing data (and loading the model), generating answers (judging may
already run beside it), judging what is left after the model server stopped, scoring, reporting."""


class _Report(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Counter(_Report):
    """One benchmark's (or one of its stages') units: e.g. `jaster 812/1920`, `judged 31/160`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,31}$")
    done: int = Field(ge=0, le=MAX_COUNT)
    total: int = Field(ge=0, le=MAX_COUNT)

    @model_validator(mode="after")
    def _done_within_total(self) -> Counter:
        if self.done > self.total:
            raise ValueError(f"{self.name}: done {self.done} > total {self.total}")
        return self


class ProgressReport(_Report):
    """One report. `pod` lets the operator show it only for the attempt that is running now."""

    version: Literal[1] = 1
    pod: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    step: Step
    counters: list[Counter] = Field(default_factory=list, max_length=MAX_COUNTERS)
    updated_at: datetime

    def line(self) -> str:
        """`jaster 812/1920 · mtbench 40/160 · judged 31/160` (the step while nothing is counted)."""
        if not self.counters:
            return {"prepare": "preparing data", "score": "scoring", "report": "reporting"}.get(
                self.step, self.step
            )
        return " · ".join(f"{c.name} {c.done}/{c.total}" for c in self.counters)


OUTCOME_KEY = "serve-outcome.json"
"""The progress ConfigMap's key for a serving group leader's `StageOutcome` (`contract.
GROUP_ATTEMPTS_ENV`): a group's pods never end by themselves, so this is how the operator learns
that the serve stage ended, and how (a one-node serve stage is a Job: its end and termination
message say it)."""
MAX_OUTCOME_SUMMARY = 16_384


class StageOutcome(_Report):
    """How one attempt of a serving group's leader at the serve stage ended. `summary` is what a
    one-node serve pod leaves as its termination message (the `Summary` JSON, or text), read the same
    way. `final`: no further attempt comes (success, a non-retryable exit, or the last attempt
    allowed); the leader holds until the operator releases the group."""

    version: Literal[1] = 1
    pod: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    attempt: int = Field(ge=1, le=1000)
    attempts: int = Field(ge=1, le=1000)
    exit_code: int = Field(ge=0, le=255)
    final: bool
    summary: str = Field(default="", max_length=MAX_OUTCOME_SUMMARY)
    finished_at: datetime
