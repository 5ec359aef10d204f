"""When statuses are synced (nejumi_operator.syncs), without a cluster: the events of one evaluation
debounced into one sync, one more after a touch during a sync, evaluations independent of each other,
a bound on how long events can put a sync off, prompt transitions, the resync round's concurrency and
what it skips, and the event handlers' touches. No assertion on how long anything takes: each test
waits for what it expects (with a generous limit) and checks counts."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import kopf
import pytest

from nejumi_eval.api.v1alpha1.names import LABEL_EVALUATION
from nejumi_eval.api.v1alpha1.progress import PROGRESS_KEY
from nejumi_operator import handlers
from nejumi_operator.kube import calls
from nejumi_operator.syncs import StatusSyncs, resync_forever

A, B = ("ns", "a"), ("ns", "b")


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def idle(syncs: StatusSyncs) -> None:
    """Until nothing is due or under way."""
    await wait_for(lambda: not syncs.debouncer._pending)


class Recorder:
    """A blocking sync (it runs in a thread) that counts its calls; `hold(key)` makes that key's
    syncs wait until `release()`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()
        self._held: set[tuple[str, str]] = set()
        self._release = threading.Event()

    def hold(self, *keys: tuple[str, str]) -> None:
        self._held.update(keys)

    def release(self) -> None:
        self._release.set()

    def __call__(self, namespace: str, name: str, **_: Any) -> None:
        with self._lock:
            self.calls.append((namespace, name))
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if (namespace, name) in self._held:
                assert self._release.wait(30), "never released"
        finally:
            with self._lock:
                self.active -= 1

    def count(self, key: tuple[str, str]) -> int:
        return self.calls.count(key)


@pytest.fixture
async def make() -> Any:
    made: list[StatusSyncs] = []

    def factory(sync: Callable[[str, str], object], **kwargs: Any) -> StatusSyncs:
        syncs = StatusSyncs(sync, **{"quiet": 0.02, "max_delay": 30.0, **kwargs})
        made.append(syncs)
        return syncs

    yield factory
    for syncs in made:
        await syncs.close()


# ---- debouncing ---------------------------------------------------------------------------------


async def test_a_burst_of_events_costs_one_sync(make: Any) -> None:
    """Job created, pod scheduled, pod running, progress, pod ended, Job complete: one sync."""
    sync = Recorder()
    syncs = make(sync)
    for _ in range(6):
        syncs.touch(*A)
    await idle(syncs)
    assert sync.calls == [A] and syncs.runs == 1


async def test_a_touch_during_a_sync_syncs_exactly_once_more(make: Any) -> None:
    sync = Recorder()
    sync.hold(A)
    syncs = make(sync)
    syncs.touch(*A)
    await wait_for(lambda: sync.active == 1)  # the first sync has read what it reads
    for _ in range(10):  # events after it started: it may not have seen them
        syncs.touch(*A)
    sync.release()
    await idle(syncs)
    assert sync.count(A) == 2


async def test_touches_while_waiting_for_a_free_slot_join_the_sync_about_to_start(make: Any) -> None:
    sync = Recorder()
    sync.hold(A)
    syncs = make(sync, concurrency=1)
    syncs.touch(*A)
    await wait_for(lambda: sync.active == 1)
    syncs.touch(*B)  # waits for the one slot A holds
    await asyncio.sleep(0.1)  # well past B's quiet window: B is due, waiting for the slot
    for _ in range(5):
        syncs.touch(*B)
    sync.release()
    await idle(syncs)
    assert Counter(sync.calls) == {A: 1, B: 1}


async def test_evaluations_are_synced_independently(make: Any) -> None:
    """One evaluation's slow sync holds up neither another's nor its own next touch's bookkeeping."""
    sync = Recorder()
    sync.hold(A)
    syncs = make(sync)
    syncs.touch(*A)
    await wait_for(lambda: sync.active == 1)
    syncs.touch(*B)
    syncs.touch(*B)
    await wait_for(lambda: sync.count(B) == 1 and not syncs.debouncer.pending(B))
    assert sync.count(A) == 1 and syncs.debouncer.pending(A)  # A still under way
    sync.release()
    await idle(syncs)
    assert Counter(sync.calls) == {A: 1, B: 1}


