"""The one async OpenAI-compatible client every benchmark and judge goes through (design §Generate).

- Bounded concurrency: ``concurrency`` slots around each HTTP attempt (lowest ``priority`` first),
  and one long-lived connection pool of the same size, so the server's continuous batching stays full without
  queueing sockets on our side.
- One retry loop (:func:`~nejumi_eval.runtime.client.retry.retry_async`, used by
  :meth:`InferenceClient._send` and the preflight) applying :class:`RetryPolicy`; openai's own
  retries are off (``max_retries=0``).
- Misconfiguration fails fast with a typed error (:mod:`nejumi_eval.runtime.client.errors`); a request
  that still fails after its retries comes back as an :class:`InferenceResult` with ``error`` set,
  so callers count it and score it as ``""`` (protocol-jaster §5, protocol-mtbench §4).
- Content-addressed cache: a hit sends nothing; each success is committed as it arrives.
- Bounded answers (:mod:`nejumi_eval.runtime.client.limits`): a response body is read only up to
  ``max_body_bytes``, and an answer's text is cut to its cap as it is received, before the cache,
  a table, the next turn or a judge sees it; each cut is flagged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import importlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion
from tqdm.auto import tqdm

from nejumi_eval.errors import unwrap
from nejumi_eval.runtime.client.cache import ResponseCache, cache_key
from nejumi_eval.runtime.client.errors import (
    EndpointAuthError,
    EndpointUnreachableError,
    ModelNotFoundError,
)
from nejumi_eval.runtime.client.limits import ResponseTooLargeError, answer_cap, truncate_utf8
from nejumi_eval.runtime.client.models import (
    ClientSettings,
    ClientStats,
    InferenceRequest,
    InferenceResult,
)
from nejumi_eval.runtime.client.retry import Retry, is_retryable_status, parse_retry_after, retry_async

log = logging.getLogger(__name__)

# openai>=3 is built on httpx2, older releases on httpx: take Limits/Timeout from whichever module
# the installed openai uses, so the http_client we hand it is of the type it expects.
_httpx: Any = importlib.import_module(type(openai.DEFAULT_CONNECTION_LIMITS).__module__.partition(".")[0])

CRITICAL_PATH = -1
"""`priority` for a request that later requests wait for (served before the default 0)."""

_ENDPOINTS = {"completion": "/completions", "chat": "/chat/completions"}
_MAX_ERROR_CHARS = 500


def _short(text: object) -> str:
    s = str(text)
    return s if len(s) <= _MAX_ERROR_CHARS else s[:_MAX_ERROR_CHARS] + "…"


class InferenceClient:
    """Async client for one model at one endpoint. Use as ``async with InferenceClient(...) as c``.

    Several clients (model under test, judge) may share one :class:`ResponseCache`; their keys
    differ by their :class:`AnswerSource`.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        cache: ResponseCache | None = None,
        connect: Callable[[], Awaitable[None]] | None = None,
        offline: str | None = None,
    ) -> None:
        """`connect` runs once, before the first request that is not a cache hit: it starts a local
        model server on demand, so a run answered from the cache never loads a model.

        `offline`: nothing is ever sent; a request the cache cannot answer is a failed answer with
        this reason (counted and scored as a failure, as the failed request it stands for was). The
        judge stage reads the serve stage's answers this way: no server is left to ask."""
        self.settings = settings
        self.cache = cache
        self._connect = connect
        self._offline = offline
        self.stats = ClientStats()
        self._slots = _PrioritySlots(settings.concurrency)
        self._checked = False
        self._check_lock = asyncio.Lock()
        timeout = _httpx.Timeout(
            settings.request_timeout_s,
            connect=settings.connect_timeout_s,
            pool=settings.request_timeout_s,
        )
        limits = _httpx.Limits(
            max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
        )
        # Uncompressed bodies, so the bytes counted on the wire are the bytes held (no gzip bomb).
        self._http = openai.DefaultAsyncHttpxClient(
            timeout=timeout,
            limits=limits,
            headers={"Accept-Encoding": "identity"},
            event_hooks={"response": [self._bound_body]},
        )
        self._openai = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            max_retries=0,
            timeout=timeout,
            http_client=self._http,
        )

    async def __aenter__(self) -> InferenceClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._openai.close()

    async def _bound_body(self, response: Any) -> None:
        """httpx response hook (before the body is read): refuse a body declared over
        ``max_body_bytes``, and count the rest as it streams in, abandoning it past the limit."""
        limit = self.settings.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(limit, int(declared))
        response.stream = _BoundedStream(response.stream, limit)

    # ---- preflight -------------------------------------------------------------------------

    async def check(self) -> list[str]:
        """Fail fast on a wrong endpoint, key or model name; return the served model ids.

        Connection errors are retried with the normal policy (a server that is still binding its
        port gets a moment) and then raise :class:`EndpointUnreachableError`. A server without
        ``GET /models`` (404) is not an error here: the first real request will tell.
        """
        s = self.settings

        async def attempt(_: int) -> list[str] | Retry:
            try:
                page = await self._openai.models.list()
            except ResponseTooLargeError as exc:
                raise EndpointUnreachableError(f"GET {s.base_url}/models: {exc}") from None
            except openai.APIConnectionError as exc:
                if isinstance(exc.__cause__, ResponseTooLargeError):
                    raise EndpointUnreachableError(f"GET {s.base_url}/models: {exc.__cause__}") from None
                return Retry(f"{type(exc).__name__}: {_short(exc.__cause__ or exc)}")
            except openai.APIStatusError as exc:
                if exc.status_code in (401, 403):
                    raise self._auth_error(exc) from None
                if not is_retryable_status(exc.status_code):
                    log.info("GET %s/models gave %s; model check skipped", s.base_url, exc.status_code)
                    return []
                return Retry(
                    f"HTTP {exc.status_code}: {_short(exc.message)}", parse_retry_after(exc.response.headers)
                )
            return [m.id for m in page.data]

        def exhausted(attempts: int, failure: Retry) -> list[str]:
            raise EndpointUnreachableError(
                f"cannot reach the OpenAI-compatible endpoint {s.base_url} "
                f"(model {s.model!r}) after {attempts} attempts: {failure.reason}"
            )

        ids = await retry_async(s.retry, attempt, exhausted=exhausted)
        if s.verify_model and ids and s.model not in ids:
            shown = ", ".join(repr(i) for i in ids[:10]) + (" …" if len(ids) > 10 else "")
            raise ModelNotFoundError(f"model {s.model!r} is not served at {s.base_url}; it serves: {shown}")
        self._checked = True
        return ids

    async def _ensure_checked(self) -> None:
        if self._checked:
            return
        async with self._check_lock:
            if not self._checked:
                if self._connect is not None:
                    await self._connect()
                await self.check()

    # ---- requests --------------------------------------------------------------------------

    def key_for(self, request: InferenceRequest) -> str:
        return cache_key(
            source=self.settings.answer_source,
            endpoint=_ENDPOINTS[request.kind],
            body=request.body(self.settings.model),
            attempt=request.attempt,
        )

    async def generate(
        self, request: InferenceRequest, *, priority: int = 0, label: str | None = None
    ) -> InferenceResult:
        """One request: from the cache if answered before, else sent (with retries) and stored.

        Raises only :class:`InferenceClientError` (misconfiguration); every other failure is a
        result with ``error`` set.
        """
        endpoint = _ENDPOINTS[request.kind]
        body = request.body(self.settings.model)
        key = self.key_for(request)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return self._capped(hit, body, label)  # a row stored before the cap existed
        if self._offline is not None:
            self.stats.failures += 1
            log.warning("%s: not in the response cache: %s", label or f"request {key[:12]}", self._offline)
            return InferenceResult(error=self._offline, key=key)
        await self._ensure_checked()
        self.stats.requests_sent += 1
        if self.stats.first_sent_at is None:
            self.stats.first_sent_at = time.monotonic()
        result = await self._send(endpoint, body, priority)
        self.stats.last_done_at = time.monotonic()
        result.key = key
        if result.error is not None:
            self.stats.failures += 1
            # `label` says which benchmark, dataset and row it was (the key alone tells nobody)
            log.warning("%s failed: %s", label or f"request {key[:12]}", result.error)
            return result
        self.stats.prompt_tokens += result.prompt_tokens or 0
        self.stats.completion_tokens += result.completion_tokens or 0
        result = self._capped(result, body, label)
        if self.cache is not None:
            self.cache.put(
                key,
                result,
                source=self.settings.answer_source,
                endpoint=endpoint,
                body=body,
            )
        return result

    def _capped(self, result: InferenceResult, body: dict[str, Any], label: str | None) -> InferenceResult:
        """`result` with its text cut to the answer cap of `body`'s max_tokens, flagged and counted.

        Here, the one place every answer passes (sent or from the cache), so nothing downstream
        (the cache, tables, the next turn, a judge) ever holds more than the cap.
        """
        limit = answer_cap(body.get("max_tokens"), self.settings.max_answer_bytes)
        text, size = truncate_utf8(result.text, limit)
        if size is not None:
            result = result.model_copy(update={"text": text, "truncated_from_bytes": size})
        if result.truncated:
            self.stats.truncated += 1
            # the first one is a warning; the count is in the run's lines and summary
            report = log.warning if self.stats.truncated == 1 else log.debug
            report(
                "%s: the answer (%s bytes) was cut to %s bytes (max_tokens %s); answers cut so far: %d",
                label or f"request {result.key[:12]}",
                f"{result.truncated_from_bytes:,}",
                f"{limit:,}",
                body.get("max_tokens"),
                self.stats.truncated,
            )
        return result

    async def _send(self, endpoint: str, body: dict[str, Any], priority: int = 0) -> InferenceResult:
        """One request, repeated per the retry policy (:func:`retry_async`); the only place that repeats."""

        async def attempt(number: int) -> InferenceResult | Retry:
            try:
                async with self._slots.slot(priority):
                    self.stats.http_attempts += 1
                    started = time.perf_counter()
                    response = await self._post(endpoint, body)
                    latency = time.perf_counter() - started
                return self._parse(endpoint, response, latency, number)
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status == 404:
                    raise ModelNotFoundError(
                        f"404 from {self.settings.base_url}{endpoint} for model {self.settings.model!r}: "
                        f"{_short(exc.message)} (is the model name the served name, and does the base "
                        f"URL end in /v1?)"
                    ) from None
                if status in (401, 403):
                    raise self._auth_error(exc) from None
                if not is_retryable_status(status):
                    return self._failure(f"HTTP {status} (not retried): {_short(exc.message)}", number)
                return Retry(f"HTTP {status}: {_short(exc.message)}", parse_retry_after(exc.response.headers))
            except ResponseTooLargeError as exc:  # the same server would send it again: not retried
                return self._failure(str(exc), number)
            except openai.APITimeoutError:
                return Retry(f"timed out after {self.settings.request_timeout_s:g}s")
            except openai.APIConnectionError as exc:
                if isinstance(exc.__cause__, ResponseTooLargeError):  # openai<3 wraps it
                    return self._failure(str(exc.__cause__), number)
                return Retry(f"connection error: {_short(exc.__cause__ or exc)}")
            except openai.APIError as exc:  # malformed response body and the like: retrying won't help
                return self._failure(f"{type(exc).__name__}: {_short(exc)}", number)
            except _ResponseShapeError as exc:
                return self._failure(str(exc), number)

        def on_retry(_: int, delay: float, failure: Retry) -> None:
            self.stats.retries += 1
            log.debug("retrying %s in %.2fs after %s", endpoint, delay, failure.reason)

        def exhausted(attempts: int, failure: Retry) -> InferenceResult:
            return self._failure(f"failed after {attempts} attempts: {failure.reason}", attempts)

        return await retry_async(self.settings.retry, attempt, exhausted=exhausted, on_retry=on_retry)

    async def _post(self, endpoint: str, body: dict[str, Any]) -> Completion | ChatCompletion:
        # `post` sends `body` verbatim, so what is hashed for the cache is exactly what is sent.
        cast_to: type[Completion] | type[ChatCompletion] = (
            Completion if endpoint == "/completions" else ChatCompletion
        )
        return await self._openai.post(endpoint, cast_to=cast_to, body=body)

    @staticmethod
    def _parse(
        endpoint: str, response: Completion | ChatCompletion, latency: float, attempt: int
    ) -> InferenceResult:
        if not response.choices:
            raise _ResponseShapeError(f"response from {endpoint} has no choices")
        choice = response.choices[0]
        chat = isinstance(response, ChatCompletion)
        text = (choice.message.content or "") if chat else choice.text  # type: ignore[union-attr]
        usage = response.usage
        return InferenceResult(
            text=text,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_s=latency,
            model=response.model,
            attempts=attempt,
        )

    @staticmethod
    def _failure(reason: str, attempts: int) -> InferenceResult:
        return InferenceResult(error=reason, attempts=attempts)

    def _auth_error(self, exc: openai.APIStatusError) -> EndpointAuthError:
        return EndpointAuthError(
            f"HTTP {exc.status_code} from {self.settings.base_url} for model {self.settings.model!r}: "
            f"{_short(exc.message)} (check the API key secret)"
        )

    # ---- batches ---------------------------------------------------------------------------

    async def run_all(
        self,
        requests: Sequence[InferenceRequest],
        *,
        desc: str | None = None,
        progress: bool = True,
        on_result: Callable[[int, InferenceResult], None] | None = None,
        priority: int = 0,
        labels: Sequence[str] | None = None,
    ) -> list[InferenceResult]:
        """All requests at once (the semaphore bounds what is in flight); results in input order.

        ``on_result(index, result)`` is called as each finishes (progress, incremental writes).
        A misconfiguration error cancels the rest and is raised as itself, not as a group.
        """
        results: list[InferenceResult | None] = [None] * len(requests)
        with tqdm(total=len(requests), desc=desc, disable=not progress, unit="req") as bar:

            async def one(index: int, request: InferenceRequest) -> None:
                label = labels[index] if labels is not None else None
                result = await self.generate(request, priority=priority, label=label)
                results[index] = result
                bar.update(1)
                if result.cached:
                    bar.set_postfix(cached=self.stats.cache_hits, failed=self.stats.failures, refresh=False)
                if on_result is not None:
                    on_result(index, result)

            try:
                async with asyncio.TaskGroup() as group:
                    for index, request in enumerate(requests):
                        group.create_task(one(index, request))
            except BaseExceptionGroup as eg:
                raise unwrap(eg) from None
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]


class _PrioritySlots:
    """`concurrency` slots for HTTP attempts, handed out lowest `priority` first, then in arrival
    order (a FIFO semaphore with priorities).

    Why: a run queues every request at once. With plain FIFO, MT-bench's turn 1 waits behind all
    of jaster, and turn 2 and the judgments then form a serial tail after the model is done
    (measured in `make bench`: 0.70 of the server's limit). Work on a critical path (a turn that
    another turn or a judgment waits for) asks for a lower number and goes first.
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._seq), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot, then cancelled: pass it on
                self._release()
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


class _BoundedStream(_httpx.AsyncByteStream):  # httpx or httpx2, chosen at import
    """A response's byte stream that raises :class:`ResponseTooLargeError` once more than `limit`
    bytes have come, so an oversized body is abandoned, not buffered."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ResponseTooLargeError(self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _ResponseShapeError(Exception):
    """A 200 whose body cannot be read as an answer."""
