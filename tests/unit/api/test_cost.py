"""The price table and what an evaluation cost (`api.v1alpha1.cost`): parsing, the arithmetic, and
unknown figures staying unknown (null), never a made-up 0."""

from __future__ import annotations

import json

import pytest

from nejumi_eval.api.v1alpha1.cost import Cost, Pricing, PricingError, TokenPrice, parse_pricing
from nejumi_eval.api.v1alpha1.summary import SUMMARY_MAX_BYTES, BenchmarkSummary, Summary

TABLE = {
    "currency": "USD",
    "models": {
        "gpt-4-0613": {"promptPerMillionTokens": 30, "completionPerMillionTokens": 60},
        "gpt-4o": {"promptPerMillionTokens": 2.5, "completionPerMillionTokens": 10},
    },
    "gpuHour": 2.5,
}


def test_a_price_table_parses_from_the_charts_json() -> None:
    pricing = parse_pricing(json.dumps(TABLE), "NEJUMI_PRICING")
    assert pricing is not None and pricing.currency == "USD" and pricing.gpu_hour == 2.5
    assert pricing.models["gpt-4-0613"] == TokenPrice(
        prompt_per_million_tokens=30, completion_per_million_tokens=60
    )
    # what the operator passes on is what it read
    assert parse_pricing(pricing.model_dump_json(by_alias=True), "again") == pricing
    assert parse_pricing(None, "x") is None and parse_pricing("  ", "x") is None
    assert parse_pricing("null", "x") is None
    assert parse_pricing("{}", "x") == Pricing()  # USD, nothing priced


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "NEJUMI_PRICING: not valid JSON"),
        ("[1]", "NEJUMI_PRICING: expected a JSON object"),
        ('{"gpuHour": -1}', "NEJUMI_PRICING: gpuHour: Input should be greater than or equal to 0"),
        (
            '{"models": {"m": {"promptPerMillionTokens": 1}}}',
            "models.m.completionPerMillionTokens: Field required",
        ),
        (
            '{"models": {"m": {"prompt": 1, "promptPerMillionTokens": 1, "completionPerMillionTokens": 1}}}',
            "models.m.prompt: Extra inputs are not permitted",
        ),
        ('{"gpuHours": 2}', "gpuHours: Extra inputs are not permitted"),  # a typo is refused, not ignored
        ('{"currency": ""}', "currency: String should have at least 1 character"),
    ],
)
def test_a_bad_price_table_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(PricingError, match="NEJUMI_PRICING: ") as refused:
        parse_pricing(text, "NEJUMI_PRICING")
    assert message in str(refused.value)


def test_the_judge_cost_prices_prompt_and_completion_tokens_apart() -> None:
    pricing = Pricing.model_validate(TABLE)
    cost, unpriced = pricing.token_cost({"gpt-4-0613": (1_000_000, 100_000)})
    assert (cost, unpriced) == (30 + 6, [])
    # two judges (one per benchmark): their costs add up
    cost, _ = pricing.token_cost({"gpt-4-0613": (200_000, 10_000), "gpt-4o": (400_000, 40_000)})
    assert cost == pytest.approx(6 + 0.6 + 1 + 0.4)


def test_a_judge_without_a_price_leaves_the_cost_unknown_never_zero() -> None:
    pricing = Pricing.model_validate(TABLE)
    cost, unpriced = pricing.token_cost({"gpt-4-0613": (1000, 10), "claude-x": (5000, 50)})
    assert cost is None and unpriced == ["claude-x"]  # never the priced part alone
    # nothing sent (every judgment from the cache, the synthetic judge): nothing spent, at any price
    assert pricing.token_cost({"claude-x": (0, 0)}) == (0.0, [])
    assert Pricing().token_cost({}) == (0.0, [])


def test_the_gpu_cost_needs_a_gpu_hour_price_and_known_seconds() -> None:
    assert Pricing(gpu_hour=2.5).gpu_cost(7200) == 5.0
    assert Pricing(gpu_hour=2.5).gpu_cost(None) is None
    assert Pricing().gpu_cost(7200) is None  # no price: unknown
    assert Pricing().gpu_cost(0) == 0.0  # no GPU held (an API model): free at any price


