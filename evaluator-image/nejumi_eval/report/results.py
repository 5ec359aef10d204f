"""The results folder: the durable record of a run, written before anything is sent to W&B.

Every table is one JSON Lines file named like its W&B table, so a number on the leaderboard can
be traced to the question, prompt and output behind it with nothing but `jq`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nejumi_eval.runtime.files import atomic_write_text


class ResultsFolder:
    """One run's results: `<name>.jsonl` tables plus JSON documents.

    Each file is written atomically (temp file + rename), so a killed run never leaves a
    half-written one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.tables: dict[str, list[dict[str, Any]]] = {}

    def write_table(self, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        table = [dict(r) for r in rows]
        self.tables[name] = table
        target = self.path / f"{name}.jsonl"
        atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table))
        return target

    def write_json(self, name: str, doc: Any) -> Path:
        target = self.path / f"{name}.json"
        atomic_write_text(target, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        return target


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Read back a `.jsonl` table (tests, `nejumi-eval` tooling)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
