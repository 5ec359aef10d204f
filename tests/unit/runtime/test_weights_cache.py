"""The weights cache between processes, against the in-process Hub double (tests.fixtures.hub_server,
counting what it serves): two processes filling one entry at once download it once; a filler that
dies mid-download leaves nothing that blocks or poisons the next; a live holder makes a waiter give
up with a clear error, not hang."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.runtime.weights import CachedWeights, CacheLockTimeout, ResolvedSource, fetch, resolve
from nejumi_eval.runtime.weights.cache import COMPLETE, LOCK, STAGING_PREFIX, WEIGHTS, entry_dir
from nejumi_eval.runtime.weights.lock import EntryLock
from tests.fixtures.hub_server import HubServer, model_folder, point_huggingface_hub_at

WAIT_S = 60.0
"""How long a test waits for another process to get somewhere (generous for a loaded machine)."""


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        point_huggingface_hub_at(server, monkeypatch, tmp_path / "hf-home")
        server.add_repo("org/tiny", model_folder(tmp_path / "repo", weights_bytes=256 * 1024))
        yield server


def _fetch_in_child(resolved: ResolvedSource, cache_root: str, start: Any, results: Any) -> None:
    start.wait(WAIT_S)
    results.put(fetch(resolved, Path(cache_root), progress=lambda _: None, progress_interval_s=0.05))


def test_two_processes_filling_at_once_download_once(hub: HubServer, tmp_path: Path) -> None:
    resolved = resolve("hf://org/tiny")
    hub.rate_bytes_per_s = 1024 * 1024  # a quarter second: the second one arrives mid-download
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    children = [
        ctx.Process(target=_fetch_in_child, args=(resolved, str(tmp_path / "cache"), start, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    got: list[CachedWeights] = [results.get(timeout=WAIT_S) for _ in children]
    for child in children:
        child.join(WAIT_S)
        assert child.exitcode == 0

    assert hub.files_served == len(resolved.files) and hub.bytes_served == resolved.total_bytes
    assert sorted(c.bytes_downloaded for c in got) == [0, resolved.total_bytes]
    assert sorted(c.bytes_from_cache for c in got) == [0, resolved.total_bytes]
    assert got[0].path == got[1].path == entry_dir(tmp_path / "cache", resolved) / WEIGHTS


def _fill_until_killed(resolved: ResolvedSource, cache_root: str) -> None:
    fetch(resolved, Path(cache_root))


def test_a_filler_that_died_leaves_nothing_that_blocks_or_is_used(hub: HubServer, tmp_path: Path) -> None:
    resolved = resolve("hf://org/tiny")
    entry = entry_dir(tmp_path / "cache", resolved)
    hub.rate_bytes_per_s = 64 * 1024  # four seconds: killed long before the end
    ctx = multiprocessing.get_context("spawn")
    filler = ctx.Process(target=_fill_until_killed, args=(resolved, str(tmp_path / "cache")))
    filler.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while hub.bytes_served == 0 and time.monotonic() < deadline:  # it is downloading
            time.sleep(0.02)
        assert hub.bytes_served > 0
    finally:
        os.kill(filler.pid or 0, signal.SIGKILL)
        filler.join(WAIT_S)
    assert [p.name for p in entry.iterdir() if p.name.startswith(STAGING_PREFIX)]  # what it left
    assert not (entry / COMPLETE).exists()

    hub.rate_bytes_per_s = None
    hub.reset_counters()
    cached = fetch(resolved, tmp_path / "cache")  # not a hang: the kernel released its lock
    assert cached.bytes_downloaded == resolved.total_bytes == hub.bytes_served
    assert sorted(p.name for p in entry.iterdir()) == [LOCK, COMPLETE, WEIGHTS]
    assert sorted(p.name for p in cached.path.iterdir()) == [f.name for f in resolved.files]


def test_an_unfinished_entry_is_cleared_by_the_next_filler(hub: HubServer, tmp_path: Path) -> None:
    resolved = resolve("hf://org/tiny")
    entry = entry_dir(tmp_path / "cache", resolved)
    (entry / f"{STAGING_PREFIX}gone-1-abcd" / "sub").mkdir(parents=True)
    (entry / f"{STAGING_PREFIX}gone-1-abcd" / "sub" / "model.safetensors").write_bytes(b"partial")
    (entry / WEIGHTS).mkdir()  # published, but died before writing `complete`
    (entry / WEIGHTS / "config.json").write_text("{}", encoding="utf-8")

    cached = fetch(resolved, tmp_path / "cache")
    assert cached.bytes_downloaded == resolved.total_bytes and hub.files_served == len(resolved.files)
    assert sorted(p.name for p in entry.iterdir()) == [LOCK, COMPLETE, WEIGHTS]
    assert (cached.path / "config.json").read_bytes() == (tmp_path / "repo" / "config.json").read_bytes()

    # A complete entry whose file was damaged since (a size that is not the listed one) is filled again.
    (cached.path / "model.safetensors").write_bytes(b"truncated")
    hub.reset_counters()
    again = fetch(resolved, tmp_path / "cache")
    assert again.bytes_downloaded == resolved.total_bytes and hub.files_served == len(resolved.files)


def test_a_live_holder_makes_a_waiter_give_up_not_hang(hub: HubServer, tmp_path: Path) -> None:
    resolved = resolve("hf://org/tiny")
    entry = entry_dir(tmp_path / "cache", resolved)
    entry.mkdir(parents=True)
    reports: list[Any] = []
    with EntryLock(entry / LOCK) as other:  # another pod, alive, filling forever
        assert other.try_acquire()
        with pytest.raises(CacheLockTimeout) as err:
            fetch(resolved, tmp_path / "cache", lock_timeout_s=0.2, progress=reports.append)
    assert resolved.uri in str(err.value) and f"pid {os.getpid()}" in str(err.value)
    assert hub.files_served == 0 and reports and all(r.waiting for r in reports)
    assert fetch(resolved, tmp_path / "cache").bytes_downloaded == resolved.total_bytes  # released
