"""What each evaluation cost, on the board: read from results folders (summary.json), W&B run
configs (run.json's `cost`) and NejumiEvaluation statuses (`status.cost`, with the GPU-seconds held
the operator observed), and shown in the terminal table, the CSV and the JSON. Unknown is `—` (an
empty CSV cell, a JSON null), never 0."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_eval.cli import main
from nejumi_eval.leaderboard import compare, render, sources
from nejumi_eval.leaderboard.cluster import evaluations_from_objects
from nejumi_eval.leaderboard.model import Entry
from tests.fixtures.leaderboard_results import (
    copy_workspace,
    evaluation_object,
    operator_status,
    ratings,
    write_results,
)

PRICED = {
    "gpuSecondsHeld": 7200.0,
    "gpuSecondsBusy": 3000.0,
    "modelPromptTokens": 100_000,
    "modelCompletionTokens": 20_000,
    "judgePromptTokens": 40_000,
    "judgeCompletionTokens": 1_000,
    "currency": "USD",
    "judgeCost": 1.26,
    "gpuCost": 5.0,
}
UNPRICED = {  # a local run (held unknown) judged by a model the table has no price for
    "gpuSecondsBusy": 600.0,
    "judgePromptTokens": 40_000,
    "judgeCompletionTokens": 1_000,
    "currency": "USD",
    "unpriced": ["gpt-4o"],
}


def constant(value: float):
    return lambda dataset, i: value


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    write_results(ws, "org/priced", jaster=constant(0.8), mtbench=ratings(8), cost=PRICED)
    write_results(ws, "org/unpriced", jaster=constant(0.6), mtbench=ratings(6), cost=UNPRICED)
    write_results(ws, "org/old", jaster=constant(0.4), mtbench=ratings(4))  # before costs were recorded
    return ws


def entries(workspace: Path) -> dict[str, Entry]:
    return {e.entry.model: e.entry for e in sources.from_results_folders([workspace])}


def test_results_folders_carry_their_cost(workspace: Path) -> None:
    by_model = entries(workspace)
    priced, unpriced = by_model["org/priced"].cost, by_model["org/unpriced"].cost
    assert priced is not None and priced.judge_cost == 1.26 and priced.gpu_hours_held == 2.0
    assert unpriced is not None and unpriced.judge_cost is None and unpriced.gpu_seconds_held is None
    assert by_model["org/old"].cost is None
    # a W&B run: its config is the run record, with the cost
    run = {"cost": PRICED}
    entry = sources.entry_from_summary(Summary(status="completed", model="m"), run, entry_id="x", source="s")
    assert entry.cost is not None and entry.cost.gpu_cost == 5.0
    assert (
        sources.entry_from_summary(Summary(status="completed", model="m"), {}, entry_id="x", source="s").cost
        is None
    )


def test_the_terminal_csv_and_json_show_cost_and_never_zero_for_unknown(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv, out_json = tmp_path / "board.csv", tmp_path / "board.json"
    args = ["leaderboard", str(workspace), "--resamples", "0", "--csv", str(out_csv), "--json", str(out_json)]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "cost" in table
    header = next(line for line in table.splitlines() if " cost " in line)
    column = [c.strip() for c in header.split("┃" if "┃" in header else "│")].index("cost")
    cells = {
        m: [c.strip() for c in next(line for line in table.splitlines() if m in line).split("│")][column]
        for m in ("org/priced", "org/unpriced", "org/old")
    }
    assert cells == {
        "org/priced": "2.00 GPU-h · judge 1.26 USD",
        "org/unpriced": "— GPU-h · judge —",
        "org/old": "—",
    }
    with out_csv.open(newline="", encoding="utf-8") as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    priced, unpriced, old = rows["org/priced"], rows["org/unpriced"], rows["org/old"]
    assert (priced["gpu_hours_held"], priced["judge_cost"], priced["gpu_cost"], priced["cost_currency"]) == (
        "2.0",
        "1.26",
        "5.0",
        "USD",
    )
    assert priced["gpu_seconds_busy"] == "3000.0"
    assert (unpriced["gpu_hours_held"], unpriced["judge_cost"], unpriced["gpu_seconds_busy"]) == (
        "",
        "",
        "600.0",
    )
    assert all(old[k] == "" for k in ("gpu_hours_held", "gpu_seconds_held", "judge_cost", "gpu_cost"))
    board = {e["model"]: e for e in json.loads(out_json.read_text(encoding="utf-8"))["entries"]}
    assert board["org/priced"]["cost"]["judge_cost"] == 1.26
    assert board["org/unpriced"]["cost"]["judge_cost"] is None
    assert board["org/unpriced"]["cost"]["unpriced"] == ["gpt-4o"]
    assert board["org/old"]["cost"] is None


def test_cost_cells() -> None:
    assert render.cost_text(None) == "—"
    assert render.gpu_hours(None) == render.judge_cost(None) == "—"


def test_a_status_brings_the_gpu_seconds_the_operator_saw_held(workspace: Path) -> None:
    folder = next((workspace / "results").glob("unpriced-*"))
    status = operator_status(folder)  # the Job ran 1 h on 1 GPU: the operator's figure
    assert status["cost"]["gpuSecondsHeld"] == 3600.0 and status["cost"]["gpuSecondsBusy"] == 600.0
    objects = [evaluation_object("unpriced", "org/unpriced", status)]
    (evaluation,) = evaluations_from_objects(objects)  # status only: no store, no local copy
    cost = evaluation.entry.cost
    assert cost is not None and cost.gpu_seconds_held == 3600.0 and cost.judge_cost is None
    # from a local copy of the workspace too, the status's held seconds complete the summary's
    root = workspace.parent / "copies"
    copy_workspace(folder, root, "team-a", "unpriced")
    (evaluation,) = evaluations_from_objects(objects, root)
    assert "per-question" not in " ".join(evaluation.entry.warnings)
    assert evaluation.entry.cost is not None and evaluation.entry.cost.gpu_seconds_held == 3600.0
    board = compare.build(evaluations_from_objects(objects), resamples=0).leaderboard
    assert render.cost_text(board.entries[0].cost) == "1.00 GPU-h · judge —"
