"""The Nejumi leaderboard as a W&B report, built in code with `wandb-workspaces`
(`nejumi-eval leaderboard --wandb-report ENTITY/PROJECT [--publish]`).

Nejumi Neo's report was assembled by hand in the W&B UI over the runs of one project. This builds
the same layout from the names `report.wandb_log.WandbRun` logs, so it follows the tables as they
are written and can be rebuilt for any project:

1. title and introduction (the Overall formula, what is left out and why);
2. the leaderboard: `leaderboard_table` of every run of the run set, concatenated (one row per run);
3. radar charts of `jaster_radar_table` and `mtbench_radar_table` (category, score);
4. jaster: `jaster_leaderboard_table`, then `jaster_output_table` once per dataset, each filtered
   with `row["target_dataset"] == "<dataset>"` as Neo's readers filtered it;
5. MT-bench: `mtbench_leaderboard_table`, then `mtbench_output_table` per category
   (`row["category"] == "<category>"`);
6. runtime (the run's duration) against Overall, a scatter plot over the runs.

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
from collections.abc import Sequence
from typing import Any

from nejumi_eval.api.v1alpha1.formula import OVERALL
from nejumi_eval.errors import InfrastructureError, InputError

TITLE = "Nejumi LLM Leaderboard Neo"
RADAR_PRESET = "nejumi/radar"
"""Vega preset id of the radar charts (theta = category, r = score); see the module docstring."""
JASTER_COLUMNS = ("target_dataset", "id", "input", "raw_output", "pred", "true", "metric", "score")
MTBENCH_COLUMNS = ("category", "question_id", "turn", "question", "answer", "judgment", "score", "valid")
_COLUMN_TYPES = {"question_id": "number", "turn": "number", "score": "number", "valid": "boolean"}


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


def _row_type(columns: Sequence[str]) -> dict[str, Any]:
    return {"type": "typedDict", "propertyTypes": {c: _COLUMN_TYPES.get(c, "string") for c in columns}}


def _pick(column: str, columns: Sequence[str]) -> dict[str, Any]:
    """`row["<column>"]` as a weave node."""
    return {
        "nodeType": "output",
        "type": _COLUMN_TYPES.get(column, "string"),
        "fromOp": {
            "name": "pick",
            "inputs": {
                "obj": {"nodeType": "var", "type": _row_type(columns), "varName": "row"},
                "key": {"nodeType": "const", "type": "string", "val": column},
            },
        },
    }


def row_equals(column: str, value: str, columns: Sequence[str]) -> dict[str, Any]:
    """`row["<column>"] == "<value>"` as a weave node (op `string-equal`)."""
    return {
        "nodeType": "output",
        "type": "boolean",
        "fromOp": {
            "name": "string-equal",
            "inputs": {
                "lhs": _pick(column, columns),
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


def _table_state(columns: Sequence[str], where: dict[str, Any]) -> dict[str, Any]:
    ids = [f"col-{i}" for i in range(len(columns))]
    return {
        "autoColumns": False,
        "columns": {cid: {"panelId": "", "panelConfig": None} for cid in ids},
        "preFilterFunction": where,
        "columnNames": dict.fromkeys(ids, ""),
        "columnSelectFunctions": {cid: _pick(c, columns) for cid, c in zip(ids, columns, strict=True)},
        "order": ids,
        "groupBy": [],
        "sort": [],
        "pageSize": 10,
        "page": 0,
    }


def filtered_table(table: str, column: str, value: str, columns: Sequence[str], layout: Any) -> Any:
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
                "childConfig": {"tableState": _table_state(columns, row_equals(column, value, columns))},
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


def _intro(include_all: bool) -> str:
    left_out = (
        "every finished evaluation run is shown, smoke tests and degraded runs included (marked in "
        "the table's `capped`, `synthetic_judge` and `degraded` columns)"
        if include_all
        else "capped runs (smoke tests), synthetic-judge runs and degraded runs (failed requests, "
        "invalid judgments) are left out"
    )
    return (
        f"**{OVERALL.name} = {OVERALL.description}**, the mean of the benchmarks' scores on a 0–1 "
        "scale. Each row below is one evaluation run of `nejumi-eval run` in this project; "
        f"{left_out}.\n\n"
        "The per-question tables show each dataset (jaster) and category (MT-bench) on its own: "
        "prompt, gold answer, the model's output and its metric values, and for MT-bench each "
        "turn's answer, judgment and rating.\n\n"
        "Ranks, confidence intervals and which differences are distinguishable from noise are in "
        "the leaderboard page (`nejumi-eval leaderboard --html`): a W&B run set cannot express them."
    )


def build_report(
    entity: str,
    project: str,
    *,
    title: str = TITLE,
    include_all: bool = False,
    radar_preset: str = RADAR_PRESET,
    datasets: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
) -> Any:
    """The report object (`wandb_workspaces.reports.v2.Report`), not saved."""
    from nejumi_eval.benchmarks.jaster.tasks import task_table
    from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES

    wr = reports_api()
    datasets = list(datasets if datasets is not None else task_table().tasks)
    categories = list(categories if categories is not None else CATEGORIES)
    filters = runset_filters(include_all)

    def runset(name: str) -> Any:
        return wr.Runset(entity=entity, project=project, name=name, filters=filters)

    def grid(name: str, panels: list[Any]) -> Any:
        return wr.PanelGrid(runsets=[runset(name)], panels=panels)

    def per_question(table: str, column: str, values: list[str], columns: Sequence[str]) -> list[Any]:
        return [
            filtered_table(table, column, v, columns, wr.Layout(x=(i % 2) * 12, y=(i // 2) * 10, w=12, h=10))
            for i, v in enumerate(values)
        ]

    def radar(table: str, x: int) -> Any:
        return wr.CustomChart(
            query={"summaryTable": {"tableKey": table}},
            chart_name=radar_preset,
            chart_fields={"theta": "category", "r": "score"},
            layout=wr.Layout(x=x, y=0, w=12, h=12),
        )

    blocks = [
        wr.MarkdownBlock(text=_intro(include_all)),
        wr.H1(text="Leaderboard"),
        grid(
            "Leaderboard",
            [wr.WeavePanelSummaryTable(table_name="leaderboard_table", layout=wr.Layout(w=24, h=14))],
        ),
        wr.H1(text="Categories"),
        wr.P(text="jaster (left, 0–1) and MT-bench (right, 1–10) category scores of the runs."),
        grid("Radar", [radar("jaster_radar_table", 0), radar("mtbench_radar_table", 12)]),
        wr.H1(text="jaster"),
        grid(
            "jaster",
            [wr.WeavePanelSummaryTable(table_name="jaster_leaderboard_table", layout=wr.Layout(w=24, h=10))],
        ),
        wr.H2(text="jaster: question by question"),
        wr.P(text="One table per dataset: " + ", ".join(f'row["target_dataset"] == "{d}"' for d in datasets)),
        grid(
            "jaster questions",
            per_question("jaster_output_table", "target_dataset", datasets, JASTER_COLUMNS),
        ),
        wr.H1(text="MT-bench"),
        grid(
            "MT-bench",
            [wr.WeavePanelSummaryTable(table_name="mtbench_leaderboard_table", layout=wr.Layout(w=24, h=10))],
        ),
        wr.H2(text="MT-bench: question by question"),
        wr.P(text="One table per category: " + ", ".join(f'row["category"] == "{c}"' for c in categories)),
        grid(
            "MT-bench questions",
            per_question("mtbench_output_table", "category", categories, MTBENCH_COLUMNS),
        ),
        wr.H1(text=f"Runtime vs {OVERALL.name}"),
        grid(
            "Runtime",
            [
                wr.ScatterPlot(
                    title=f"Runtime (s) vs {OVERALL.name}",
                    x=wr.Metric("Runtime"),
                    y=wr.SummaryMetric(OVERALL.name),
                    layout=wr.Layout(w=24, h=10),
                )
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
