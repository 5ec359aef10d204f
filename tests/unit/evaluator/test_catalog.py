"""`nejumi-eval list` data: the jaster and MT-bench catalogues, offline, and their text tables."""

from __future__ import annotations

import json
import socket

import pytest

from nejumi_eval.benchmarks.jaster import catalog as jaster_catalog
from nejumi_eval.benchmarks.jaster.datasets import DATASETS
from nejumi_eval.benchmarks.jaster.prompts import DEFAULT_TEMPLATE, template_names
from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.benchmarks.mtbench import catalog as mtbench_catalog
from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES, JUDGE_DEFAULTS, PROTOCOL


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No network and no data mirror: the catalogue reads only the tables shipped in the package."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the catalogue must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("NEJUMI_DATA_MIRROR", str(tmp_path / "no-mirror"))


def test_jaster_catalogue_is_the_task_table() -> None:
    doc = jaster_catalog.describe()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["benchmark"] == "jaster" and doc["few_shots"] == 0
    datasets = doc["datasets"]
    assert len(datasets) == 16 and [d["name"] for d in datasets] == list(DATASETS)
    tasks = task_table().tasks
    for d in datasets:
        task = tasks[d["name"]]
        assert d["category"] == task.category and d["metric"] == task.metrics[0]
        assert d["output_length"] == task.output_length and d["test_samples"] == task.neo_test_samples_scored
    by_name = {d["name"]: d for d in datasets}
    assert by_name["jamp"]["test_samples"] == 100 and by_name["wiki_ner"]["test_samples"] == 20
    assert doc["test_samples"] == 11 * 100 + 5 * 20
    categories = doc["categories"]
    assert [c["name"] for c in categories] == ["NLI", "QA", "RC", "MC", "EL", "FA", "MR"]
    assert sorted(n for c in categories for n in c["datasets"]) == sorted(DATASETS)
    for c in categories:
        assert all(by_name[n]["category"] == c["name"] for n in c["datasets"])
    assert [t["name"] for t in doc["prompt_templates"]] == template_names()
    assert [t["name"] for t in doc["prompt_templates"] if t["default"]] == [DEFAULT_TEMPLATE]
    assert doc["default_prompt_template"] == DEFAULT_TEMPLATE
    assert all(len(t["sha256"]) == 64 for t in doc["prompt_templates"])


def test_mtbench_catalogue_is_the_protocol_table() -> None:
    doc = mtbench_catalog.describe()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["benchmark"] == "mtbench" and doc["protocol"] == "neo"
    assert [v["name"] for v in doc["variants"]] == ["neo", "head"]
    assert [v["name"] for v in doc["variants"] if v["default"]] == ["neo"]
    categories = doc["categories"]
    assert len(categories) == 8 and [c["name"] for c in categories] == list(CATEGORIES)
    assert all(c["questions"] == 10 for c in categories) and doc["questions"] == 80
    ids = [i for c in categories for i in range(c["first_id"], c["last_id"] + 1)]
    assert sorted(ids) == list(range(1, 81))
    assert {c["name"] for c in categories if c["reference"]} == {"coding", "math", "reasoning"}
    assert doc["turns_per_question"] == 2
    assert doc["generation"]["max_new_tokens"] == PROTOCOL.generation.max_new_tokens
    judge = doc["judge"]
    assert (judge["model"], judge["temperature"], judge["max_tokens"]) == (
        JUDGE_DEFAULTS.model,
        JUDGE_DEFAULTS.temperature,
        JUDGE_DEFAULTS.max_tokens,
    )
    assert doc["judge_prompts"] == {
        "plain": ["single-v1", "single-v1-multi-turn"],
        "reference": ["single-math-v1", "single-math-v1-multi-turn"],
    }


def _table(lines: list[str], header: str) -> list[str]:
    """The header line starting with `header` and its rows (up to the next blank line)."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def _left_aligned(rows: list[str], column: str) -> None:
    """Every row's cell of `column` starts where its header does, two spaces after the previous."""
    at = rows[0].index(column)
    for row in rows:
        assert row[at - 2 : at] == "  " and row[at] != " ", row


def _right_aligned(rows: list[str], column: str) -> None:
    """Every row's cell of `column` ends where its header does."""
    end = rows[0].index(column) + len(column)
    for row in rows:
        assert row[end - 1] != " " and row[end : end + 2] in ("  ", ""), row


def test_jaster_text_is_fixed_width_tables() -> None:
    text = jaster_catalog.format_text(jaster_catalog.describe())
    lines = text.splitlines()
    assert lines[0].startswith("jaster (profile neo): 16 datasets in 7 categories, zero-shot")
    for name in DATASETS:
        assert any(line.split()[:1] == [name] for line in lines)
    datasets = _table(lines, "DATASET ")
    assert len(datasets) == 1 + 16
    _left_aligned(datasets, "CATEGORY")
    _left_aligned(datasets, "METRIC")
    _right_aligned(datasets, "MAX NEW TOKENS")
    _right_aligned(datasets, "TEST SAMPLES")
    categories = _table(lines, "CATEGORY ")
    assert len(categories) == 1 + 7
    _left_aligned(categories, "DATASETS")
    jamp = next(line for line in lines if line.startswith("jamp "))
    assert jamp.split() == ["jamp", "NLI", "exact_match", "3", "100"]
    assert f"{DEFAULT_TEMPLATE} " in text and "(default)" in text


def test_mtbench_text_is_fixed_width_tables() -> None:
    text = mtbench_catalog.format_text(mtbench_catalog.describe())
    lines = text.splitlines()
    assert lines[0].startswith("mtbench (protocol neo): 80 questions in 8 categories, 2 turns each")
    categories = _table(lines, "CATEGORY ")
    assert len(categories) == 1 + 8
    _right_aligned(categories, "QUESTIONS")
    _left_aligned(categories, "IDS")
    _right_aligned(categories, "TEMPERATURE")
    _left_aligned(categories, "REFERENCE")
    coding = next(line for line in lines if line.startswith("coding "))
    assert coding.split() == ["coding", "10", "1-10", "0.0", "yes"]
    assert JUDGE_DEFAULTS.model in text and "single-math-v1-multi-turn" in text
    assert "neo (default)" in text