async def test_events_that_keep_coming_put_a_sync_off_at_most_max_delay(make: Any) -> None:
    sync = Recorder()
    syncs = make(sync, quiet=60.0, max_delay=0.05)  # never quiet for a minute
    touches = 0
    while not sync.calls and touches < 2000:  # an event every 10 ms
        syncs.touch(*A)
        touches += 1
        await asyncio.sleep(0.01)
    assert sync.calls == [A] and touches < 2000


async def test_a_prompt_touch_does_not_wait_for_the_quiet_window(make: Any) -> None:
    """A pod running (or a Job finished) is shown at once, even in the middle of a burst."""
    sync = Recorder()
    syncs = make(sync, quiet=60.0, max_delay=120.0, prompt=0.0)
    syncs.touch(*A)  # an ordinary event: would wait a minute
    await asyncio.sleep(0.05)  # the worker is asleep until then
    syncs.touch(*A, prompt=True)
    await wait_for(lambda: sync.calls == [A])
    await idle(syncs)
    assert sync.calls == [A]


async def test_a_pod_that_ended_waits_for_its_jobs_end_and_syncs_once(make: Any) -> None:
    """Pod ended (wait for more), then the Job complete (prompt): one sync, at the Job's end."""
    sync = Recorder()
    syncs = make(sync, quiet=0.0, ended=60.0, prompt=0.0)
    syncs.touch(*A, ended=True)
    syncs.touch(*A)  # another event (the Job's counts) does not cut the wait short
    await asyncio.sleep(0.1)
    assert sync.calls == []  # still waiting for the Job
    syncs.touch(*A, prompt=True)
    await idle(syncs)
    assert sync.calls == [A]


async def test_a_pod_that_ended_alone_waits_at_most_max_delay(make: Any) -> None:
    sync = Recorder()
    syncs = make(sync, ended=60.0, max_delay=0.05)
    syncs.touch(*A, ended=True)
    await idle(syncs)  # well before the minute
    assert sync.calls == [A]


