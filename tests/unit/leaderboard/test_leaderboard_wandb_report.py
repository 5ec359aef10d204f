"""The W&B report tree `--wandb-report` builds (no network: the tree is checked, never saved)."""

from __future__ import annotations

from typing import Any

import pytest

from nejumi_eval.benchmarks.jaster.reading import COLUMNS as JASTER_COLUMNS
from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES
from nejumi_eval.benchmarks.mtbench.reading import COLUMNS as MTBENCH_COLUMNS
from nejumi_eval.cli import main
from nejumi_eval.leaderboard import wandb_report
from nejumi_eval.leaderboard.wandb_report import (
    build_report,
    filter_expression,
    panel_table,
    reports_api,
)

wr = reports_api()
from wandb_workspaces import expr  # noqa: E402  (after reports_api, which silences its import)


@pytest.fixture(scope="module")
def report() -> Any:
    return build_report("nejumi", "neo-leaderboard")


def grids(report: Any) -> list[Any]:
    return [b for b in report.blocks if isinstance(b, wr.PanelGrid)]


def grid_after(report: Any, heading: str) -> Any:
    """The first panel grid after the heading with this text."""
    blocks = report.blocks
    start = next(i for i, b in enumerate(blocks) if isinstance(b, wr.H1 | wr.H2) and b.text == heading)
    return next(b for b in blocks[start:] if isinstance(b, wr.PanelGrid))


def test_the_layout_is_neos(report: Any) -> None:
    assert (report.entity, report.project, report.title) == ("nejumi", "neo-leaderboard", wandb_report.TITLE)
    headings = [b.text for b in report.blocks if isinstance(b, wr.H1)]
    assert headings == ["Leaderboard", "Categories", "jaster", "MT-bench", "Runtime and cost vs Overall"]
    assert isinstance(report.blocks[0], wr.MarkdownBlock)
    assert "Overall = (jaster AVG + MT-bench/10) / 2" in report.blocks[0].text
    assert len(grids(report)) == 7


def test_every_run_set_is_the_projects_finished_clean_evaluations(report: Any) -> None:
    for grid in grids(report):
        (runset,) = grid.runsets
        assert (runset.entity, runset.project) == ("nejumi", "neo-leaderboard")
        assert runset.filters == wandb_report.runset_filters()
        # the filter is one wandb-workspaces parses into the saved form (v2 filters) without an API
        saved = expr.filters_v2_to_string(expr.filters_tree_to_v2(expr.expr_to_filters(runset.filters)))
        for part in (
            "Metric(\"JobType\") == 'evaluation'",
            "Metric(\"State\") == 'finished'",
            'SummaryMetric("capped") == False',
            'SummaryMetric("synthetic_judge") == False',
            'SummaryMetric("degraded") == False',
        ):
            assert part in saved
    everything = build_report("nejumi", "neo-leaderboard", include_all=True)
    assert "capped" not in grids(everything)[0].runsets[0].filters
    assert "Metric('State') == 'finished'" in grids(everything)[0].runsets[0].filters


def test_leaderboard_radar_and_scatter_panels(report: Any) -> None:
    (table,) = grid_after(report, "Leaderboard").panels
    assert isinstance(table, wr.WeavePanelSummaryTable) and table.table_name == "leaderboard_table"
    radars = grid_after(report, "Categories").panels
    assert [type(p) for p in radars] == [wr.CustomChart, wr.CustomChart]
    assert [panel_table(p) for p in radars] == ["jaster_radar_table", "mtbench_radar_table"]
    assert {p.chart_name for p in radars} == {wandb_report.RADAR_PRESET}
    assert radars[0].chart_fields == {"theta": "category", "r": "score"}
    scatters = grid_after(report, "Runtime and cost vs Overall").panels
    axes = [(s._to_model().config.x_axis, s._to_model().config.y_axis) for s in scatters]
    assert axes == [
        ("run:duration", "summary:Overall"),
        ("summary:cost/gpu_hours_held", "summary:Overall"),
        ("summary:cost/judge_cost", "summary:Overall"),
    ]
    assert build_report("a", "b", radar_preset="team/radar").blocks  # the preset is a parameter
    custom = grid_after(build_report("a", "b", radar_preset="team/radar"), "Categories").panels
    assert {p.chart_name for p in custom} == {"team/radar"}


