"""Answer generation by the model under test (protocol-mtbench.md §4), as pure functions.

The same message lists and sampling go to every kind of model (local through its chat template,
or a chat API), so scores of local and API models stay comparable; Neo did not do this (§8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from nejumi_eval.benchmarks.mtbench.data import Question
from nejumi_eval.benchmarks.mtbench.protocol import PROTOCOL, category_rule


class GenerationParams(BaseModel):
    """Sampling for one question, the same for both turns. Temperature 0 is greedy decoding, where
    a seed means nothing, so `seed` is set only when sampling. No top-k, no repetition penalty and
    no stop strings: the backend's defaults for those must be off."""

    model_config = ConfigDict(frozen=True)

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int | None


def generation_params(category: str) -> GenerationParams:
    """The §4 sampling table for a category."""
    temperature = category_rule(category).temperature
    return GenerationParams(
        temperature=temperature,
        top_p=PROTOCOL.generation.top_p,
        max_new_tokens=PROTOCOL.generation.max_new_tokens,
        seed=PROTOCOL.generation.seed if temperature > 0 else None,
    )


def turn1_messages(question: Mapping[str, Any] | Question) -> list[dict[str, str]]:
    """`[user: q1]`. No system message: a chat template's own default system text stays."""
    q1, _ = Question.model_validate(question).turns
    return [{"role": "user", "content": q1}]


def turn2_messages(question: Mapping[str, Any] | Question, answer_1: str) -> list[dict[str, str]]:
    """`[user: q1, assistant: a1, user: q2]`, where a1 is the model's own post-processed turn-1
    answer (`""` if that turn failed), never a reference."""
    q1, q2 = Question.model_validate(question).turns
    return [
        {"role": "user", "content": q1},
        {"role": "assistant", "content": answer_1},
        {"role": "user", "content": q2},
    ]


def postprocess_answer(text: str, special_tokens: Iterable[str] = ()) -> str:
    """Remove the tokenizer's special tokens (if the backend left them in the text), then strip
    leading and trailing whitespace. Nothing else: a cut-off or empty answer is judged as it is."""
    tokens = sorted({token for token in special_tokens if token}, key=len, reverse=True)
    if tokens:
        # One pass, longest first, so a token containing another is removed whole.
        text = re.sub("|".join(map(re.escape, tokens)), "", text)
    return text.strip()
