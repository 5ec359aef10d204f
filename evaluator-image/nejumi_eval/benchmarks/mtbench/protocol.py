"""The MT-bench-jp `neo` protocol table (protocol-mtbench.md), typed.

The facts themselves live in `protocol.json` beside this module: one source of truth for the
variants' files, the category id ranges and temperatures, the generation and judge parameters and
the judge-prompt choice, so a change of protocol is a reviewed data change, not a code edit.
"""

from __future__ import annotations

from importlib.resources import files

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    # extra="forbid": a misspelt key in protocol.json must fail at import, not silently default.
    model_config = ConfigDict(frozen=True, extra="forbid")


class CategoryRule(_Frozen):
    """One category: its question ids (§3), its sampling temperature (§4), whether it is judged
    against a reference answer (§5.1)."""

    first_id: int
    last_id: int
    temperature: float = Field(ge=0)
    reference: bool

    @property
    def question_ids(self) -> range:
        return range(self.first_id, self.last_id + 1)


class VariantFiles(_Frozen):
    """Mirror-relative paths of a variant's question and reference files, and the name of its
    judge-prompt set (both variants share one, §2)."""

    questions: str
    references: str
    judge_prompts: str


class GenerationDefaults(_Frozen):
    max_new_tokens: int = Field(gt=0)
    top_p: float
    seed: int


class JudgeParams(_Frozen):
    """Judge request parameters (§5.2). `model` is only the default: the run may name another
    judge, via `JUDGE_DEFAULTS.model_copy(update={"model": ...})`, and records both names."""

    model: str
    temperature: float
    max_tokens: int
    n: int
    max_calls: int = Field(description="Calls per judgment at most: the first plus 2 re-calls (§5.4).")


class JudgePromptNames(_Frozen):
    """Judge prompt names for (turn 1, turn 2), without and with a reference answer (§5.1)."""

    plain: tuple[str, str]
    reference: tuple[str, str]


class Protocol(_Frozen):
    protocol: str
    doc: str
    variants: dict[str, VariantFiles]
    judge_prompt_sets: dict[str, str]
    categories: dict[str, CategoryRule]
    generation: GenerationDefaults
    judge: JudgeParams
    judge_prompts: JudgePromptNames
    degraded_above_invalid_ratio: float


PROTOCOL = Protocol.model_validate_json(
    files("nejumi_eval.benchmarks.mtbench").joinpath("protocol.json").read_text(encoding="utf-8")
)
# Alphabetical, the order of `category_means` in the results (§7).
CATEGORIES: tuple[str, ...] = tuple(sorted(PROTOCOL.categories))
JUDGE_DEFAULTS: JudgeParams = PROTOCOL.judge


def category_rule(category: str) -> CategoryRule:
    """The rule of a category; an unknown category is an error, never a default."""
    try:
        return PROTOCOL.categories[category]
    except KeyError:
        raise ValueError(f"unknown MT-bench category {category!r}; expected one of {CATEGORIES}") from None


def uses_reference(category: str) -> bool:
    """Whether the judge sees a reference answer: math, reasoning and coding only (§3)."""
    return category_rule(category).reference


def judge_prompt_name(category: str, turn: int) -> str:
    """The judge prompt for a category and turn (§5.1)."""
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, got {turn!r}")
    names = PROTOCOL.judge_prompts.reference if uses_reference(category) else PROTOCOL.judge_prompts.plain
    return names[turn - 1]
