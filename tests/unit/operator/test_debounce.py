"""The shared debouncer (nejumi_operator.debounce) beyond what the leaderboards' tests cover: what it
remembers of each key's last run, and touches that ask for a wait of their own."""

from __future__ import annotations

import asyncio
from typing import Any

from nejumi_operator.debounce import Debouncer


async def drained(debouncer: Debouncer) -> None:
    for _ in range(2000):
        if not debouncer._pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("still pending")


async def test_it_remembers_when_each_key_last_ran_until_told_to_forget() -> None:
    now = [100.0]

    async def run(_key: Any) -> None:
        return None

    debouncer = Debouncer(run, quiet=0.0, max_delay=30, clock=lambda: now[0])
    debouncer.touch("a")
    assert debouncer.pending("a") and debouncer.last_run("a") is None
    await drained(debouncer)
    assert not debouncer.pending("a") and debouncer.last_run("a") == 100.0
    now[0] = 200.0
    debouncer.touch("b")
    await drained(debouncer)
    debouncer.forget_before(150.0)
    assert debouncer.last_run("a") is None and debouncer.last_run("b") == 200.0


async def test_a_longer_quiet_window_is_not_cut_short_by_ordinary_touches_but_a_deadline_is() -> None:
    runs: list[Any] = []

    async def run(key: Any) -> None:
        runs.append(key)

    debouncer = Debouncer(run, quiet=0.0, max_delay=60)
    debouncer.touch("a", quiet=60.0)  # something more is about to come
    debouncer.touch("a")  # an ordinary touch: still waits for the longer window
    await asyncio.sleep(0.1)
    assert runs == []
    debouncer.touch("a", within=0.0)  # at once
    await drained(debouncer)
    assert runs == ["a"]
    await debouncer.close()