async def test_a_failed_sync_is_logged_and_the_next_touch_syncs_again(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    failures = iter([RuntimeError("API says no"), calls.Conflict("kept changing")])

    def sync(namespace: str, name: str, **_: Any) -> None:
        exc = next(failures, None)
        if exc is not None:
            raise exc

    syncs = make(sync)
    with caplog.at_level(logging.WARNING, logger="nejumi_operator.syncs"):
        for _ in range(3):
            syncs.touch(*A)
            await idle(syncs)
    assert syncs.runs == 3
    assert "status sync of ns/a failed: API says no" in caplog.text
    assert "ns/a: status not written: kept changing" in caplog.text


async def test_a_sync_starts_from_the_evaluation_last_seen_until_it_is_finished(make: Any) -> None:
    got: list[Any] = []

    def sync(namespace: str, name: str, evaluation: Any = None, **_: Any) -> None:
        got.append(evaluation)

    syncs = make(sync)
    syncs.touch(*A)
    await idle(syncs)
    body = {"metadata": {"name": "a", "resourceVersion": "7", "managedFields": [{"manager": "x"}]}}
    syncs.remember(*A, body)
    syncs.touch(*A)
    await idle(syncs)
    syncs.forget(*A)
    syncs.touch(*A)
    await idle(syncs)
    # read by the sync itself, then as seen (without managedFields), then read again
    assert got == [None, {"metadata": {"name": "a", "resourceVersion": "7"}}, None]


async def test_a_sync_starts_from_its_own_last_write_until_the_watch_brings_a_newer_one(make: Any) -> None:
    got: list[Any] = []

    def sync(namespace: str, name: str, evaluation: Any = None, written: Any = None, **_: Any) -> None:
        got.append((evaluation or {}).get("metadata", {}).get("resourceVersion"))
        written({"metadata": {"name": "a", "resourceVersion": "9"}, "status": {"phase": "Running"}})

    syncs = make(sync)
    syncs.remember(*A, {"metadata": {"name": "a", "resourceVersion": "7"}})
    syncs.touch(*A)
    await idle(syncs)
    syncs.remember(*A, {"metadata": {"name": "a", "resourceVersion": "8"}})  # the watch, behind
    syncs.touch(*A)
    await idle(syncs)
    syncs.remember(*A, {"metadata": {"name": "a", "resourceVersion": "12"}})  # newer than the write
    syncs.touch(*A)
    await idle(syncs)
    assert got == ["7", "9", "12"]


# ---- the resync round ---------------------------------------------------------------------------


async def test_a_resync_round_runs_a_few_syncs_at_a_time(make: Any) -> None:
    keys = [("ns", f"e{i}") for i in range(10)]
    sync = Recorder()
    sync.hold(*keys)
    syncs = make(sync, concurrency=8)
    round_ = asyncio.create_task(syncs.resync(keys, since=syncs.debouncer.clock(), concurrency=3))
    await wait_for(lambda: sync.active == 3)
    await asyncio.sleep(0.1)  # were it unbounded, more would have started by now
    assert sync.active == 3 and len(sync.calls) == 3
    sync.release()
    assert await round_ == 10
    assert sorted(sync.calls) == sorted(keys) and sync.most_active == 3


async def test_a_resync_round_skips_what_an_event_synced_recently_or_is_due(make: Any) -> None:
    sync = Recorder()
    syncs = make(sync)
    before = syncs.debouncer.clock()
    syncs.touch(*A)  # an event: synced now
    await idle(syncs)
    waiting = make(sync, quiet=60.0)  # another debouncer whose event waits a minute
    waiting.touch(*B)
    assert await syncs.resync([A, B], since=before) == 1  # A synced since `before`: skipped
    assert await waiting.resync([A, B], since=before) == 1  # B due already: skipped
    assert Counter(sync.calls) == {A: 2, B: 1}  # A by the event and by `waiting`'s round


async def test_a_sync_before_the_window_does_not_spare_a_round(make: Any) -> None:
    sync = Recorder()
    syncs = make(sync)
    syncs.touch(*A)
    await idle(syncs)
    assert await syncs.resync([A], since=syncs.debouncer.clock()) == 1
    assert sync.calls == [A, A]


class Lister:
    """A resync round's `listing(namespace, names)`: records each call; `fail` makes it raise."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail = fail

    def __call__(self, namespace: str, names: list[str]) -> dict[str, str]:
        self.calls.append((namespace, list(names)))
        if self.fail:
            raise RuntimeError("API server unavailable")
        return {name: f"listed {namespace}/{name}" for name in names}


def listing_sync(got: dict[tuple[str, str], list[Any]]) -> Callable[..., None]:
    def sync(namespace: str, name: str, evaluation: Any = None, listing: Any = None, **_: Any) -> None:
        got.setdefault((namespace, name), []).append(listing)

    return sync


async def test_a_resync_round_lists_a_batch_of_a_namespace_at_once_for_its_syncs(make: Any) -> None:
    got: dict[tuple[str, str], list[Any]] = {}
    lister = Lister()
    syncs = make(listing_sync(got), listing=lister, batch=2)
    keys = [("ns", "a"), ("ns", "b"), ("other", "c"), ("ns", "d"), ("ns", "e")]
    assert await syncs.resync(keys, since=syncs.debouncer.clock()) == 5
    # one listing per batch of at most 2 evaluations of one namespace, never across namespaces
    assert lister.calls == [("ns", ["a", "b"]), ("ns", ["d", "e"]), ("other", ["c"])]
    assert got == {(ns, n): [f"listed {ns}/{n}"] for ns, n in keys}
    assert not syncs._listed  # each listing taken by its sync, none kept


async def test_what_an_event_synced_recently_is_neither_listed_nor_resynced(make: Any) -> None:
    got: dict[tuple[str, str], list[Any]] = {}
    lister = Lister()
    syncs = make(listing_sync(got), listing=lister)
    before = syncs.debouncer.clock()
    syncs.touch(*A)
    await idle(syncs)
    assert await syncs.resync([A, B], since=before) == 1
    assert lister.calls == [("ns", ["b"])]
    assert got == {A: [None], B: ["listed ns/b"]}  # the event's sync read its own


async def test_an_event_drops_the_listing_so_its_sync_reads_afresh(make: Any) -> None:
    got: dict[tuple[str, str], list[Any]] = {}
    syncs = make(listing_sync(got), listing=Lister())
    syncs._listed[A] = "listed before the event"  # as a round leaves it just before its touch
    syncs.touch(*A)
    await idle(syncs)
    assert got == {A: [None]}


async def test_an_event_while_the_round_lists_keeps_the_listing_from_its_sync(make: Any) -> None:
    got: dict[tuple[str, str], list[Any]] = {}
    syncs: StatusSyncs

    class EventDuringListing(Lister):
        def __call__(self, namespace: str, names: list[str]) -> dict[str, str]:
            # an event arrives (on the event loop) while the listing is under way in its thread
            asyncio.run_coroutine_threadsafe(touch(), loop).result()
            return super().__call__(namespace, names)

    async def touch() -> None:
        syncs.touch(*A)

    loop = asyncio.get_running_loop()
    syncs = make(listing_sync(got), listing=EventDuringListing())
    assert await syncs.resync([A, B], since=syncs.debouncer.clock()) == 1  # A's event came first
    await idle(syncs)
    assert got == {A: [None], B: ["listed ns/b"]}


async def test_a_failed_listing_leaves_each_sync_to_read_its_own(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    got: dict[tuple[str, str], list[Any]] = {}
    syncs = make(listing_sync(got), listing=Lister(fail=True))
    with caplog.at_level(logging.WARNING, logger="nejumi_operator.syncs"):
        assert await syncs.resync([A, B], since=syncs.debouncer.clock()) == 2
    assert got == {A: [None], B: [None]}
    assert "resync: listing 2 evaluations of ns failed: API server unavailable" in caplog.text


class Rounds(list[tuple[str, str]]):
    """The resync loop's view of unfinished evaluations, counting the rounds that read it."""

    read = 0

    def __iter__(self) -> Any:
        self.read += 1
        return super().__iter__()


async def test_resync_rounds_skip_what_was_synced_within_the_interval() -> None:
    """A clock that stands still: A's event sync, then B's first round, are always within the last
    interval, so after the first round no round syncs anything."""
    sync = Recorder()
    syncs = StatusSyncs(sync, quiet=0.0, max_delay=30.0, clock=lambda: 1000.0)
    syncs.touch(*A)
    await idle(syncs)
    unfinished = Rounds([A, B])
    loop = asyncio.create_task(resync_forever(0.01, unfinished, syncs))
    try:
        await wait_for(lambda: unfinished.read >= 4)
    finally:
        loop.cancel()
        await syncs.close()
    assert Counter(sync.calls) == {A: 1, B: 1}


async def test_a_round_longer_than_its_interval_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    sync = Recorder()
    sync.hold(A)
    syncs = StatusSyncs(sync, quiet=0.0, max_delay=30.0)
    log = logging.getLogger("test.resync")
    loop = asyncio.create_task(resync_forever(0.01, [A], syncs, log))
    try:
        with caplog.at_level(logging.WARNING, logger="test.resync"):
            await wait_for(lambda: sync.active == 1)
            await asyncio.sleep(0.05)  # the round is now longer than its 0.01 s interval
            sync.release()
            await wait_for(lambda: "over the 0.01 s interval" in caplog.text)
    finally:
        loop.cancel()
        await syncs.close()
    assert "resync round: 1 of 1 unfinished evaluations synced in" in caplog.text


# ---- the event handlers only touch --------------------------------------------------------------


class Touches:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool, bool]] = []

    def touch(self, namespace: str, name: str, *, prompt: bool = False, ended: bool = False) -> None:
        self.seen.append((namespace, name, prompt, ended))


