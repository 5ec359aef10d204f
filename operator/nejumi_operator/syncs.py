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
  beside an event's sync of the same evaluation). The round lists the Jobs, pods and Workloads of
  `RESYNC_BATCH` evaluations at a time (`controller.list_children`: three requests for a hundred
  evaluations), and each of their syncs starts from that listing: one that finds nothing changed
  asks the API server nothing. An event of an evaluation drops its listing (what the event
  announces may be newer than the listing), and so its next sync reads afresh.
- A sync blocks on API calls: it runs in a pool of `SYNC_CONCURRENCY` threads, the most syncs at
  once; the event loop (kopf's) only schedules. A failed sync is logged; the next event or round
  syncs it again (a stale write, `calls.Conflict`, is answered by a newer observation anyway).
- A sync starts from the evaluation as kopf's watch last delivered it, or as its own last write
  returned it if that is newer (`remember`; unfinished evaluations only, kept as compact JSON: a
  few KB each) rather than reading it again: one request less per sync. Stale, its write is refused
  (it carries its resourceVersion) and the sync reads it. (Which of two versions is newer is told
  by their resourceVersions as numbers, as etcd makes them: a guess elsewhere, where a wrong one
  costs a refused write and a read, never a wrong status.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
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
RESYNC_BATCH = 100
"""Evaluations listed together in a resync round: their names in one label selector (a few KB of
URL), and their listings (a few MB at most) held until their syncs ran."""

Key = tuple[str, str]  # (namespace, name) of an evaluation
log = logging.getLogger(__name__)


def _version(meta: Mapping[str, Any]) -> int | None:
    value = str(meta.get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


class StatusSyncs:
    """`sync(namespace, name)` (blocking) for evaluations, debounced per evaluation; with
    `evaluation=` the evaluation as last seen, when `remember`ed, and `listing=` what a resync round
    listed of it (`listing(namespace, names)`, blocking: a mapping of name to what `sync` takes)."""

    def __init__(
        self,
        sync: Callable[..., object],
        *,
        listing: Callable[[str, list[str]], Mapping[str, object]] | None = None,
        batch: int = RESYNC_BATCH,
        quiet: float = QUIET_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
        prompt: float = PROMPT_SECONDS,
        ended: float = ENDED_SECONDS,
        concurrency: int = SYNC_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sync = sync
        self.listing = listing
        self.batch = batch
        self.prompt = prompt
        self.ended = ended
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="status-sync")
        # unfinished evaluations as last delivered or written: (resourceVersion as a number, JSON)
        self._seen: dict[Key, tuple[int | None, bytes]] = {}
        self._listed: dict[Key, object] = {}  # a resync round's listing, until its sync takes it
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
        self._listed.pop((namespace, name), None)  # what the event says may be newer than a listing
        return self.debouncer.touch(
            (namespace, name),
            quiet=self.ended if ended else None,
            within=self.prompt if prompt else None,
        )

    def remember(self, namespace: str, name: str, evaluation: Mapping[str, Any]) -> None:
        """The evaluation as the watch delivered it now, or as a write returned it (its
        managedFields left out): the next sync starts from it, unless a newer one is kept."""
        meta = {k: v for k, v in (evaluation.get("metadata") or {}).items() if k != "managedFields"}
        version = _version(meta)
        kept = self._seen.get((namespace, name))
        if kept is not None and version is not None and kept[0] is not None and version < kept[0]:
            return  # the watch lags behind a write of ours
        body = {**evaluation, "metadata": meta}
        self._seen[(namespace, name)] = (version, json.dumps(body, separators=(",", ":")).encode())

    def forget(self, namespace: str, name: str) -> None:
        """The evaluation is finished or gone: nothing to start a sync from."""
        self._seen.pop((namespace, name), None)
        self._listed.pop((namespace, name), None)

    def _seen_json(self, namespace: str, name: str) -> bytes | None:
        kept = self._seen.get((namespace, name))
        return kept[1] if kept is not None else None

    def _call(self, namespace: str, name: str, seen: bytes | None, listed: object | None) -> object:
        kwargs: dict[str, object] = {"written": functools.partial(self.remember, namespace, name)}
        if seen is not None:
            kwargs["evaluation"] = json.loads(seen)
        if listed is not None:
            kwargs["listing"] = listed
        return self.sync(namespace, name, **kwargs)

    async def _run(self, key: Hashable) -> None:
        namespace, name = cast(Key, key)
        loop = asyncio.get_running_loop()
        listed = self._listed.pop((namespace, name), None)
        try:
            await loop.run_in_executor(
                self._threads, self._call, namespace, name, self._seen_json(namespace, name), listed
            )
        except calls.Conflict as exc:
            log.warning("%s/%s: status not written: %s", namespace, name, exc)
        except Exception as exc:  # the next event or resync round tries again
            log.warning("status sync of %s/%s failed: %s", namespace, name, exc)

    async def resync(self, keys: Iterable[Key], since: float, concurrency: int = RESYNC_CONCURRENCY) -> int:
        """Sync each of `keys` that no sync started on since `since` (the debouncer's clock) and that
        is not due already, `concurrency` at a time, `batch` evaluations of a namespace listed
        together (with `listing`); returns how many it synced."""
        synced = 0
        for namespace, batch in self._batches([k for k in keys if self._due_for_resync(k, since)]):
            await self._list(namespace, batch, since)
            todo = iter(batch)

            async def lane(todo: Iterator[Key] = todo) -> None:
                nonlocal synced
                for key in todo:  # shared by the lanes: each key is taken once
                    if not self._due_for_resync(key, since):  # an event's sync came first
                        self._listed.pop(key, None)
                        continue
                    synced += 1
                    # asyncio.wait, not await: cancelling the round must not cancel the debouncer's
                    await asyncio.wait([self.debouncer.touch(key, within=0.0)])

            await asyncio.gather(*(lane() for _ in range(max(1, concurrency))))
        return synced

    def _due_for_resync(self, key: Key, since: float) -> bool:
        ran = self.debouncer.last_run(key)
        return not self.debouncer.pending(key) and (ran is None or ran < since)

    def _batches(self, keys: list[Key]) -> Iterator[tuple[str, list[Key]]]:
        by_namespace: dict[str, list[Key]] = {}
        for key in keys:
            by_namespace.setdefault(key[0], []).append(key)
        for namespace, found in by_namespace.items():
            for start in range(0, len(found), max(1, self.batch)):
                yield namespace, found[start : start + self.batch]

    async def _list(self, namespace: str, batch: list[Key], since: float) -> None:
        """List the batch's children for its syncs (none: each sync reads its own)."""
        if self.listing is None:
            return
        names = [name for _, name in batch]
        loop = asyncio.get_running_loop()
        try:
            listed = await loop.run_in_executor(self._threads, self.listing, namespace, names)
        except Exception as exc:  # each sync reads its own then
            log.warning("resync: listing %d evaluations of %s failed: %s", len(names), namespace, exc)
            return
        for name, listing in listed.items():
            key = (namespace, name)
            if self._due_for_resync(key, since):  # else an event's sync came while it listed
                self._listed[key] = listing

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
    last interval. Each round that synced anything is logged, with how long it took: a warning
    when that is longer than the interval (the net then lags behind it)."""
    clock = syncs.debouncer.clock
    while True:
        await asyncio.sleep(interval)
        start = clock()
        syncs.debouncer.forget_before(start - interval)  # older runs no longer spare anything
        keys = list(unfinished)
        synced = await syncs.resync(keys, since=start - interval, concurrency=concurrency)
        took = clock() - start
        over = took > interval
        if synced or over:  # a round with nothing to do (all synced by events) says nothing
            logger.log(
                logging.WARNING if over else logging.INFO,
                "resync round: %d of %d unfinished evaluations synced in %.2f s%s",
                synced,
                len(keys),
                took,
                f", over the {interval:g} s interval" if over else "",
            )
