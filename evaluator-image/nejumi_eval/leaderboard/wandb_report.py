"""The Nejumi leaderboard as a W&B report, built in code with `wandb-workspaces`
(`nejumi-eval leaderboard --wandb-report ENTITY/PROJECT [--publish]`).

Nejumi Neo's report was assembled by hand in the W&B UI over the runs of one project. This builds
the same layout from the tables each benchmark declares it writes (`Reading.tables`, beside the
code that writes them), so it follows the tables as they are written, can be rebuilt for any
project, and has a section for every registered benchmark, a plugin's too:

1. title and introduction (the Overall formula, what is left out and why);
2. the leaderboard: `leaderboard_table` of every run of the run set, concatenated (one row per run);
3. a radar chart per benchmark that writes a radar table (category, score);
4. per benchmark: its leaderboard table, then its per-question table once per stratum, each
   filtered on the stratum column (e.g. `row["target_dataset"] == "<dataset>"`, as Neo's readers
   filtered it), showing the columns its reader names;
5. runtime (the run's duration) and cost (GPU-hours held, the judge's cost: the run's `cost/…`
   scalars, `api.v1alpha1.cost`) against Overall, scatter plots over the runs; a run without a
   figure logged no scalar for it, so it has no point there (never one at 0).

Every panel grid reads one run set: the project's evaluation runs that finished, minus smoke tests
(capped or synthetic-judge runs) and degraded ones unless `include_all` (the same rule as
`compare.exclusion_reasons`).

Building the tree needs no network; `Report.save()` (`--publish`) does: turning a run set into its
saved form looks its project up through the W&B API. So without `--publish` the command prints the
outline and saves nothing.

What `wandb-workspaces` cannot express, and how it is handled (README "W&B report"):

- table row filters: `WeavePanelSummaryTable` takes a table name only. The filter goes in as a
  raw `WeavePanel` config: the summary-table expression `wandb-workspaces` generates, plus a table
  state whose `preFilterFunction` is the weave expression `row["<column>"] == "<value>"` (the field
  the UI's table filter writes), with the columns chosen explicitly (an automatic column set
  would make the UI rebuild the state and drop the filter). `filter_expression` renders it back.
- radar charts: not a built-in panel. They are `CustomChart`s over the radar tables with a Vega
  preset id (`radar_preset`) that must exist in the entity; `wandb-workspaces` cannot create one.
- the board's own rules (latest evaluation per model, protocol groups, bootstrap intervals and
  paired verdicts) are not W&B run-set features; the HTML page and the terminal table keep them.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from nejumi_eval.api.v1alpha1.cost import WANDB_PREFIX
from nejumi_eval.api.v1alpha1.formula import OVERALL
from nejumi_eval.benchmarks import registry
from nejumi_eval.benchmarks.reading import Reading
from nejumi_eval.errors import InfrastructureError, InputError

TITLE = "Nejumi LLM Leaderboard Neo"
RADAR_PRESET = "nejumi/radar"
"""Vega preset id of the radar charts (theta = category, r = score); see the module docstring."""


def reports_api() -> Any:
    """`wandb_workspaces.reports.v2`, imported on first use (it is heavy, and only this command
    needs it) and without the pydantic-v1-style deprecation warnings its import emits."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import wandb_workspaces.reports.v2 as wr
    except ImportError as exc:
        raise InputError("--wandb-report needs wandb-workspaces: pip install 'nejumi[eval]'") from exc
    return wr


def split_project(path: str, flag: str = "--wandb-report") -> tuple[str, str]:
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise InputError(f"{flag} wants ENTITY/PROJECT, got {path!r}")
    return parts[0], parts[1]


# ---- weave expressions ----------------------------------------------------------------------------


Types = Mapping[str, str]
"""Column → weave type (`number`, `boolean`); every other column is a `string`."""


def _row_type(columns: Sequence[str], types: Types) -> dict[str, Any]:
    return {"type": "typedDict", "propertyTypes": {c: types.get(c, "string") for c in columns}}


