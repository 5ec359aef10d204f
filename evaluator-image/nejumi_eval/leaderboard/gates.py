"""Release gates: each evaluation on a board judged by a NejumiLeaderboard's `spec.gates`.

A leaderboard answers "which model is best"; a release asks "may this one ship": is it good
enough (`min`: a score, or the low end of its interval, at least a threshold) and no worse than
what it replaces (`notWorseThan`: on no category of any benchmark, nor on Overall, distinguishably
below a reference evaluation). Both are read off the board the leaderboard already computed, with
its intervals, so the verdict and the page never disagree.

`notWorseThan` is judged per category, not only on Overall, because a regression confined to one
category (a model that lost its reading comprehension while gaining elsewhere) leaves Overall
within noise. It uses the paired bootstrap (`Bootstrap.compare`), the same draws as the board,
restricted to the questions both evaluations answered: question difficulty cancels, so a real
drop on a category of a few dozen questions can be told from noise where the two separate
intervals would overlap. Some twenty metrics are tested at once (Overall, each benchmark, each
category), so a truly equal model would fail one by chance far more often than the board's
1 − confidence: the tests are corrected as a family (Holm's step-down on the bootstrap's one-sided
p-values, the share of resamples in which the evaluation is not below the reference), so the
chance that a gate fails an equal model stays at the one-sided tail of the board's confidence. A
metric that fails is one whose interval of the difference lies below 0 and survives the correction.

Three outcomes, never a guess: Failed (a gate has a failure, each with the metric, the value,
its interval and the threshold or reference), Unknown (a gate could not be judged: the run is not
finished, a metric or the per-question data is missing, the reference is not on the board), or
Passed. A failed evaluation fails every gate: it produced no release candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nejumi_eval.api.v1alpha1.leaderboard import Bounds, Gate, GateFailure, GateVerdict
from nejumi_eval.leaderboard.bootstrap import Bootstrap
from nejumi_eval.leaderboard.compare import Board
from nejumi_eval.leaderboard.model import Comparison, Entry, Interval

OVERALL_METRIC = "Overall"
"""What a gate calls Overall (the board's formula, whatever its own name)."""

Resolve = Callable[[str], str | None]
"""A gate's `notWorseThan` (name, or namespace/name) → the entry id on the board, None: unknown."""


@dataclass
class _Outcome:
    """One gate on one evaluation: its failures, or why it could not be judged, or a note."""

    failures: list[GateFailure] = field(default_factory=list)
    unknown: str | None = None
    note: str | None = None


def judge(
    board: Board,
    gates: Sequence[Gate],
    *,
    evaluations: Sequence[str] | None = None,
    resolve: Resolve = lambda ref: ref,
) -> list[GateVerdict]:
    """One verdict per evaluation: `evaluations` (entry ids) in their order, each judged even when
    superseded (the caller asked for it), an id not on the board Unknown; else every entry in the
    board's order but the superseded ones (a model's earlier run, replaced on the board)."""
    lb = board.leaderboard
    by_id = {e.id: e for e in lb.entries}
    ids = (
        list(evaluations)
        if evaluations is not None
        else [e.id for e in lb.entries if e.state != "superseded"]
    )
    boot = Bootstrap(seed=lb.seed, resamples=lb.resamples, confidence=lb.confidence)  # one cache for all
    verdicts = []
    for entry_id in ids:
        entry = by_id.get(entry_id)
        if entry is None:
            verdicts.append(
                GateVerdict(evaluation=entry_id, model="", verdict="Unknown", message="not on the board")
            )
            continue
        verdicts.append(_verdict(board, boot, entry, gates, resolve))
    return verdicts


def _verdict(
    board: Board, boot: Bootstrap, entry: Entry, gates: Sequence[Gate], resolve: Resolve
) -> GateVerdict:
    common = {"evaluation": entry.id, "model": entry.model}
    if entry.status == "failed":
        failures = [GateFailure(gate=g.name, metric=g.metric, message="the evaluation failed") for g in gates]
        return GateVerdict(**common, verdict="Failed", failures=failures, message="the evaluation failed")
    if entry.status != "completed":
        return GateVerdict(**common, verdict="Unknown", message=f"not finished: {entry.status}")
    outcomes = [
        (g, _min(board, entry, g) if g.min is not None else _not_worse(board, boot, entry, g, resolve))
        for g in gates
    ]
    failures = [f for _, o in outcomes for f in o.failures]
    if failures:
        parts = []
        for gate, o in outcomes:
            if o.failures:
                more = f" (+{len(o.failures) - 1} more)" if len(o.failures) > 1 else ""
                parts.append(f"failed {gate.name}: {o.failures[0].message}{more}")
        return GateVerdict(**common, verdict="Failed", failures=failures, message="; ".join(parts))
    unknown = [f"unknown {g.name}: {o.unknown}" for g, o in outcomes if o.unknown]
    if unknown:
        return GateVerdict(**common, verdict="Unknown", message="; ".join(unknown))
    passed = [g.name + (f" ({o.note})" if o.note else "") for g, o in outcomes]
    return GateVerdict(
        **common, verdict="Passed", message=("passed: " + ", ".join(passed)) if passed else "no gates"
    )


# ---- min -------------------------------------------------------------------------------------------


def _min(board: Board, entry: Entry, gate: Gate) -> _Outcome:
    assert gate.min is not None
    metric = gate.metric
    value, interval, missing = _metric(board, entry, metric)
    if missing:
        return _Outcome(unknown=missing)
    assert value is not None
    shown = _with_interval(value, interval, gate.min)
    if gate.statistic == "LowerBound":
        if interval is None:
            return _Outcome(unknown=f"{metric}: no interval ({_why_no_interval(board, entry, metric)})")
        if interval.low < gate.min:
            message = f"{metric} {shown}: lower bound {_num(interval.low, gate.min)} < {gate.min:g}"
            return _Outcome(failures=[_failure(gate, metric, value, interval, message)])
        return _Outcome()
    if value < gate.min:
        return _Outcome(
            failures=[_failure(gate, metric, value, interval, f"{metric} {shown} < {gate.min:g}")]
        )
    return _Outcome()


def _failure(gate: Gate, metric: str, value: float, interval: Interval | None, message: str) -> GateFailure:
    return GateFailure(
        gate=gate.name,
        metric=metric,
        value=value,
        interval=None if interval is None else Bounds(low=interval.low, high=interval.high),
        threshold=gate.min,
        message=message,
    )


def _metric(board: Board, entry: Entry, metric: str) -> tuple[float | None, Interval | None, str | None]:
    """(score, interval, why it is missing): Overall, a benchmark's score, or a category's."""
    if metric in (OVERALL_METRIC, board.leaderboard.formula):
        if entry.overall is None:
            return None, None, f"{metric}: the evaluation has none (a benchmark missing or incomplete)"
        return entry.overall, entry.overall_ci, None
    bench, _, category = metric.partition("/")
    result = entry.benchmarks.get(bench)
    if result is None:
        return None, None, f"{metric}: the evaluation has no {bench} results"
    if not category:
        if result.avg is None:
            return None, None, f"{metric}: no score (incomplete)"
        return result.avg, result.ci, None
    if category not in result.categories:
        known = ", ".join(result.categories) or "none"
        return None, None, f"{metric}: {bench} has no category {category} (its categories: {known})"
    value = result.categories[category]
    if value is None:
        return None, None, f"{metric}: no score (incomplete)"
    return value, result.category_ci.get(category), None


def _why_no_interval(board: Board, entry: Entry, metric: str) -> str:
    if board.leaderboard.resamples == 0:
        return "the board was computed with resamples: 0"
    questions = board.evaluations[entry.id].questions
    if metric in (OVERALL_METRIC, board.leaderboard.formula):
        lacking = [b for b in board.formula.benchmarks if b not in questions]
    else:
        lacking = [b for b in [metric.partition("/")[0]] if b not in questions]
    if lacking:
        return f"no per-question data for {', '.join(lacking)}"
    return "undefined on most resamples (questions without a valid score)"


# ---- notWorseThan ------------------------------------------------------------------------------


def _not_worse(board: Board, boot: Bootstrap, entry: Entry, gate: Gate, resolve: Resolve) -> _Outcome:
    lb = board.leaderboard
    ref = gate.not_worse_than
    assert ref is not None
    ref_id = resolve(ref)
    reference = next((e for e in lb.entries if e.id == ref_id), None) if ref_id is not None else None
    if reference is None:
        return _Outcome(unknown=f"reference {ref} is not on the board")
    if reference.status != "completed":
        return _Outcome(unknown=f"reference {ref} has not finished ({reference.status})")
    if reference.id == entry.id:
        return _Outcome(note="the reference")
    mine, theirs = board.evaluations[entry.id].questions, board.evaluations[reference.id].questions
    if not mine or not theirs:
        whose = "the evaluation" if not mine else f"the reference {ref}"
        return _Outcome(unknown=f"no per-question data in {whose}: nothing to compare question by question")
    if lb.resamples == 0:
        return _Outcome(unknown="the board was computed with resamples: 0 (no intervals)")
    comparisons = boot.compare(
        entry.id,
        reference.id,
        {name: q.design for name, q in mine.items()},
        {name: q.design for name, q in theirs.items()},
        board.formula,
        categories=True,
    )
    judged = [c for c in comparisons if c.ci is not None and c.diff is not None]
    if not judged:
        return _Outcome(unknown=f"no shared questions with {reference.id}")
    pct = round(lb.confidence * 100)
    worse = holm_worse(judged, (1 - lb.confidence) / 2)
    failures = []
    for c in judged:
        assert c.ci is not None and c.diff is not None
        if c.ci.high < 0 and id(c) in worse:
            metric = OVERALL_METRIC if c.metric == lb.formula else c.metric
            failures.append(
                GateFailure(
                    gate=gate.name,
                    metric=metric,
                    value=c.diff,
                    interval=Bounds(low=c.ci.low, high=c.ci.high),
                    against=ref,
                    message=f"{metric} worse than {ref}: {c.diff:+.4f} "
                    f"[{c.ci.low:+.4f}, {c.ci.high:+.4f}] ({pct}% paired interval of the difference, "
                    f"{c.shared_questions} shared questions; Holm-corrected over {len(judged)} metrics)",
                )
            )
    return _Outcome(failures=failures)


def holm_worse(comparisons: Sequence[Comparison], alpha: float) -> set[int]:
    """The comparisons (by `id`) in which `a` is worse than `b` after Holm's step-down over all of
    them: p = the share of resamples in which a is not below b (1 − `b_better`), rejected in
    ascending order while p ≤ alpha / (m − rank)."""
    tested = sorted((1 - c.b_better, i, c) for i, c in enumerate(comparisons) if c.b_better is not None)
    m = len(tested)
    out: set[int] = set()
    for rank, (p, _, c) in enumerate(tested):
        if p > alpha / (m - rank):
            break
        out.add(id(c))
    return out


# ---- numbers -------------------------------------------------------------------------------------


def _num(value: float, threshold: float | None = None) -> str:
    """4 decimals; more where 4 would round a value below the threshold up to it (0.54996 < 0.55
    printed as `0.5500 < 0.55` reads as a contradiction)."""
    for digits in range(4, 10):
        text = f"{value:.{digits}f}"
        if threshold is None or value >= threshold or float(text) < threshold:
            return text
    return repr(value)


def _with_interval(value: float, interval: Interval | None, threshold: float) -> str:
    if interval is None:
        return _num(value, threshold)
    return f"{_num(value, threshold)} [{_num(interval.low, threshold)}, {_num(interval.high, threshold)}]"
