"""The operator's lifecycle without a cluster: no handler that makes kopf add a finalizer, the resync
interval read once (OperatorConfig), the operator-level resync loop, and the liveness default."""

from __future__ import annotations

import asyncio
import logging
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from nejumi_operator import __main__ as operator_main
from nejumi_operator import handlers
from nejumi_operator.kube.client import kopf_connections
from nejumi_operator.settings import ENV_RESYNC, OperatorConfig, SettingsError
from nejumi_operator.syncs import StatusSyncs

LOG = logging.getLogger("test")


# ---- settings -------------------------------------------------------------------------------------


def test_resync_interval_defaults_to_30_seconds() -> None:
    assert OperatorConfig.from_env({}).resync_seconds == 30.0 == OperatorConfig().resync_seconds
    assert OperatorConfig.from_env({ENV_RESYNC: ""}).resync_seconds == 30.0


@pytest.mark.parametrize(("raw", "seconds"), [("5", 5.0), ("0.25", 0.25), ("600", 600.0)])
def test_resync_interval_from_the_environment(raw: str, seconds: float) -> None:
    assert OperatorConfig.from_env({ENV_RESYNC: raw}).resync_seconds == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "soon", "30s"])
def test_unusable_resync_interval_is_a_settings_error(raw: str) -> None:
    with pytest.raises(SettingsError, match=ENV_RESYNC):
        OperatorConfig.from_env({ENV_RESYNC: raw})


# ---- the registered handlers ------------------------------------------------------------------------


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[kopf.OperatorRegistry]:
    """handlers.py executed anew (as `kopf run handlers.py` does) into an empty registry, with an
    environment that would break any import-time read of the resync interval."""
    monkeypatch.setenv(ENV_RESYNC, "not a number")
    previous = kopf.get_default_registry()
    registry = kopf.OperatorRegistry()
    kopf.set_default_registry(registry)
    try:
        runpy.run_path(handlers.__file__)
        yield registry
    finally:
        kopf.set_default_registry(previous)


def test_no_handler_makes_kopf_add_a_finalizer(fresh_registry: kopf.OperatorRegistry) -> None:
    """kopf finalizes resources with timers, daemons or non-optional deletion handlers; with none,
    a deletion never waits for the operator (the garbage collector deletes the Job)."""
    assert fresh_registry._spawning.get_all_handlers() == []  # no @kopf.timer, no @kopf.daemon
    changing = fresh_registry._changing.get_all_handlers()
    assert changing, "the create/resume handlers are registered"
    assert [h.id for h in changing if h.requires_finalizer] == []
    indices = [h.id for h in fresh_registry._indexing.get_all_handlers()]
    assert indices == ["unfinished_evaluations", "leaderboard_readers"]


def test_the_old_finalizer_name_is_the_one_kopf_removes() -> None:
    """Older operators had a timer, so kopf put `settings.persistence.finalizer` on every
    evaluation; kopf removes that same name from resources that no handler needs it on."""
    assert handlers.FINALIZER == "nejumi.wandb.ai/finalizer"


def test_handlers_read_no_setting_at_import(fresh_registry: kopf.OperatorRegistry) -> None:
    """The fixture imported handlers.py with an unusable interval: nothing read it (the startup
    handler reads it, through OperatorConfig, and fails there)."""
    assert not hasattr(handlers, "RESYNC_SECONDS")


# ---- the index of unfinished evaluations ------------------------------------------------------------