def _pick(column: str, columns: Sequence[str], types: Types) -> dict[str, Any]:
    """`row["<column>"]` as a weave node."""
    return {
        "nodeType": "output",
        "type": types.get(column, "string"),
        "fromOp": {
            "name": "pick",
            "inputs": {
                "obj": {"nodeType": "var", "type": _row_type(columns, types), "varName": "row"},
                "key": {"nodeType": "const", "type": "string", "val": column},
            },
        },
    }


def row_equals(column: str, value: str, columns: Sequence[str], types: Types | None = None) -> dict[str, Any]:
    """`row["<column>"] == "<value>"` as a weave node (op `string-equal`)."""
    return {
        "nodeType": "output",
        "type": "boolean",
        "fromOp": {
            "name": "string-equal",
            "inputs": {
                "lhs": _pick(column, columns, types or {}),
                "rhs": {"nodeType": "const", "type": "string", "val": value},
            },
        },
    }


def expression(node: dict[str, Any]) -> str:
    """A weave node in the UI's expression syntax (the subset these panels use)."""
    kind = node.get("nodeType")
    if kind == "var":
        return str(node["varName"])
    if kind == "const":
        val = node.get("val")
        return f'"{val}"' if isinstance(val, str) else repr(val)
    op = node["fromOp"]
    inputs = op["inputs"]
    if op["name"] == "pick":
        return f"{expression(inputs['obj'])}[{expression(inputs['key'])}]"
    if op["name"].endswith("-equal"):
        return f"{expression(inputs['lhs'])} == {expression(inputs['rhs'])}"
    args = ", ".join(expression(v) for v in inputs.values())
    return f"{op['name']}({args})"


def _table_state(columns: Sequence[str], where: dict[str, Any], types: Types) -> dict[str, Any]:
    ids = [f"col-{i}" for i in range(len(columns))]
    return {
        "autoColumns": False,
        "columns": {cid: {"panelId": "", "panelConfig": None} for cid in ids},
        "preFilterFunction": where,
        "columnNames": dict.fromkeys(ids, ""),
        "columnSelectFunctions": {cid: _pick(c, columns, types) for cid, c in zip(ids, columns, strict=True)},
        "order": ids,
        "groupBy": [],
        "sort": [],
        "pageSize": 10,
        "page": 0,
    }


def filtered_table(
    table: str, column: str, value: str, columns: Sequence[str], layout: Any, types: Types | None = None
) -> Any:
    """A table panel of `table` over the run set showing only `row[column] == value`.

    The expression is `WeavePanelSummaryTable`'s own (`runs.summary["<table>"]`); the runs' tables
    are concatenated (the UI's merge panel, `compareMethod: concatenating`) and the table panel
    under it gets the filter in its state."""
    wr = reports_api()
    base = wr.WeavePanelSummaryTable(table_name=table, layout=layout)
    config = copy.deepcopy(base._to_model().config)  # pure: no API call
    config["panel2Config"].update(
        {
            "panelId": "merge.table",
            "panelConfig": {
                "compareMethod": "concatenating",
                "childConfig": {
                    "tableState": _table_state(
                        columns, row_equals(column, value, columns, types), types or {}
                    )
                },
            },
        }
    )
    return wr.WeavePanel(config=config, layout=layout)


def panel_table(panel: Any) -> str | None:
    """The summary table a panel reads (`runs.summary["<name>"]`), or None."""
    if getattr(panel, "table_name", None):
        return str(panel.table_name)
    key = (getattr(panel, "query", None) or {}).get("summaryTable", {}).get("tableKey")
    if key:
        return str(key)
    try:
        return str(panel.config["panel2Config"]["exp"]["fromOp"]["inputs"]["key"]["val"])
    except (AttributeError, KeyError, TypeError):
        return None


def filter_expression(panel: Any) -> str | None:
    """The row filter of a panel made by `filtered_table`, in the UI's syntax; None without one."""
    try:
        state = panel.config["panel2Config"]["panelConfig"]["childConfig"]["tableState"]
    except (AttributeError, KeyError, TypeError):
        return None
    return expression(state["preFilterFunction"])


