"""The one retry policy of the evaluator and the one loop applying it (style §5: no call site retries).

Only what can heal is retried: connection errors, timeouts, 408, 409, 429 and ≥500. ``Retry-After``
is honoured up to a cap; otherwise exponential backoff with jitter, so many concurrent requests that
failed together do not come back together. openai's own retries are disabled (``max_retries=0``)
so this is the only policy in force.

A host that is not there (its name does not resolve, or it refuses connections) does not come
back in seconds: a call site may mark such a failure ``unreachable``, and it is then retried only
while the backoff spent stays within ``unreachable_backoff_s`` (one quick retry by default).

Call sites do not loop: :func:`retry_async` / :func:`retry_sync` call ``attempt(number)`` until it
returns a result, and a :class:`Retry` return value is a failure that may heal.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

MAX_ATTEMPTS = 6
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 60.0
JITTER = 0.25
UNREACHABLE_BACKOFF_S = 1.0
RETRYABLE_STATUS = frozenset({408, 409, 429})

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """Defaults are the module constants; tests shrink the delays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=MAX_ATTEMPTS, ge=1, description="attempts in all, first included")
    initial_delay_s: float = Field(default=INITIAL_RETRY_DELAY_S, ge=0)
    max_delay_s: float = Field(default=MAX_RETRY_DELAY_S, ge=0)
    max_retry_after_s: float = Field(default=MAX_RETRY_AFTER_S, ge=0, description="cap on Retry-After")
    jitter: float = Field(default=JITTER, ge=0, le=1, description="share of the backoff removed at random")
    unreachable_backoff_s: float = Field(
        default=UNREACHABLE_BACKOFF_S,
        ge=0,
        description="most backoff (before jitter) spent on a host that does not resolve or refuses",
    )

    def backoff(self, attempt: int) -> float:
        """The exponential backoff after failed attempt ``attempt`` (1-based), before jitter."""
        return min(self.initial_delay_s * 2 ** (attempt - 1), self.max_delay_s)

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0:
            return min(retry_after_s, self.max_retry_after_s)
        return self.backoff(attempt) * (1 - self.jitter * random.random())

    def wait_after(self, attempt: int, failure: Retry) -> float | None:
        """Seconds to wait before the next attempt after ``failure``, or None: no attempt left."""
        if attempt >= self.max_attempts:
            return None
        if failure.unreachable:
            spent = sum(self.backoff(n) for n in range(1, attempt + 1))
            if spent > self.unreachable_backoff_s:
                return None
        return self.delay(attempt, failure.retry_after_s)


@dataclass(frozen=True, slots=True)
class Retry:
    """What an attempt returns for a failure that may heal."""

    reason: str
    """Why it failed, for the message once no attempt is left."""
    retry_after_s: float | None = None
    """What the server asked for (``Retry-After``), if anything."""
    unreachable: bool = False
    """The host is not there (name does not resolve, connection refused): retried only briefly."""


async def retry_async(
    policy: RetryPolicy,
    attempt: Callable[[int], Awaitable[T | Retry]],
    *,
    exhausted: Callable[[int, Retry], T],
    on_retry: Callable[[int, float, Retry], None] | None = None,
) -> T:
    """Await ``attempt(n)`` for n = 1, 2, ... until it returns anything but a :class:`Retry`.

    Between attempts ``on_retry(n, delay, failure)`` is called and the policy's delay awaited.
    When the policy allows no further attempt, ``exhausted(n, last_failure)`` gives the result.
    Exceptions from ``attempt`` propagate: raising is how a call site ends the loop with an error.
    """
    number = 1
    while True:
        outcome = await attempt(number)
        if not isinstance(outcome, Retry):
            return outcome
        delay = policy.wait_after(number, outcome)
        if delay is None:
            return exhausted(number, outcome)
        if on_retry is not None:
            on_retry(number, delay, outcome)
        await asyncio.sleep(delay)
        number += 1


def retry_sync(
    policy: RetryPolicy,
    attempt: Callable[[int], T | Retry],
    *,
    exhausted: Callable[[int, Retry], T],
    on_retry: Callable[[int, float, Retry], None] | None = None,
) -> T:
    """:func:`retry_async` for blocking code (``time.sleep`` between attempts)."""
    number = 1
    while True:
        outcome = attempt(number)
        if not isinstance(outcome, Retry):
            return outcome
        delay = policy.wait_after(number, outcome)
        if delay is None:
            return exhausted(number, outcome)
        if on_retry is not None:
            on_retry(number, delay, outcome)
        time.sleep(delay)
        number += 1


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """``retry-after-ms``, ``retry-after`` in seconds, or ``retry-after`` as an HTTP date."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return float(raw_ms) / 1000
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
