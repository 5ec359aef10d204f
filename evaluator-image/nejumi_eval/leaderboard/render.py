"""The board as a terminal table (rich), CSV and JSON.

The terminal shows what a ranking needs at a glance: rank, the ranks the entry takes across the
bootstrap resamples (`1–3`: which places the data supports, not only the one it got), model,
Overall and each Overall term with its interval, runtime, cost (GPU-hours held and the judge's cost;
`—` where unknown, never 0), and a mark where an entry cannot be told apart from the one above it.
Categories and provenance go to the CSV (one row per evaluation, every column) and the JSON (the
`Leaderboard` model as is); the HTML page has everything.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from nejumi_eval.api.v1alpha1.cost import Cost
from nejumi_eval.benchmarks import registry
from nejumi_eval.leaderboard.model import Entry, Interval, Leaderboard, RankInterval
from nejumi_eval.runtime.files import atomic_write_text


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def with_interval(value: float | None, ci: Interval | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if ci is None:
        return _num(value, digits)
    return f"{value:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def ranks(interval: RankInterval | None) -> str:
    """`1–3`, `2` for a single rank, `-` without one."""
    return "-" if interval is None else interval.text()


def runtime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


UNKNOWN = "—"
"""What a cost figure that is not known shows (an evaluation without a cost record, a judge model
without a price, GPU-seconds held outside the cluster): never 0."""


def gpu_hours(cost: Cost | None) -> str:
    """GPU-hours held, `0.42`; `—` when unknown."""
    hours = cost.gpu_hours_held if cost is not None else None
    return UNKNOWN if hours is None else f"{hours:.2f}"


def judge_cost(cost: Cost | None) -> str:
    """The judge's cost with its currency, `1.23 USD`; `—` when unknown."""
    if cost is None or cost.judge_cost is None:
        return UNKNOWN
    return f"{cost.judge_cost:.2f} {cost.currency or ''}".rstrip()


def cost_text(cost: Cost | None) -> str:
    """The terminal's cost cell: `0.42 GPU-h · judge 1.23 USD`, `—` for what is unknown."""
    if cost is None:
        return UNKNOWN
    return f"{gpu_hours(cost)} GPU-h · judge {judge_cost(cost)}"


def marks(entry: Entry) -> str:
    found = [
        name
        for name, on in (
            ("capped", entry.capped),
            ("synthetic judge", entry.synthetic_judge),
            ("degraded", entry.degraded),
        )
        if on
    ]
    return ", ".join(found)


def _columns(board: Leaderboard) -> list[str]:
    """Benchmarks in the order first seen, the formula's terms first."""
    names = list(board.formula_benchmarks)
    for entry in board.entries:
        names.extend(n for n in entry.benchmarks if n not in names)
    return names


def _title(board: Leaderboard, name: str) -> str:
    for entry in board.entries:
        if name in entry.benchmarks:
            return entry.benchmarks[name].title
    return name


