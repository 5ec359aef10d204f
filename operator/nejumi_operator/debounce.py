"""Debounced runs: many changes, one run. Used for leaderboards (a computation) and for evaluation
statuses (a sync: `nejumi_operator.syncs`).

Seventy evaluations that finish within a minute (one GitOps commit, one queue draining) each change
what a leaderboard shows, but the board computed after the last of them says everything the
seventy boards before it would have said; likewise the six events of one evaluation's pod starting
(created, scheduled, running, …) are said by one status sync after the last of them. So a change
only marks the key dirty (`touch`); it runs once no change came for `quiet` seconds, or `max_delay`
seconds after the first unanswered change while changes keep coming (a key never falls further
behind than that). A touch may ask for a quiet window of its own (`quiet=`: longer, when what it
announces is about to be followed by something that says more), or for a run within some seconds
whatever comes after it (`within=`: a transition to show promptly). One run per key at a time: a change
during a run (after it started) marks the key dirty again, and it runs exactly once more; a change
while it waits for a free slot is covered by the run about to start. At most `concurrency` runs at a
time in all, and a failed one is tried again after the delay it returns.

Everything runs on the operator's event loop; `touch` is cheap and never blocks a handler. The
state is a trigger, not a record: after a restart every key is touched again (kopf's resume and
listing) and the status says what was last computed. What it keeps per key after a run (`last_run`,
for the resync loop to skip what ran recently) is dropped by `forget_before`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    first: float  # the first touch since the last run started
    settled: float  # when the latest quiet window ends
    soon: float = math.inf  # the earliest deadline a touch asked for (`touch(key, within=…)`)
    task: asyncio.Task[None] | None = None
    dirty: bool = True
    wakeup: asyncio.Future[None] | None = None  # set: the due time moved earlier


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Debouncer:
    """`touch(key)` → `run(key)` later, debounced as the module says. `run` returns a delay in
    seconds to run again after (a failure), or None. `name` names the runs in task names and logs."""

    def __init__(
        self,
        run: Callable[[Hashable], Awaitable[float | None]],
        *,
        quiet: float,
        max_delay: float,
        concurrency: int = 2,
        name: str = "run",
        failure_retry: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run = run
        self.quiet = quiet
        self.max_delay = max_delay
        self.name = name
        self.failure_retry = failure_retry
        self.clock = clock
        self.runs = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: dict[Hashable, _Pending] = {}
        self._retries: dict[Hashable, asyncio.TimerHandle] = {}
        self._started: dict[Hashable, float] = {}  # key → when its last run started (`clock`)

    def touch(
        self, key: Hashable, *, quiet: float | None = None, within: float | None = None
    ) -> asyncio.Task[None]:
        """Mark `key` dirty: it runs once no touch came for a quiet window (the debouncer's, or this
        touch's `quiet`), within `within` seconds of this touch if given, and at most `max_delay`
        after the first unanswered touch. Returns the task that runs it."""
        now = self.clock()
        settled = now + (self.quiet if quiet is None else quiet)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(first=now, settled=settled)
        elif not pending.dirty:  # running: the next round starts its own wait
            pending.first, pending.settled, pending.soon, pending.dirty = now, settled, math.inf, True
        else:
            pending.settled = max(pending.settled, settled)
        if within is not None and now + within < pending.soon:
            pending.soon = now + within
            if pending.wakeup is not None:
                _wake(pending.wakeup)  # a waiting worker looks at its due time again
        if pending.task is None or pending.task.done():
            pending.task = asyncio.get_running_loop().create_task(
                self._worker(key), name=f"{self.name} {key}"
            )
        return pending.task

    def pending(self, key: Hashable) -> bool:
        """A run of `key` is due or under way."""
        return key in self._pending

    def last_run(self, key: Hashable) -> float | None:
        """When (`clock`) the latest run of `key` started, if one did since `forget_before`."""
        return self._started.get(key)

    def forget_before(self, when: float) -> None:
        """Drop what `last_run` knows of runs that started before `when`."""
        self._started = {k: t for k, t in self._started.items() if t >= when}

    @property
    def waiting(self) -> int:
        return sum(1 for p in self._pending.values() if p.dirty)

    def _due(self, pending: _Pending) -> float:
        return min(pending.settled, pending.first + self.max_delay, pending.soon)

    async def _worker(self, key: Hashable) -> None:
        pending = self._pending[key]
        try:
            while pending.dirty:
                await self._until_due(pending)
                async with self._slots:
                    # What changed while this waited for a slot is seen by the run starting now.
                    pending.dirty, pending.soon = False, math.inf
                    self._started[key] = self.clock()
                    self.runs += 1
                    try:
                        retry = await self.run(key)
                    except Exception:  # the loop outlives any one run
                        log.exception("%s %s failed", self.name, key)
                        retry = self.failure_retry
                if retry is not None and not pending.dirty:
                    self._retry_later(key, retry)
        finally:
            if self._pending.get(key) is pending and not pending.dirty:
                self._pending.pop(key, None)

    async def _until_due(self, pending: _Pending) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._due(pending) - self.clock()) > 0:
            pending.wakeup = wakeup = loop.create_future()
            timer = loop.call_later(wait, _wake, wakeup)
            try:
                await wakeup
            finally:
                timer.cancel()
                pending.wakeup = None

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