def owned(**body: Any) -> kopf.Body:
    ref = {"apiVersion": "nejumi.wandb.ai/v1alpha1", "kind": "NejumiEvaluation", "name": "e", "uid": "u"}
    meta = {"name": "x", "ownerReferences": [ref], **body.pop("metadata", {})}
    return kopf.Body({"metadata": meta, **body})


def memo_with(touches: Touches) -> kopf.Memo:
    memo = kopf.Memo()
    memo.syncs = touches
    return memo


@pytest.mark.parametrize(
    ("status", "prompt"),
    [
        ({}, False),
        ({"active": 1, "ready": 1}, False),
        ({"conditions": [{"type": "Complete", "status": "True"}]}, True),
        ({"conditions": [{"type": "Failed", "status": "True"}]}, True),
    ],
)
async def test_a_job_event_touches_its_evaluation(status: dict[str, Any], prompt: bool) -> None:
    touches = Touches()
    event = {"type": "MODIFIED", "object": {}}
    await handlers.job_changed(
        event=event, body=owned(status=status), namespace="ns", memo=memo_with(touches)
    )
    assert touches.seen == [("ns", "e", prompt, False)]


async def test_the_job_just_created_touches_nothing_but_a_listed_one_does() -> None:
    """The create handler syncs after creating the Job; after a restart the listing is synced."""
    touches = Touches()
    memo = memo_with(touches)
    await handlers.job_changed(event={"type": "ADDED"}, body=owned(), namespace="ns", memo=memo)
    assert touches.seen == []
    await handlers.job_changed(event={"type": None}, body=owned(), namespace="ns", memo=memo)
    listed = owned(status={"active": 1})
    await handlers.job_changed(event={"type": "ADDED"}, body=listed, namespace="ns", memo=memo)
    assert touches.seen == [("ns", "e", False, False)] * 2


