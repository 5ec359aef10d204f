"""One filler per cache entry: an exclusive `flock` on a file inside the entry, on the cache volume.

Two pods starting together on a ReadWriteMany volume (or two processes on one node) both find the
entry incomplete; the one that gets the lock fills it, the other waits for the lock and then finds
the entry complete. The kernel releases a flock when its holder dies, however it dies, so a crashed
filler never leaves the entry locked: the next one takes the lock and cleans up after it. On NFS,
Linux carries flock as an NFS byte-range lock (lockd / NFSv4), seen by every client.

A holder that is alive but stuck (a hung mount, a download that never ends) would make the others
wait forever: `acquire` gives up after a timeout with a message that says who holds the lock (the
holder writes its host, pid and start time into the lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from nejumi_eval.runtime.weights.errors import CacheLockTimeout

POLL_S = 0.5
"""How often a waiter tries the lock again."""


class EntryLock:
    """The exclusive lock of one cache entry (the file `path`, created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False at once if another process holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this EntryLock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        since = datetime.now(UTC).isoformat(timespec="seconds")
        holder = f"{socket.gethostname()} pid {os.getpid()} since {since}"
        with contextlib.suppress(OSError):  # only for messages
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
        return True

    def acquire(self, timeout_s: float, *, what: str, poll_s: float = POLL_S) -> None:
        """Wait for the lock, at most `timeout_s`; then `CacheLockTimeout` naming `what` and the holder."""
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            left = deadline - time.monotonic()
            if left <= 0:
                raise CacheLockTimeout(
                    f"{what}: its cache entry {self.path.parent} has been locked by another process "
                    f"({self.holder() or 'holder unknown'}) for over {timeout_s:.0f} s. One process fills "
                    "an entry while the others wait; a filler that died releases the lock by itself, so "
                    "this one is alive: if no evaluation is downloading these weights, end it"
                )
            time.sleep(min(poll_s, left))

    def holder(self) -> str:
        """Who holds (or last held) the lock, as its holder wrote it."""
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> EntryLock:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()
