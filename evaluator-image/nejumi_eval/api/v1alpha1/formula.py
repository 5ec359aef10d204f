"""The leaderboard formula as data: which benchmarks make up Overall, and how each is scaled.

Neo's Overall is `(jaster AVG + MT-bench/10) / 2`: the mean of each benchmark's score divided by
its divisor (MT-bench rates 1–10, jaster scores 0–1). The terms live in `overall.json`, not in a
benchmark's code, so a new leaderboard version is a data change and a benchmark that is not a term
(a third one, a plugin) is reported beside Overall without changing it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from statistics import fmean

from pydantic import BaseModel, ConfigDict, Field


class Term(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark: str = Field(min_length=1)
    divide_by: float = Field(
        1, gt=0, description="A division, not a scale factor: x / 10 is exact where x * 0.1 is not."
    )


class Formula(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    description: str
    terms: tuple[Term, ...] = Field(min_length=1)

    @property
    def benchmarks(self) -> tuple[str, ...]:
        return tuple(t.benchmark for t in self.terms)

    def value(self, scores: Mapping[str, float | None]) -> float | None:
        """The mean of the scaled terms; null when any term's score is missing."""
        parts = [scores.get(t.benchmark) for t in self.terms]
        if any(p is None for p in parts):
            return None
        return fmean(p / t.divide_by for p, t in zip(parts, self.terms, strict=True))  # type: ignore[operator]

    def degraded(self, degraded: Mapping[str, bool]) -> bool:
        """Degraded when any term's benchmark is."""
        return any(degraded.get(t.benchmark, False) for t in self.terms)


@cache
def _load() -> Formula:
    text = resources.files("nejumi_eval.api.v1alpha1").joinpath("overall.json").read_text("utf-8")
    return Formula.model_validate(json.loads(text))


OVERALL = _load()
"""Nejumi Neo's Overall."""