def succeeded(status: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Succeeded", "status": status, "reason": "R"}]}


@pytest.mark.parametrize(
    ("meta", "status", "indexed"),
    [
        ({}, {}, True),
        ({}, succeeded("Unknown"), True),
        ({}, succeeded("True"), False),
        ({}, succeeded("False"), False),
        ({"deletionTimestamp": "2025-01-01T00:00:00Z"}, {}, False),
    ],
)
def test_unfinished_evaluations_index(meta: dict[str, Any], status: dict[str, Any], indexed: bool) -> None:
    body = kopf.Body({"metadata": meta, "status": status})
    got = handlers.unfinished_evaluations(namespace="ns", name="e", meta=body.meta, status=body.status)
    # Never None: kopf keeps an object's old index entries when its indexer returns None.
    assert got == ({("ns", "e"): True} if indexed else {})


# ---- the resync loop -----------------------------------------------------------------------------


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def syncs_of(sync: Any) -> StatusSyncs:
    return StatusSyncs(sync, quiet=0.0)


async def test_resync_loop_syncs_every_unfinished_evaluation_each_round() -> None:
    unfinished = [("a", "one"), ("b", "two")]
    calls: list[tuple[str, str]] = []
    syncs = syncs_of(lambda ns, n, **_: calls.append((ns, n)))
    task = asyncio.create_task(handlers.resync_forever(0.02, unfinished, syncs, LOG))
    try:
        await wait_for(lambda: len(calls) >= 4)
        # A few at a time: in any order within a round, each once.
        assert sorted(calls[:2]) == sorted(calls[2:4]) == [("a", "one"), ("b", "two")]
        # The view is live: what is added (or finishes) between rounds is (no longer) visited.
        unfinished[:] = [("c", "three")]
        count = len(calls)
        await wait_for(lambda: ("c", "three") in calls[count:])
        count = len(calls)
        await wait_for(lambda: len(calls) >= count + 2)
        assert set(calls[count:]) == {("c", "three")}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await syncs.close()


async def test_resync_loop_waits_one_interval_first() -> None:
    calls: list[tuple[str, str]] = []
    syncs = syncs_of(lambda ns, n, **_: calls.append((ns, n)))
    task = asyncio.create_task(handlers.resync_forever(0.3, [("a", "one")], syncs, LOG))
    await asyncio.sleep(0.1)
    assert calls == []  # the resume handler syncs at startup; the loop is for later
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await syncs.close()


async def test_resync_loop_survives_failures(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def sync(namespace: str, name: str, **_: Any) -> None:
        calls.append(name)
        if name == "bad":
            raise RuntimeError("API says no")

    syncs = syncs_of(sync)
    task = asyncio.create_task(handlers.resync_forever(0.01, [("ns", "bad"), ("ns", "good")], syncs, LOG))
    try:
        with caplog.at_level(logging.WARNING, logger="nejumi_operator.syncs"):
            await wait_for(lambda: calls.count("good") >= 3)
    finally:
        task.cancel()
        await syncs.close()
    assert calls.count("bad") >= 3  # tried again every round
    assert "status sync of ns/bad failed: API says no" in caplog.text


async def test_resync_loop_runs_the_blocking_sync_off_the_event_loop() -> None:
    import threading

    threads: list[threading.Thread] = []
    syncs = syncs_of(lambda ns, n, **_: threads.append(threading.current_thread()))
    task = asyncio.create_task(handlers.resync_forever(0.01, [("ns", "e")], syncs, LOG))
    try:
        await wait_for(lambda: threads)
    finally:
        task.cancel()
        await syncs.close()
    assert threads[0] is not threading.main_thread()


# ---- startup and cleanup: the loop's lifetime is the operator's -------------------------------------


class FakeApi:
    closed = False

    def close(self) -> None:
        self.closed = True


async def test_startup_starts_the_loop_with_the_configured_interval_and_cleanup_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = FakeApi()
    synced: list[tuple[Any, str, str]] = []
    monkeypatch.setenv(ENV_RESYNC, "0.02")
    monkeypatch.setattr(handlers, "make_api_client", lambda: api)
    monkeypatch.setattr(handlers, "sync_status", lambda a, ns, n, config, **_: synced.append((a, ns, n)))
    monkeypatch.setattr(handlers, "list_children", lambda a, ns, names: {})  # each sync reads its own
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    index = [("ns", "e")]  # stands in for kopf's index (iterating a kopf.Index yields its keys)

    await handlers.configure(settings=settings, memo=memo, logger=LOG, unfinished_evaluations=index)
    assert memo.config.resync_seconds == 0.02
    assert settings.persistence.finalizer == handlers.FINALIZER
    await wait_for(lambda: len(synced) >= 2)
    assert synced[0] == (api, "ns", "e")

    task = memo.resync
    await handlers.close(memo=memo)
    assert task.cancelled() and api.closed
    await asyncio.sleep(0.01)  # a sync already in its thread when the loop was cancelled ends
    count = len(synced)
    await asyncio.sleep(0.1)
    assert len(synced) == count


async def test_startup_with_an_unusable_interval_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_RESYNC, "0")
    monkeypatch.setattr(handlers, "make_api_client", FakeApi)
    memo = kopf.Memo()
    with pytest.raises(SettingsError, match=ENV_RESYNC):
        await handlers.configure(
            settings=kopf.OperatorSettings(), memo=memo, logger=LOG, unfinished_evaluations=[]
        )
    assert getattr(memo, "resync", None) is None


async def test_cleanup_before_a_complete_startup_is_harmless() -> None:
    await handlers.close(memo=kopf.Memo())


# ---- the liveness endpoint ---------------------------------------------------------------------------


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "configure", lambda **kw: None)
    monkeypatch.setattr(kopf, "run", lambda **kw: seen.update(kw))
    assert operator_main.main(args) == 0
    return seen