# ---- the report -----------------------------------------------------------------------------------


def runset_filters(include_all: bool = False) -> str:
    """The run set: finished evaluation runs; smoke tests and degraded runs out unless `include_all`."""
    parts = ["Metric('JobType') == 'evaluation'", "Metric('State') == 'finished'"]
    if not include_all:
        parts += [f"SummaryMetric('{flag}') == False" for flag in ("capped", "synthetic_judge", "degraded")]
    return " and ".join(parts)


def _intro(include_all: bool, readings: Mapping[str, Reading]) -> str:
    left_out = (
        "every finished evaluation run is shown, smoke tests and degraded runs included (marked in "
        "the table's `capped`, `synthetic_judge` and `degraded` columns)"
        if include_all
        else "capped runs (smoke tests), synthetic-judge runs and degraded runs (failed requests, "
        "invalid judgments) are left out"
    )
    per = " and ".join(f"{r.labels.stratum} ({r.labels.heading})" for r in readings.values())
    return (
        f"**{OVERALL.name} = {OVERALL.description}**, the mean of the benchmarks' scores on a 0–1 "
        "scale. Each row below is one evaluation run of `nejumi-eval run` in this project; "
        f"{left_out}.\n\n"
        + (
            f"The per-question tables show each {per} on its own: prompt, gold answer, the model's "
            "output and its metric values, and where a judge scored it each turn's answer, judgment "
            "and rating.\n\n"
            if per
            else ""
        )
        + "Ranks, confidence intervals and which differences are distinguishable from noise are in "
        "the leaderboard page (`nejumi-eval leaderboard --html`): a W&B run set cannot express them."
    )


def report_readings(benchmarks: Sequence[str] | None = None) -> dict[str, Reading]:
    """The benchmarks the report has sections for: every registered one (default) that can be read
    back, in registry order (built-ins first, then plugins)."""
    names = registry.names() if benchmarks is None else benchmarks
    return {name: reading for name in names if (reading := registry.reading(name)) is not None}


