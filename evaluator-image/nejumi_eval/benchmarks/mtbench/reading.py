"""How MT-bench's results are read back (the `Reading` seam, `nejumi_eval.benchmarks.reading`).

The tables `benchmark` writes are named here, beside their reader. `mtbench_output_table` holds one
row per judgment (question × turn); a rating of −1 (or `valid` false) is an invalid judgment. The
bootstrap design follows protocol-mtbench.md §6: a category's mean is the mean of the valid ratings
of its questions over both turns, the score the mean of the 8 category means. The unit is the
question (its two turns share a conversation, so they are not independent), one stratum per
category; its `(sum, count)` are its valid ratings and how many there are.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES
from nejumi_eval.benchmarks.reading import (
    Answer,
    BenchmarkQuestions,
    Labels,
    OutputTables,
    QuestionRow,
    Tables,
    TurnAnswer,
    collect,
)

NAME = "mtbench"
OUTPUT_TABLE = "mtbench_output_table"
LEADERBOARD_TABLE = "mtbench_leaderboard_table"
RADAR_TABLE = "mtbench_radar_table"
QUESTION_TABLE = "mtbench_question_table"
ANSWERS_TABLE = "mtbench_answers"
COLUMNS = ("category", "question_id", "turn", "question", "answer", "judgment", "score", "valid")
"""The per-question columns the W&B report shows (Neo's report showed these)."""

_REFERENCE = re.compile(r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]", re.S)


def reference(judgments: list[dict[str, Any]]) -> str | None:
    """The reference answer the judge was shown (math, reasoning, coding: protocol-mtbench), read
    from the first turn's judge prompt: the table keeps the messages, not a separate field."""
    for row in judgments:
        if not row.get("reference_used"):
            continue
        messages = row.get("messages") or []
        if isinstance(messages, str):  # a W&B table cell holds it as JSON text
            try:
                messages = json.loads(messages)
            except ValueError:
                messages = [messages]
        if not isinstance(messages, list):
            messages = [messages]
        for message in messages:
            text = message.get("content") if isinstance(message, dict) else message
            if m := _REFERENCE.search(str(text or "")):
                return m.group(1).strip()
    return None


def _question(category: str, qid: str, judgments: list[dict[str, Any]]) -> QuestionRow:
    judgments = sorted(judgments, key=lambda r: int(r.get("turn", 1)))
    valid = [r for r in judgments if r.get("valid", r.get("score") != -1) and r.get("score") is not None]
    turns = [str(r.get("question") or "") for r in judgments]
    return QuestionRow(
        benchmark=NAME,
        stratum=category,
        id=qid,
        prompt=turns[0] if turns else "",
        gold=reference(judgments),
        turns=turns,
        answer=Answer(
            turns=[
                TurnAnswer(
                    turn=int(r.get("turn", i + 1)),
                    answer=r.get("answer"),
                    judgment=r.get("judgment"),
                    rating=r.get("score"),
                    valid=r in valid,
                    judge=r.get("judge_model_returned") or r.get("judge_model"),
                )
                for i, r in enumerate(judgments)
            ]
        ),
        unit=(float(sum(float(r["score"]) for r in valid)), len(valid)),
    )


class MtbenchReading:
    """MT-bench's tables, per-question reader, comparability identity and labels."""

    tables = OutputTables(
        questions=OUTPUT_TABLE,
        stratum_column="category",
        columns=COLUMNS,
        column_types={"question_id": "number", "turn": "number", "score": "number", "valid": "boolean"},
        leaderboard=LEADERBOARD_TABLE,
        radar=RADAR_TABLE,
    )
    labels = Labels(
        heading="MT-bench",
        stratum="category",
        unit="per question: the mean of its valid turn ratings (1-10)",
        scale="1–10",
        shown=(("judge", "MT-bench judge"),),
    )

    def strata(self) -> Sequence[str]:
        return list(CATEGORIES)

    def questions(self, tables: Tables) -> BenchmarkQuestions | None:
        rows = tables(OUTPUT_TABLE)
        if not rows:
            return None
        by_question: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_question[(str(row["category"]), str(row["question_id"]))].append(row)
        return collect(
            NAME,
            {c: (c,) for c in CATEGORIES},
            (_question(category, qid, judgments) for (category, qid), judgments in by_question.items()),
        )

    def identity(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Protocol, variant, the sha256 of questions, references and judge prompts, and the judge
        model requested with its temperature (a different judge rates differently)."""
        files = record.get("files") or {}
        judge = record.get("judge") or {}
        return {
            "protocol": record.get("protocol"),
            "variant": record.get("variant"),
            **{
                f"{part}_sha256": (files.get(part) or {}).get("sha256")
                for part in ("questions", "references", "judge_prompts")
            },
            "judge": judge.get("requested"),
            "judge_temperature": judge.get("temperature"),
        }

    def details(self, record: Mapping[str, Any]) -> dict[str, Any]:
        judge = record.get("judge") or {}
        return {
            "mtbench_variant": record.get("variant"),
            "judge": judge.get("requested"),
            "judge_returned": judge.get("returned"),
            "mtbench_chat_template": record.get("chat_template"),
        }


READING = MtbenchReading()
