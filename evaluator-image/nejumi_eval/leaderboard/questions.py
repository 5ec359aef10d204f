"""Per-question data of one evaluation: the bootstrap's units and the HTML drill-down's rows.

A reader per benchmark turns that benchmark's per-question tables into a `Design` (how its
protocol averages questions, see `bootstrap`) and `QuestionRow`s (what a person reads: prompt,
gold, the model's output and metric values, MT-bench judgments per turn). The category structure
comes from each benchmark's protocol data (jaster's tasks.json, MT-bench's protocol.json), never
from the run, so a partial run cannot redefine what a complete score is.

Readers take `tables`, a function from a table name to its rows (None when absent), so the same
reader serves a results folder today and W&B tables (same names) later. A benchmark without a
reader (a plugin) is ranked by its recorded score with no interval and no drill-down.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nejumi_eval.leaderboard.bootstrap import Design

Tables = Callable[[str], list[dict[str, Any]] | None]
"""Table name (as in the results folder and W&B) → rows, or None when the run has no such table."""


@dataclass
class QuestionRow:
    """One question as the drill-down shows it, with this evaluation's answer."""

    benchmark: str
    stratum: str  # jaster dataset, MT-bench category
    id: str
    prompt: str
    gold: str | None = None
    turns: list[str] = field(default_factory=list)  # MT-bench: the question of each turn
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.stratum}/{self.id}"


@dataclass
class BenchmarkQuestions:
    design: Design
    rows: list[QuestionRow]


def _jaster(tables: Tables) -> BenchmarkQuestions | None:
    """jaster_output_table: one row per scored test sample; `score` is the dataset's metric."""
    from nejumi_eval.benchmarks.jaster.tasks import task_table

    rows = tables("jaster_output_table")
    if not rows:
        return None
    units: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
    out: list[QuestionRow] = []
    for row in rows:
        if row.get("split", "test") != "test" or row.get("score") is None:
            continue
        dataset = str(row["target_dataset"])
        uid = str(row.get("id") or f"{dataset}-{row.get('index')}")
        units[dataset][uid] = (float(row["score"]), 1)
        metrics = {k: row.get(k) for k in ("metric", "score", "exact", "char_f1", "set_f1") if k in row}
        out.append(
            QuestionRow(
                benchmark="jaster",
                stratum=dataset,
                id=uid,
                prompt=str(row.get("prompt") or row.get("input") or ""),
                gold=row.get("true", row.get("gold")),
                answer={
                    "output": row.get("raw_output"),
                    "pred": row.get("pred"),
                    "metrics": metrics,
                    "error": row.get("error"),
                },
            )
        )
    categories = {c: tuple(members) for c, members in task_table().categories.items()}
    return BenchmarkQuestions(Design("jaster", categories, dict(units)), out)


def _mtbench(tables: Tables) -> BenchmarkQuestions | None:
    """mtbench_output_table: one row per judgment (question × turn); score −1 means invalid."""
    from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES

    rows = tables("mtbench_output_table")
    if not rows:
        return None
    by_question: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_question[(str(row["category"]), str(row["question_id"]))].append(row)
    units: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
    out: list[QuestionRow] = []
    for (category, qid), judgments in by_question.items():
        judgments.sort(key=lambda r: int(r.get("turn", 1)))
        valid = [r for r in judgments if r.get("valid", r.get("score") != -1) and r.get("score") is not None]
        units[category][qid] = (float(sum(float(r["score"]) for r in valid)), len(valid))
        turns = [str(r.get("question") or "") for r in judgments]
        out.append(
            QuestionRow(
                benchmark="mtbench",
                stratum=category,
                id=qid,
                prompt=turns[0] if turns else "",
                gold=_reference(judgments),
                turns=turns,
                answer={
                    "turns": [
                        {
                            "turn": int(r.get("turn", i + 1)),
                            "answer": r.get("answer"),
                            "judgment": r.get("judgment"),
                            "rating": r.get("score"),
                            "valid": r in valid,
                            "judge": r.get("judge_model_returned") or r.get("judge_model"),
                        }
                        for i, r in enumerate(judgments)
                    ]
                },
            )
        )
    categories = {c: (c,) for c in CATEGORIES}
    return BenchmarkQuestions(Design("mtbench", categories, dict(units)), out)


_REFERENCE = re.compile(r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]", re.S)


def _reference(judgments: list[dict[str, Any]]) -> str | None:
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


READERS: dict[str, Callable[[Tables], BenchmarkQuestions | None]] = {"jaster": _jaster, "mtbench": _mtbench}
"""Benchmark name → reader. A plugin benchmark may add its own here."""


def read_questions(benchmarks: list[str], tables: Tables) -> dict[str, BenchmarkQuestions]:
    """Every benchmark of `benchmarks` that has a reader and per-question tables."""
    found: dict[str, BenchmarkQuestions] = {}
    for name in benchmarks:
        reader = READERS.get(name)
        data = reader(tables) if reader is not None else None
        if data is not None:
            found[name] = data
    return found
