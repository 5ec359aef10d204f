"""Content-addressed response cache in the workspace (SQLite, WAL).

Why SQLite: one file on the workspace PVC, atomic per-row commits, safe with a reader while the
run writes. Each answer is committed the moment it arrives, so a pod killed mid-run loses only
requests in flight; the restarted pod repeats no finished request. WAL with ``synchronous=NORMAL``
makes a commit cheap (no fsync per row) and still survives a killed process (not a power cut).

Only successful answers are stored: a failure must be retried by the next run, not replayed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from nejumi_eval.client.models import InferenceResult

KEY_VERSION = 1
"""Bump when the key layout changes so old rows can never be mistaken for new ones."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cache_key(
    *, identity: str, revision: str | None, endpoint: str, body: dict[str, Any], attempt: int = 0
) -> str:
    """sha256 over the model identity, its revision, the endpoint and the exact request JSON.

    ``attempt`` lets a caller ask the same question again (a judge re-call) without a hit.
    """
    payload = {
        "v": KEY_VERSION,
        "identity": identity,
        "revision": revision,
        "endpoint": endpoint,
        "body": body,
        "attempt": attempt,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    revision TEXT,
    endpoint TEXT NOT NULL,
    request TEXT NOT NULL,
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
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> InferenceResult | None:
        row = self._db.execute("SELECT result FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        result = InferenceResult.model_validate_json(row[0])
        return result.model_copy(update={"cached": True, "attempts": 0, "key": key})

    def put(
        self,
        key: str,
        result: InferenceResult,
        *,
        identity: str,
        revision: str | None,
        endpoint: str,
        body: dict[str, Any],
    ) -> None:
        if result.error is not None:
            raise ValueError("failed requests are not cached")
        stored = result.model_copy(update={"cached": False, "key": key})
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, identity, revision, endpoint, canonical_json(body), stored.model_dump_json(), time.time()),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
