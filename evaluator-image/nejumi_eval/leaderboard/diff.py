"""Two evaluations question by question: which questions flipped, per dataset.

Typically two evaluations of one model (two revisions, a rerun, a changed serving setup; the board
keeps superseded evaluations, so every earlier run is there to compare with). A is the baseline,
B the other one: *improved* means B scored higher than A on that question, *regressed* lower.

What is compared is each benchmark's bootstrap unit (`questions`), scored as its protocol scores
it: the unit's Σsum/Σcount, e.g. a sample's metric value (0–1), or a judged question's mean of its
valid turn ratings (1–10; an invalid judgment is left out, as in the category mean). Each
benchmark's reader says what its unit is (`Labels.unit`). A question without a score in one of the
two is not compared (counted in `only_a` / `only_b`).

Per stratum (a dataset, a category): the questions both scored (`shared`), how many improved,
regressed or stayed equal (within `TOLERANCE`), the stratum's score of A and of B on the shared
questions (Σ/Σ, as the protocol pools it), and every flipped question with both scores. Per
benchmark: the totals and its score on the shared questions, with the paired bootstrap interval of
B − A (the board's own `Bootstrap.compare`), and the same for Overall.

`resolve` turns what a person types (an evaluation id, `MODEL`, `MODEL@REF`) into one evaluation,
with an error that lists the candidates when the reference is unknown or ambiguous.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from nejumi_eval.api.v1alpha1.formula import OVERALL, Formula
from nejumi_eval.benchmarks import registry
from nejumi_eval.benchmarks.reading import QuestionRow
from nejumi_eval.errors import InputError
from nejumi_eval.leaderboard.bootstrap import CONFIDENCE, Bootstrap, Design
from nejumi_eval.leaderboard.model import Comparison, Entry, Interval
from nejumi_eval.leaderboard.sources import Evaluation
from nejumi_eval.runtime.files import atomic_write_text

TOLERANCE = 1e-9
"""Two question scores closer than this are equal (char F1 is a float)."""


_EPOCH = datetime.min.replace(tzinfo=UTC)


class Side(BaseModel):
    """One of the two evaluations, as the diff names it."""

    id: str
    label: str = Field(description="`MODEL@START`: what `resolve` accepts back.")
    model: str
    revision: str | None = None
    started_at: datetime | None = None
    source: str
    protocol_key: str


class FlippedQuestion(BaseModel):
    """A question whose score differs between A and B."""

    id: str
    a: float
    b: float
    a_turns: list[float | None] | None = Field(
        None, description="A question judged per turn: A's rating per turn (null: invalid)."
    )
    b_turns: list[float | None] | None = None

    @property
    def delta(self) -> float:
        return self.b - self.a


class StratumDiff(BaseModel):
    """One stratum, a dataset or a category (or a benchmark's total: `stratum` "all")."""

    stratum: str
    category: str | None = Field(
        None, description="The stratum's category, where that is not the stratum itself."
    )
    shared: int = Field(0, description="Questions both evaluations scored.")
    only_a: int = Field(0, description="Scored by A only (not answered, or no valid rating, in B).")
    only_b: int = 0
    improved: int = Field(0, description="Shared questions B scored higher than A.")
    regressed: int = Field(0, description="Shared questions B scored lower than A.")
    unchanged: int = 0
    a_score: float | None = Field(
        None, description="A's score on the shared questions (as the protocol pools it)."
    )
    b_score: float | None = None
    flipped: list[FlippedQuestion] = Field(
        default_factory=list, description="Improved and regressed, in order."
    )


class BenchmarkDiff(BaseModel):
    name: str
    title: str
    unit: str = Field(description="What one compared score is.")
    strata: list[StratumDiff]
    total: StratumDiff = Field(description="Counts summed; scores: the benchmark's on the shared questions.")
    delta: float | None = Field(None, description="B − A of the benchmark score on the shared questions.")
    ci: Interval | None = Field(None, description="Paired bootstrap interval of `delta`.")
    distinguishable: bool | None = None


class EvaluationDiff(BaseModel):
    """A → B, question by question (the `--diff --json` output)."""

    a: Side
    b: Side
    same_protocol: bool = Field(description="Same protocol identity: the differences are the model's.")
    tolerance: float = TOLERANCE
    seed: int
    resamples: int
    confidence: float = CONFIDENCE
    benchmarks: list[BenchmarkDiff]
    overall: BenchmarkDiff | None = Field(
        None, description="The formula's B − A over the shared questions (no strata)."
    )
    warnings: list[str] = Field(default_factory=list)

    def benchmark(self, name: str) -> BenchmarkDiff:
        for b in self.benchmarks:
            if b.name == name:
                return b
        raise KeyError(name)


# ---- naming evaluations ----------------------------------------------------------------------


def label(entry: Entry) -> str:
    """`MODEL@2026-11-01T09:00Z` (the start, to the minute), what the diff shows and `resolve` reads."""
    if entry.started_at is None:
        return f"{entry.model}@{entry.id}"
    return f"{entry.model}@{entry.started_at.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def _stamp(entry: Entry) -> str:
    started = entry.started_at
    return "" if started is None else f"{started.astimezone(UTC):%Y%m%dt%H%M%S}"


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _by_start(entries: Sequence[Entry]) -> list[Entry]:
    """Latest first."""
    return sorted(entries, key=lambda e: (e.started_at or _EPOCH, e.id), reverse=True)


def _describe(entries: Sequence[Entry], limit: int = 30) -> str:
    """The candidates, one a line: `MODEL@START  (id …, revision …)`, by model, oldest first."""
    lines = []
    for e in sorted(entries, key=lambda e: (e.model, e.started_at or _EPOCH, e.id))[:limit]:
        about = [f"id {e.id}"] + ([f"revision {e.revision}"] if e.revision else [])
        lines.append(f"  {label(e)}  ({', '.join(about)})")
    if len(entries) > limit:
        lines.append(f"  … and {len(entries) - limit} more")
    return "\n".join(lines)


def resolve(ref: str, evaluations: Sequence[Evaluation]) -> Evaluation:
    """The evaluation `ref` names:

    - an evaluation id (a results folder's name; the `evaluation` column of the board);
    - `MODEL`, when the board has one evaluation of that model;
    - `MODEL@REF`, REF one of: `latest`, `previous` (by start time), a prefix of the start time in
      any punctuation (`2026-11-01`, `20261101T09`, `2026-11-01T09:00Z` as the diff labels it), a
      prefix of the model revision, or an evaluation id.

    Raises `InputError` listing the candidates when `ref` names none or several."""
    by_id = {e.entry.id: e for e in evaluations}
    if ref in by_id:
        return by_id[ref]
    entries = [e.entry for e in evaluations]
    models = {e.model for e in entries}
    model, at = ref, None
    if "@" in ref and ref not in models:
        model, at = ref.rsplit("@", 1)
    mine = [e for e in entries if e.model == model]
    if not mine:
        raise InputError(
            f"unknown evaluation {ref!r}: give an evaluation id, MODEL or MODEL@REF "
            f"(REF: latest, previous, a start time or a revision prefix). On the board:\n{_describe(entries)}"
        )
    ordered = _by_start(mine)
    if at is None:
        if len(mine) == 1:
            return by_id[mine[0].id]
        raise InputError(
            f"{model} has {len(mine)} evaluations: name one as {model}@latest, {model}@previous, "
            f"{model}@<start time or revision prefix>, or by id:\n{_describe(mine)}"
        )
    if at in ("latest", "previous"):
        index = 0 if at == "latest" else 1
        if index >= len(ordered):
            raise InputError(f"{model} has only one evaluation, no {at!r} one:\n{_describe(mine)}")
        return by_id[ordered[index].id]
    key = _norm(at)
    when = key.removesuffix("z")  # `…T09:00Z`: UTC, as every start time here
    found = [
        e
        for e in ordered
        if e.id == at
        or (when and _stamp(e).startswith(when))
        or (key and e.revision and _norm(e.revision).startswith(key))
    ]
    if len(found) == 1:
        return by_id[found[0].id]
    if not found:
        raise InputError(
            f"no evaluation of {model} matches {at!r} (start time, revision or id):\n{_describe(mine)}"
        )
    raise InputError(f"{ref!r} is ambiguous: {len(found)} evaluations match:\n{_describe(found)}")


def _side(evaluation: Evaluation) -> Side:
    e = evaluation.entry
    return Side(
        id=e.id,
        label=label(e),
        model=e.model,
        revision=e.revision,
        started_at=e.started_at,
        source=e.source,
        protocol_key=e.provenance.key,
    )


# ---- the diff --------------------------------------------------------------------------------


def _scores(design: Design, stratum: str) -> dict[str, float]:
    """Unit id → its score (Σ/count), units without a score (no valid rating) left out."""
    return {uid: total / count for uid, (total, count) in design.units.get(stratum, {}).items() if count}


def _turns(rows: list[QuestionRow]) -> dict[tuple[str, str], list[float | None]]:
    """Rows judged per turn → (stratum, question id) → rating per turn (None: invalid)."""
    out: dict[tuple[str, str], list[float | None]] = {}
    for row in rows:
        turns = row.answer.get("turns")
        if isinstance(turns, list):
            out[(row.stratum, row.id)] = [_rating(t) for t in turns]
    return out


def _rating(turn: Mapping[str, Any]) -> float | None:
    """A judged turn's rating; None when the judgment was invalid."""
    rating = turn.get("rating")
    return float(rating) if turn.get("valid") and rating is not None else None


def _strata(a: Design, b: Design) -> list[str]:
    """Strata in protocol order (the categories' members), then any the protocol does not list."""
    order: list[str] = []
    for members in a.categories.values():
        order.extend(m for m in members if m not in order)
    for stratum in [*a.units, *b.units]:
        if stratum not in order:
            order.append(stratum)
    return [s for s in order if s in a.units or s in b.units]


def _shared(a: Design, b: Design) -> tuple[Design, Design]:
    """Both designs with only the units both scored (a stratum one lacks: empty in both)."""
    keep = {s: [uid for uid in _scores(a, s) if uid in _scores(b, s)] for s in {*a.units, *b.units}}

    def only(d: Design) -> Design:
        units = {s: {uid: d.units[s][uid] for uid in keep[s]} for s in d.units}
        return Design(d.benchmark, d.categories, units)

    return only(a), only(b)


def _pooled(design: Design, stratum: str, ids: Sequence[str]) -> float | None:
    units = design.units.get(stratum, {})
    count = sum(units[i][1] for i in ids)
    return sum(units[i][0] for i in ids) / count if count else None


def _stratum(
    stratum: str,
    category: str | None,
    da: Design,
    db: Design,
    turns_a: dict[tuple[str, str], list[float | None]],
    turns_b: dict[tuple[str, str], list[float | None]],
) -> StratumDiff:
    sa, sb = _scores(da, stratum), _scores(db, stratum)
    shared = [uid for uid in sa if uid in sb]
    out = StratumDiff(
        stratum=stratum,
        category=category,
        shared=len(shared),
        only_a=sum(1 for uid in sa if uid not in sb),
        only_b=sum(1 for uid in sb if uid not in sa),
        a_score=_pooled(da, stratum, shared),
        b_score=_pooled(db, stratum, shared),
    )
    for uid in shared:
        a, b = sa[uid], sb[uid]
        if b - a > TOLERANCE:
            out.improved += 1
        elif a - b > TOLERANCE:
            out.regressed += 1
        else:
            out.unchanged += 1
            continue
        out.flipped.append(
            FlippedQuestion(
                id=uid, a=a, b=b, a_turns=turns_a.get((stratum, uid)), b_turns=turns_b.get((stratum, uid))
            )
        )
    return out


def _title(entry: Entry, name: str) -> str:
    result = entry.benchmarks.get(name)
    return result.title if result is not None else name


def compute(
    a: Evaluation,
    b: Evaluation,
    *,
    seed: int = 0,
    resamples: int = 1000,
    confidence: float = CONFIDENCE,
    formula: Formula = OVERALL,
) -> EvaluationDiff:
    """A → B for every benchmark both have per-question data for (see the module docstring)."""
    if a.entry.id == b.entry.id:
        raise InputError(f"A and B are the same evaluation ({a.entry.id}): name two")
    qa, qb = a.questions, b.questions
    warnings: list[str] = []
    for side, mine, other in (("A", qa, qb), ("B", qb, qa)):
        if not mine:
            warnings.append(f"{side} ({_side(a if side == 'A' else b).label}) has no per-question data")
        for name in mine:
            if name not in other and other:
                warnings.append(f"{name}: per-question data in {side} only, not compared")
    names = [n for n in qa if n in qb]
    # Both sides restricted to the questions both scored: the counts, the scores and the paired
    # bootstrap then describe the same questions (B first: the comparison's `diff` is B − A).
    shared = {n: _shared(qa[n].design, qb[n].design) for n in names}
    boot = Bootstrap(seed=seed, resamples=resamples, confidence=confidence)
    paired = boot.compare(
        b.entry.id, a.entry.id, {n: shared[n][1] for n in names}, {n: shared[n][0] for n in names}, formula
    )
    by_metric: dict[str, Comparison] = {c.metric: c for c in paired}
    benchmarks = []
    for name in names:
        da, db = qa[name].design, qb[name].design
        category_of = {m: c for c, members in da.categories.items() for m in members if m != c}
        turns_a, turns_b = _turns(qa[name].rows), _turns(qb[name].rows)
        strata = [_stratum(s, category_of.get(s), da, db, turns_a, turns_b) for s in _strata(da, db)]
        point_a, _ = shared[name][0].point()
        point_b, _ = shared[name][1].point()
        total = StratumDiff(
            stratum="all",
            shared=sum(s.shared for s in strata),
            only_a=sum(s.only_a for s in strata),
            only_b=sum(s.only_b for s in strata),
            improved=sum(s.improved for s in strata),
            regressed=sum(s.regressed for s in strata),
            unchanged=sum(s.unchanged for s in strata),
            a_score=point_a,
            b_score=point_b,
        )
        c = by_metric.get(name)
        benchmarks.append(
            BenchmarkDiff(
                name=name,
                title=_title(a.entry, name),
                unit=registry.labels(name).unit,
                strata=strata,
                total=total,
                delta=c.diff if c else None,
                ci=c.ci if c else None,
                distinguishable=c.distinguishable if c else None,
            )
        )
    overall = None
    c = by_metric.get(formula.name)
    if c is not None:
        overall = BenchmarkDiff(
            name=formula.name,
            title=formula.name,
            unit=formula.description,
            strata=[],
            total=StratumDiff(stratum="all", shared=c.shared_questions),
            delta=c.diff,
            ci=c.ci,
            distinguishable=c.distinguishable,
        )
    same = a.entry.provenance.key == b.entry.provenance.key
    lacking = [
        f"{side} ({entry.provenance.missing})"
        for side, entry in (("A", a.entry), ("B", b.entry))
        if entry.provenance.missing
    ]
    if lacking:
        warnings.append(
            f"{' and '.join(lacking)} has no protocol record: whether A and B were measured alike "
            "(prompt template, data, judge, …) is not known"
        )
    elif not same:
        warnings.append(
            "A and B were measured under different protocols (prompt template, data, judge, …): "
            "the differences mix the model's with the protocol's"
        )
    return EvaluationDiff(
        a=_side(a),
        b=_side(b),
        same_protocol=same,
        seed=seed,
        resamples=resamples,
        confidence=confidence,
        benchmarks=benchmarks,
        overall=overall,
        warnings=warnings,
    )


# ---- output ----------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _short(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


def _interval(d: BenchmarkDiff) -> str:
    """The paired interval of B − A and what it says."""
    if d.ci is None:
        return "-"
    verdict = "distinguishable" if d.distinguishable else "within noise"
    return f"[{d.ci.low:+.4f}, {d.ci.high:+.4f}] {verdict}"


def _side_line(name: str, side: Side) -> str:
    parts = [f"id {side.id}"]
    if side.revision:
        parts.append(f"revision {side.revision}")
    return f"{name} = {side.label} ({', '.join(parts)})"


def terminal(diff: EvaluationDiff, width: int | None = None, flipped: int = 10) -> str:
    """One table per benchmark (a row per dataset / category: improved, regressed, unchanged, the
    two scores) and, under it, up to `flipped` flipped questions per stratum (`--json`: all)."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 160, force_terminal=False, color_system=None)
    pct = round(diff.confidence * 100)
    console.print(_side_line("A", diff.a), markup=False)
    console.print(_side_line("B", diff.b), markup=False)
    console.print(
        "improved: B scored higher than A on the question; regressed: lower. Δ = B − A on the questions "
        f"both scored; the totals with their {pct}% paired bootstrap interval "
        f"({diff.resamples} resamples, seed {diff.seed}).",
        markup=False,
    )
    for bench in diff.benchmarks:
        table = Table(title=f"{bench.title}: {bench.unit}", title_justify="left", show_edge=False)
        for column, justify in (
            (registry.labels(bench.name).stratum, "left"),
            ("shared", "right"),
            ("improved", "right"),
            ("regressed", "right"),
            ("unchanged", "right"),
            ("A", "right"),
            ("B", "right"),
            ("Δ", "right"),
            (f"{pct}% CI of Δ", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for s in bench.strata:
            name = s.stratum + (f" ({s.category})" if s.category else "")
            delta = None if s.a_score is None or s.b_score is None else s.b_score - s.a_score
            table.add_row(
                name,
                str(s.shared),
                str(s.improved),
                str(s.regressed),
                str(s.unchanged),
                _num(s.a_score),
                _num(s.b_score),
                _signed(delta),
                "",
            )
        t = bench.total
        table.add_section()
        table.add_row(
            f"{bench.title} (all)",
            str(t.shared),
            str(t.improved),
            str(t.regressed),
            str(t.unchanged),
            _num(t.a_score),
            _num(t.b_score),
            _signed(bench.delta),
            _interval(bench),
        )
        console.print(table)
        only = [f"{s.stratum}: A {s.only_a}, B {s.only_b}" for s in bench.strata if s.only_a or s.only_b]
        if only:
            console.print(f"  scored by one side only: {'; '.join(only)}", markup=False)
        if flipped > 0:
            for s in bench.strata:
                if not s.flipped:
                    continue
                shown = [
                    f"{'↑' if f.b > f.a else '↓'} {f.id} {_short(f.a)}→{_short(f.b)}"
                    for f in s.flipped[:flipped]
                ]
                more = len(s.flipped) - len(shown)
                console.print(
                    f"  {s.stratum}: " + ", ".join(shown) + (f" (+{more} more)" if more > 0 else ""),
                    markup=False,
                )
    if diff.overall is not None:
        console.print(
            f"{diff.overall.name} B − A: {_signed(diff.overall.delta)} {_interval(diff.overall)} "
            f"over {diff.overall.total.shared} shared questions",
            markup=False,
        )
    if not diff.benchmarks:
        console.print("no benchmark with per-question data in both evaluations", markup=False)
    for warning in diff.warnings:
        console.print(f"warning: {warning}", markup=False)
    return buffer.getvalue().rstrip()


def write_json(diff: EvaluationDiff, path: str | Path) -> Path:
    target = Path(path)
    atomic_write_text(target, diff.model_dump_json(indent=2) + "\n")
    return target
