"""A board as a NejumiLeaderboard's status: what `kubectl get` and `kubectl describe` show of it.

The page and its JSON carry every evaluation; the status carries what someone at a terminal (or a
GitOps tool reading health) needs without opening them: the leader with its interval and rank
interval, the top rows, the counts by phase and placement, which evaluations are not comparable
and why, which are excluded and why, and each evaluation's gate verdict. Every list is capped
(`MAX_TOP`, `MAX_LISTED`: a status lives in etcd) and the warnings say where one was cut.

Pure: the operator computes the board (`compare.build` with `build_options(spec)`) in a child
process, calls `standing`, and adds what only it knows (conditions, the page, times, generation).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from nejumi_eval.api.v1alpha1.leaderboard import (
    MAX_LISTED,
    Bounds,
    Counts,
    Excluded,
    GateVerdict,
    LeaderboardSpec,
    LeaderboardStatus,
    NotComparable,
    RankBounds,
    Row,
)
from nejumi_eval.leaderboard import gates as gate_rules
from nejumi_eval.leaderboard.compare import INCLUDABLE, Board
from nejumi_eval.leaderboard.model import Entry
from nejumi_eval.leaderboard.render import with_interval

_T = TypeVar("_T")

_PHASES = {
    "Queued": "queued",
    "Pending": "pending",
    "Running": "running",
    "Succeeded": "succeeded",
    "Failed": "failed",
}
"""NejumiEvaluation phase → the count it adds to."""
_STATUSES = {
    "completed": "succeeded",
    "failed": "failed",
    "queued": "queued",
    "pending": "pending",
    "running": "running",
}
"""An entry's status → the count, where the phase is not known (a deleted evaluation's stored one)."""


def build_options(spec: LeaderboardSpec) -> dict[str, Any]:
    """`compare.build`'s keyword arguments for a leaderboard's spec (what it ranks, and how)."""
    include = spec.include
    return {
        "include": [k for k in INCLUDABLE if include is not None and getattr(include, k)],
        "main_key": spec.protocol,
        "confidence": spec.confidence,
        "resamples": spec.resamples,
        "seed": spec.seed,
    }


def display(entry: Entry) -> str:
    """One line: `0.6123 [0.5980, 0.6271] ≈ ranks 1–3` (the interval where there is one, ≈ where
    the row above is not distinguishable, the rank interval where there is one)."""
    parts = [with_interval(entry.overall, entry.overall_ci)]
    if entry.tied_with_above:
        parts.append("≈")
    if entry.rank_interval is not None:
        parts.append(f"ranks {entry.rank_interval.text()}")
    return " ".join(parts)


def row(entry: Entry, deleted: Collection[str] = ()) -> Row:
    """A ranked entry as a status row."""
    assert entry.rank is not None, "only ranked entries are rows"
    ci, ranks = entry.overall_ci, entry.rank_interval
    return Row(
        rank=entry.rank,
        model=entry.model,
        evaluation=entry.id,
        overall=entry.overall,
        interval=None if ci is None else Bounds(low=ci.low, high=ci.high),
        rank_interval=None if ranks is None else RankBounds(low=ranks.low, high=ranks.high),
        tied_with_above=entry.tied_with_above,
        display=display(entry),
        deleted=entry.id in deleted,
    )


def _bucket(entry: Entry, phases: Mapping[str, str]) -> str:
    """The count an entry adds to: its evaluation's phase, else its status; a status that names
    no phase (`not started`) is not finished, so pending."""
    phase = phases.get(entry.id)
    if phase in _PHASES:
        return _PHASES[phase]
    return _STATUSES.get(entry.status, "pending")


def standing(
    board: Board,
    spec: LeaderboardSpec,
    *,
    phases: Mapping[str, str] | None = None,
    deleted: Collection[str] = (),
    resolve: Callable[[str], str | None] = lambda ref: ref,
) -> LeaderboardStatus:
    """The status's leader, leader_overall, protocol, top, counts, not_comparable, excluded, gates
    and warnings. `phases`: entry id → its NejumiEvaluation's phase (for the counts); `deleted`:
    entry ids whose resources are gone (on the board from the store); `resolve`: a gate's
    `notWorseThan` → an entry id (`gates.judge`)."""
    lb = board.leaderboard
    phases = phases or {}
    deleted = set(deleted)
    main = next((g for g in lb.groups if g.main), None)
    ranked = lb.ranked()
    top = [row(e, deleted) for e in ranked[: spec.top]]

    not_comparable: list[NotComparable] = []
    for group in lb.groups:
        if group.main:
            continue
        note = group.note or f"not the protocol this leaderboard ranks ({lb.main_key})"
        not_comparable.extend(
            NotComparable(
                evaluation=e.id,
                model=e.model,
                group=group.id,
                differs=group.differs,
                missing=group.missing,
                note=note,
            )
            for e in lb.ranked(group.id)
        )
    buckets = {e.id: _bucket(e, phases) for e in lb.entries}
    finished = {i for i, b in buckets.items() if b in ("succeeded", "failed")}
    # Unfinished evaluations are counted as pending, not as excluded (they are not ranked *yet*).
    excluded = [
        Excluded(evaluation=e.id, model=e.model, reasons=e.reasons)
        for e in lb.entries
        if e.state == "excluded" and e.id in finished
    ]
    by_bucket = {b: sum(1 for v in buckets.values() if v == b) for b in _PHASES.values()}
    counts = Counts(
        matched=len(lb.entries),
        queued=by_bucket["queued"],
        pending=by_bucket["queued"] + by_bucket["pending"] + by_bucket["running"],
        running=by_bucket["running"],
        succeeded=by_bucket["succeeded"],
        failed=by_bucket["failed"],
        deleted=sum(1 for e in lb.entries if e.id in deleted),
        ranked=len(ranked),
        excluded=len(excluded),
        superseded=sum(1 for e in lb.entries if e.state == "superseded"),
        not_comparable=len(not_comparable),
    )
    verdicts = gate_rules.judge(board, spec.gates, resolve=resolve) if spec.gates else []

    cut: list[str] = []
    status = LeaderboardStatus(
        leader=top[0].model if top else None,
        leader_overall=top[0].display if top else None,
        protocol=main.key if main is not None else None,
        top=top,
        counts=counts,
        not_comparable=_capped(not_comparable, "not comparable", cut),
        excluded=_capped(excluded, "excluded", cut),
        gates=_capped(_failed_first(verdicts), "gate verdicts (failed first)", cut),
    )
    status.warnings = _capped_warnings(cut + lb.warnings)
    return status


def _failed_first(verdicts: list[GateVerdict]) -> list[GateVerdict]:
    """Failed, then Unknown, then Passed (stable within each), so a cut list never hides a failure."""
    if len(verdicts) <= MAX_LISTED:
        return verdicts
    order = {"Failed": 0, "Unknown": 1, "Passed": 2}
    return sorted(verdicts, key=lambda v: order[v.verdict])


def _capped(items: list[_T], what: str, cut: list[str]) -> list[_T]:
    if len(items) > MAX_LISTED:
        cut.append(f"{what}: {len(items)}, the first {MAX_LISTED} listed here (the page lists every one)")
    return items[:MAX_LISTED]


def _capped_warnings(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_LISTED:
        return warnings
    more = len(warnings) - (MAX_LISTED - 1)
    return [*warnings[: MAX_LISTED - 1], f"… and {more} more warnings (the page lists every one)"]
