"""The compact summary: the evaluator → operator contract through a 4 KiB termination message."""

from __future__ import annotations

import json
from pathlib import Path

from nejumi_eval.api.v1alpha1.summary import SUMMARY_MAX_BYTES, BenchmarkSummary, Summary


def test_full_summary_fits_and_round_trips() -> None:
    datasets = {f"dataset_number_{i:02d}_char_f1": 0.123456789012345 for i in range(16)}
    summary = Summary(
        status="completed",
        model="org/" + "m" * 100,
        overall=0.5,
        benchmarks={
            "jaster": BenchmarkSummary(
                categories=dict.fromkeys(["NLI", "QA", "RC", "MC", "EL", "FA", "MR"]),
                scores=datasets,
                samples=1600,
            ),
        },
        results_dir="/workspace/results/" + "x" * 100,
        error="e" * 1000,
    )
    text = summary.to_json()
    assert len(text.encode()) <= SUMMARY_MAX_BYTES
    back = Summary.model_validate_json(text)
    jaster = back.benchmarks["jaster"]
    assert jaster.avg is None and jaster.scores == datasets


def _bulky(error: str, datasets: int) -> Summary:
    return Summary(
        status="completed",
        model="org/model",
        overall=0.5,
        benchmarks={
            "jaster": BenchmarkSummary(
                avg=0.5,
                categories={"NLI": 0.5},
                scores={f"dataset_{i:03d}_exact_match": 0.123456789 for i in range(datasets)},
                samples=100,
            ),
            "mtbench": BenchmarkSummary(avg=6.0, samples=160, invalid=3),
        },
        error=error or None,
    )


def test_a_long_error_is_shortened_first_and_the_summary_marked() -> None:
    summary = _bulky("E" * 6000, datasets=20)
    text = summary.to_json()
    assert len(text.encode()) <= SUMMARY_MAX_BYTES
    data = json.loads(text)
    assert data["truncated"] is True and data["error"].endswith("…") and len(data["error"]) > 300
    back = Summary.model_validate_json(text)  # `truncated` is ignored by the model: still a Summary
    assert back.benchmarks["jaster"].scores == summary.benchmarks["jaster"].scores  # scores kept
    assert back.status == "completed" and back.overall == 0.5 and back.benchmarks["mtbench"].invalid == 3


def test_per_dataset_scores_go_after_the_error() -> None:
    summary = _bulky("エラー" * 400, datasets=300)  # multi-byte error, 300 dataset scores
    text = summary.to_json()
    assert len(text.encode()) <= SUMMARY_MAX_BYTES
    back = Summary.model_validate_json(text)
    jaster = back.benchmarks["jaster"]
    assert jaster.scores == {} and jaster.avg == 0.5 and jaster.categories == {"NLI": 0.5}
    assert back.error and back.error.startswith("エラー") and len(back.error) > 300  # the room is reused
    assert json.loads(text)["truncated"] is True


def test_a_summary_that_fits_is_unchanged() -> None:
    summary = _bulky("short", datasets=3)
    assert "truncated" not in json.loads(summary.to_json())
    assert summary.to_json() == summary.model_dump_json(by_alias=True, exclude_none=True)


def test_even_absurd_summaries_fit() -> None:
    huge = Summary(
        status="failed",
        model="m" * 10_000,
        benchmarks={f"plugin_{i}": BenchmarkSummary(avg=0.5, samples=1, failures=1) for i in range(500)},
        runtime_seconds={f"phase_{i}": 1.0 for i in range(100)},
        results_dir="/r/" + "x" * 5000,
        error="x" * 10_000,
    )
    text = huge.to_json()
    assert len(text.encode()) <= SUMMARY_MAX_BYTES
    back = Summary.model_validate_json(text)
    assert back.status == "failed" and back.model.startswith("mmm") and back.benchmarks


def test_the_pipeline_writes_a_long_summary_without_an_error(tmp_path: Path) -> None:
    from nejumi_eval.pipeline import _write_summary

    path = tmp_path / "termination-log"
    _write_summary(str(path), _bulky("E" * 6000, datasets=400))
    assert len(path.read_bytes()) <= SUMMARY_MAX_BYTES
    assert Summary.model_validate_json(path.read_text(encoding="utf-8")).status == "completed"
