"""`nejumi-eval leaderboard` as a user runs it: the table printed, the files written and read back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nejumi_eval.cli import main
from nejumi_eval.leaderboard.html import read_questions
from nejumi_eval.leaderboard.model import Leaderboard
from tests.fixtures.leaderboard_results import constant, ratings, write_results
from tests.support.paths import REPO


def spread(period: int):
    return lambda dataset, i: float(i % period == 0)


@pytest.fixture
def workspaces(tmp_path: Path) -> list[Path]:
    ws1, ws2 = tmp_path / "ws1", tmp_path / "ws2"
    write_results(ws1, "org/strong-7b", jaster=spread(2), mtbench=ratings(8), runtime=1800)
    write_results(ws1, "org/weak-1b", jaster=spread(4), mtbench=ratings(3), runtime=300)
    write_results(ws2, "org/mid-3b", jaster=spread(3), mtbench=ratings(6), runtime=900)
    write_results(ws2, "org/smoke", jaster=constant(1.0), mtbench=ratings(10), capped=True)
    return [ws1, ws2]


def test_table_csv_and_json(
    workspaces: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv, out_json = tmp_path / "out" / "board.csv", tmp_path / "out" / "board.json"
    code = main(
        ["leaderboard", *map(str, workspaces), "--csv", str(out_csv), "--json", str(out_json), "--seed", "3"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    ranked = [
        next(i for i, line in enumerate(lines) if m in line) for m in ("strong-7b", "mid-3b", "weak-1b")
    ]
    assert ranked == sorted(ranked)  # best first
    assert "Overall" in printed and "95% bootstrap CI" in printed and "seed 3" in printed
    smoke = next(line for line in lines if "org/smoke" in line)
    assert "capped" in smoke and "excluded" in smoke  # listed, not ranked

    with out_csv.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows[:3]] == ["org/strong-7b", "org/mid-3b", "org/weak-1b"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", ""]
    strong = rows[0]
    assert float(strong["overall"]) == pytest.approx((0.5 + 0.8) / 2)
    assert float(strong["overall_low"]) < float(strong["overall"]) < float(strong["overall_high"])
    assert float(strong["jaster_NLI"]) == pytest.approx(0.5)
    assert float(strong["mtbench_coding"]) == pytest.approx(8.0)
    assert rows[3]["state"] == "excluded" and "capped" in rows[3]["reasons"]

    board = Leaderboard.model_validate_json(out_json.read_text(encoding="utf-8"))
    assert board.seed == 3 and board.resamples == 1000 and not board.include_all
    assert [e.model for e in board.ranked()] == ["org/strong-7b", "org/mid-3b", "org/weak-1b"]
    assert board.ranked()[0].benchmarks["jaster"].ci is not None
    assert board.comparison(board.ranked()[0].id, board.ranked()[2].id) is not None


def test_include_all_and_resamples(
    workspaces: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "board.json"
    assert (
        main(
            [
                "leaderboard",
                *map(str, workspaces),
                "--include-all",
                "--resamples",
                "0",
                "--json",
                str(out_json),
            ]
        )
        == 0
    )
    board = json.loads(out_json.read_text())
    assert board["include_all"] is True
    ranked = [e for e in board["entries"] if e["state"] == "ranked"]
    assert ranked[0]["model"] == "org/smoke" and ranked[0]["capped"] is True
    assert all(e["overall_ci"] is None for e in board["entries"])  # no resamples, no intervals
    assert board["comparisons"] == []
    assert "org/smoke" in capsys.readouterr().out.split("not ranked")[0]


def test_confidence_sets_every_interval_and_the_ranks_are_shown(
    workspaces: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv, out_json = tmp_path / "board.csv", tmp_path / "board.json"
    argv = ["leaderboard", *map(str, workspaces), "--confidence", "0.9", "--resamples", "300"]
    assert main([*argv, "--csv", str(out_csv), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert (
        "90% bootstrap CI" in printed and "ranks: the ranks taken in the central 90% of resamples" in printed
    )
    board = Leaderboard.model_validate_json(out_json.read_text(encoding="utf-8"))
    assert board.confidence == 0.9
    intervals = [e.rank_interval for e in board.ranked()]
    assert all(r is not None for r in intervals)
    with out_csv.open(newline="", encoding="utf-8") as fh:
        ranks = [row["ranks"] for row in csv.DictReader(fh)]
    assert ranks == [r.text() for r in intervals if r is not None] + [""]  # the smoke test: not ranked

    assert main(["leaderboard", *map(str, workspaces), "--confidence", "1.5"]) == 2
    assert "--confidence must be above 0.5 and below 1, got 1.5" in capsys.readouterr().err


def test_no_results_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no results found in" in err and str(tmp_path / "empty") in err


def test_html_is_one_offline_file(workspaces: list[Path], tmp_path: Path) -> None:
    page = tmp_path / "board.html"
    assert (
        main(["leaderboard", *map(str, workspaces), "--html", str(page), "--title", "社内 <リーダーボード>"])
        == 0
    )
    text = page.read_text(encoding="utf-8")
    assert "<script src" not in text and "<link" not in text  # nothing fetched
    assert "plotly.js v" in text[:20000]  # plotly embedded, not linked
    assert "<title>社内 &lt;リーダーボード></title>" in text
    board = _script_json(text, "board-data")
    assert [e["model"] for e in board["board"]["entries"]][:3] == [
        "org/strong-7b",
        "org/mid-3b",
        "org/weak-1b",
    ]
    assert {b["name"]: b["scale"] for b in board["benchmarks"]} == {"jaster": 1, "mtbench": 10}
    questions = read_questions(text)  # gzip+base64 in the page
    assert len(questions["questions"]) == 16 * 4 + 8 * 2  # each question once, shared by every model
    assert set(questions["answers"]) == {e["id"] for e in board["board"]["entries"]}
    assert any("日本の首都" in q["prompt"] for q in questions["questions"])


def test_data_cannot_close_its_script_element(tmp_path: Path) -> None:
    folder = write_results(tmp_path, "org/a", jaster=constant(0.5), mtbench=ratings(5))
    table = folder / "jaster_output_table.jsonl"
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    rows[0]["raw_output"] = "</script><script>alert(1)</script>"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = tmp_path / "p.html"
    assert main(["leaderboard", str(tmp_path), "--html", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in text  # the questions are base64: no markup can appear
    answers = read_questions(text)["answers"]
    assert any(a.get("output") == rows[0]["raw_output"] for a in next(iter(answers.values())).values())


def test_the_installed_command(workspaces: list[Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nejumi_eval.cli", "leaderboard", str(workspaces[0]), "--resamples", "100"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "org/strong-7b" in done.stdout and "org/weak-1b" in done.stdout


def _script_json(text: str, element_id: str) -> dict:
    start = text.index(f'<script type="application/json" id="{element_id}">')
    start = text.index(">", start) + 1
    end = text.index("</script>", start)
    return json.loads(text[start:end])
