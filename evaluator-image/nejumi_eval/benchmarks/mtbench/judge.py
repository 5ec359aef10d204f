"""The judge request and the rating parse (protocol-mtbench.md §5), as pure functions.

`judge_messages` must produce, byte for byte, what FastChat's `llm_judge` sends with the Nejumi v1
judge prompts, or the scores are not Neo's. `parse_rating` is deliberately stricter and sturdier
than FastChat's (§5.3, §8): it never crashes a run and never takes an out-of-range number.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

from nejumi_eval.benchmarks.mtbench.data import JudgePrompt, Question, default_mirror, load_judge_prompts
from nejumi_eval.benchmarks.mtbench.protocol import judge_prompt_name, uses_reference

_DOUBLE_BRACKET = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_SINGLE_BRACKET = re.compile(r"\[(\d+\.?\d*)\]")


@cache
def _judge_prompts(prompt_set: str, folder: Path) -> dict[str, JudgePrompt]:
    return load_judge_prompts(prompt_set, folder)


def _fill(template: str, fields: dict[str, str]) -> str:
    """Replace each `{field}` in one pass: substituted text is never re-scanned, so braces or
    backslashes in answers stay literal, and nothing is trimmed or escaped (§5.2)."""
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in fields))
    return pattern.sub(lambda match: fields[match.group(0)[1:-1]], template)


def judge_messages(
    question: dict,
    answers: list[str],
    turn: int,
    reference: list[str] | None = None,
    prompt_set: str = "neo",
) -> list[dict]:
    """The exact chat messages sent to the judge for one turn of one question.

    `question` is a record of the question file, `answers` the model's two turns, `reference` the
    two reference turns; the reference is read only for math, reasoning and coding, and required
    there. `prompt_set` names the judge-prompt set (`neo` → nejumi_judge_prompt_v1).
    """
    parsed = Question.model_validate(question)
    if len(answers) != 2:
        raise ValueError(f"answers must hold the model's two turns, got {len(answers)}")
    name = judge_prompt_name(parsed.category, turn)
    prompt = _judge_prompts(prompt_set, default_mirror())[name]
    q1, q2 = parsed.turns
    a1, a2 = answers
    if turn == 1:
        fields = {"question": q1, "answer": a1}
    else:
        fields = {"question_1": q1, "answer_1": a1, "question_2": q2, "answer_2": a2}
    if uses_reference(parsed.category):
        if reference is None or len(reference) != 2:
            raise ValueError(
                f"question {parsed.question_id} ({parsed.category}) is judged against a reference: "
                "pass its two reference turns"
            )
        fields["ref_answer_1"] = reference[0]
        if turn == 2:
            fields["ref_answer_2"] = reference[1]
    return [
        {"role": "system", "content": prompt.system_prompt},
        {"role": "user", "content": _fill(prompt.prompt_template, fields)},
    ]


def parse_rating(judgment: str) -> float | None:
    """The 1–10 rating in a judgment, or None when it has none (§5.3). Never raises.

    The first `[[n]]` wins; a single-bracket `[n]` counts only if there is no double-bracket
    number anywhere. An out-of-range first match is no rating; no later match is tried.
    """
    text = unicodedata.normalize("NFKC", judgment)
    match = _DOUBLE_BRACKET.search(text) or _SINGLE_BRACKET.search(text)
    if match is None:
        return None
    # `\d` matched Unicode decimal digits (e.g. Arabic-Indic); read each as its digit value.
    number = "".join(char if char == "." else str(unicodedata.decimal(char)) for char in match.group(1))
    # float() has no digit-count limit (int() does), and is exact for the integers 1..10.
    value = float(number)
    if not 1 <= value <= 10:
        return None
    return value if "." in number else int(value)
