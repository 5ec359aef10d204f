"""Sample selection and the category/AVG roll-up (protocol-jaster.md §8), plus the task table."""

from __future__ import annotations

import json
import statistics
from importlib import resources

import pytest

from nejumi_eval.benchmarks.jaster.scoring import dataset_metric, rollup, select, task_table

RAW_TABLE = json.loads(
    resources.files("nejumi_eval.api.v1alpha1").joinpath("jaster_tasks.json").read_text("utf-8")
)

CATEGORIES = {
    "NLI": ["jamp", "janli", "jnli", "jsem", "jsick"],
    "QA": ["jemhopqa", "niilc"],
    "RC": ["jsquad"],
    "MC": ["jcommonsenseqa"],
    "EL": ["chabsa"],
    "FA": ["wiki_reading", "wiki_ner", "wiki_dependency", "wiki_pas", "wiki_coreference"],
    "MR": ["mawps"],
}
SCORE_KEYS = [
    "jamp_exact_match",
    "janli_exact_match",
    "jnli_exact_match",
    "jsem_exact_match",
    "jsick_exact_match",
    "jemhopqa_char_f1",
    "niilc_char_f1",
    "jsquad_char_f1",
    "jcommonsenseqa_exact_match",
    "chabsa_set_f1",
    "wiki_reading_char_f1",
    "wiki_ner_set_f1",
    "wiki_dependency_set_f1",
    "wiki_pas_set_f1",
    "wiki_coreference_set_f1",
    "mawps_exact_match",
]
# Uneven values, so a mean over datasets and a mean over categories differ.
FULL = {key: (index + 1) / 17 for index, key in enumerate(SCORE_KEYS)}


# --- the task table ------------------------------------------------------------------------------


def test_task_table_matches_the_protocol() -> None:
    table = task_table()
    assert table.categories == CATEGORIES
    assert [spec.score_key for spec in table.tasks.values()] == SCORE_KEYS
    for name, spec in table.tasks.items():
        assert spec.score_key == f"{name}_{dataset_metric(name)}"
        assert name in table.categories[spec.category]


def test_scored_sample_counts_follow_the_neo_defaults() -> None:
    defaults = RAW_TABLE["evaluation_defaults_neo"]
    for name, spec in task_table().tasks.items():
        expected = defaults["wiki_samples_each"] if name.startswith("wiki_") else defaults["max_num_samples"]
        assert spec.neo_test_samples_scored == expected


def test_dataset_metric_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown jaster dataset 'jsts'"):
        dataset_metric("jsts")


# --- selection -----------------------------------------------------------------------------------


def test_select_first_100_test_samples_in_split_order() -> None:
    records = list(range(348))
    assert select("jamp", "test", records) == list(range(100))


def test_select_wiki_tasks_score_20_test_samples() -> None:
    for name in CATEGORIES["FA"]:
        assert select(name, "test", list(range(200))) == list(range(20))


def test_select_dev_table_is_first_20_for_every_dataset() -> None:
    for name in task_table().tasks:
        assert select(name, "dev", [f"d{i}" for i in range(500)]) == [f"d{i}" for i in range(20)]


def test_select_short_split_is_returned_whole() -> None:
    assert select("jemhopqa", "test", ["a", "b"]) == ["a", "b"]


def test_select_rejects_unknown_split_and_dataset() -> None:
    with pytest.raises(ValueError, match="unknown split 'train'"):
        select("jamp", "train", [])
    with pytest.raises(ValueError, match="unknown jaster dataset"):
        select("jsts", "test", [])


# --- roll-up -------------------------------------------------------------------------------------


def test_rollup_complete() -> None:
    result = rollup(FULL)
    assert list(result) == ["NLI", "QA", "RC", "MC", "EL", "FA", "MR", "AVG"]
    assert result["NLI"] == statistics.mean(FULL[f"{name}_exact_match"] for name in CATEGORIES["NLI"])
    assert result["QA"] == statistics.mean([FULL["jemhopqa_char_f1"], FULL["niilc_char_f1"]])
    assert result["RC"] == FULL["jsquad_char_f1"]
    assert result["MC"] == FULL["jcommonsenseqa_exact_match"]
    assert result["EL"] == FULL["chabsa_set_f1"]
    assert result["MR"] == FULL["mawps_exact_match"]
    fa_keys = [key for key in SCORE_KEYS if key.startswith("wiki_")]
    assert result["FA"] == statistics.mean(FULL[key] for key in fa_keys)
    categories = [result[name] for name in CATEGORIES]
    assert result["AVG"] == statistics.mean(categories)


def test_rollup_avg_is_over_categories_not_datasets() -> None:
    result = rollup(FULL)
    assert result["AVG"] != pytest.approx(statistics.mean(FULL.values()))
    # Hand-computed with value(i) = i/17 for the i-th key (1-based).
    nli, qa, rc, mc, el, fa, mr = 3 / 17, 6.5 / 17, 8 / 17, 9 / 17, 10 / 17, 13 / 17, 16 / 17
    assert result["AVG"] == pytest.approx((nli + qa + rc + mc + el + fa + mr) / 7)


def test_rollup_values_are_unrounded_floats() -> None:
    scores = dict.fromkeys(SCORE_KEYS, 1 / 3)
    result = rollup(scores)
    assert all(isinstance(value, float) for value in result.values())
    assert result["AVG"] == pytest.approx(1 / 3, abs=1e-15)
    assert result["NLI"] != round(result["NLI"], 4)


def test_rollup_incomplete_category_is_none_and_so_is_avg() -> None:
    partial = {key: value for key, value in FULL.items() if key != "jsick_exact_match"}
    result = rollup(partial)
    assert result["NLI"] is None
    assert result["AVG"] is None
    assert result["QA"] == statistics.mean([FULL["jemhopqa_char_f1"], FULL["niilc_char_f1"]])
    assert result["FA"] is not None


def test_rollup_missing_one_wiki_task() -> None:
    partial = {key: value for key, value in FULL.items() if key != "wiki_pas_set_f1"}
    result = rollup(partial)
    assert result["FA"] is None
    assert result["AVG"] is None
    assert result["NLI"] is not None


def test_rollup_zero_is_a_score_not_a_gap() -> None:
    zeros = dict.fromkeys(SCORE_KEYS, 0.0)
    assert rollup(zeros) == {name: 0.0 for name in [*CATEGORIES, "AVG"]}


def test_rollup_empty() -> None:
    assert rollup({}) == {name: None for name in [*CATEGORIES, "AVG"]}


def test_rollup_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown jaster score keys \['jamp_char_f1'\]"):
        rollup({**FULL, "jamp_char_f1": 0.5})
