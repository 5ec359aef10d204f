"""`make bench`'s NejumiLeaderboard figures (tests/bench/leaderboard_resource_bench.py): which
statuses count as computations during a burst, and the ratios printed from the figures."""

from __future__ import annotations

from typing import Any

from tests.bench.leaderboard_resource_bench import CHART_MEMORY_MIB, computations_after, ratios


def _status(computations: int, ranked: int, pending: int, seconds: float) -> dict[str, Any]:
    return {
        "computations": computations,
        "counts": {"ranked": ranked, "pending": pending},
        "computeSeconds": seconds,
    }


def test_only_statuses_of_new_computations_after_the_start_count() -> None:
    history = [
        (10.0, _status(3, 100, 70, 9.0)),  # before the burst
        (21.0, {**_status(3, 100, 70, 9.0), "message": "same computation, another write"}),
        (30.0, _status(4, 140, 30, 11.0)),
        (31.0, _status(4, 140, 30, 11.0) | {"wandbReport": "x"}),
        (45.5, _status(5, 170, 0, 12.5)),
    ]
    assert computations_after(history, 20.0) == [
        {"after_s": 10.0, "computation": 4, "ranked": 140, "pending": 30, "compute_s": 11.0},
        {"after_s": 25.5, "computation": 5, "ranked": 170, "pending": 0, "compute_s": 12.5},
    ]
    assert computations_after(history, 50.0) == []
    assert computations_after([], 0.0) == []


def test_the_ratios() -> None:
    figures: dict[str, Any] = {
        "quiet_s": 2.0,
        "stored_bytes_mean": 2_000_000,
        "first": {
            "to_status_s": 24.0,
            "compute_s": 10.0,
            "bytes_per_evaluation": 2_000_000,
            "bytes_read": 200_000_000,
            "peak_mib": 1536.0,
        },
        "again": {"bytes_read": 200_000_000, "compute_s": 2.5},
        "burst": {
            "computations": 2,
            "completions": 70,
            "last_patch_to_ranked_s": 28.0,
            "compute_s": 12.0,
            "peak_mib": 2304.0,
        },
        "operator": {"ready": {"rss_mib": 100.0}, "end": {"rss_mib": 110.0}},
    }
    r = ratios(figures)
    assert r["computations_per_completion"] == round(2 / 70, 3)
    assert r["latency_vs_quiet_plus_compute"] == 2.0  # 28 / (2 + 12)
    assert r["first_status_vs_quiet_plus_compute"] == 2.0  # 24 / (2 + 10)
    assert r["bytes_read_per_evaluation_vs_stored"] == 1.0
    assert r["unchanged_vs_first_bytes_read"] == 1.0
    assert r["unchanged_vs_first_compute"] == 0.25  # 2.5 / 10
    assert r["operator_rss_after_vs_before"] == 1.1
    assert r["compute_peak_vs_chart_memory"] == round(2304 / CHART_MEMORY_MIB, 3)
    figures["burst"]["completions"] = 0
    assert ratios(figures)["computations_per_completion"] is None