def test_a_cost_is_priced_from_its_tokens_and_held_seconds() -> None:
    pricing = Pricing.model_validate(TABLE)
    base = Cost(
        gpu_seconds_held=3600,
        gpu_seconds_busy=1800,
        model_prompt_tokens=100,
        judge_prompt_tokens=1_000_000,
        judge_completion_tokens=100_000,
    )
    priced = base.priced(pricing, {"gpt-4-0613": (1_000_000, 100_000)})
    assert (priced.currency, priced.judge_cost, priced.gpu_cost, priced.unpriced) == ("USD", 36.0, 2.5, [])
    assert priced.gpu_hours_held == 1.0 and priced.display() == "1.00 GPU-h · judge 36.00 USD"
    bare = base.priced(None, {"gpt-4-0613": (1_000_000, 100_000)})
    assert (bare.currency, bare.judge_cost, bare.gpu_cost, bare.unpriced) == (
        None,
        None,
        None,
        ["gpt-4-0613"],
    )
    assert bare.display() == "1.00 GPU-h"  # what is known, nothing else
    assert Cost().priced(None, {}).judge_cost == 0.0  # no judge asked: nothing spent


def test_the_operator_adds_the_gpu_seconds_it_saw_held() -> None:
    pricing = Pricing.model_validate(TABLE)
    one_job = Cost(gpu_seconds_busy=100.0).priced(pricing, {})  # the evaluator cannot see its Job end
    assert one_job.gpu_seconds_held is None and one_job.gpu_cost is None
    held = one_job.with_held(1440.0, pricing)
    assert held.gpu_seconds_held == 1440.0 and held.gpu_cost == 1.0 and held.currency == "USD"
    assert one_job.with_held(None, pricing) == one_job
    # the operator without a table: the seconds, no price (unless none were held)
    assert one_job.with_held(1440.0, None).gpu_cost is None
    assert Cost().with_held(0.0, None).gpu_cost == 0.0
    # a cost priced in another currency is not repriced in this one
    yen = Cost(gpu_seconds_held=1440.0, currency="JPY", gpu_cost=400.0)
    assert yen.with_held(1440.0, pricing).gpu_cost == 400.0


def test_wandb_scalars_leave_unknowns_out_rather_than_zero() -> None:
    scalars = Cost(gpu_seconds_busy=12.5, judge_prompt_tokens=7).scalars()
    assert scalars["cost/gpu_seconds_busy"] == 12.5 and scalars["cost/judge_prompt_tokens"] == 7
    assert scalars["cost/gpu_seconds_held"] is None and scalars["cost/gpu_hours_held"] is None
    assert scalars["cost/judge_cost"] is None and scalars["cost/gpu_cost"] is None
    assert Cost(gpu_seconds_held=5400).scalars()["cost/gpu_hours_held"] == 1.5


def test_the_summary_carries_the_cost_and_keeps_it_when_shortened() -> None:
    cost = Cost(gpu_seconds_held=60.0, judge_cost=0.5, currency="USD", judge_prompt_tokens=10)
    summary = Summary(status="completed", model="m", overall=0.5, cost=cost)
    back = Summary.model_validate_json(summary.to_json())
    assert back.cost == cost
    assert json.loads(summary.to_json())["cost"]["judgeCost"] == 0.5  # camelCase, like the rest
    # a newer evaluator's extra cost field does not stop an older reader
    data = json.loads(summary.to_json())
    data["cost"]["carbonGrams"] = 12
    assert Summary.model_validate(data).cost == cost
    # a long summary drops per-dataset scores and the error before the cost
    long = Summary(
        status="completed",
        model="m",
        overall=0.5,
        cost=cost,
        error="x" * 3000,
        benchmarks={
            "jaster": BenchmarkSummary(avg=0.5, scores={f"d{i}_exact_match": 0.5 for i in range(60)})
        },
    )
    text = long.to_json()
    assert len(text.encode()) <= SUMMARY_MAX_BYTES and json.loads(text)["cost"]["judgeCost"] == 0.5
