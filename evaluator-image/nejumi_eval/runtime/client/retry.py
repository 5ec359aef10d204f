"""The one retry policy of the evaluator (style §5: constants + one loop, no call site retries).

Only what can heal is retried: connection errors, timeouts, 408, 409, 429 and ≥500. ``Retry-After``
is honoured up to a cap; otherwise exponential backoff with jitter, so many concurrent requests that
failed together do not come back together. openai's own retries are disabled (``max_retries=0``)
so this is the only policy in force.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

MAX_ATTEMPTS = 6
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 60.0
JITTER = 0.25
RETRYABLE_STATUS = frozenset({408, 409, 429})


class RetryPolicy(BaseModel):
    """Defaults are the module constants; tests shrink the delays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=MAX_ATTEMPTS, ge=1, description="attempts in all, first included")
    initial_delay_s: float = Field(default=INITIAL_RETRY_DELAY_S, ge=0)
    max_delay_s: float = Field(default=MAX_RETRY_DELAY_S, ge=0)
    max_retry_after_s: float = Field(default=MAX_RETRY_AFTER_S, ge=0, description="cap on Retry-After")
    jitter: float = Field(default=JITTER, ge=0, le=1, description="share of the backoff removed at random")

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0:
            return min(retry_after_s, self.max_retry_after_s)
        backoff = min(self.initial_delay_s * 2 ** (attempt - 1), self.max_delay_s)
        return backoff * (1 - self.jitter * random.random())


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
