"""Content-addressed response cache in the workspace (SQLite, WAL).

Why SQLite: one file on the workspace PVC, atomic per-row commits, safe with a reader while the
run writes. Each answer is committed the moment it arrives, so a pod killed mid-run loses only
requests in flight; the restarted pod repeats no finished request. WAL with ``synchronous=NORMAL``
makes a commit cheap (no fsync per row) and still survives a killed process (not a power cut).

Only successful answers are stored: a failure must be retried by the next run, not replayed.

Each answer is stored once, here, as its row's `result`; a request is recorded by its digest only
(`request_digest`). The request's text is the benchmark's to record (its tables keep each prompt
once, beside the answer), and storing it here would copy every earlier answer again: MT-bench's
second turn carries the first answer, and each judge request carries both answers and the reference.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from nejumi_eval.runtime.client.models import AnswerSource, InferenceResult

KEY_VERSION = 2
"""Bump when the key layout changes so old rows can never be mistaken for new ones.

v2 (this): the key names the answer's source (:class:`AnswerSource`: an API's base URL + model, a
served model's backend + content). v1 keyed on the model name alone, so two endpoints serving one
name shared answers; a v1 table is renamed `responses_v1` on open and never read again.
"""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def request_digest(body: dict[str, Any]) -> str:
    """What the cache keeps of a request: `sha256:` and the digest of its exact JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def cache_key(*, source: AnswerSource, endpoint: str, body: dict[str, Any], attempt: int = 0) -> str:
    """sha256 over who answers (`source`), the endpoint path and the exact request JSON.

    ``attempt`` lets a caller ask the same question again (a judge re-call) without a hit.
    """
    payload = {
        "v": KEY_VERSION,
        "source": source.model_dump(mode="json", exclude_defaults=True),
        "endpoint": endpoint,
        "body": body,
        "attempt": attempt,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


_TABLE = "responses"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    request TEXT NOT NULL, -- request_digest(body); rows written before it hold the request's JSON
    result TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


class ResponseCache:
    """One SQLite file; shareable by several clients (model under test, judge) in one process.

    Calls are synchronous: a lookup or a one-row commit takes well under a millisecond, far less
    than any request, so a thread hop (aiosqlite) would cost more than it saves.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({_TABLE})")}
        if "identity" in columns:  # a v1 cache: its rows are set aside, never reused
            self._db.execute(f"DROP TABLE IF EXISTS {_TABLE}_v1")
            self._db.execute(f"ALTER TABLE {_TABLE} RENAME TO {_TABLE}_v1")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> InferenceResult | None:
        row = self._db.execute(f"SELECT result FROM {_TABLE} WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        result = InferenceResult.model_validate_json(row[0])
        return result.model_copy(update={"cached": True, "attempts": 0, "key": key})

    def put(
        self,
        key: str,
        result: InferenceResult,
        *,
        source: AnswerSource,
        endpoint: str,
        body: dict[str, Any],
    ) -> None:
        if result.error is not None:
            raise ValueError("failed requests are not cached")
        stored = result.model_copy(update={"cached": False, "key": key})
        self._db.execute(
            f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                canonical_json(source.model_dump(mode="json", exclude_defaults=True)),
                endpoint,
                request_digest(body),
                stored.model_dump_json(),
                time.time(),
            ),
        )

    def has_answers_from(self, source: AnswerSource) -> bool:
        """Whether any answer of `source` is stored (a rerun or a resumed evaluation)."""
        stored = canonical_json(source.model_dump(mode="json", exclude_defaults=True))
        row = self._db.execute(f"SELECT 1 FROM {_TABLE} WHERE source = ? LIMIT 1", (stored,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
