"""`nejumi-eval jaster score` reads a predictions file strictly; `jaster prepare` names bad datasets.

Scoring here runs on stand-in test splits (every gold is "a"), so these tests need no raw data; the
real splits are scored in tests/e2e/test_jaster_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nejumi_eval.benchmarks.jaster import prepare as prepare_module
from nejumi_eval.benchmarks.jaster.datasets import DATASETS
from nejumi_eval.benchmarks.jaster.prepare import prepare
from nejumi_eval.cli import main
from nejumi_eval.errors import EXIT_CONFIG, EXIT_OK, InputError
from nejumi_eval.runtime.fetch import DataError


def _scored(dataset: str) -> int:
    return DATASETS[dataset].task.neo_test_samples_scored


@pytest.fixture(autouse=True)
def _stand_in_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test split holds more samples than are scored, each with the gold output "a"."""

    def load(dataset: str, split: str) -> list[dict[str, str]]:
        assert split == "test"
        n = _scored(dataset) + 5
        return [{"id": f"{dataset}-{i}", "instruction": "", "input": "", "output": "a"} for i in range(n)]

    monkeypatch.setattr(prepare_module, "load", load)


def _complete(dataset: str, output: str = "a") -> list[str]:
    return [json.dumps({"dataset": dataset, "index": i, "output": output}) for i in range(_scored(dataset))]


def _write(tmp_path: Path, lines: list[str] | str) -> Path:
    path = tmp_path / "predictions.jsonl"
    path.write_text(lines if isinstance(lines, str) else "".join(f"{line}\n" for line in lines), "utf-8")
    return path


def _score(path: Path, *extra: str) -> int:
    return main(["-q", "jaster", "score", str(path), *extra])


JAMP0 = '{"dataset": "jamp", "index": 0, "output": "a"}'


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        # duplicates name the line that had the index first (blank lines still count)
        ([JAMP0, "", JAMP0], 3, "duplicate prediction for jamp index 0 (first on line 1)"),
        # out of range: the valid range is the dataset's scored test samples
        (['{"dataset": "jamp", "index": 100, "output": "a"}'], 1, "out of range for jamp: expected 0..99"),
        (['{"dataset": "jamp", "index": -1, "output": "a"}'], 1, "index -1 is out of range for jamp"),
        (['{"dataset": "wiki_ner", "index": 20, "output": "a"}'], 1, "wiki_ner: expected 0..19"),
        # an index must be a JSON integer: no strings, fractions, booleans or null
        (
            ['{"dataset": "jamp", "index": "5", "output": "a"}'],
            1,
            'JSON integer 0..99 for jamp, got a string "5"',
        ),
        (
            ['{"dataset": "jamp", "index": 5.7, "output": "a"}'],
            1,
            "JSON integer 0..99 for jamp, got a number 5.7",
        ),
        (['{"dataset": "jamp", "index": 5.0, "output": "a"}'], 1, "got a number 5.0"),
        (['{"dataset": "jamp", "index": true, "output": "a"}'], 1, "got a boolean true"),
        (['{"dataset": "jamp", "index": null, "output": "a"}'], 1, "JSON integer 0..99 for jamp, got null"),
        # every line is one object
        ([JAMP0, "[1, 2]"], 2, 'expected an object {"dataset", "index", "output"}, got an array'),
        (['"x"'], 1, "got a string"),
        (["3"], 1, "got an integer"),
        (["null"], 1, "got null"),
        (['{"dataset": "jamp",'], 1, "not valid JSON"),
        # missing keys
        (
            ['{"dataset": "jamp", "output": "x"}'],
            1,
            'expected {"dataset", "index", "output"}: missing \'index\'',
        ),
        (['{"index": 0, "output": "x"}'], 1, "missing 'dataset'"),
        (['{"dataset": "jamp", "index": 0}'], 1, "missing 'output'"),
        (["{}"], 1, "missing 'dataset', 'index', 'output'"),
        # output is the raw model output, a string
        (['{"dataset": "jamp", "index": 0, "output": 3}'], 1, "output must be a string, got an integer"),
        (['{"dataset": "jamp", "index": 0, "output": null}'], 1, "output must be a string, got null"),
        (['{"dataset": "jamp", "index": 0, "output": ["a"]}'], 1, "output must be a string, got an array"),
        # datasets: known names only, with a suggestion when one is close
        (
            ['{"dataset": "jamps", "index": 0, "output": "a"}'],
            1,
            "unknown dataset 'jamps' (did you mean 'jamp'?)",
        ),
        (
            ['{"dataset": "nope", "index": 0, "output": "a"}'],
            1,
            "unknown dataset 'nope'; known: jamp, janli,",
        ),
        (['{"dataset": 7, "index": 0, "output": "a"}'], 1, "dataset must be a string, got an integer"),
    ],
)
def test_rejects_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], line: int, message: str
) -> None:
    path = _write(tmp_path, lines)
    assert _score(path) == EXIT_CONFIG
    assert _score(path, "--partial") == EXIT_CONFIG
    captured = capsys.readouterr()
    assert f"{path}:{line}: " in captured.err and message in captured.err, captured.err
    assert captured.out == ""


