"""MT-bench aggregation (protocol-mtbench.md §6): category means, the score, the degraded flag.

Invalid judgments (score -1) are excluded from every mean and counted instead. Neo averaged -1
into the category means (§9), which turned a judge hiccup into a silently lower score.
"""

from __future__ import annotations

from collections import Counter
from statistics import fmean
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES, PROTOCOL, category_rule

INVALID_SCORE = -1
InvalidReason = Literal["no_rating", "judge_error"]
INVALID_REASONS: tuple[InvalidReason, ...] = ("no_rating", "judge_error")


class JudgmentScore(BaseModel):
    """The part of a per-judgment record (§7) that aggregation reads; other keys are ignored."""

    model_config = ConfigDict(frozen=True)

    category: str
    turn: Literal[1, 2]
    score: float
    invalid_reason: InvalidReason | None = None

    @field_validator("category")
    @classmethod
    def _known_category(cls, category: str) -> str:
        category_rule(category)
        return category

    @model_validator(mode="after")
    def _score_is_a_rating_or_invalid(self) -> JudgmentScore:
        if self.score != INVALID_SCORE and not 1 <= self.score <= 10:
            raise ValueError(f"score must be a 1-10 rating or {INVALID_SCORE} (invalid), got {self.score}")
        if self.invalid_reason is not None and self.score != INVALID_SCORE:
            raise ValueError(f"a judgment with invalid_reason {self.invalid_reason!r} must have score -1")
        return self

    @property
    def valid(self) -> bool:
        return self.score != INVALID_SCORE


class MtbenchScores(BaseModel):
    """The run-level MT-bench numbers (§6, §7), unrounded."""

    category_means: dict[str, float | None]
    turn1_mean: float | None
    turn2_mean: float | None
    mtbench_score: float | None
    n_judgments: int
    n_valid: int
    n_invalid: int
    n_invalid_by_reason: dict[str, int]
    invalid_ratio: float
    n_generation_failures: int
    degraded: bool


def _mean(scores: list[float]) -> float | None:
    return fmean(scores) if scores else None


def _category_means(judgments: list[JudgmentScore]) -> dict[str, float | None]:
    return {
        category: _mean([j.score for j in judgments if j.category == category and j.valid])
        for category in CATEGORIES
    }


def _mtbench_score(category_means: dict[str, float | None]) -> float | None:
    """Unweighted mean of the 8 category means; null if any category has none."""
    means = [m for m in category_means.values() if m is not None]
    return fmean(means) if len(means) == len(category_means) else None


def aggregate(judgments: list[dict]) -> dict[str, float | None]:
    """The 8 category means (alphabetical, None where no judgment is valid) and `AVG`, the MT-bench
    score (None if any category mean is None). Records carry `category`, `turn`, `score`."""
    scores = [JudgmentScore.model_validate(judgment) for judgment in judgments]
    category_means = _category_means(scores)
    return {**category_means, "AVG": _mtbench_score(category_means)}


def summarize(judgments: list[dict], n_generation_failures: int = 0) -> MtbenchScores:
    """Everything §7 reports about the scores. Invalid records must say why (`invalid_reason`).

    Degraded when more than 2% of judgments are invalid (4 or more of 160), when a category has no
    valid judgment (the score is then null), or when any generation failed.
    """
    scores = [JudgmentScore.model_validate(judgment) for judgment in judgments]
    if not scores:
        raise ValueError("no judgments to summarize")
    invalid = [j for j in scores if not j.valid]
    if any(j.invalid_reason is None for j in invalid):
        raise ValueError("every invalid judgment (score -1) needs its invalid_reason")
    by_reason = Counter(j.invalid_reason for j in invalid)
    category_means = _category_means(scores)
    mtbench_score = _mtbench_score(category_means)
    invalid_ratio = len(invalid) / len(scores)
    return MtbenchScores(
        category_means=category_means,
        turn1_mean=_mean([j.score for j in scores if j.turn == 1 and j.valid]),
        turn2_mean=_mean([j.score for j in scores if j.turn == 2 and j.valid]),
        mtbench_score=mtbench_score,
        n_judgments=len(scores),
        n_valid=len(scores) - len(invalid),
        n_invalid=len(invalid),
        n_invalid_by_reason={reason: by_reason[reason] for reason in INVALID_REASONS},
        invalid_ratio=invalid_ratio,
        n_generation_failures=n_generation_failures,
        degraded=invalid_ratio > PROTOCOL.degraded_above_invalid_ratio
        or mtbench_score is None
        or n_generation_failures > 0,
    )


def overall(
    jaster_avg: float | None,
    mtbench_score: float | None,
    jaster_degraded: bool,
    mtbench_degraded: bool,
) -> tuple[float | None, bool]:
    """Leaderboard overall = (jaster AVG + MT-bench score / 10) / 2, null if either half is null;
    degraded when either half is."""
    value = None if jaster_avg is None or mtbench_score is None else (jaster_avg + mtbench_score / 10) / 2
    return value, jaster_degraded or mtbench_degraded
