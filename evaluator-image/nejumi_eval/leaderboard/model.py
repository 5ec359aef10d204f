"""The leaderboard's boundary types: what one evaluation contributes (`Entry`), where it was placed,
and the whole board (`Leaderboard`, also the `--json` output).

Sources build entries without placement; `compare.build` places them (ranked, excluded with
reasons, or superseded by a later evaluation of the same model) and adds the bootstrap intervals;
the terminal table, the CSV and the HTML page only read them. Keeping placement and its reasons in
the data, not in the renderers, is what makes every output say the same thing about every run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nejumi_eval.api.v1alpha1.cost import Cost


class Interval(BaseModel):
    """A two-sided percentile bootstrap interval (the board's `confidence`, 95% by default)."""

    model_config = ConfigDict(frozen=True)

    low: float
    high: float


class RankInterval(BaseModel):
    """The ranks an entry takes across the bootstrap resamples (`bootstrap.rank_bounds`): the
    central `confidence` of them, rounded outward to whole ranks and widened to hold the point rank.

    A score interval says how far a score may move; whether that moves the model past its
    neighbours is what a ranking reader wants, and overlapping score intervals do not answer it
    (two intervals may overlap while the paired draws almost never swap the two)."""

    model_config = ConfigDict(frozen=True)

    low: int = Field(ge=1, description="The best rank.")
    high: int = Field(ge=1, description="The worst rank.")

    def text(self) -> str:
        """`1–3`, or `2` when it is one rank."""
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"


class BenchmarkResult(BaseModel):
    """One benchmark's scores in one evaluation, as its summary recorded them, plus intervals."""

    title: str
    avg: float | None = None
    categories: dict[str, float | None] = Field(default_factory=dict)
    scores: dict[str, float] = Field(default_factory=dict, description="Finer scores (e.g. per dataset).")
    samples: int = 0
    degraded: bool = False
    capped: bool = False
    synthetic_judge: bool = False
    ci: Interval | None = Field(None, description="Interval of `avg`; null without per-question data.")
    category_ci: dict[str, Interval] = Field(default_factory=dict)
    questions: int = Field(0, description="Resampling units behind the interval (questions).")


class Provenance(BaseModel):
    """How an evaluation was measured. `identity` is the part two evaluations must share to be
    ranked against each other (template, data hashes, a judge model: each benchmark's own);
    `details` is recorded for people (generation mode, the judge's returned model, versions)."""

    identity: dict[str, dict[str, Any]] = Field(default_factory=dict, description="By benchmark.")
    details: dict[str, Any] = Field(default_factory=dict)
    key: str = Field("", description="Digest of `identity`: equal keys, comparable evaluations.")
    missing: str | None = Field(
        None,
        description="Why no protocol record was read (`status only`, `no run record`); null when one was. "
        "An evaluation without one is not known to be measured differently, only not known to be alike.",
    )


class TokenUsage(BaseModel):
    """Tokens an evaluation spent, as its summary's `usage` records them (the run record's where a
    source has no summary usage). Judge tokens are the judge's prompt and completion together."""

    prompt_tokens: int = Field(0, description="The model's prompt tokens, every benchmark.")
    completion_tokens: int = Field(0, description="The model's completion tokens.")
    judge_tokens: int = Field(0, description="The judge's prompt + completion tokens (judged benchmarks).")
    requests_sent: int = Field(0, description="Requests sent to the model and the judge.")
    cache_hits: int = Field(0, description="Requests answered from the response cache.")


EntryState = Literal["ranked", "excluded", "superseded"]


class Entry(BaseModel):
    """One evaluation of one model."""

    id: str = Field(description="Unique on the board (a results folder's name).")
    source: str = Field(description="Where it was read from (a results folder's path).")
    model: str
    revision: str | None = None
    model_source: str | None = Field(None, description="Serving backend or API kind (run.json model.source).")
    size: str | None = Field(
        None, description="Parameter count, where a source records it (results folders do not)."
    )
    status: str = "completed"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    overall: float | None = None
    overall_ci: Interval | None = None
    benchmarks: dict[str, BenchmarkResult] = Field(default_factory=dict)
    runtime_seconds: float | None = Field(None, description="Wall-clock seconds of the whole evaluation.")
    usage: TokenUsage | None = Field(None, description="Tokens spent; null where the source records none.")
    cost: Cost | None = Field(
        None,
        description="What it cost (GPU-seconds held and busy, tokens, judge and GPU cost: "
        "`api.v1alpha1.cost`); null where the source records none, and every unknown figure in it null.",
    )
    degraded: bool = False
    capped: bool = False
    synthetic_judge: bool = False
    provenance: Provenance = Field(default_factory=Provenance)
    warnings: list[str] = Field(default_factory=list)

    # placement (compare.build)
    state: EntryState = "excluded"
    reasons: list[str] = Field(default_factory=list, description="Why it is excluded or superseded.")
    group: str | None = Field(None, description="Protocol group id; ranks only compare within one.")
    rank: int | None = None
    superseded_by: str | None = None
    tied_with_above: bool | None = Field(
        None, description="Overall not distinguishable (paired bootstrap) from the entry ranked just above."
    )
    rank_interval: RankInterval | None = Field(
        None, description="The ranks it takes across the resamples; null without Overall draws."
    )


class Group(BaseModel):
    """Evaluations measured under one protocol identity; ranked among themselves only."""

    id: str
    key: str
    main: bool = Field(
        description="The group ranked: the one whose key starts with the board's `main_key`, else "
        "(no `main_key`) the one most ranked entries belong to; with an unmatched `main_key`, none."
    )
    identity: dict[str, dict[str, Any]]
    differs: list[str] = Field(
        default_factory=list,
        description="Identity fields both this group and the main one record, with different values.",
    )
    missing: list[str] = Field(
        default_factory=list,
        description="Identity fields only one of this group and the main one records: not known to "
        "differ, only not known to agree (a status without its results folder records none).",
    )
    note: str = Field(
        "",
        description="How it stands against the main group, in words (what differs, what is missing); "
        "every output shows this text.",
    )
    entries: list[str] = Field(default_factory=list, description="Entry ids, ranked first in rank order.")


class Comparison(BaseModel):
    """Paired bootstrap of `a − b` over the questions both evaluations answered."""

    a: str
    b: str
    metric: str = Field(description="`Overall`, a benchmark name, or `benchmark/category`.")
    diff: float | None = Field(None, description="a − b on the shared questions.")
    ci: Interval | None = None
    distinguishable: bool | None = Field(
        None, description="True when the interval excludes 0; null when it cannot be computed."
    )
    a_better: float | None = Field(None, description="Share of resamples with a > b.")
    b_better: float | None = Field(None, description="Share of resamples with b > a (ties: neither).")
    shared_questions: int = 0


class Leaderboard(BaseModel):
    formula: str
    formula_description: str
    formula_benchmarks: list[str] = Field(description="The benchmarks Overall is made of, in order.")
    confidence: float = Field(0.95, description="Of every interval: scores, differences, ranks.")
    seed: int
    resamples: int
    include_all: bool
    include: list[str] = Field(
        default_factory=list,
        description="Which of `capped`, `synthetic_judge`, `degraded` runs are ranked (still marked).",
    )
    main_key: str | None = Field(
        None, description="The prefix of the main group's key asked for (null: the largest group)."
    )
    generated_at: datetime
    groups: list[Group]
    entries: list[Entry] = Field(description="Ranked entries first (main group, by rank), then the rest.")
    comparisons: list[Comparison] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def entry(self, entry_id: str) -> Entry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)

    def ranked(self, group: str | None = None) -> list[Entry]:
        """Ranked entries of one group (default: the main group), best first."""
        gid = group if group is not None else next((g.id for g in self.groups if g.main), None)
        rows = [e for e in self.entries if e.state == "ranked" and e.group == gid]
        return sorted(rows, key=lambda e: (e.rank or 0, e.model))

    def comparison(self, a: str, b: str, metric: str = "Overall") -> Comparison | None:
        """The paired comparison of `a` and `b` (either order; the sign follows the order asked)."""
        for c in self.comparisons:
            if c.metric != metric:
                continue
            if (c.a, c.b) == (a, b):
                return c
            if (c.a, c.b) == (b, a):
                flip = None if c.ci is None else Interval(low=-c.ci.high, high=-c.ci.low)
                return c.model_copy(
                    update={
                        "a": a,
                        "b": b,
                        "diff": None if c.diff is None else -c.diff,
                        "ci": flip,
                        "a_better": c.b_better,
                        "b_better": c.a_better,
                    }
                )
        return None