def test_per_question_tables_carry_neos_row_filters(report: Any) -> None:
    datasets = list(task_table().tasks)
    jaster = grid_after(report, "jaster: question by question").panels
    assert [filter_expression(p) for p in jaster] == [f'row["target_dataset"] == "{d}"' for d in datasets]
    assert {panel_table(p) for p in jaster} == {"jaster_output_table"}
    mtbench = grid_after(report, "MT-bench: question by question").panels
    assert [filter_expression(p) for p in mtbench] == [f'row["category"] == "{c}"' for c in CATEGORIES]
    assert {panel_table(p) for p in mtbench} == {"mtbench_output_table"}
    assert filter_expression(grid_after(report, "Leaderboard").panels[0]) is None

    # the raw weave config: the summary-table expression wandb-workspaces builds, the filter in the
    # table state, the columns explicit (an automatic column set makes the UI drop the filter)
    panel = jaster[0]
    plain = wr.WeavePanelSummaryTable(table_name="jaster_output_table")._to_model().config
    config = panel._to_model().config["panel2Config"]
    assert config["exp"] == plain["panel2Config"]["exp"]
    assert config["panelConfig"]["compareMethod"] == "concatenating"
    state = config["panelConfig"]["childConfig"]["tableState"]
    assert state["autoColumns"] is False
    assert state["preFilterFunction"]["fromOp"]["name"] == "string-equal"
    picked = [state["columnSelectFunctions"][c]["fromOp"]["inputs"]["key"]["val"] for c in state["order"]]
    assert picked == list(JASTER_COLUMNS)
    mt_state = mtbench[0]._to_model().config["panel2Config"]["panelConfig"]["childConfig"]["tableState"]
    assert [
        mt_state["columnSelectFunctions"][c]["fromOp"]["inputs"]["key"]["val"] for c in mt_state["order"]
    ] == (list(MTBENCH_COLUMNS))
    # two panels side by side per row of the grid, none overlapping
    assert [(p.layout.x, p.layout.w) for p in jaster[:2]] == [(0, 12), (12, 12)]
    assert len({(p.layout.x, p.layout.y) for p in jaster}) == len(jaster)


def test_every_panel_serialises_without_the_api(report: Any) -> None:
    for grid in grids(report):
        for panel in grid.panels:
            panel._to_model()  # a run set's _to_model would look its project up; panels must not


def test_the_cli_prints_the_outline_and_saves_only_with_publish(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    saved: list[Any] = []
    monkeypatch.setattr(wr.Report, "save", lambda self, **kw: saved.append(self) or self)
    monkeypatch.setattr(wr.Report, "url", property(lambda self: "https://wandb.ai/nejumi/neo/reports/x"))
    assert main(["leaderboard", "--wandb-report", "nejumi/neo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("W&B report nejumi/neo: Nejumi LLM Leaderboard Neo")
    assert 'WeavePanel jaster_output_table where row["target_dataset"] == "jamp"' in out
    assert "not saved" in out and saved == []
    assert main(["leaderboard", "--wandb-report", "nejumi/neo", "--publish", "--title", "Neo v2"]) == 0
    assert [r.title for r in saved] == ["Neo v2"]
    assert "published https://wandb.ai/nejumi/neo/reports/x" in capsys.readouterr().out


def test_publish_failures_and_bad_arguments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(self: Any, **kw: Any) -> None:
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(wr.Report, "save", offline)
    assert main(["leaderboard", "--wandb-report", "nejumi/neo", "--publish"]) == 3
    assert "the W&B report was not saved: ConnectionError" in capsys.readouterr().err
    assert main(["leaderboard", "--wandb-report", "neo"]) == 2
    assert "ENTITY/PROJECT" in capsys.readouterr().err
    assert main(["leaderboard", "--publish"]) == 2
    assert "only go with --wandb-report" in capsys.readouterr().err
