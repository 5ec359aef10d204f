"""The one retry loop (`retry_sync` / `retry_async`): attempts, delays, exhaustion, unreachable hosts.

Sleeping is replaced by recording the requested delays, so nothing here waits or measures time.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from nejumi_eval.runtime.client.retry import Retry, RetryPolicy, retry_async, retry_sync

NO_JITTER = RetryPolicy(max_attempts=5, initial_delay_s=0.5, max_delay_s=8.0, jitter=0.0)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []

    async def fake_async_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(time, "sleep", delays.append)
    monkeypatch.setattr(asyncio, "sleep", fake_async_sleep)
    return delays


def scripted(outcomes: list[object]):
    """An attempt function returning ``outcomes`` in turn; records the attempt numbers it saw."""
    seen: list[int] = []

    def attempt(number: int) -> object:
        seen.append(number)
        return outcomes[number - 1]

    return attempt, seen


def exhausted(attempts: int, failure: Retry) -> str:
    return f"gave up after {attempts}: {failure.reason}"


def test_success_after_retries_returns_the_result(slept: list[float]) -> None:
    attempt, seen = scripted([Retry("HTTP 503"), Retry("HTTP 429", retry_after_s=3.0), "ok"])
    retried: list[tuple[int, float, str]] = []
    result = retry_sync(
        NO_JITTER, attempt, exhausted=exhausted, on_retry=lambda n, d, f: retried.append((n, d, f.reason))
    )
    assert result == "ok" and seen == [1, 2, 3]
    assert retried == [(1, 0.5, "HTTP 503"), (2, 3.0, "HTTP 429")]  # Retry-After wins over backoff
    assert slept == [0.5, 3.0]


def test_exhaustion_reports_the_attempts_and_the_last_failure(slept: list[float]) -> None:
    attempt, seen = scripted([Retry(f"HTTP 50{n}") for n in range(5)])
    assert retry_sync(NO_JITTER, attempt, exhausted=exhausted) == "gave up after 5: HTTP 504"
    assert seen == [1, 2, 3, 4, 5]
    assert slept == [0.5, 1.0, 2.0, 4.0]  # no sleep after the last attempt


def test_a_final_outcome_or_an_exception_ends_the_loop_at_once(slept: list[float]) -> None:
    attempt, seen = scripted([None])
    assert retry_sync(NO_JITTER, attempt, exhausted=exhausted) is None and seen == [1]

    def broken(_: int) -> object:
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        retry_sync(NO_JITTER, broken, exhausted=exhausted)
    assert slept == []


def test_an_unreachable_host_gets_one_quick_retry_by_default(slept: list[float]) -> None:
    attempt, seen = scripted([Retry("refused", unreachable=True)] * 6)
    assert retry_sync(RetryPolicy(), attempt, exhausted=exhausted) == "gave up after 2: refused"
    assert seen == [1, 2] and len(slept) == 1 and slept[0] <= RetryPolicy().initial_delay_s


def test_the_unreachable_budget_counts_backoff_not_attempts(slept: list[float]) -> None:
    zero = RetryPolicy(max_attempts=3, initial_delay_s=0.0, max_delay_s=0.0)
    attempt, seen = scripted([Retry("refused", unreachable=True)] * 3)
    assert retry_sync(zero, attempt, exhausted=exhausted) == "gave up after 3: refused"
    assert seen == [1, 2, 3]  # no backoff to spend: every attempt is quick
    slow = RetryPolicy(initial_delay_s=2.0)  # the first backoff alone is over the budget
    attempt, seen = scripted([Retry("refused", unreachable=True)] * 6)
    assert retry_sync(slow, attempt, exhausted=exhausted) == "gave up after 1: refused"
    assert seen == [1] and slept == [0.0, 0.0]


def test_a_host_that_vanishes_after_errors_is_not_retried_for_long(slept: list[float]) -> None:
    outcomes = [Retry("HTTP 503"), Retry("HTTP 503"), Retry("refused", unreachable=True), "ok"]
    attempt, seen = scripted(outcomes)
    assert retry_sync(NO_JITTER, attempt, exhausted=exhausted) == "gave up after 3: refused"
    assert seen == [1, 2, 3] and slept == [0.5, 1.0]


async def test_the_async_loop_behaves_the_same(slept: list[float]) -> None:
    outcomes: list[object] = [Retry("timed out"), Retry("HTTP 502"), "ok"]
    seen: list[int] = []

    async def attempt(number: int) -> object:
        seen.append(number)
        return outcomes[number - 1]

    assert await retry_async(NO_JITTER, attempt, exhausted=exhausted) == "ok"
    assert seen == [1, 2, 3] and slept == [0.5, 1.0]

    outcomes = [Retry("refused", unreachable=True)] * 6
    seen.clear()
    assert await retry_async(NO_JITTER, attempt, exhausted=exhausted) == "gave up after 2: refused"
    assert seen == [1, 2]
