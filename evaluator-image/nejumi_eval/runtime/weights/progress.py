"""A long download is never silent: bytes done of the total, reported every few seconds.

`ProgressMonitor` measures what is on disk (the bytes under the folders being filled) rather than
counting inside each download, so it sees every transfer the same way (the Hub's, boto3's) and a
process waiting for another one's download sees that download's progress too. It reports once when
it starts, every `interval_s`, and (a filler's) once when it ends: by then done equals the total.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

INTERVAL_S = 5.0


@dataclass(frozen=True)
class Progress:
    uri: str
    done_bytes: int
    total_bytes: int
    elapsed_s: float
    waiting: bool
    """Another process is filling the entry; this one waits for it."""


ProgressCallback = Callable[[Progress], None]


def log_progress(p: Progress) -> None:
    """The default report: one log line."""
    share = 100 * p.done_bytes / p.total_bytes if p.total_bytes else 100.0
    rate = p.done_bytes / p.elapsed_s if p.elapsed_s > 0 else 0.0
    who = "another process is downloading" if p.waiting else "downloading"
    log.info(
        "weights: %s %s: %s of %s (%.0f%%), %s/s, %.0f s",
        who,
        p.uri,
        human_bytes(p.done_bytes),
        human_bytes(p.total_bytes),
        share,
        human_bytes(rate),
        p.elapsed_s,
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 if it is gone); files that vanish meanwhile are skipped."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class ProgressMonitor:
    """Reports the bytes under `folders()` (called at each report) against `total_bytes`."""

    def __init__(
        self,
        uri: str,
        total_bytes: int,
        folders: Callable[[], Iterable[Path]],
        report: ProgressCallback = log_progress,
        *,
        interval_s: float = INTERVAL_S,
        waiting: bool = False,
    ) -> None:
        self.uri, self.total_bytes, self.folders, self.report = uri, total_bytes, folders, report
        self.interval_s, self.waiting = interval_s, waiting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="weights-progress", daemon=True)
        self._start = time.monotonic()

    def __enter__(self) -> ProgressMonitor:
        self._start = time.monotonic()
        self._emit()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None and not self.waiting:  # a waiter's folders are gone once filled
            self._emit()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._emit()
            except Exception:  # a failing report must not end the download
                log.warning("weights: progress report failed", exc_info=True)

    def _emit(self) -> None:
        done = sum(folder_bytes(f) for f in self.folders())
        self.report(
            Progress(
                uri=self.uri,
                done_bytes=min(done, self.total_bytes),
                total_bytes=self.total_bytes,
                elapsed_s=time.monotonic() - self._start,
                waiting=self.waiting,
            )
        )
