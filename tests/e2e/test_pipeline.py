"""`nejumi-eval run` end to end against real HTTP servers speaking the OpenAI wire format: a stub
model API (echoing prompts) and a scripted judge returning known ratings, malformed text and 429s.

Everything here is the product's pipeline for real: data from the mirror, the cached client, the
results folder, W&B in offline mode; only the two servers are test doubles.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.contract import PRICING_ENV
from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.api.v1alpha1.summary import SUMMARY_MAX_BYTES
from nejumi_eval.benchmarks.jaster.datasets import DATASETS
from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_eval.pipeline import run
from nejumi_eval.report.results import read_table
from tests.fixtures.openai_stub import Reply, StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.support import wandb_offline

MODEL = "stub-model"
PER_CATEGORY = 2  # 16 questions, 32 judgments


@pytest.fixture(scope="module")
def questions() -> dict[int, str]:
    data = load_variant("neo", default_mirror())
    return {q.question_id: q.turns[0] for q in data.questions}


@pytest.fixture(scope="module")
def chosen(questions: dict[int, str]) -> list[tuple[int, str]]:
    """(question_id, category) of the first PER_CATEGORY questions of each category."""
    data = load_variant("neo", default_mirror())
    seen: dict[str, int] = {}
    out = []
    for q in data.questions:
        seen[q.category] = seen.get(q.category, 0) + 1
        if seen[q.category] <= PER_CATEGORY:
            out.append((q.question_id, q.category))
    return out


def _spec(workspace: Path, model_url: str, judge_url: str | None, **jaster: object) -> dict:
    mtbench: dict = {"questionsPerCategory": PER_CATEGORY}
    if judge_url:
        mtbench["judge"] = {"model": "gpt-4-0613", "endpoint": judge_url, "apiKeyEnv": None, "concurrency": 4}
    return {
        "model": {"name": MODEL, "source": "openai-compatible", "endpoint": model_url, "mode": "completion"},
        "benchmarks": {"jaster": {"testSamples": 2, "devSamples": 1, **jaster}, "mtbench": mtbench},
        "generation": {"concurrency": 8, "maxRetries": 2},
        "workspace": {"path": str(workspace)},
        "wandb": {"mode": "offline", "runName": "pipeline-test"},
        "summaryPath": str(workspace / "summary.json"),
    }


def test_full_run_scores_both_halves_exactly(
    tmp_path: Path, questions: dict[int, str], chosen, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = {"models": {"gpt-4-0613": {"promptPerMillionTokens": 30, "completionPerMillionTokens": 60}}}
    monkeypatch.setenv(PRICING_ENV, json.dumps(prices))  # what the operator passes; a local run reads it
    # Ratings by category; a few judgments made hard on purpose.
    by_category = {
        "coding": 3,
        "extraction": 8,
        "humanities": 9,
        "math": 2,
        "reasoning": 4,
        "roleplay": 7,
        "stem": 6,
        "writing": 5,
    }
    plan: dict[tuple[int, int], list[str | int]] = {}
    for qid, category in chosen:
        for turn in (1, 2):
            plan[(qid, turn)] = [f"評価: [[{by_category[category]}]]"]
    first_coding, second_coding = [q for q, c in chosen if c == "coding"]
    first_writing = next(q for q, c in chosen if c == "writing")
    # full-width digits after one rating-less reply: valid 10 on the 2nd call
    plan[(first_coding, 1)] = ["I cannot decide.", "Rating: ［［１０］］"]
    # never a rating: invalid (no_rating) after 3 calls, excluded from the mean
    plan[(second_coding, 2)] = ["Rating: [[0]]"]
    # transport errors until retries are exhausted: invalid (judge_error)
    plan[(first_writing, 2)] = [500]

    with StubServer(model=MODEL) as model, ScriptedJudge(questions, plan) as judge:
        judge.script.extend([Reply(429, headers={"Retry-After": "0"})] * 2)
        spec = parse_spec(_spec(tmp_path, model.base_url, judge.base_url))
        summary = run(spec, progress=False)
        model_calls, judge_calls = model.calls, judge.calls

    assert summary.status == "completed"
    mt = summary.benchmarks["mtbench"]
    assert mt.scored
    # coding: valid scores 10, 3, 3 (the 4th is invalid) → 16/3
    expected = {c: float(v) for c, v in by_category.items()}
    expected["coding"] = statistics.mean([10, 3, 3])
    assert mt.categories == pytest.approx(expected)
    assert mt.avg == pytest.approx(statistics.mean(expected.values()))
    assert mt.samples == 2 * len(chosen)
    assert mt.invalid == 2
    # 2 of 32 invalid = 6.25% > 2%: degraded, and Overall (when present) says so
    assert mt.degraded
    # judge calls: 32 first calls + 1 re-call + 2 re-calls + 2 more attempts on the 500 + 2 × 429
    assert judge_calls == 32 + 1 + 2 + 2 + 2

    # jaster: every dataset capped at 2 test + 1 dev sample (jnli/jsquad dev unavailable offline)
    jaster = summary.benchmarks["jaster"]
    assert jaster.capped and jaster.samples == 2 * len(DATASETS)
    assert model_calls == 2 * len(DATASETS) + (len(DATASETS) - 2) + 2 * len(chosen)
    assert summary.overall == pytest.approx((jaster.avg + mt.avg / 10) / 2)
    assert summary.degraded

    # results folder: every number traceable to rows
    results = Path(summary.results_dir)
    rows = read_table(results / "jaster_output_table.jsonl")
    assert {r["target_dataset"] for r in rows} == set(DATASETS)
    assert rows[0]["prompt"].endswith("### 応答:\n") and rows[0]["raw_output"].startswith("echo:")
    for key, value in jaster.scores.items():
        mine = [r["score"] for r in rows if f"{r['target_dataset']}_{r['metric']}" == key]
        assert mine and value == pytest.approx(statistics.mean(mine)), key
    judged = read_table(results / "mtbench_output_table.jsonl")
    assert len(judged) == 32
    bad = next(r for r in judged if (r["question_id"], r["turn"]) == (second_coding, 2))
    assert bad["score"] == -1 and bad["invalid_reason"] == "no_rating" and bad["attempts"] == 3
    err = next(r for r in judged if (r["question_id"], r["turn"]) == (first_writing, 2))
    assert err["invalid_reason"] == "judge_error"
    ok = next(r for r in judged if (r["question_id"], r["turn"]) == (first_coding, 1))
    assert ok["score"] == 10 and ok["attempts"] == 2 and ok["judge_prompt"] == "single-math-v1"
    assert ok["messages"][0]["role"] == "system" and questions[first_coding] in ok["messages"][1]["content"]
    stats = json.loads((results / "run.json").read_text())["client_stats"]
    assert stats["judge"]["retries"] >= 2 + 2 and stats["judge"]["requests_sent"] == 32 + 1 + 2
    board = read_table(results / "leaderboard_table.jsonl")[0]
    assert board["Overall"] == pytest.approx(summary.overall)

    # the operator's summary: small, parseable, the same numbers
    text = (tmp_path / "summary.json").read_text()
    assert len(text.encode()) <= SUMMARY_MAX_BYTES
    doc = json.loads(text)
    assert doc["overall"] == pytest.approx(summary.overall)
    assert doc["benchmarks"]["mtbench"]["invalid"] == 2

    # W&B offline: tables under Neo's names, summary scalars for every score
    wb = wandb_offline.offline_run(results)
    tables = wandb_offline.tables(wb)
    for name in (
        "jaster_output_table",
        "jaster_output_table_dev",
        "jaster_leaderboard_table",
        "jaster_radar_table",
        "mtbench_output_table",
        "mtbench_leaderboard_table",
        "mtbench_radar_table",
        "leaderboard_table",
    ):
        assert name in tables, name
    assert len(tables["mtbench_output_table"]["data"]) == 32
    scalars = wandb_offline.summary(wb)
    assert scalars["Overall"] == pytest.approx(summary.overall)
    assert scalars["mtbench/coding"] == pytest.approx(16 / 3)
    assert scalars["jaster/AVG"] == pytest.approx(jaster.avg)

    # the cost: the judge's tokens (prompt and completion apart) at the table's prices; an API model
    # holds no GPU; everywhere the same figures (summary, run.json, W&B scalars and config)
    cost = summary.cost
    assert cost is not None
    answered = stats["judge"]["requests_sent"] - stats["judge"]["failures"]  # the scripted judge: 100 + 10
    assert (cost.judge_prompt_tokens, cost.judge_completion_tokens) == (100 * answered, 10 * answered)
    assert summary.usage.judge_prompt_tokens == cost.judge_prompt_tokens
    assert summary.usage.judge_tokens == cost.judge_prompt_tokens + cost.judge_completion_tokens
    assert cost.judge_cost == round((100 * answered * 30 + 10 * answered * 60) / 1e6, 6) > 0
    assert (cost.currency, cost.unpriced) == ("USD", [])
    assert cost.model_prompt_tokens == summary.usage.prompt_tokens > 0
    assert (cost.gpu_seconds_held, cost.gpu_seconds_busy, cost.gpu_cost) == (0.0, 0.0, 0.0)
    assert json.loads((results / "run.json").read_text())["cost"] == cost.model_dump(by_alias=True)
    assert doc["cost"]["judgeCost"] == cost.judge_cost  # the operator's copy
    assert scalars["cost/judge_cost"] == cost.judge_cost and scalars["cost/currency"] == "USD"
    assert scalars["cost/judge_prompt_tokens"] == cost.judge_prompt_tokens
    assert scalars["cost/gpu_seconds_held"] == 0.0
    assert wandb_offline.config(wb)["cost"]["judgeCost"] == cost.judge_cost

    # a rerun costs nothing: no model request, no judge request, same numbers
    with (
        StubServer(model=MODEL, port=model.port) as model2,
        ScriptedJudge(questions, plan, port=judge.port) as judge2,
    ):
        spec = parse_spec(_spec(tmp_path, model2.base_url, judge2.base_url))
        again = run(spec, progress=False)
        # the judge_error judgment is retried (failures are never cached): 3 attempts, still 500
        assert model2.calls == 0
        assert judge2.calls == 3
    assert again.usage.requests_sent == 1  # the one judge_error judgment, attempted anew
    assert again.cost is not None and again.cost.judge_cost == 0.0  # it failed again: no tokens, no cost
    assert again.cost.model_prompt_tokens == 0
    assert again.overall == pytest.approx(summary.overall)


def test_without_judge_answers_are_saved_and_reused(
    tmp_path: Path, questions: dict[int, str], chosen
) -> None:
    with StubServer(model=MODEL) as model:
        spec = parse_spec(_spec(tmp_path, model.base_url, None, datasets=["jamp"]))
        summary = run(spec, progress=False)
        first_calls = model.calls
        port = model.port
    assert not summary.benchmarks["mtbench"].scored
    assert summary.overall is None
    answers = read_table(Path(summary.results_dir) / "mtbench_answers.jsonl")
    assert len(answers) == len(chosen) and all(len(a["choices"][0]["turns"]) == 2 for a in answers)
    assert first_calls == 2 + 1 + 2 * len(chosen)

    with StubServer(model=MODEL, port=port) as model, ScriptedJudge(questions) as judge:
        spec = parse_spec(_spec(tmp_path, model.base_url, judge.base_url, datasets=["jamp"]))
        judged = run(spec, progress=False)
        judge_port = judge.port
        assert model.calls == 0  # the answers come from the cache
        assert judge.calls == 2 * len(chosen)
    assert judged.benchmarks["mtbench"].avg == pytest.approx(5.0)
    assert judged.overall is None  # jaster covered one dataset: AVG is null, so is Overall

    # a clean rerun costs no judge tokens: zero requests anywhere, the same scores
    with (
        StubServer(model=MODEL, port=port) as model,
        ScriptedJudge(questions, port=judge_port) as judge,
    ):
        spec = parse_spec(_spec(tmp_path, model.base_url, judge.base_url, datasets=["jamp"]))
        again = run(spec, progress=False)
        assert model.calls == 0 and judge.calls == 0
    assert again.usage.requests_sent == 0 and again.usage.judge_tokens == 0
    assert again.benchmarks["mtbench"] == judged.benchmarks["mtbench"]


def test_ratings_from_one_judge_are_never_reported_as_another_judges(
    tmp_path: Path, questions: dict[int, str], chosen
) -> None:
    """Issue 8 §1: `make demo` rates with a synthetic judge named like the real one; the README's
    next step names the real judge. Every judgment must be asked again, of the new endpoint."""
    synthetic = {(qid, turn): ["Rating: [[1]]"] for qid, _ in chosen for turn in (1, 2)}
    real = {(qid, turn): ["Rating: [[9]]"] for qid, _ in chosen for turn in (1, 2)}
    with StubServer(model=MODEL) as model, ScriptedJudge(questions, synthetic) as demo_judge:
        spec = parse_spec(_spec(tmp_path, model.base_url, demo_judge.base_url, datasets=["jamp"]))
        first = run(spec, progress=False)
        with ScriptedJudge(questions, real) as real_judge:  # same model name, another endpoint
            assert real_judge.model == demo_judge.model == "gpt-4-0613"
            spec = parse_spec(_spec(tmp_path, model.base_url, real_judge.base_url, datasets=["jamp"]))
            second = run(spec, progress=False)
            assert real_judge.calls == 2 * len(chosen)  # every judgment sent again
        assert model.calls == 2 + 1 + 2 * len(chosen)  # the model's answers did come from the cache
    assert first.benchmarks["mtbench"].avg == pytest.approx(1.0)
    assert second.benchmarks["mtbench"].avg == pytest.approx(9.0)


def test_failed_requests_are_counted_not_hidden(tmp_path: Path) -> None:
    with StubServer(model=MODEL) as model:
        model.script.extend([Reply(500)] * 6)  # both requests' 3 attempts each (maxRetries 2)
        spec = _spec(tmp_path, model.base_url, None, datasets=["jamp"], devSamples=0)
        spec["benchmarks"]["mtbench"]["enabled"] = False
        spec["generation"]["concurrency"] = 1
        summary = run(parse_spec(spec), progress=False)
    jaster = summary.benchmarks["jaster"]
    assert jaster.failures == 2 and jaster.degraded and summary.degraded
    rows = read_table(Path(summary.results_dir) / "jaster_output_table.jsonl")
    assert len(rows) == 2
    assert all(r["error"] and r["raw_output"] == "" and r["score"] == 0.0 for r in rows)


def test_chat_mode_and_a_failing_wandb_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chat-only APIs get the prompt as one user message; a W&B outage is reported, not fatal."""
    import wandb

    def broken_init(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(wandb, "init", broken_init)
    with StubServer(model=MODEL) as model:
        spec = _spec(tmp_path, model.base_url, None, datasets=["jamp"], devSamples=0)
        spec["model"]["mode"] = "chat"
        spec["benchmarks"]["mtbench"]["enabled"] = False
        summary = run(parse_spec(spec), progress=False)
        bodies = list(model.posts)
    assert all(b["messages"] == [{"role": "user", "content": b["messages"][0]["content"]}] for b in bodies)
    assert all(b["temperature"] == 0.0 and b["max_tokens"] == 3 for b in bodies)
    assert summary.status == "completed" and summary.wandb_run_path is None
    assert summary.error is not None and "api.wandb.ai unreachable" in summary.error
    rows = read_table(Path(summary.results_dir) / "jaster_output_table.jsonl")
    assert len(rows) == 2 and all(r["raw_output"].startswith("chat:") for r in rows)
    assert json.loads((tmp_path / "summary.json").read_text())["error"].startswith("W&B:")


def test_the_server_loads_while_data_is_prepared_and_stops_when_prepare_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 §5: prepare runs beside the model server's start; a failed prepare stops the server."""
    import asyncio

    from nejumi_eval import endpoints, pipeline, preflight
    from nejumi_eval.benchmarks.jaster import benchmark as jaster

    seen: list[str] = []

    async def slow_start(self: endpoints.ModelEndpoint) -> None:
        seen.append("server starting")
        try:
            await asyncio.sleep(30)  # a model that takes long to load
        except asyncio.CancelledError:
            seen.append("server start cancelled")
            raise

    def failing_plan(*_args: object, **_kwargs: object):
        import time

        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:  # sequential serving would never start here
            time.sleep(0.01)
        assert seen == ["server starting"]  # the server is loading while the data is prepared
        raise pipeline.ConfigError("benchmarks.jaster: the data cannot be prepared")

    monkeypatch.setattr(endpoints.ModelEndpoint, "start", slow_start)
    monkeypatch.setattr(preflight, "check_model_location", lambda spec: None)  # "org/m" is not real
    monkeypatch.setattr(jaster, "plan", failing_plan)
    spec = parse_spec(
        {
            "model": {"name": "org/m", "source": "transformers"},
            "benchmarks": {"mtbench": {"enabled": False}},
            "workspace": {"path": str(tmp_path)},
            "wandb": {"enabled": False},
        }
    )
    with pytest.raises(pipeline.ConfigError, match="cannot be prepared"):
        run(spec, progress=False)
    assert seen == ["server starting", "server start cancelled"]
    assert not (tmp_path / "results").exists()  # no empty results folder for a run that scored nothing