@pytest.mark.parametrize(
    ("phase", "prompt", "ended"),
    [
        ("Pending", False, False),
        ("Running", True, False),
        ("Succeeded", False, True),
        ("Failed", False, True),
    ],
)
async def test_a_pod_event_touches_its_evaluation(phase: str, prompt: bool, ended: bool) -> None:
    touches = Touches()
    body = kopf.Body({"metadata": {"labels": {LABEL_EVALUATION: "e"}}, "status": {"phase": phase}})
    await handlers.pod_changed(body=body, namespace="ns", memo=memo_with(touches))
    assert touches.seen == [("ns", "e", prompt, ended)]


async def test_a_progress_report_touches_its_evaluation_and_the_empty_configmap_does_not() -> None:
    touches = Touches()
    memo = memo_with(touches)
    await handlers.progress_reported(body=owned(data={}), namespace="ns", memo=memo)
    assert touches.seen == []
    await handlers.progress_reported(body=owned(data={PROGRESS_KEY: "{}"}), namespace="ns", memo=memo)
    assert touches.seen == [("ns", "e", False, False)]


class Remembered:
    def __init__(self) -> None:
        self.bodies: dict[tuple[str, str], Any] = {}

    def remember(self, namespace: str, name: str, evaluation: Any) -> None:
        self.bodies[(namespace, name)] = evaluation

    def forget(self, namespace: str, name: str) -> None:
        self.bodies.pop((namespace, name), None)


@pytest.mark.parametrize(
    ("kind", "status", "kept"),
    [
        ("MODIFIED", {}, True),
        ("MODIFIED", {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}, True),
        (
            "MODIFIED",
            {"observedGeneration": 1, "conditions": [{"type": "Succeeded", "status": "True"}]},
            False,
        ),
        (
            "MODIFIED",
            {"observedGeneration": 0, "conditions": [{"type": "Succeeded", "status": "True"}]},
            True,
        ),
        ("DELETED", {}, False),
    ],
)
async def test_the_syncs_keep_what_an_unfinished_evaluation_was_last_seen_as(
    kind: str, status: dict[str, Any], kept: bool
) -> None:
    raw = {"metadata": {"name": "e", "namespace": "ns", "generation": 1}, "status": status}
    memo = kopf.Memo()
    memo.syncs, memo.seen = Remembered(), {}
    await handlers.evaluation_seen(
        event={"type": kind, "object": raw},
        body=kopf.Body(raw),
        namespace="ns",
        name="e",
        memo=memo,
        leaderboard_readers={},
    )
    assert memo.syncs.bodies == ({("ns", "e"): raw} if kept else {})
