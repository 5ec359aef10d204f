"""Place evaluations on a board: which are ranked, which are not and why, and which compare.

The rules, in order:

1. **Not a leaderboard score.** A failed run, or one without Overall (a benchmark missing or
   incomplete), is never ranked. A capped run (a smoke test), one scored by the synthetic judge,
   or a degraded one (scores resting on failed requests or invalid judgments) is excluded too,
   unless `include` names its kind (`include_all`: all three): then it is ranked, and still marked.
2. **Latest wins.** Of a model's remaining evaluations the latest (by start time) is ranked; the
   earlier ones are kept on the board as `superseded`, with the id of the one that replaced them.
   A newer smoke test therefore never pushes a model's real score off the board.
3. **One protocol per ranking.** Evaluations are grouped by protocol identity (prompt template,
   data hashes, judge model, …: what each benchmark Overall is made of declares in its
   `Reading.identity`; `sources._identity`). Ranks are computed within a group; the main group is
   the one whose key starts with `main_key` (a leaderboard that pins its protocol, so a burst of
   evaluations under another one cannot take the ranking over), else the one most ranked entries
   belong to; every other group is reported with the fields
   in which it differs, never merged silently. A field one group does
   not record (a status without its results folder records none) is reported as missing, not as a
   difference: such evaluations are not known to be measured alike, nor differently.

Bootstrap intervals come from `bootstrap`: per entry for every benchmark with per-question data
and for Overall; paired comparisons for every two evaluations of a group; and per ranked entry its
rank interval, the ranks it takes across the resamples of its group (`Bootstrap.rank_bounds`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np

from nejumi_eval.api.v1alpha1.formula import OVERALL, Formula
from nejumi_eval.leaderboard.bootstrap import CONFIDENCE, Bootstrap, Design
from nejumi_eval.leaderboard.model import Comparison, Entry, Group, Leaderboard, RankInterval
from nejumi_eval.leaderboard.sources import Evaluation

PAIRWISE_LIMIT = 60
"""Evaluations per group compared pairwise (n·(n−1)/2 comparisons); the top ones by rank."""

INCLUDABLE = ("capped", "synthetic_judge", "degraded")
"""The kinds of run that are not leaderboard scores but may be ranked on request (still marked);
the names of `Include`'s fields in the NejumiLeaderboard spec."""

_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass
class Board:
    """The placed board and the evaluations behind it (the HTML page reads their questions; the
    gates compare their designs with the board's formula)."""

    leaderboard: Leaderboard
    evaluations: dict[str, Evaluation]
    formula: Formula = OVERALL


def included(include: Collection[str] = (), include_all: bool = False) -> list[str]:
    """The kinds ranked anyway, in `INCLUDABLE`'s order; an unknown kind is an error, not ignored
    (a misspelt kind would silently leave runs out)."""
    unknown = sorted(set(include) - set(INCLUDABLE))
    if unknown:
        raise ValueError(f"include: unknown kind(s) {', '.join(unknown)} (known: {', '.join(INCLUDABLE)})")
    return [k for k in INCLUDABLE if include_all or k in include]


def exclusion_reasons(entry: Entry, include_all: bool = False, *, include: Collection[str] = ()) -> list[str]:
    """Why an entry is not ranked (empty: rankable). Hard reasons (unfinished, no Overall) hold
    whatever is included; `include` (or `include_all`: every kind) lifts the others."""
    reasons = []
    if entry.status != "completed":
        reasons.append(f"status {entry.status}")
    if entry.overall is None:
        reasons.append("incomplete: no Overall")
    kinds = included(include, include_all)
    if entry.capped and "capped" not in kinds:
        reasons.append("capped (a smoke test)")
    if entry.synthetic_judge and "synthetic_judge" not in kinds:
        reasons.append("synthetic judge")
    if entry.degraded and "degraded" not in kinds:
        reasons.append("degraded")
    return reasons


