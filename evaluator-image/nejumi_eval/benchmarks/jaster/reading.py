"""How jaster's results are read back (the `Reading` seam, `nejumi_eval.benchmarks.reading`).

The tables `benchmark` writes are named here, beside their reader. `jaster_output_table` holds one
row per scored test sample; its `score` is the dataset's metric value (exact match, char F1, …).
The bootstrap design follows protocol-jaster.md §8: a dataset's score is the mean over its
samples, a category the unweighted mean of its member datasets, AVG the unweighted mean of the 7
categories; the strata are the datasets, their categories the task table's (protocol data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.benchmarks.reading import (
    Answer,
    BenchmarkQuestions,
    Labels,
    OutputTables,
    QuestionRow,
    Tables,
    collect,
    digest,
)

NAME = "jaster"
OUTPUT_TABLE = "jaster_output_table"
OUTPUT_TABLE_DEV = "jaster_output_table_dev"
LEADERBOARD_TABLE = "jaster_leaderboard_table"
RADAR_TABLE = "jaster_radar_table"
COLUMNS = ("target_dataset", "id", "input", "raw_output", "pred", "true", "metric", "score")
"""The per-question columns the W&B report shows (Neo's report showed these)."""
_METRICS = ("metric", "score", "exact", "char_f1", "set_f1")


def _row(row: dict[str, Any]) -> QuestionRow:
    dataset = str(row["target_dataset"])
    return QuestionRow(
        benchmark=NAME,
        stratum=dataset,
        id=str(row.get("id") or f"{dataset}-{row.get('index')}"),
        prompt=str(row.get("prompt") or row.get("input") or ""),
        gold=row.get("true", row.get("gold")),
        answer=Answer(
            output=row.get("raw_output"),
            pred=row.get("pred"),
            metrics={k: row.get(k) for k in _METRICS if k in row},
            error=row.get("error"),
        ),
        unit=(float(row["score"]), 1),
    )


class JasterReading:
    """jaster's tables, per-question reader, comparability identity and labels."""

    tables = OutputTables(
        questions=OUTPUT_TABLE,
        stratum_column="target_dataset",
        columns=COLUMNS,
        column_types={"score": "number"},
        leaderboard=LEADERBOARD_TABLE,
        radar=RADAR_TABLE,
    )
    labels = Labels(
        heading="jaster",
        stratum="dataset",
        unit="per test sample: its dataset's metric value (0-1)",
        scale="0–1",
        shown=(("jaster_template", "jaster template"),),
    )

    def strata(self) -> Sequence[str]:
        return list(task_table().tasks)

    def questions(self, tables: Tables) -> BenchmarkQuestions | None:
        """The scored test samples (dev rows and unscored ones are not questions of the score)."""
        rows = tables(OUTPUT_TABLE)
        if not rows:
            return None
        scored = (r for r in rows if r.get("split", "test") == "test" and r.get("score") is not None)
        return collect(NAME, task_table().categories, (_row(r) for r in scored))

    def identity(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Protocol, prompt template (name and sha256 of its text), the dataset hashes, the decoding."""
        template = record.get("template") or {}
        datasets = record.get("datasets_sha256")
        return {
            "protocol": record.get("protocol"),
            "template": template.get("name"),
            "template_sha256": template.get("sha256"),
            "datasets_sha256": digest(datasets) if datasets else None,
            "decoding": record.get("decoding"),
        }

    def details(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "jaster_mode": record.get("mode"),
            "jaster_template": (record.get("template") or {}).get("name"),
        }


READING = JasterReading()
