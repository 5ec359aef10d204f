"""What an evaluation cost: GPU-seconds held and busy, the model's and the judges' tokens, and the
judges' and GPUs' cost from the operator's price table (the chart's `pricing`).

- `Pricing` is the price table: configuration, never a secret. The operator reads it from its
  environment (`NEJUMI_OPERATOR_PRICING`) and hands it to the evaluator Jobs that report
  (`contract.PRICING_ENV`); a local `nejumi-eval run` reads the same variable.
- `Cost` is what the summary (`Summary.cost`), `run.json`, W&B, the status (`status.cost`) and the
  leaderboard carry. A figure that cannot be known is null, never a made-up 0: a judge model with
  tokens but no price, GPU time without a GPU-hour price, GPU-seconds held by a pod the evaluator
  cannot see the end of. A figure that is known to be zero is 0 (no tokens sent cost nothing at any
  price; an API model holds no GPU).

Held vs busy: *held* is what the scheduler, Kueue's quota and the bill count — the wall time of the
Job(s) whose pods asked for GPUs × their GPUs, known to the operator only (it passes the serve
stage's to the judge stage: `contract.GPU_SECONDS_HELD_ENV`); *busy* is the serving span (first
model request sent → last answer) × the GPUs: what the model server was asked to do. Tokens are
those of requests sent by this evaluation's pods (answers from the response cache cost nothing).

Light on purpose (pydantic only), like the summary: the operator parses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

MILLION = 1_000_000
SECONDS_PER_HOUR = 3600.0
COST_DIGITS = 6
"""Costs are rounded to a millionth of the currency unit (a single judgment costs fractions of a cent)."""
WANDB_PREFIX = "cost/"
"""The W&B summary scalars of a cost: `cost/judge_cost`, `cost/gpu_hours_held`, … (`Cost.scalars`)."""


class PricingError(ValueError):
    """A price table that cannot be used (the message names the field)."""


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Table(_Camel):
    """Configuration: an unknown key is a typo, refused (not a newer evaluator's field to skip)."""

    model_config = ConfigDict(extra="forbid")


class TokenPrice(_Table):
    """One model's price, per million tokens, in the table's currency."""

    prompt_per_million_tokens: float = Field(ge=0, description="Price of one million prompt (input) tokens.")
    completion_per_million_tokens: float = Field(
        ge=0, description="Price of one million completion (output) tokens."
    )

    def of(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.prompt_per_million_tokens
            + completion_tokens * self.completion_per_million_tokens
        ) / MILLION


class Pricing(_Table):
    """The price table (the chart's `pricing` values, as JSON in `NEJUMI_OPERATOR_PRICING`)."""

    currency: str = Field(
        "USD", min_length=1, max_length=8, description="The currency of every price (a label: USD, JPY, …)."
    )
    models: dict[str, TokenPrice] = Field(
        default_factory=dict,
        description="Judge model name (as the spec names it, e.g. gpt-4-0613) → its token prices.",
    )
    gpu_hour: float | None = Field(
        None, ge=0, description="Price of one GPU (nvidia.com/gpu) for one hour; null: GPU cost unknown."
    )

    def token_cost(self, tokens: Mapping[str, tuple[int, int]]) -> tuple[float | None, list[str]]:
        """The cost of `tokens` (model name → (prompt, completion)), and the models with tokens but
        no price. The cost is None when there is any such model: never a partial sum."""
        total = 0.0
        unpriced: list[str] = []
        for model, (prompt, completion) in tokens.items():
            if not prompt and not completion:
                continue  # nothing sent: nothing spent, whatever the price
            price = self.models.get(model)
            if price is None:
                unpriced.append(model)
                continue
            total += price.of(prompt, completion)
        return (None if unpriced else round(total, COST_DIGITS)), sorted(unpriced)

    def gpu_cost(self, gpu_seconds: float | None) -> float | None:
        """The cost of `gpu_seconds` (None: unknown seconds, or no GPU-hour price for some)."""
        if gpu_seconds is None:
            return None
        if gpu_seconds == 0:
            return 0.0
        if self.gpu_hour is None:
            return None
        return round(gpu_seconds / SECONDS_PER_HOUR * self.gpu_hour, COST_DIGITS)


def parse_pricing(text: str | None, source: str) -> Pricing | None:
    """The price table as JSON (`source` names where it came from in errors); None when empty."""
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PricingError(f"{source}: not valid JSON: {exc}") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise PricingError(f"{source}: expected a JSON object (currency, models, gpuHour)")
    try:
        return Pricing.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'pricing'}: {err['msg']}" for err in exc.errors()
        )
        raise PricingError(f"{source}: {problems}") from None


