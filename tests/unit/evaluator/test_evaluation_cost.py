"""How the evaluator prices an evaluation (`pipeline.evaluation_cost`): from its environment (the
operator's price table and held GPU-seconds), its own clients' counts and, in the judge stage, the
serve stage's record in the workspace. The pipeline itself is run in tests/e2e (test_stages.py,
test_pipeline.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.contract import GPU_SECONDS_HELD_ENV, PRICING_ENV
from nejumi_eval.api.v1alpha1.cost import Cost, Pricing
from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_eval.pipeline import (
    CostInputs,
    cost_settings,
    evaluation_cost,
    read_stage_record,
    write_stage_record,
)
from nejumi_eval.runtime.client.models import ClientStats

PRICES = Pricing.model_validate(
    {"models": {"gpt-4-0613": {"promptPerMillionTokens": 30, "completionPerMillionTokens": 60}}, "gpuHour": 2}
)
SERVED = parse_spec({"model": {"name": "org/model", "source": "vllm"}, "resources": {"gpus": 2}})
API = parse_spec({"model": {"name": "m", "source": "openai-compatible", "endpoint": "https://x/v1"}})


def stats(prompt: int, completion: int, span: float | None = None) -> ClientStats:
    out = ClientStats(prompt_tokens=prompt, completion_tokens=completion)
    if span is not None:
        out.first_sent_at, out.last_done_at = 100.0, 100.0 + span
    return out


def test_the_environment_gives_the_prices_and_the_held_seconds() -> None:
    env = {PRICING_ENV: PRICES.model_dump_json(by_alias=True), GPU_SECONDS_HELD_ENV: "240.5"}
    assert cost_settings(Stage.JUDGE, env) == (PRICES, 240.5)
    assert cost_settings(Stage.RUN, env) == (PRICES, None)  # one pod: the operator adds its own
    assert cost_settings(Stage.JUDGE, {}) == (None, None)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({PRICING_ENV: '{"gpuHour": "a lot"}'}, f"{PRICING_ENV}: gpuHour"),
        ({GPU_SECONDS_HELD_ENV: "-3"}, f"{GPU_SECONDS_HELD_ENV}: expected a number"),
        ({GPU_SECONDS_HELD_ENV: "nan"}, f"{GPU_SECONDS_HELD_ENV}: expected a number"),
        ({GPU_SECONDS_HELD_ENV: "four minutes"}, f"{GPU_SECONDS_HELD_ENV}: expected a number"),
    ],
)
def test_a_bad_value_is_a_configuration_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cost_settings(Stage.JUDGE, env)


def test_one_pod_reports_its_own_tokens_and_busy_seconds_not_what_it_holds() -> None:
    cost = evaluation_cost(
        SERVED,
        Stage.RUN,
        CostInputs(PRICES),
        stats(1000, 100, span=30.0),
        {"gpt-4-0613": (2000, 200)},
        served=True,
    )
    assert (cost.model_prompt_tokens, cost.model_completion_tokens) == (1000, 100)
    assert cost.gpu_seconds_busy == 60.0  # 30 s × 2 GPUs
    assert cost.gpu_seconds_held is None and cost.gpu_cost is None  # its Job's end is the operator's
    assert (cost.judge_prompt_tokens, cost.judge_completion_tokens) == (2000, 200)
    assert cost.judge_cost == round((2000 * 30 + 200 * 60) / 1e6, 6) and cost.currency == "USD"
    # nothing sent to the model (a rerun from the cache): no GPU time busy
    rerun = evaluation_cost(SERVED, Stage.RUN, CostInputs(PRICES), stats(0, 0), {}, served=True)
    assert rerun.gpu_seconds_busy == 0.0 and rerun.judge_cost == 0.0


def test_an_api_model_holds_no_gpu() -> None:
    cost = evaluation_cost(API, Stage.RUN, CostInputs(PRICES), stats(10, 5, span=3.0), {}, served=False)
    assert (cost.gpu_seconds_held, cost.gpu_seconds_busy, cost.gpu_cost) == (0.0, 0.0, 0.0)


def test_a_judge_without_a_price_has_an_unknown_cost() -> None:
    cost = evaluation_cost(
        API, Stage.RUN, CostInputs(PRICES), stats(10, 5), {"gpt-4o": (100, 10)}, served=False
    )
    assert cost.judge_cost is None and cost.unpriced == ["gpt-4o"]
    unpriced = evaluation_cost(
        API, Stage.RUN, CostInputs(), stats(10, 5), {"gpt-4o": (100, 10)}, served=False
    )
    assert (unpriced.judge_cost, unpriced.currency, unpriced.unpriced) == (None, None, ["gpt-4o"])


def test_the_judge_stage_reports_the_serve_stages_model_tokens_and_the_operators_held_seconds(
    tmp_path: Path,
) -> None:
    served = Cost(gpu_seconds_busy=84.0, model_prompt_tokens=5000, model_completion_tokens=700)
    record = Summary(status="completed", model="org/model", stage="serve", cost=served)
    path = write_stage_record(tmp_path, SERVED, record)
    assert path == tmp_path / "stages" / "serve.json" and not list(path.parent.glob("*.tmp*"))
    read = read_stage_record(tmp_path, SERVED, Stage.SERVE)
    assert read is not None and read.cost == served
    cost = evaluation_cost(
        SERVED,
        Stage.JUDGE,
        CostInputs(PRICES, gpu_seconds_held=240.0),
        stats(0, 0),  # every answer from the cache
        {"gpt-4-0613": (1_000_000, 0)},
        served=True,
        serve_record=read,
    )
    assert (cost.model_prompt_tokens, cost.model_completion_tokens, cost.gpu_seconds_busy) == (
        5000,
        700,
        84.0,
    )
    assert cost.gpu_seconds_held == 240.0 and cost.gpu_cost == round(240 / 3600 * 2, 6)
    assert cost.judge_cost == 30.0
    # without the serve stage's record (a judge stage run by hand): busy unknown, not 0
    alone = evaluation_cost(SERVED, Stage.JUDGE, CostInputs(PRICES), stats(0, 0), {}, served=True)
    assert alone.gpu_seconds_busy is None and alone.gpu_seconds_held is None


def test_another_evaluations_record_is_never_read(tmp_path: Path) -> None:
    record = Summary(status="completed", model="org/model", stage="serve", cost=Cost(model_prompt_tokens=9))
    write_stage_record(tmp_path, SERVED, record)
    other = parse_spec({"model": {"name": "org/other", "source": "vllm"}})
    assert read_stage_record(tmp_path, other, Stage.SERVE) is None
    assert read_stage_record(tmp_path / "empty", SERVED, Stage.SERVE) is None
    (tmp_path / "stages" / "serve.json").write_text("{half", encoding="utf-8")
    assert read_stage_record(tmp_path, SERVED, Stage.SERVE) is None
    (tmp_path / "stages" / "serve.json").write_text(json.dumps({"evaluationId": 1}), encoding="utf-8")
    assert read_stage_record(tmp_path, SERVED, Stage.SERVE) is None


def test_the_terminal_summary_says_what_it_cost_and_names_what_is_unknown() -> None:
    from nejumi_eval.cli import _cost_line

    cost = Cost(
        gpu_seconds_held=240.0,
        gpu_seconds_busy=84.0,
        model_prompt_tokens=5000,
        model_completion_tokens=700,
        judge_prompt_tokens=1_000_000,
        judge_completion_tokens=0,
    ).priced(PRICES, {"gpt-4-0613": (1_000_000, 0)})
    assert _cost_line(cost) == (
        "cost: GPU-s held 240 (0.13 USD) · GPU-s busy 84.0 · model tokens 5,000 + 700 · "
        "judge tokens 1,000,000 + 0 = 30.0000 USD"
    )
    local = Cost(gpu_seconds_busy=12.0, judge_prompt_tokens=10).priced(None, {"gpt-4o": (10, 0)})
    assert _cost_line(local) == (
        "cost: GPU-s busy 12.0 · model tokens 0 + 0 · "
        "judge tokens 10 + 0 (no price for gpt-4o in $NEJUMI_PRICING)"
    )
