"""`fetch`: a resolved source as a local folder `vllm serve` loads, filled once per content and shared.

An entry, `<cache root>/<key>/` (`key.py`), on a volume every evaluation mounts:

    weights/     the files, a plain folder (config.json, tokenizer files, *.safetensors)
    complete     written last: what the entry holds (JSON); without it the entry is not used
    .lock        the filler's lock (`lock.py`)
    .staging-*   a filler's download in progress; a dead filler's is removed by the next one

A complete entry is used as it is: nothing is downloaded again (its files' sizes are checked, a
cheap stat). Otherwise the process that gets the entry's lock fills it: it removes what a dead
filler left, downloads every file into a fresh staging folder, verifies each (`verify.py`), renames
the folder to `weights/` and writes `complete`. Processes that find the lock taken wait for it
(reporting the filler's progress) and then find the entry complete. A file that fails verification
fails the fetch, and its staging folder is removed: a bad entry is never marked complete.

A pvc:// source is served in place: nothing is copied or locked.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nejumi_eval.runtime.client.retry import RetryPolicy
from nejumi_eval.runtime.files import atomic_write_text
from nejumi_eval.runtime.weights import hub
from nejumi_eval.runtime.weights.lock import EntryLock
from nejumi_eval.runtime.weights.progress import (
    INTERVAL_S,
    ProgressCallback,
    ProgressMonitor,
    human_bytes,
    log_progress,
)
from nejumi_eval.runtime.weights.resolved import ResolvedSource, WeightFile
from nejumi_eval.runtime.weights.s3 import download_s3_file, weights_store
from nejumi_eval.runtime.weights.source import HfSource, S3Source
from nejumi_eval.runtime.weights.verify import verify_file
from nejumi_eval.storage.store import ObjectStore

log = logging.getLogger(__name__)

WEIGHTS = "weights"
COMPLETE = "complete"
LOCK = ".lock"
STAGING_PREFIX = ".staging-"
LOCK_TIMEOUT_S = 6 * 3600.0
"""How long a process waits for another one filling the same entry: longer than any download."""
DOWNLOAD_WORKERS = 8
"""Files downloaded at once (huggingface_hub's snapshot_download default)."""


@dataclass(frozen=True)
class CachedWeights:
    path: Path
    """The folder to serve (`vllm serve <path>`)."""
    uri: str
    """The source, pinned (`hf://org/name@<commit>`)."""
    key: str
    files: int
    bytes_downloaded: int
    """Bytes this call downloaded (0: the entry was complete, or pvc://)."""
    bytes_from_cache: int
    """Bytes this call found in place (a complete entry, or the pvc:// folder)."""
    seconds: float


def entry_dir(cache_root: Path, resolved: ResolvedSource) -> Path:
    return cache_root / resolved.key


def fetch(
    resolved: ResolvedSource,
    cache_root: Path,
    *,
    progress: ProgressCallback = log_progress,
    progress_interval_s: float = INTERVAL_S,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    retry: RetryPolicy | None = None,
    store: ObjectStore | None = None,
) -> CachedWeights:
    """The folder holding `resolved`'s files, every one verified, downloaded at most once per entry.

    `progress` gets a report every `progress_interval_s` while this process downloads or waits for
    another one (default: a log line); `lock_timeout_s`: how long to wait for another filler;
    `retry`: the Hub's retry policy; `store`: the S3 client (default: one from the environment).
    Raises the errors of `weights.errors`."""
    start = time.monotonic()
    if not resolved.copied:
        assert resolved.local_path is not None
        return _result(resolved, resolved.local_path, start, downloaded=False)
    entry = entry_dir(cache_root, resolved)
    if is_complete(entry, resolved):
        log.info("weights: %s is in the cache (%s)", resolved.uri, entry / WEIGHTS)
        return _result(resolved, entry / WEIGHTS, start, downloaded=False)
    entry.mkdir(parents=True, exist_ok=True)
    with EntryLock(entry / LOCK) as lock:
        if not lock.try_acquire():
            log.info("weights: another process is filling %s; waiting for it", entry)
            with ProgressMonitor(
                resolved.uri,
                resolved.total_bytes,
                lambda: list(_staging_dirs(entry)),  # the filler's download, as it grows
                progress,
                interval_s=progress_interval_s,
                waiting=True,
            ):
                lock.acquire(lock_timeout_s, what=resolved.uri)
        if is_complete(entry, resolved):
            log.info("weights: %s was filled by another process (%s)", resolved.uri, entry / WEIGHTS)
            return _result(resolved, entry / WEIGHTS, start, downloaded=False)
        _fill(resolved, entry, progress, progress_interval_s, retry, store)
    result = _result(resolved, entry / WEIGHTS, start, downloaded=True)
    log.info(
        "weights: %s downloaded and verified in %.1f s (%s, %d files) into %s",
        resolved.uri,
        result.seconds,
        human_bytes(result.bytes_downloaded),
        result.files,
        result.path,
    )
    return result


def _fill(
    resolved: ResolvedSource,
    entry: Path,
    progress: ProgressCallback,
    interval_s: float,
    retry: RetryPolicy | None,
    store: ObjectStore | None,
) -> None:
    """Under the entry's lock: clear what an earlier filler left, download, verify, publish."""
    clear(entry)
    staging = entry / f"{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        with ProgressMonitor(
            resolved.uri, resolved.total_bytes, lambda: [staging], progress, interval_s=interval_s
        ):
            _download_all(resolved, staging, _downloader(resolved, retry, store))
        hub.tidy(staging)
        os.rename(staging, entry / WEIGHTS)
        atomic_write_text(entry / COMPLETE, json.dumps(_marker(resolved), indent=1) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _downloader(
    resolved: ResolvedSource, retry: RetryPolicy | None, store: ObjectStore | None
) -> Callable[[WeightFile, Path], None]:
    if isinstance(resolved.source, HfSource):
        return lambda file, folder: hub.download_hf_file(resolved, file, folder, retry=retry)
    assert isinstance(resolved.source, S3Source)
    client = store or weights_store()
    return lambda file, folder: download_s3_file(resolved, file, folder, client)


def _download_all(
    resolved: ResolvedSource, folder: Path, download: Callable[[WeightFile, Path], None]
) -> None:
    """Every file into `folder`, a few at a time, each verified as soon as it is there; the first
    failure cancels the rest."""

    def one(file: WeightFile) -> None:
        download(file, folder)
        verify_file(resolved.uri, file, folder / file.name)

    with ThreadPoolExecutor(max_workers=max(1, min(DOWNLOAD_WORKERS, len(resolved.files)))) as pool:
        futures = [pool.submit(one, f) for f in resolved.files]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def clear(entry: Path) -> None:
    """Remove an incomplete entry's leftovers: a dead filler's staging folders, a `weights/` without
    its `complete` (a filler that died between the two), or a `complete` that no longer holds.
    Only ever called under the entry's lock, so no live filler owns any of it."""
    (entry / COMPLETE).unlink(missing_ok=True)
    for leftover in [*_staging_dirs(entry), entry / WEIGHTS]:
        if leftover.exists():
            log.info("weights: removing %s (left by an earlier, unfinished fill)", leftover)
            shutil.rmtree(leftover)


def _staging_dirs(entry: Path) -> Iterator[Path]:
    try:
        yield from (p for p in entry.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir())
    except FileNotFoundError:
        return


def _marker(resolved: ResolvedSource) -> dict[str, Any]:
    return {
        "uri": resolved.uri,
        "key": resolved.key,
        "completedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "bytes": resolved.total_bytes,
        "files": [{"name": f.name, "size": f.size, "digest": f.identity} for f in resolved.files],
    }


def is_complete(entry: Path, resolved: ResolvedSource) -> bool:
    """The entry's `complete` marker lists exactly `resolved`'s files, and each is there, of its size."""
    try:
        marker = json.loads((entry / COMPLETE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected = _marker(resolved)
    if marker.get("key") != resolved.key or marker.get("files") != expected["files"]:
        return False
    folder = entry / WEIGHTS
    for file in resolved.files:
        try:
            if (folder / file.name).stat().st_size != file.size:
                return False
        except OSError:
            return False
    return True


def _result(resolved: ResolvedSource, path: Path, start: float, *, downloaded: bool) -> CachedWeights:
    total = resolved.total_bytes
    return CachedWeights(
        path=path,
        uri=resolved.uri,
        key=resolved.key,
        files=len(resolved.files),
        bytes_downloaded=total if downloaded else 0,
        bytes_from_cache=0 if downloaded else total,
        seconds=time.monotonic() - start,
    )
