"""The seam between a benchmark's results and whoever reads them back: the leaderboard, its
bootstrap intervals, the diff of two evaluations, the HTML drill-down and the W&B report.

The component that writes a result also declares how it is read back (inspect_ai's
`@scorer(metrics=[...])`, rebuilt from the log by its `ScorerSpec`). So each benchmark carries a
`Reading` (`Benchmark.reading`) beside the code that writes its tables, and the leaderboard only
loops over the registry: it names no benchmark, and a plugin benchmark is ranked with an interval,
drilled into and diffed like a built-in one.

A `Reading` declares:

- its tables (`OutputTables`): the names it writes in the results folder (`<name>.jsonl`) and to
  W&B (the same names), and how the W&B report filters and shows its per-question table;
- its per-question reader (`Reading.questions`): tables in, the bootstrap `Design` and the
  drill-down `QuestionRow`s out. `Tables` is a function from a table name to its rows, so one reader
  serves a results folder and a W&B run (a W&B cell may hold JSON as text: the reader copes);
- its comparability identity (`Reading.identity`): the fields of its run record that must match
  for two evaluations to be ranked together (`details`: what is recorded for people only);
- its bootstrap design (`Design`): questions (units) in strata, strata in categories, and the
  roll-up every benchmark here shares (mean over categories of the mean over their strata of the
  pooled Σsum/Σcount). The category structure comes from protocol data, never from the run, so a
  partial run cannot redefine what a complete score is;
- its drill-down fields (`QuestionRow`, `Answer`): the question, prompt, gold, per-turn questions,
  and per evaluation the output, extracted prediction, metric values, error and per-turn
  judgments; the page renders whatever of these a row has;
- its labels (`Labels`): what people call a stratum and a question's score, the W&B report's
  heading and scale, and which provenance details sit beside the model's name.

A benchmark whose `reading` is None is ranked by its recorded score, with no interval, no
drill-down and no diff: the board never makes up what it cannot read.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Protocol, TypedDict

Tables = Callable[[str], list[dict[str, Any]] | None]
"""Table name (as in the results folder and W&B) → rows, or None when the run has no such table."""


@dataclass(frozen=True)
class OutputTables:
    """The tables a benchmark writes, by the names it writes them under (results folder and W&B)."""

    questions: str
    """One row per scored question (or per judgment): what `Reading.questions` reads back."""
    stratum_column: str | None = None
    """The column naming a row's stratum (dataset, category): the W&B report shows one table per
    stratum, filtered on it. None: one unfiltered table."""
    columns: tuple[str, ...] = ()
    """The columns of the questions table the W&B report shows, in order (none: the table's own)."""
    column_types: Mapping[str, str] = field(default_factory=dict)
    """Weave types of the shown columns that are not strings (`number`, `boolean`)."""
    leaderboard: str | None = None
    """One row per run with its scores (the W&B report's summary table); None when not written."""
    radar: str | None = None
    """`category, score` rows (the W&B report's radar chart); None when not written."""


@dataclass(frozen=True)
class Labels:
    """How people read a benchmark's per-question results."""

    heading: str
    """Its name as a heading (the W&B report's sections)."""
    stratum: str = "category"
    """What one stratum is called (`dataset`, `category`): table headers, the report's filters."""
    unit: str = "per question: its score"
    """What one compared score is (the diff of two evaluations)."""
    scale: str = "0–1"
    """The range of its category scores (the report's radar charts)."""
    shown: tuple[tuple[str, str], ...] = ()
    """Provenance details (keys of `Reading.details`) shown beside the model, with their labels."""


@dataclass(frozen=True)
class Design:
    """A benchmark's questions as its protocol averages them (the bootstrap resamples them).

    `units[stratum][unit_id] = (sum, count)`: a sample scored once is `(score, 1)`; a question
    judged per turn is `(sum of its valid ratings, number of valid ratings)`. `categories` is the
    protocol's whole structure (category → member strata), not only what the run has: a category
    with a missing or empty member has no score, and then neither has the benchmark (as in the
    protocol's roll-up).
    """

    benchmark: str
    categories: Mapping[str, Sequence[str]]
    units: Mapping[str, Mapping[str, tuple[float, int]]]

    @property
    def questions(self) -> int:
        return sum(len(u) for u in self.units.values())

    def point(
        self, keep: Mapping[str, Sequence[str]] | None = None
    ) -> tuple[float | None, dict[str, float | None]]:
        """The score and category scores recomputed from the units (optionally only `keep`)."""
        means: dict[str, float | None] = {}
        for stratum, units in self.units.items():
            ids = keep.get(stratum, ()) if keep is not None else units.keys()
            total = sum(units[i][0] for i in ids)
            count = sum(units[i][1] for i in ids)
            means[stratum] = total / count if count else None
        categories: dict[str, float | None] = {}
        for category, members in self.categories.items():
            values = [means.get(m) for m in members]
            categories[category] = None if not values or None in values else fmean(values)  # type: ignore[arg-type]
        scores = list(categories.values())
        avg = None if not scores or None in scores else fmean(scores)  # type: ignore[arg-type]
        return avg, categories


class TurnAnswer(TypedDict, total=False):
    """One turn of a multi-turn answer, with its judgment."""

    turn: int
    answer: str | None
    judgment: str | None
    rating: float | None
    valid: bool
    judge: str | None


class Answer(TypedDict, total=False):
    """One evaluation's answer to a question, as the drill-down shows it: a single output with its
    prediction and metric values, or one `TurnAnswer` per turn. Every key is optional."""

    output: str | None
    pred: Any
    metrics: dict[str, Any]
    error: str | None
    turns: list[TurnAnswer]


@dataclass
class QuestionRow:
    """One question as the drill-down shows it, with this evaluation's answer and score."""

    benchmark: str
    stratum: str
    id: str
    prompt: str
    gold: str | None = None
    turns: list[str] = field(default_factory=list)
    """The question of each turn (a multi-turn benchmark); empty for a single prompt."""
    answer: Answer = field(default_factory=lambda: Answer())
    unit: tuple[float, int] | None = None
    """This evaluation's `(sum, count)` for the question, as the design pools it; None: the row is
    shown but is no resampling unit."""

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.stratum}/{self.id}"

    @property
    def score(self) -> float | None:
        """The question's score (sum / count); None without a valid rating."""
        if self.unit is None or not self.unit[1]:
            return None
        return self.unit[0] / self.unit[1]


