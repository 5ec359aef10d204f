"""What a served model *is*, for the response cache: the backend and what it serves, by content.

A local model is served under a throwaway name on a random port, so neither says which weights
answered. A hub id is named with its revision; a local folder is named by the sha256 of its files
(paths and bytes), so a rebuilt or edited model never hits the old model's answers. Hashing a
multi-GB folder on every run would hold a GPU idle, so each file's digest is remembered in a small
memo beside the cache, keyed by (size, mtime_ns): a rewritten file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nejumi_eval.runtime.client.models import AnswerSource
from nejumi_eval.runtime.files import atomic_write_text, file_digest


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def folder_sha256(folder: Path, memo_path: Path | None = None) -> str:
    """sha256 over every regular file's relative path and content digest, in path order."""
    folder = folder.resolve()
    memo: dict[str, Any] = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text(encoding="utf-8"))
        except ValueError:
            memo = {}
    seen: dict[str, Any] = {}
    outer = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        st = path.stat()
        key = f"{folder}/{rel}"
        stamp = [st.st_size, st.st_mtime_ns]
        known = memo.get(key)
        digest = known[2] if isinstance(known, list) and known[:2] == stamp else file_sha256(path)
        seen[key] = [*stamp, digest]
        outer.update(f"{rel}\0{digest}\n".encode())
    if memo_path is not None and seen != {k: v for k, v in memo.items() if k in seen}:
        memo.update(seen)
        atomic_write_text(memo_path, json.dumps(memo, sort_keys=True))
    return outer.hexdigest()


def served_source(
    *,
    backend: str,
    model: str,
    revision: str | None,
    dtype: str | None = None,
    extra_args: list[str] | None = None,
    chat_template: Path | None = None,
    memo_path: Path | None = None,
) -> AnswerSource:
    """The cache identity of `model` served by `backend` with these output-changing settings."""
    serving: dict[str, Any] = {}
    if dtype and dtype != "auto":
        serving["dtype"] = dtype
    if extra_args:
        serving["args"] = list(extra_args)
    if chat_template is not None:
        serving["chat_template_sha256"] = file_sha256(chat_template)
    folder = Path(model).expanduser()
    if folder.is_dir():
        return AnswerSource(
            kind="served",
            backend=backend,
            content_sha256=folder_sha256(folder, memo_path),
            revision=revision,
            serving=serving,
        )
    return AnswerSource(kind="served", backend=backend, model=model, revision=revision, serving=serving)
