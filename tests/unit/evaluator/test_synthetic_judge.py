"""The synthetic judge is a product feature that always names itself (issue 8 §4)."""

from __future__ import annotations

import pytest

from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, Summary
from nejumi_eval.benchmarks.mtbench.judge import parse_rating
from nejumi_eval.cli import _human_summary
from nejumi_eval.demo import embedded_default_spec
from nejumi_eval.demo.synthetic_judge import SYNTHETIC_JUDGE_MODEL, _completion, synthetic_rating
from nejumi_operator.status import Observation, Termination, reduce_status


def test_ratings_are_deterministic_parseable_and_spread() -> None:
    prompts = [f"question {i}" for i in range(200)]
    ratings = [synthetic_rating(p) for p in prompts]
    assert ratings == [synthetic_rating(p) for p in prompts]
    assert set(ratings) == set(range(1, 11))
    reply = _completion({"messages": [{"role": "user", "content": "question 7"}]})
    assert reply["model"] == SYNTHETIC_JUDGE_MODEL
    assert parse_rating(reply["choices"][0]["message"]["content"]) == synthetic_rating("question 7")


def test_synthetic_judge_takes_no_endpoint_or_key() -> None:
    with pytest.raises(ConfigError, match=r"judge\.synthetic runs in the evaluator"):
        parse_spec(
            {
                "model": {"name": "m"},
                "benchmarks": {"mtbench": {"judge": {"synthetic": True, "endpoint": "http://x/v1"}}},
            }
        )


def test_embedded_default_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import nejumi_eval.runtime.serve.tiny as tiny

    class Built:
        path, fingerprint = "/tmp/tiny", "f"

    monkeypatch.setattr(tiny, "build_tiny_model", lambda: Built)
    judge = embedded_default_spec().benchmarks.mtbench.judge
    assert judge is not None and judge.synthetic


def _summary() -> Summary:
    return Summary(
        status="completed",
        model="m",
        overall=0.4,
        capped=True,
        synthetic_judge=True,
        benchmarks={
            "jaster": BenchmarkSummary(avg=0.3, capped=True),
            "mtbench": BenchmarkSummary(avg=5.0, samples=16, synthetic_judge=True, capped=True),
        },
    )


def test_terminal_and_status_say_synthetic_judge() -> None:
    text = _human_summary(_summary())
    mt_line = next(line for line in text.splitlines() if line.startswith("MT-bench:"))
    overall = next(line for line in text.splitlines() if line.startswith("Overall:"))
    assert "[synthetic judge]" in mt_line and "[capped]" in mt_line
    assert "synthetic judge" in overall and "not a leaderboard score" in overall
    job = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    term = Termination(exit_code=0, message=_summary().to_json(), finished_at="2026-01-01T00:00:00Z")
    status = reduce_status({}, Observation(generation=1, job_name="e", job=job, termination=term))
    assert status["syntheticJudge"] is True and status["capped"] is True
    assert "synthetic judge" in status["progress"] and "not a leaderboard score" in status["progress"]
