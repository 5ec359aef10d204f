"""`nejumi-eval jaster prepare|score`: the by-hand path through data and scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nejumi_eval.benchmarks.jaster import load
from nejumi_eval.benchmarks.jaster.scoring import select
from nejumi_eval.cli import main
from nejumi_eval.errors import EXIT_CONFIG, EXIT_OK


def _predictions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_prepare_reports_counts_and_unavailable_splits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "jaster", "prepare", "jamp", "jnli"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "jamp               train=8955 dev=995 test=348" in out
    assert "jnli" in out and "unavailable: train, dev" in out


def test_score_a_predictions_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    golds = [r["output"] for r in select("jamp", "test", load("jamp", "test"))]
    # gold + an explanation after a blank line is still exact; a trailing newline is not (§7)
    rows = [{"dataset": "jamp", "index": i, "output": g + "\n\n理由: …"} for i, g in enumerate(golds)]
    rows[0]["output"] = golds[0] + "\n"
    mawps = [r["output"] for r in select("mawps", "test", load("mawps", "test"))]
    rows += [{"dataset": "mawps", "index": i, "output": g} for i, g in enumerate(mawps)]
    out_file = tmp_path / "scores.json"
    predictions = _predictions(tmp_path / "p.jsonl", rows)
    assert main(["-q", "jaster", "score", str(predictions), "--out", str(out_file)]) == EXIT_OK
    doc = json.loads(out_file.read_text())
    assert doc["scores"] == {"jamp_exact_match": pytest.approx(0.99), "mawps_exact_match": 1.0}
    categories = doc["categories"]
    assert categories["MR"] == 1.0 and categories["NLI"] is None and categories["AVG"] is None
    assert json.loads(capsys.readouterr().out) == doc


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"dataset": "jamp", "index": 0, "output": "neutral"}], "missing for test indices [1, 2"),
        ([{"dataset": "nope", "index": 0, "output": "x"}], "unknown dataset 'nope'"),
        ([{"dataset": "jamp", "output": "x"}], 'expected {"dataset", "index", "output"}'),
    ],
)
def test_bad_predictions_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], rows, message) -> None:
    assert main(["-q", "jaster", "score", str(_predictions(tmp_path / "p.jsonl", rows))]) == EXIT_CONFIG
    assert message in capsys.readouterr().err


def test_score_partial_on_the_real_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    golds = [r["output"] for r in select("jamp", "test", load("jamp", "test"))]
    rows = [{"dataset": "jamp", "index": i, "output": g} for i, g in enumerate(golds)]
    predictions = _predictions(tmp_path / "p.jsonl", rows)
    assert main(["-q", "jaster", "score", str(predictions), "--partial"]) == EXIT_OK
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["scores"] == {"jamp_exact_match": 1.0}
    assert doc["partial"] is True and "jamp" not in doc["missing_datasets"]
    assert len(doc["missing_datasets"]) == 15 and doc["categories"]["AVG"] is None
    assert captured.err == ""


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"dataset": "jamp", "index": 100, "output": "x"},
            ":2: index 100 is out of range for jamp: expected 0..99",
        ),
        (
            {"dataset": "jamp", "index": 0, "output": "x"},
            ":2: duplicate prediction for jamp index 0 (first on line 1)",
        ),
        (
            {"dataset": "jamps", "index": 1, "output": "x"},
            ":2: unknown dataset 'jamps' (did you mean 'jamp'?)",
        ),
    ],
)
def test_strict_predictions_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], row, message) -> None:
    rows = [{"dataset": "jamp", "index": 0, "output": "x"}, row]
    predictions = _predictions(tmp_path / "p.jsonl", rows)
    assert main(["-q", "jaster", "score", str(predictions)]) == EXIT_CONFIG
    assert f"{predictions}{message}" in capsys.readouterr().err


def test_prepare_unknown_dataset_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "jaster", "prepare", "jamps"]) == EXIT_CONFIG
    assert "unknown jaster dataset 'jamps' (did you mean 'jamp'?); known: jamp," in capsys.readouterr().err
