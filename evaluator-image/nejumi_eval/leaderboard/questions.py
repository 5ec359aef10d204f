"""Per-question data of one evaluation: the bootstrap's units and the HTML drill-down's rows.

Each benchmark reads its own tables back (`Benchmark.reading`, the seam in
`nejumi_eval.benchmarks.reading`): its `Design` (how its protocol averages questions, see
`bootstrap`) and its `QuestionRow`s (what a person reads: prompt, gold, the model's output and
metric values, judgments per turn). This module only loops over the benchmarks an evaluation
recorded and asks the registry for each one's reader.

`tables` is a function from a table name to its rows (None when absent), so the same readers serve
a results folder and W&B tables (same names). A benchmark without a reader, or one this process
does not know, is ranked by its recorded score with no interval and no drill-down.
"""

from __future__ import annotations

from collections.abc import Iterable

from nejumi_eval.benchmarks import registry
from nejumi_eval.benchmarks.reading import BenchmarkQuestions, QuestionRow, Tables

__all__ = ["BenchmarkQuestions", "QuestionRow", "Tables", "read_questions"]


def read_questions(benchmarks: Iterable[str], tables: Tables) -> dict[str, BenchmarkQuestions]:
    """Every benchmark of `benchmarks` that has a reader and per-question tables."""
    found: dict[str, BenchmarkQuestions] = {}
    for name in benchmarks:
        reading = registry.reading(name)
        data = reading.questions(tables) if reading is not None else None
        if data is not None:
            found[name] = data
    return found
