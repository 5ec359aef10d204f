"""When an evaluation's status is synced (`controller.sync_status` decides what it says).

- Events (the evaluation's Job, its pods, its progress ConfigMap) only `touch` the evaluation
  (`nejumi_operator.debounce`): it is synced once its events pause for `QUIET_SECONDS`, and at most
  `MAX_DELAY_SECONDS` after the first unanswered one while they keep coming. The six or so events of
  a pod starting and a Job ending cost one or two syncs, not one each (`make bench --only scale`).
  A transition worth showing at once (a pod running, a Job finished) waits `PROMPT_SECONDS` only;
  a pod that ended waits `ENDED_SECONDS`, for its Job's end (prompt) that usually follows and says
  more (or, when the Job runs another pod, a few seconds late).
  One sync per evaluation at a time; an event during a sync → exactly one more after it.
- The resync loop, the safety net for missed events: every `interval` seconds, each unfinished
  evaluation that no sync started on within the last interval (an event's, or the previous round's)
  and that is not due already, `RESYNC_CONCURRENCY` at a time, through the same debouncer (so never
  beside an event's sync of the same evaluation).
- A sync blocks on API calls: it runs in a pool of `SYNC_CONCURRENCY` threads, the most syncs at
  once; the event loop (kopf's) only schedules. A failed sync is logged; the next event or round
  syncs it again (a stale write, `calls.Conflict`, is answered by a newer observation anyway).
- A sync starts from the evaluation as kopf's watch last delivered it (`remember`; unfinished
  evaluations only, kept as compact JSON: a few KB each) rather than reading it again: one request
  less per sync. Stale, its write is refused (it carries its resourceVersion) and the sync reads it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from nejumi_operator.debounce import Debouncer
from nejumi_operator.kube import calls

QUIET_SECONDS = 1.0
MAX_DELAY_SECONDS = 5.0
PROMPT_SECONDS = 0.2
"""Short enough to show a pod running, or a Job's end, at once; long enough that the events
arriving together with it (the Job's `ready` count, the pod's conditions) join the same sync."""
ENDED_SECONDS = 3.0
SYNC_CONCURRENCY = 12
RESYNC_CONCURRENCY = 8
"""A round's syncs at once: the rest of `SYNC_CONCURRENCY` stays free for events during a round."""

Key = tuple[str, str]  # (namespace, name) of an evaluation
log = logging.getLogger(__name__)


class StatusSyncs:
    """`sync(namespace, name)` (blocking) for evaluations, debounced per evaluation; with
    `evaluation=` the evaluation as last seen, when `remember`ed."""

    def __init__(
        self,
        sync: Callable[..., object],
        *,
        quiet: float = QUIET_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
        prompt: float = PROMPT_SECONDS,
        ended: float = ENDED_SECONDS,
        concurrency: int = SYNC_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sync = sync
        self.prompt = prompt
        self.ended = ended
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="status-sync")
        self._seen: dict[Key, bytes] = {}  # unfinished evaluations as last delivered, as JSON
        self.debouncer = Debouncer(
            self._run,
            quiet=quiet,
            max_delay=max_delay,
            concurrency=concurrency,
            name="status sync",
            clock=clock,
        )

    @property
    def runs(self) -> int:
        return self.debouncer.runs

    def touch(
        self, namespace: str, name: str, *, prompt: bool = False, ended: bool = False
    ) -> asyncio.Task[None]:
        """An event of the evaluation: sync it soon (`prompt`: within `PROMPT_SECONDS`; `ended`: a
        pod ended, wait `ENDED_SECONDS` for more)."""
        return self.debouncer.touch(
            (namespace, name),
            quiet=self.ended if ended else None,
            within=self.prompt if prompt else None,
        )

    def remember(self, namespace: str, name: str, evaluation: Mapping[str, Any]) -> None:
        """The evaluation as the watch delivered it now (its managedFields left out): the next
        sync starts from it."""
        meta = {k: v for k, v in (evaluation.get("metadata") or {}).items() if k != "managedFields"}
        body = {**evaluation, "metadata": meta}
        self._seen[(namespace, name)] = json.dumps(body, separators=(",", ":")).encode()

    def forget(self, namespace: str, name: str) -> None:
        """The evaluation is finished or gone: nothing to start a sync from."""
        self._seen.pop((namespace, name), None)

    def _call(self, namespace: str, name: str, seen: bytes | None) -> object:
        if seen is None:
            return self.sync(namespace, name)
        return self.sync(namespace, name, evaluation=json.loads(seen))

    async def _run(self, key: Hashable) -> None:
        namespace, name = cast(Key, key)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._threads, self._call, namespace, name, self._seen.get((namespace, name))
            )
        except calls.Conflict as exc:
            log.warning("%s/%s: status not written: %s", namespace, name, exc)
        except Exception as exc:  # the next event or resync round tries again
            log.warning("status sync of %s/%s failed: %s", namespace, name, exc)

    async def resync(self, keys: Iterable[Key], since: float, concurrency: int = RESYNC_CONCURRENCY) -> int:
        """Sync each of `keys` that no sync started on since `since` (the debouncer's clock) and that
        is not due already, `concurrency` at a time; returns how many it synced."""
        todo = iter(list(keys))
        synced = 0

        async def lane() -> None:
            nonlocal synced
            for key in todo:  # shared by the lanes: each key is taken once
                ran = self.debouncer.last_run(key)
                if self.debouncer.pending(key) or (ran is not None and ran >= since):
                    continue
                synced += 1
                # asyncio.wait, not await: cancelling the round must not cancel the debouncer's task
                await asyncio.wait([self.debouncer.touch(key, within=0.0)])

        await asyncio.gather(*(lane() for _ in range(max(1, concurrency))))
        return synced

    async def close(self) -> None:
        await self.debouncer.close()
        self._threads.shutdown(wait=False, cancel_futures=True)


async def resync_forever(
    interval: float,
    unfinished: Iterable[Key],
    syncs: StatusSyncs,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
    concurrency: int = RESYNC_CONCURRENCY,
) -> None:
    """Every `interval` seconds (after the previous round ends), a round: `syncs.resync` of what
    `unfinished` (a live view, read anew every round) yields, skipping what was synced within the
    last interval. A round longer than the interval is logged: the net then lags behind it."""
    clock = syncs.debouncer.clock
    while True:
        await asyncio.sleep(interval)
        start = clock()
        syncs.debouncer.forget_before(start - interval)  # older runs no longer spare anything
        keys = list(unfinished)
        synced = await syncs.resync(keys, since=start - interval, concurrency=concurrency)
        took = clock() - start
        if took > interval:
            logger.warning(
                "resync round: %d of %d unfinished evaluations synced in %.1f s, over the %g s interval",
                synced,
                len(keys),
                took,
                interval,
            )
