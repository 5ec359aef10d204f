"""MT-bench's gold in the drill-down: the reference answer its judge was shown (math, reasoning,
coding), read back from the judge prompt recorded in the output table."""

from __future__ import annotations

import json
from typing import Any

from nejumi_eval.benchmarks.mtbench.judge import judge_messages
from nejumi_eval.leaderboard.questions import read_questions


def row(category: str, turn: int, messages: list[dict[str, Any]], reference_used: bool) -> dict[str, Any]:
    return {
        "question_id": 7 if category == "math" else 8,
        "category": category,
        "turn": turn,
        "question": "q",
        "answer": "a",
        "messages": messages,
        "judgment": "Rating: [[5]]",
        "score": 5,
        "valid": True,
        "reference_used": reference_used,
    }


def test_the_reference_answer_is_the_gold_of_reference_categories() -> None:
    question = {"question_id": 7, "category": "math", "turns": ["2+2は?", "では3+3は?"]}
    with_ref = judge_messages(question, ["4です", "6です"], 1, ["答えは4", "答えは6"])
    without = judge_messages({**question, "question_id": 8, "category": "writing"}, ["x", "y"], 1, None)
    rows = [row("math", 1, with_ref, True), row("writing", 1, without, False)]
    tables = lambda name: rows if name == "mtbench_output_table" else []  # noqa: E731
    got = {r.stratum: r.gold for r in read_questions(["mtbench"], tables)["mtbench"].rows}
    assert got == {"math": "答えは4", "writing": None}
    # as a W&B table stores it: the messages as one JSON text
    rows[0]["messages"] = json.dumps(with_ref, ensure_ascii=False)
    assert read_questions(["mtbench"], tables)["mtbench"].rows[0].gold == "答えは4"