def _flat(identity: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {f"{bench}.{key}": value for bench, fields in identity.items() for key, value in fields.items()}


def _competition_ranks(entries: list[Entry]) -> None:
    """1, 2, 2, 4: equal Overall, equal rank."""
    ordered = sorted(entries, key=lambda e: (-(e.overall or 0.0), e.model))
    for i, entry in enumerate(ordered):
        if i and entry.overall == ordered[i - 1].overall:
            entry.rank = ordered[i - 1].rank
        else:
            entry.rank = i + 1


def _place(entries: list[Entry], include: Collection[str]) -> None:
    """Rules 1 and 2: state, reasons, superseded_by."""
    for entry in entries:
        entry.reasons = exclusion_reasons(entry, include=include)
        entry.state = "excluded" if entry.reasons else "ranked"
        entry.rank = entry.superseded_by = entry.group = None
        entry.tied_with_above = entry.rank_interval = None
    by_model: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.state == "ranked":
            by_model[entry.model].append(entry)
    for evaluations in by_model.values():
        evaluations.sort(key=lambda e: (e.started_at or _EPOCH, e.id), reverse=True)
        latest = evaluations[0]
        for older in evaluations[1:]:
            older.state = "superseded"
            older.superseded_by = latest.id
            older.reasons = [f"superseded by the later evaluation {latest.id}"]


def _groups(entries: list[Entry], main_key: str | None = None) -> tuple[list[Group], list[str]]:
    """Rule 3: one group per protocol key; the main one first, the others by size. With `main_key`
    the main one is the group whose key starts with it, and none when no key does (the warnings
    say so): ranking the largest group instead would rank what the leaderboard did not ask for.
    The first group is the one every other is described against, main or not."""
    members: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        members[entry.provenance.key].append(entry)

    def weight(key: str) -> tuple[int, int, datetime]:
        rows = members[key]
        ranked = [e for e in rows if e.state == "ranked"]
        latest = max((e.started_at or _EPOCH for e in ranked or rows), default=_EPOCH)
        return (len(ranked), len(rows), latest)

    keys = sorted(members, key=weight, reverse=True)
    warnings: list[str] = []
    has_main = bool(keys)
    if main_key is not None:
        matching = [k for k in keys if k.startswith(main_key)]
        has_main = bool(matching)
        if len(matching) > 1:
            warnings.append(
                f"protocol {main_key}: {len(matching)} groups' keys start with it "
                f"({', '.join(matching)}); the largest, {matching[0]}, is ranked"
            )
        if matching:
            keys.remove(matching[0])
            keys.insert(0, matching[0])
        elif keys:
            found = ", ".join(f"{k} ({weight(k)[0]} ranked)" for k in keys)
            warnings.append(
                f"protocol {main_key}: no evaluation's protocol key starts with it (keys: {found}); "
                "nothing is ranked as the main group"
            )
    main_flat = _flat(members[keys[0]][0].provenance.identity) if keys else {}
    main_why = _why_unrecorded(members[keys[0]]) if keys else ""
    groups = []
    for i, key in enumerate(keys):
        gid = _group_id(i)
        identity = members[key][0].provenance.identity
        flat = _flat(identity)
        fields = sorted(set(flat) | set(main_flat))
        # A field one side does not record is missing, not different: a status without its results
        # folder is not known to be measured differently, only not known to be measured alike.
        missing = [k for k in fields if (flat.get(k) is None) != (main_flat.get(k) is None)]
        differs = [k for k in fields if k not in missing and flat.get(k) != main_flat.get(k)]
        for entry in members[key]:
            entry.group = gid
        note = (
            ""
            if i == 0
            else _note(
                _group_id(0), flat, main_flat, differs, missing, _why_unrecorded(members[key]), main_why
            )
        )
        groups.append(
            Group(
                id=gid,
                key=key,
                main=i == 0 and has_main,
                identity=identity,
                differs=differs,
                missing=missing,
                note=note,
            )
        )
    return groups, warnings


def _recorded(flat: dict[str, Any]) -> bool:
    return any(v is not None for v in flat.values())


def _why_unrecorded(rows: list[Entry]) -> str:
    """The entries' own account of their missing protocol record (`status only`), if any."""
    return ", ".join(sorted({e.provenance.missing for e in rows if e.provenance.missing})) or "not recorded"


def _note(
    main: str,
    flat: dict[str, Any],
    main_flat: dict[str, Any],
    differs: list[str],
    missing: list[str],
    why: str,
    main_why: str,
) -> str:
    """How a group stands against the main one, in words: what is missing said apart from what
    differs, so an evaluation that only lacks provenance is never called measured differently."""
    if not _recorded(flat) and _recorded(main_flat):
        return f"has no provenance (no protocol record: {why})"
    if _recorded(flat) and not _recorded(main_flat):
        return f"has provenance group {main} lacks (group {main} has no protocol record: {main_why})"
    parts = []
    if differs:
        parts.append(f"was measured differently from group {main} ({', '.join(differs)})")
    lacks = [k for k in missing if flat.get(k) is None]
    if lacks:
        parts.append(f"lacks provenance group {main} records ({', '.join(lacks)})")
    extra = [k for k in missing if flat.get(k) is not None]
    if extra:
        parts.append(f"records provenance group {main} lacks ({', '.join(extra)})")
    return "; ".join(parts) or f"has another protocol identity than group {main}"


def _group_id(i: int) -> str:
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(ord("A") + r) + letters
    return letters


def _attach_intervals(
    entry: Entry, designs: dict[str, Design], boot: Bootstrap, formula: Formula
) -> np.ndarray | None:
    """Intervals of every benchmark, category and Overall; returns the Overall draws (the rank
    intervals rank them: drawing them again would cost as much as this did)."""
    parts = {}
    for name, design in designs.items():
        result = entry.benchmarks.get(name)
        if result is None:
            continue
        dist = boot.distribution(design)
        parts[name] = dist.avg
        result.ci = boot.interval(dist.avg)
        result.category_ci = {
            c: ci for c, draws in dist.categories.items() if (ci := boot.interval(draws)) is not None
        }
        result.questions = dist.questions
        point, _ = design.point()
        if result.avg is not None and point is not None and abs(point - result.avg) > 1e-9:
            warning = (
                f"{name}: the score recomputed from the per-question table ({point:.6f}) differs from the "
                f"recorded one ({result.avg:.6f}); its interval may not describe it"
            )
            if warning not in entry.warnings:  # building twice from the same evaluations
                entry.warnings.append(warning)
    entry.overall_ci = None
    if not all(t.benchmark in parts for t in formula.terms):
        return None
    draws = boot.overall(formula, parts)
    entry.overall_ci = boot.interval(draws)
    return draws


def _rank_intervals(ranked: list[Entry], draws: dict[str, np.ndarray | None], boot: Bootstrap) -> None:
    """Rank intervals of a group's ranked entries (`Bootstrap.rank_bounds`): those with an Overall
    interval are drawn, the others count at their recorded Overall and get none. The interval is
    widened to hold the entry's point rank: the sample itself is one of the draws the bootstrap
    stands for, and a rank interval that excludes the rank printed beside it reads as a bug."""
    drawn = {e.id: d for e in ranked if e.overall_ci is not None and (d := draws.get(e.id)) is not None}
    fixed = {e.id: e.overall for e in ranked if e.id not in drawn and e.overall is not None}
    bounds = boot.rank_bounds(drawn, fixed)
    for entry in ranked:
        got = bounds.get(entry.id)
        if got is None or entry.rank is None:
            continue
        entry.rank_interval = RankInterval(low=min(got.low, entry.rank), high=max(got.high, entry.rank))


def build(
    evaluations: Sequence[Evaluation],
    *,
    include_all: bool = False,
    include: Collection[str] = (),
    main_key: str | None = None,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    resamples: int = 1000,
    formula: Formula = OVERALL,
    pairwise_limit: int = PAIRWISE_LIMIT,
) -> Board:
    """The board: placement (module docstring), intervals, rank intervals, paired comparisons,
    warnings. `include`: kinds of `INCLUDABLE` ranked anyway (`include_all`: all of them);
    `main_key`: a prefix of the main group's protocol key; `confidence`: of every interval."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    kinds = included(include, include_all)
    by_id = {e.entry.id: e for e in evaluations}
    if len(by_id) != len(evaluations):
        raise ValueError("entry ids must be unique (sources.from_sources makes them so)")
    entries = [e.entry for e in evaluations]
    _place(entries, kinds)
    groups, group_warnings = _groups(entries, main_key)
    for group in groups:
        _competition_ranks([e for e in entries if e.group == group.id and e.state == "ranked"])

    boot = Bootstrap(seed=seed, resamples=resamples, confidence=confidence)
    designs: dict[str, dict[str, Design]] = {}
    draws: dict[str, np.ndarray | None] = {}
    for evaluation in evaluations:
        designs[evaluation.entry.id] = {name: q.design for name, q in evaluation.questions.items()}
        draws[evaluation.entry.id] = _attach_intervals(
            evaluation.entry, designs[evaluation.entry.id], boot, formula
        )

    state_order = {"ranked": 0, "excluded": 1, "superseded": 2}
    group_order = {g.id: i for i, g in enumerate(groups)}

    def order(e: Entry) -> tuple[Any, ...]:
        started = (e.started_at or _EPOCH).timestamp()
        return (state_order[e.state], group_order.get(e.group or "", 0), e.rank or 0, e.model, -started)

    entries.sort(key=order)
    comparisons: list[Comparison] = []
    warnings: list[str] = list(group_warnings)
    for group in groups:
        members = [e for e in entries if e.group == group.id]
        group.entries = [e.id for e in members]
        compared = [e for e in members if designs.get(e.id)][:pairwise_limit]
        if resamples > 0:
            for i, a in enumerate(compared):
                for b in compared[i + 1 :]:
                    comparisons.extend(boot.compare(a.id, b.id, designs[a.id], designs[b.id], formula))
        ranked = [e for e in members if e.state == "ranked"]
        for above, below in pairwise(ranked):
            overall = next(
                (c for c in comparisons if {c.a, c.b} == {above.id, below.id} and c.metric == formula.name),
                None,
            )
            if overall is not None and overall.distinguishable is not None:
                below.tied_with_above = not overall.distinguishable
        _rank_intervals(ranked, draws, boot)
        if group.note and ranked:
            warnings.append(
                f"protocol group {group.id} ({len(ranked)} ranked evaluation(s)) {group.note}; "
                f"ranked separately, never against group {groups[0].id}"
            )
    for entry in entries:
        warnings.extend(f"{entry.id}: {w}" for w in entry.warnings)
    board = Leaderboard(
        formula=formula.name,
        formula_description=formula.description,
        formula_benchmarks=list(formula.benchmarks),
        seed=seed,
        confidence=confidence,
        resamples=resamples,
        include_all=len(kinds) == len(INCLUDABLE),
        include=kinds,
        main_key=main_key,
        generated_at=datetime.now(UTC),
        groups=groups,
        entries=entries,
        comparisons=comparisons,
        warnings=warnings,
    )
    return Board(leaderboard=board, evaluations=by_id, formula=formula)