@dataclass
class BenchmarkQuestions:
    """One evaluation's per-question data of one benchmark."""

    design: Design
    rows: list[QuestionRow]


def collect(
    benchmark: str, categories: Mapping[str, Sequence[str]], rows: Iterable[QuestionRow]
) -> BenchmarkQuestions:
    """The design and the rows of a reader: every row with a `unit` is a resampling unit of its
    stratum, so the drill-down and the interval rest on the same questions."""
    out = list(rows)
    units: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
    for row in out:
        if row.unit is not None:
            units[row.stratum][row.id] = row.unit
    frozen = {c: tuple(members) for c, members in categories.items()}
    return BenchmarkQuestions(Design(benchmark, frozen, dict(units)), out)


def digest(value: Any) -> str:
    """A short, order-independent digest of a JSON value (an identity, a set of data hashes)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_identity(record: Mapping[str, Any]) -> dict[str, Any]:
    """The identity every benchmark records: its `protocol`, and its `variant` where it has one."""
    ident: dict[str, Any] = {"protocol": record.get("protocol")}
    if "variant" in record:
        ident["variant"] = record.get("variant")
    return ident


class QuestionReader(Protocol):
    """Per-question tables in, the bootstrap design and the drill-down rows out."""

    def questions(self, tables: Tables) -> BenchmarkQuestions | None:
        """The run's questions, or None when it has no per-question table (then the benchmark is
        ranked by its recorded score without an interval)."""
        ...

    def strata(self) -> Sequence[str]:
        """Every stratum of the protocol in the order the report lists them (protocol data)."""
        ...


class Comparability(Protocol):
    """What a benchmark's run record says about how it was measured."""

    def identity(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The fields that must be equal for two evaluations to be ranked together (prompt
        template, data hashes, judge, …); an absent field is None, never left out."""
        ...

    def details(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Provenance recorded for people, not for comparability (mode, the judge that answered)."""
        ...


class Reading(QuestionReader, Comparability, Protocol):
    """How one benchmark's results are read back (see the module docstring)."""

    tables: OutputTables
    labels: Labels
