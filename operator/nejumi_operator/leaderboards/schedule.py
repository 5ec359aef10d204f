"""Debounced computations: many changes, one computation.

Seventy evaluations that finish within a minute (one GitOps commit, one queue draining) each change
what a leaderboard shows, but the board computed after the last of them says everything the
seventy boards before it would have said. So a change only marks the leaderboard dirty (`touch`);
it is computed once no change came for `quiet` seconds, or `max_delay` seconds after the first
unanswered change while changes keep coming (a board never falls further behind than that). One
computation per leaderboard at a time (a change during it marks it dirty again), at most
`concurrency` at a time in all, and a failed one is tried again after the delay it returns.

Everything runs on the operator's event loop; `touch` is cheap and never blocks a handler. The
state is a trigger, not a record: after a restart every leaderboard is touched once (kopf's resume)
and its status says what was last computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    first: float
    last: float
    task: asyncio.Task[None] | None = None
    dirty: bool = True


class Debouncer:
    """`touch(key)` → `run(key)` later, debounced as the module says. `run` returns a delay in
    seconds to run again after (a failure), or None."""

    def __init__(
        self,
        run: Callable[[Hashable], Awaitable[float | None]],
        *,
        quiet: float,
        max_delay: float,
        concurrency: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run = run
        self.quiet = quiet
        self.max_delay = max_delay
        self.clock = clock
        self.runs = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: dict[Hashable, _Pending] = {}
        self._retries: dict[Hashable, asyncio.TimerHandle] = {}

    def touch(self, key: Hashable) -> None:
        now = self.clock()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(first=now, last=now)
        elif not pending.dirty:  # computing: the next round starts its own wait
            pending.first, pending.dirty = now, True
        pending.last = now
        if pending.task is None or pending.task.done():
            pending.task = asyncio.get_running_loop().create_task(
                self._worker(key), name=f"leaderboard {key}"
            )

    @property
    def waiting(self) -> int:
        return sum(1 for p in self._pending.values() if p.dirty)

    async def _worker(self, key: Hashable) -> None:
        pending = self._pending[key]
        try:
            while pending.dirty:
                while True:
                    due = min(pending.last + self.quiet, pending.first + self.max_delay)
                    wait = due - self.clock()
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                pending.dirty = False
                async with self._slots:
                    self.runs += 1
                    try:
                        retry = await self.run(key)
                    except Exception:  # the loop outlives any one computation
                        log.exception("leaderboard %s: computation failed", key)
                        retry = 30.0
                if retry is not None and not pending.dirty:
                    self._retry_later(key, retry)
        finally:
            if self._pending.get(key) is pending and not pending.dirty:
                self._pending.pop(key, None)

    def _retry_later(self, key: Hashable, delay: float) -> None:
        old = self._retries.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._retries[key] = loop.call_later(delay, self._retry, key)

    def _retry(self, key: Hashable) -> None:
        self._retries.pop(key, None)
        self.touch(key)

    async def close(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        tasks = [p.task for p in self._pending.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