class Cost(_Camel):
    """What one evaluation spent (see the module docstring for where each figure comes from)."""

    gpu_seconds_held: float | None = Field(
        None,
        ge=0,
        description="Wall time of the Job(s) whose pods held GPUs × their GPUs (the operator's; null "
        "where unknown, e.g. a local run). An API model holds none: 0.",
    )
    gpu_seconds_busy: float | None = Field(
        None,
        ge=0,
        description="The serving span (first model request sent → last answer) × the GPUs (0: nothing "
        "was sent, an API model); null where unknown (a judge stage without the serve stage's record).",
    )
    model_prompt_tokens: int = Field(0, ge=0, description="The model's prompt tokens (requests sent).")
    model_completion_tokens: int = Field(0, ge=0, description="The model's completion tokens.")
    judge_prompt_tokens: int = Field(0, ge=0, description="The judges' prompt tokens (requests sent).")
    judge_completion_tokens: int = Field(0, ge=0, description="The judges' completion tokens.")
    currency: str | None = Field(None, description="The price table's currency; null without a price table.")
    judge_cost: float | None = Field(
        None,
        ge=0,
        description="The judges' tokens at the price table's prices; null when a judge model with tokens is "
        "not in the table (or there is no table).",
    )
    gpu_cost: float | None = Field(
        None, ge=0, description="gpuSecondsHeld at the table's gpuHour price; null without either."
    )
    unpriced: list[str] = Field(
        default_factory=list, description="Judge models with tokens but no price in the table."
    )

    @property
    def gpu_hours_held(self) -> float | None:
        return None if self.gpu_seconds_held is None else self.gpu_seconds_held / SECONDS_PER_HOUR

    def priced(self, pricing: Pricing | None, judge_tokens: Mapping[str, tuple[int, int]]) -> Cost:
        """This cost with its prices from `pricing` (judge tokens by model: (prompt, completion));
        without a table only what is known to be free is priced (0)."""
        table = pricing or Pricing()
        judge_cost, unpriced = table.token_cost(judge_tokens)
        return self.model_copy(
            update={
                "currency": pricing.currency if pricing is not None else None,
                "judge_cost": judge_cost,
                "gpu_cost": table.gpu_cost(self.gpu_seconds_held),
                "unpriced": unpriced,
            }
        )

    def with_held(self, gpu_seconds_held: float | None, pricing: Pricing | None) -> Cost:
        """This cost with the GPU-seconds held as the operator observed them (the Jobs' wall time ×
        GPUs) and their cost at the operator's `pricing` (the table the evaluator was given; a cost
        priced in another currency keeps its own GPU cost only if it was for the same seconds)."""
        if gpu_seconds_held is None:
            return self
        held = round(gpu_seconds_held, 3)
        update: dict[str, object] = {"gpu_seconds_held": held}
        if pricing is not None and self.currency in (None, pricing.currency):
            update["currency"] = pricing.currency
            update["gpu_cost"] = pricing.gpu_cost(held)
        elif self.gpu_seconds_held != held:
            update["gpu_cost"] = Pricing().gpu_cost(held)  # 0 for none held, else unknown
        return self.model_copy(update=update)

    def scalars(self) -> dict[str, float | int | str | None]:
        """W&B summary scalars (`cost/…`; the W&B report's cost scatter reads `cost/gpu_hours_held`
        and `cost/judge_cost`). None stays None: the run logs no scalar rather than a 0."""
        hours = self.gpu_hours_held
        return {
            f"{WANDB_PREFIX}gpu_seconds_held": self.gpu_seconds_held,
            f"{WANDB_PREFIX}gpu_hours_held": None if hours is None else round(hours, 6),
            f"{WANDB_PREFIX}gpu_seconds_busy": self.gpu_seconds_busy,
            f"{WANDB_PREFIX}model_prompt_tokens": self.model_prompt_tokens,
            f"{WANDB_PREFIX}model_completion_tokens": self.model_completion_tokens,
            f"{WANDB_PREFIX}judge_prompt_tokens": self.judge_prompt_tokens,
            f"{WANDB_PREFIX}judge_completion_tokens": self.judge_completion_tokens,
            f"{WANDB_PREFIX}judge_cost": self.judge_cost,
            f"{WANDB_PREFIX}gpu_cost": self.gpu_cost,
            f"{WANDB_PREFIX}currency": self.currency,
        }

    def display(self) -> str | None:
        """One line for `kubectl get -o wide`: `0.42 GPU-h · judge 1.23 USD` (unknown parts left out)."""
        parts = []
        if self.gpu_hours_held is not None and self.gpu_seconds_held:
            parts.append(f"{self.gpu_hours_held:.2f} GPU-h")
        if self.judge_cost is not None and self.currency:
            parts.append(f"judge {self.judge_cost:.2f} {self.currency}")
        return " · ".join(parts) or None