def build_report(
    entity: str,
    project: str,
    *,
    title: str = TITLE,
    include_all: bool = False,
    radar_preset: str = RADAR_PRESET,
    benchmarks: Sequence[str] | None = None,
    strata: Mapping[str, Sequence[str]] | None = None,
) -> Any:
    """The report object (`wandb_workspaces.reports.v2.Report`), not saved. `benchmarks`: which
    ones get sections (default: every registered one); `strata`: per benchmark, which strata get a
    per-question table (default: the protocol's, `Reading.strata`)."""
    wr = reports_api()
    readings = report_readings(benchmarks)
    filters = runset_filters(include_all)

    def runset(name: str) -> Any:
        return wr.Runset(entity=entity, project=project, name=name, filters=filters)

    def grid(name: str, panels: list[Any]) -> Any:
        return wr.PanelGrid(runsets=[runset(name)], panels=panels)

    def per_question(reading: Reading, values: Sequence[str]) -> list[Any]:
        tables = reading.tables
        if tables.stratum_column is None:
            return [wr.WeavePanelSummaryTable(table_name=tables.questions, layout=wr.Layout(w=24, h=10))]
        return [
            filtered_table(
                tables.questions,
                tables.stratum_column,
                v,
                tables.columns,
                wr.Layout(x=(i % 2) * 12, y=(i // 2) * 10, w=12, h=10),
                tables.column_types,
            )
            for i, v in enumerate(values)
        ]

    def radar(table: str, i: int) -> Any:
        return wr.CustomChart(
            query={"summaryTable": {"tableKey": table}},
            chart_name=radar_preset,
            chart_fields={"theta": "category", "r": "score"},
            layout=wr.Layout(x=(i % 2) * 12, y=(i // 2) * 12, w=12, h=12),
        )

    blocks = [
        wr.MarkdownBlock(text=_intro(include_all, readings)),
        wr.H1(text="Leaderboard"),
        grid(
            "Leaderboard",
            [wr.WeavePanelSummaryTable(table_name="leaderboard_table", layout=wr.Layout(w=24, h=14))],
        ),
    ]
    radars = {name: r for name, r in readings.items() if r.tables.radar is not None}
    if radars:
        scales = ", ".join(f"{r.labels.heading} ({r.labels.scale})" for r in radars.values())
        blocks += [
            wr.H1(text="Categories"),
            wr.P(text=f"Category scores of the runs: {scales}."),
            grid("Radar", [radar(str(r.tables.radar), i) for i, r in enumerate(radars.values())]),
        ]
    for name, reading in readings.items():
        heading, tables = reading.labels.heading, reading.tables
        blocks.append(wr.H1(text=heading))
        if tables.leaderboard is not None:
            blocks.append(
                grid(
                    heading,
                    [wr.WeavePanelSummaryTable(table_name=tables.leaderboard, layout=wr.Layout(w=24, h=10))],
                )
            )
        values = list((strata or {}).get(name) or reading.strata())
        blocks.append(wr.H2(text=f"{heading}: question by question"))
        if tables.stratum_column is not None:
            where = ", ".join(f'row["{tables.stratum_column}"] == "{v}"' for v in values)
            blocks.append(wr.P(text=f"One table per {reading.labels.stratum}: {where}"))
        blocks.append(grid(f"{heading} questions", per_question(reading, values)))
    axes = [
        ("Runtime (s)", wr.Metric("Runtime")),
        ("GPU-hours held", wr.SummaryMetric(f"{WANDB_PREFIX}gpu_hours_held")),
        ("Judge cost", wr.SummaryMetric(f"{WANDB_PREFIX}judge_cost")),
    ]
    blocks += [
        wr.H1(text=f"Runtime and cost vs {OVERALL.name}"),
        wr.P(
            text="GPU-hours held: the wall time of the evaluation's GPU Jobs × their GPUs; judge cost: the "
            "judge's tokens at the operator's price table (`cost/currency`). A run whose figure is unknown "
            "logged none and has no point."
        ),
        grid(
            "Runtime and cost",
            [
                wr.ScatterPlot(
                    title=f"{label} vs {OVERALL.name}",
                    x=x,
                    y=wr.SummaryMetric(OVERALL.name),
                    layout=wr.Layout(x=i * 8, w=8, h=10),
                )
                for i, (label, x) in enumerate(axes)
            ],
        ),
    ]
    return wr.Report(
        entity=entity,
        project=project,
        title=title,
        description=f"{OVERALL.name} = {OVERALL.description}; built by `nejumi-eval leaderboard`",
        width="fluid",
        blocks=blocks,
    )


def outline(report: Any) -> list[str]:
    """The report's structure, one line per block and panel (what `--wandb-report` prints)."""
    lines = [f"W&B report {report.entity}/{report.project}: {report.title}"]
    for block in report.blocks:
        kind = type(block).__name__
        if kind == "PanelGrid":
            sets = "; ".join(f"{r.entity}/{r.project} [{r.filters}]" for r in block.runsets)
            lines.append(f"  PanelGrid runs {sets}")
            for panel in block.panels:
                what = panel_table(panel) or getattr(panel, "title", None) or ""
                where = filter_expression(panel)
                lines.append(f"    {type(panel).__name__} {what}" + (f" where {where}" if where else ""))
        else:
            text = str(getattr(block, "text", "")).replace("\n", " ")
            lines.append(f"  {kind} {text[:70]}" + ("…" if len(text) > 70 else ""))
    return lines


def publish(report: Any) -> str:
    """Save the report (needs the W&B API: network and credentials); its URL."""
    try:
        report.save()
        return str(report.url)
    except Exception as exc:  # no network, no key, no such entity: the SDK raises many kinds
        raise InfrastructureError(f"the W&B report was not saved: {type(exc).__name__}: {exc}") from exc