def test_unknown_dataset_without_a_close_match_suggests_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _score(_write(tmp_path, ['{"dataset": "nope", "index": 0, "output": "a"}'])) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "did you mean" not in err and "mawps" in err and len(err.strip().splitlines()) == 1


def test_rejects_an_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "\n\n")
    assert _score(path) == EXIT_CONFIG
    assert f"{path}: no predictions" in capsys.readouterr().err


def test_rejects_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.jsonl"
    assert _score(path) == EXIT_CONFIG
    assert f"{path}: cannot read the predictions file" in capsys.readouterr().err


def test_rejects_bytes_that_are_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(JAMP0.encode() + b'\n{"dataset": "jamp", "index": 1, "output": "\xff"}\n')
    assert _score(path) == EXIT_CONFIG
    assert f"{path}:2: not UTF-8 text" in capsys.readouterr().err


def test_a_present_dataset_must_be_complete_even_with_partial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _complete("mawps") + _complete("jamp")[1:]  # jamp index 0 left out
    path = _write(tmp_path, lines)
    for extra in ((), ("--partial",)):
        assert _score(path, *extra) == EXIT_CONFIG
        err = capsys.readouterr().err
        first_jamp = _scored("mawps") + 1
        assert f"{path}:{first_jamp}: jamp: predictions missing for test indices [0]" in err, err
        assert "expected indices 0..99" in err


def test_partial_scores_the_datasets_present_and_flags_the_rollup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _complete("mawps") + _complete("jamp", "b"))
    out_file = tmp_path / "scores.json"
    assert _score(path, "--partial", "--out", str(out_file)) == EXIT_OK
    captured = capsys.readouterr()
    doc = json.loads(out_file.read_text())
    assert json.loads(captured.out) == doc
    assert doc["scores"] == {"jamp_exact_match": 0.0, "mawps_exact_match": 1.0}
    assert doc["partial"] is True
    assert doc["missing_datasets"] == [name for name in DATASETS if name not in ("jamp", "mawps")]
    assert doc["categories"]["MR"] == 1.0 and doc["categories"]["AVG"] is None
    assert captured.err == ""  # asked for: no warning


def test_without_partial_a_subset_is_still_scored_but_said_to_be_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _complete("mawps"))
    assert _score(path) == EXIT_OK
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["scores"] == {"mawps_exact_match": 1.0}
    assert doc["partial"] is True and len(doc["missing_datasets"]) == len(DATASETS) - 1
    assert doc["categories"]["AVG"] is None
    assert "the roll-up is incomplete: 1 of 16 datasets scored (missing: jamp, janli," in captured.err
    assert "--partial" in captured.err


@pytest.mark.parametrize("extra", [(), ("--partial",)])
def test_all_16_complete_is_not_partial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    lines = [line for name in reversed(list(DATASETS)) for line in _complete(name)]  # any order
    assert _score(_write(tmp_path, lines), *extra) == EXIT_OK
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["partial"] is False and doc["missing_datasets"] == []
    assert list(doc["scores"]) == [f"{name}_{ds.metric}" for name, ds in DATASETS.items()]
    assert doc["categories"]["AVG"] == 1.0 and captured.err == ""


def test_extra_keys_blank_lines_crlf_and_a_bom_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [json.dumps({"dataset": "mawps", "index": i, "output": "a", "id": f"m{i}"}) for i in range(100)]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n\r\n".join(rows).encode() + b"\r\n")
    assert _score(path, "--partial") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["scores"] == {"mawps_exact_match": 1.0}


# ---- jaster prepare: an unknown dataset is bad input (exit 2), not a data error --------------------


def test_prepare_unknown_dataset_exits_2_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "jaster", "prepare", "jamps"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "unknown jaster dataset 'jamps' (did you mean 'jamp'?); known: jamp, janli, jnli," in err
    assert all(name in err for name in DATASETS)


def test_prepare_unknown_dataset_without_a_close_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "jaster", "prepare", "jamp", "nope"]) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert "unknown jaster dataset 'nope'; known: jamp," in captured.err
    assert "did you mean" not in captured.err
    assert captured.out == ""  # every name is checked before anything is prepared


def test_prepare_unknown_dataset_is_an_input_error_and_still_a_data_error() -> None:
    with pytest.raises(InputError, match="did you mean 'wiki_ner'") as err:
        prepare(["wiki-ner"], progress=False)
    assert isinstance(err.value, DataError)  # callers catching DataError around load() still do
