"""The compact summary: the evaluator → operator contract through a 4 KiB termination message."""

from __future__ import annotations

import pytest

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


def test_oversized_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="over the 4096-byte limit"):
        Summary(status="failed", model="m", error="x" * SUMMARY_MAX_BYTES).to_json()
