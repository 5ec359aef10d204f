"""A local copy of stored objects, by content: what spares a leaderboard re-reading the store.

A leaderboard is computed again each time one of its evaluations changes, and every computation
needs every evaluation's per-question tables. Stored results never change under a manifest (a
rerun writes a new manifest naming new digests), so an object is named here by the sha256 its
manifest lists: a copy found under that name is that object, whoever wrote it and when, and is
checked again (size and sha256) before use. The manifests themselves are always read from the
store: they are what says which objects an evaluation is made of now.

Bounded: `trim` removes the least recently used copies until the folder holds at most `max_bytes`
(a hit refreshes a copy's time). Writes are atomic (a temporary file renamed), so a computation
stopped midway leaves no half-written copy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from nejumi_eval.api.v1alpha1.results import sha256_hex


class ObjectCache:
    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.hits = 0
        self.bytes_hit = 0

    def _path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / sha256

    def get(self, sha256: str, size: int) -> bytes | None:
        """The object with this sha256 and size, or None (absent, or a copy that is not it)."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if len(data) != size or sha256_hex(data) != sha256:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        self.hits += 1
        self.bytes_hit += len(data)
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep a copy (best effort: a full or read-only disk only means the next read goes to the store)."""
        path = self._path(sha256)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)

    def trim(self) -> int:
        """Remove the least recently used copies until at most `max_bytes` remain; bytes removed."""
        files = []
        for path in self.folder.glob("*/*"):
            if path.name.startswith(".part-"):
                continue
            with contextlib.suppress(OSError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        removed = 0
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                removed += size
        return removed