def terminal(board: Leaderboard, width: int | None = None) -> str:
    """The ranking tables (one per protocol group), the unranked evaluations and the warnings."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 160, force_terminal=False, color_system=None)
    pct = round(board.confidence * 100)
    console.print(
        f"{board.formula} = {board.formula_description}; [{pct}% bootstrap CI, "
        f"{board.resamples} resamples, seed {board.seed}]",
        markup=False,
    )
    names = _columns(board)
    for group in board.groups:
        ranked = board.ranked(group.id)
        if not ranked:
            continue
        title = f"protocol group {group.id}" + ("" if group.main else f": {group.note}")
        table = Table(title=title, title_justify="left", show_edge=False)
        table.add_column("#", justify="right")
        table.add_column("ranks", justify="right")
        table.add_column("model", overflow="fold")
        table.add_column(board.formula, justify="right")
        for name in names:
            table.add_column(_title(board, name), justify="right")
        table.add_column("runtime", justify="right")
        table.add_column("cost", justify="right")
        table.add_column("marks")
        for entry in ranked:
            rank = f"{entry.rank}{'≈' if entry.tied_with_above else ''}"
            cells = [
                rank,
                ranks(entry.rank_interval),
                entry.model,
                with_interval(entry.overall, entry.overall_ci),
            ]
            for name in names:
                result = entry.benchmarks.get(name)
                cells.append("-" if result is None else with_interval(result.avg, result.ci))
            cells += [runtime(entry.runtime_seconds), cost_text(entry.cost), marks(entry)]
            table.add_row(*cells)
        console.print(table)
    if any(e.tied_with_above for e in board.entries):
        console.print("≈: not distinguishable from the row above (paired bootstrap of Overall)", markup=False)
    if any(e.rank_interval for e in board.entries):
        console.print(
            f"ranks: the ranks taken in the central {pct}% of resamples (each ranked by its {board.formula})",
            markup=False,
        )
    others = [e for e in board.entries if e.state != "ranked"]
    if others:
        table = Table(title="not ranked", title_justify="left", show_edge=False)
        for column in ("model", board.formula, "state", "why", "evaluation"):
            table.add_column(column)
        for entry in others:
            table.add_row(entry.model, _num(entry.overall), entry.state, "; ".join(entry.reasons), entry.id)
        console.print(table)
    for warning in board.warnings:
        console.print(f"warning: {warning}", markup=False)
    return buffer.getvalue().rstrip()


def rows(board: Leaderboard) -> list[dict[str, Any]]:
    """One flat row per evaluation (CSV): placement, scores with intervals, categories, runtime,
    tokens and cost (empty where unknown), provenance (the details each benchmark's reader shows
    beside a model)."""
    names = _columns(board)
    shown = list(dict.fromkeys(key for name in names for key, _ in registry.labels(name).shown))
    categories: dict[str, list[str]] = {n: [] for n in names}
    for entry in board.entries:
        for name, recorded in entry.benchmarks.items():
            categories[name].extend(c for c in recorded.categories if c not in categories[name])
    out = []
    for entry in board.entries:
        row: dict[str, Any] = {
            "rank": entry.rank,
            "ranks": ranks(entry.rank_interval) if entry.rank_interval else None,
            "group": entry.group,
            "state": entry.state,
            "reasons": "; ".join(entry.reasons),
            "model": entry.model,
            "revision": entry.revision,
            "overall": entry.overall,
            "overall_low": entry.overall_ci.low if entry.overall_ci else None,
            "overall_high": entry.overall_ci.high if entry.overall_ci else None,
        }
        for name in names:
            result = entry.benchmarks.get(name)
            row[f"{name}_AVG"] = result.avg if result else None
            row[f"{name}_AVG_low"] = result.ci.low if result and result.ci else None
            row[f"{name}_AVG_high"] = result.ci.high if result and result.ci else None
            for category in categories[name]:
                row[f"{name}_{category}"] = result.categories.get(category) if result else None
        row.update(
            {
                "runtime_seconds": entry.runtime_seconds,
                "prompt_tokens": entry.usage.prompt_tokens if entry.usage else None,
                "completion_tokens": entry.usage.completion_tokens if entry.usage else None,
                "judge_tokens": entry.usage.judge_tokens if entry.usage else None,
                **cost_columns(entry.cost),
                "degraded": entry.degraded,
                "capped": entry.capped,
                "synthetic_judge": entry.synthetic_judge,
                "tied_with_above": entry.tied_with_above,
                "started_at": entry.started_at.isoformat() if entry.started_at else None,
                "protocol_key": entry.provenance.key,
                **{key: entry.provenance.details.get(key) for key in shown},
                "id": entry.id,
                "source": entry.source,
            }
        )
        out.append(row)
    return out


def cost_columns(cost: Cost | None) -> dict[str, Any]:
    """The CSV's cost columns (None, an empty cell, where unknown)."""
    hours = cost.gpu_hours_held if cost is not None else None
    return {
        "gpu_hours_held": None if hours is None else round(hours, 6),
        "gpu_seconds_held": cost.gpu_seconds_held if cost else None,
        "gpu_seconds_busy": cost.gpu_seconds_busy if cost else None,
        "judge_cost": cost.judge_cost if cost else None,
        "gpu_cost": cost.gpu_cost if cost else None,
        "cost_currency": cost.currency if cost else None,
    }


def write_csv(board: Leaderboard, path: str | Path) -> Path:
    table = rows(board)
    buffer = io.StringIO()
    if table:
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        for row in table:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    target = Path(path)
    atomic_write_text(target, buffer.getvalue())
    return target


def write_json(board: Leaderboard, path: str | Path) -> Path:
    target = Path(path)
    atomic_write_text(target, board.model_dump_json(indent=2) + "\n")
    return target