def test_liveness_listens_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_main([], monkeypatch)["liveness_endpoint"] == "http://127.0.0.1:8080/healthz"


def test_liveness_can_be_moved_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://0.0.0.0:9090/healthz"
    assert run_main([f"--liveness={url}"], monkeypatch)["liveness_endpoint"] == url
    assert run_main(["--liveness="], monkeypatch)["liveness_endpoint"] is None


# ---- kopf's connections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespaces", "limit"),
    [
        ((), 32 + 2 + 5),  # cluster-wide: one watch per kind, and kopf's two
        (("team-a",), 32 + 2 + 5),
        (("team-a", "team-b"), 32 + 2 + 10),
        (None, 0),  # not known (`kopf run`): no limit, as kopf's own session
        (("team-*",), 0),  # patterns: how many namespaces match is not known
        (("!kube-system",), 0),
    ],
)
def test_kopf_gets_a_connection_for_each_watch_and_a_few_requests(
    namespaces: tuple[str, ...] | None, limit: int
) -> None:
    assert kopf_connections(namespaces) == limit


async def test_login_gives_kopf_a_session_of_bounded_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t0ken}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: ns}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    memo = kopf.Memo(namespaces=("team-a", "team-b"))
    got = await handlers.login(memo=memo, logger=LOG, settings=kopf.OperatorSettings())
    assert isinstance(got, kopf.AiohttpSession)
    try:
        assert (got.server, got.default_namespace) == ("https://127.0.0.1:6443", "ns")
        assert got.aiohttp_session.connector is not None
        assert got.aiohttp_session.connector.limit == kopf_connections(("team-a", "team-b"))
        assert got.aiohttp_session.headers["Authorization"] == "Bearer t0ken"
    finally:
        await got.aiohttp_session.close()


def test_the_entry_point_tells_login_the_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = run_main(["--namespace", "team-a", "--namespace", "team-b"], monkeypatch)
    assert seen["memo"].namespaces == ("team-a", "team-b")
    assert run_main([], monkeypatch)["memo"].namespaces == ()


# ---- a status finished under an older operator --------------------------------------------------


def test_a_status_finished_before_the_kstatus_conditions_gets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """An evaluation that failed under an operator without Ready/Reconciling/Stalled would read as
    Current to kstatus (Flux, Helm --wait): at resume the three are added, derived from its own
    conditions, and nothing else of the finished status is written."""
    from nejumi_operator import controller

    old = {
        "phase": "Failed",
        "reason": "NoScore",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Succeeded", "status": "False", "reason": "NoScore", "message": "mtbench has no score"}
        ],
    }
    evaluation = {"metadata": {"name": "e", "generation": 1, "resourceVersion": "7"}, "status": old}
    patches: list[tuple[dict[str, Any], str]] = []
    monkeypatch.setattr(controller.calls, "read_evaluation", lambda api, ns, name: evaluation)
    monkeypatch.setattr(
        controller.calls, "patch_status", lambda api, ns, name, status, rv: patches.append((status, rv))
    )
    assert controller.complete_finished_status(object(), "ns", "e") is True
    ((patch, version),) = patches
    assert version == "7" and set(patch) == {"conditions"}
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert (by_type["Stalled"]["status"], by_type["Stalled"]["reason"]) == ("True", "NoScore")
    assert by_type["Ready"]["status"] == "False" and by_type["Reconciling"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in patch["conditions"][1:])

    evaluation["status"] = {**old, "conditions": patch["conditions"]}
    assert controller.complete_finished_status(object(), "ns", "e") is False  # once is enough
    evaluation["status"] = {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}
    assert controller.complete_finished_status(object(), "ns", "e") is False  # unfinished: the reducer's
    assert len(patches) == 1
