"""The inference client against a real local HTTP server: retries, typed errors, cache, resume."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import pytest

from nejumi_eval.runtime.client import (
    AnswerSource,
    ChatMessage,
    ChatRequest,
    ClientSettings,
    CompletionRequest,
    EndpointAuthError,
    EndpointUnreachableError,
    InferenceClient,
    ModelNotFoundError,
    ResponseCache,
    RetryPolicy,
    cache_key,
)
from nejumi_eval.runtime.client.retry import parse_retry_after
from tests.support.paths import FIXTURES

sys.path.insert(0, str(FIXTURES))
from openai_stub import Reply, StubServer

FAST = RetryPolicy(max_attempts=4, initial_delay_s=0.001, max_delay_s=0.01, max_retry_after_s=5.0)


@pytest.fixture
def stub():
    with StubServer() as server:
        yield server


def settings(base_url: str, **overrides) -> ClientSettings:
    values = {"base_url": base_url, "model": "stub-model", "retry": FAST, "concurrency": 4}
    values.update(overrides)
    return ClientSettings(**values)


def completion(prompt: str = "hello world", max_tokens: int = 8, **kw) -> CompletionRequest:
    return CompletionRequest(prompt=prompt, max_tokens=max_tokens, **kw)


# ---- retry policy ---------------------------------------------------------------------------


def test_backoff_grows_is_capped_and_jittered():
    policy = RetryPolicy(initial_delay_s=1.0, max_delay_s=4.0, jitter=0.25)
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0.75 * full <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jitter


def test_retry_after_is_honoured_up_to_the_cap():
    policy = RetryPolicy(max_retry_after_s=10.0)
    assert policy.delay(1, retry_after_s=3.0) == 3.0
    assert policy.delay(1, retry_after_s=500.0) == 10.0


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


# ---- retries against the stub ---------------------------------------------------------------


async def test_429_with_retry_after_then_success(stub: StubServer):
    stub.script.extend([Reply(429, {"Retry-After": "0.15"}), Reply(429, {"Retry-After": "0.15"})])
    async with InferenceClient(settings(stub.base_url)) as client:
        started = time.monotonic()
        result = await client.generate(completion())
        elapsed = time.monotonic() - started
    assert stub.calls == 3
    assert result.ok and result.text == "echo:hello world"
    assert result.attempts == 3
    assert elapsed >= 0.3  # both Retry-After waits were honoured (backoff alone is ~ms)
    assert client.stats.retries == 2 and client.stats.http_attempts == 3 and client.stats.failures == 0


async def test_retry_after_above_cap_is_capped(stub: StubServer):
    stub.script.append(Reply(429, {"Retry-After": "3600"}))
    policy = FAST.model_copy(update={"max_retry_after_s": 0.05})
    async with InferenceClient(settings(stub.base_url, retry=policy)) as client:
        started = time.monotonic()
        result = await client.generate(completion())
    assert result.ok and stub.calls == 2
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
async def test_transient_status_is_retried(stub: StubServer, status: int):
    stub.script.extend([Reply(status), Reply(status)])
    async with InferenceClient(settings(stub.base_url)) as client:
        result = await client.generate(completion())
    assert result.ok and stub.calls == 3 and result.attempts == 3


async def test_exhausted_retries_give_a_flagged_result_not_an_exception(stub: StubServer, tmp_path: Path):
    stub.script.extend([Reply(503)] * 10)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    async with InferenceClient(settings(stub.base_url), cache=cache) as client:
        results = await client.run_all([completion("a"), completion("b")], progress=False)
    # 2 requests × 4 attempts = 8 of the scripted 503s; then a good answer would be available
    assert stub.calls == 8
    assert [r.text for r in results] == ["", ""]
    assert all(r.error and "failed after 4 attempts" in r.error and "503" in r.error for r in results)
    assert client.stats.failures == 2 and client.stats.requests_sent == 2
    assert len(cache) == 0  # failures are not cached: the next run asks again
    async with InferenceClient(settings(stub.base_url), cache=cache) as client:
        again = await client.run_all([completion("a"), completion("b")], progress=False)
    assert all(r.ok and not r.cached for r in again)
    assert stub.calls == 8 + 2 + 2  # two scripted 503s left, then two successes


async def test_client_error_is_not_retried(stub: StubServer):
    stub.script.append(Reply(400, body={"error": {"message": "maximum context length is 16 tokens"}}))
    async with InferenceClient(settings(stub.base_url)) as client:
        result = await client.generate(completion())
    assert stub.calls == 1
    assert result.error is not None and "400" in result.error and "context length" in result.error
    assert result.text == ""


async def test_timeout_is_retried_then_flagged(stub: StubServer):
    stub.delay_s = 1.0
    policy = FAST.model_copy(update={"max_attempts": 2})
    async with InferenceClient(settings(stub.base_url, retry=policy, request_timeout_s=0.2)) as client:
        result = await client.generate(completion())
    assert stub.calls == 2
    assert result.error is not None and "timed out" in result.error


# ---- fail fast on misconfiguration ----------------------------------------------------------


async def test_unknown_model_fails_fast_at_preflight(stub: StubServer):
    async with InferenceClient(settings(stub.base_url, model="no-such-model")) as client:
        with pytest.raises(ModelNotFoundError) as err:
            await client.run_all([completion()] * 3, progress=False)
    assert "no-such-model" in str(err.value) and stub.base_url in str(err.value)
    assert stub.calls == 0


async def test_404_on_request_is_a_typed_error_not_a_retry(stub: StubServer):
    async with InferenceClient(settings(stub.base_url, model="no-such-model", verify_model=False)) as client:
        with pytest.raises(ModelNotFoundError) as err:
            await client.run_all([completion(str(i)) for i in range(3)], progress=False)
    assert "no-such-model" in str(err.value) and stub.base_url in str(err.value)
    assert 1 <= stub.calls <= 3  # each request at most once: no retries of a 404


async def test_auth_error_is_typed(stub: StubServer):
    stub.script.append(Reply(401, body={"error": {"message": "bad key"}}))
    async with InferenceClient(settings(stub.base_url, verify_model=False)) as client:
        with pytest.raises(EndpointAuthError, match="bad key"):
            await client.generate(completion())


async def test_connection_refused_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    async with InferenceClient(settings(base_url)) as client:
        with pytest.raises(EndpointUnreachableError) as err:
            await client.generate(completion())
    assert base_url in str(err.value) and "stub-model" in str(err.value)


# ---- results, ordering, concurrency ---------------------------------------------------------


async def test_chat_and_completion_results_are_well_formed(stub: StubServer):
    requests = [
        completion("one two three", max_tokens=2),
        ChatRequest(messages=[ChatMessage(role="user", content="q1")], max_tokens=5, temperature=0.7),
    ]
    async with InferenceClient(settings(stub.base_url)) as client:
        first, second = await client.run_all(requests, progress=False)
    assert (first.text, first.finish_reason, first.prompt_tokens, first.completion_tokens) == (
        "echo:one two three",
        "length",
        3,
        2,
    )
    assert (second.text, second.finish_reason, second.model) == ("chat:q1", "stop", "stub-model")
    assert first.latency_s > 0 and not first.cached
    chat_post = next(p for p in stub.posts if "messages" in p)  # arrival order is not fixed
    assert chat_post == {
        "model": "stub-model",
        "messages": [{"role": "user", "content": "q1"}],
        "max_tokens": 5,
        "temperature": 0.7,
    }
    assert client.stats.prompt_tokens == 4 and client.stats.completion_tokens == 5


async def test_null_chat_content_is_empty_text(stub: StubServer):
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "stub-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}],
    }
    stub.script.append(Reply(body=body))
    async with InferenceClient(settings(stub.base_url)) as client:
        result = await client.generate(
            ChatRequest(messages=[ChatMessage(role="user", content="q")], max_tokens=4)
        )
    assert result.ok and result.text == "" and result.prompt_tokens is None


async def test_run_all_keeps_order_and_bounds_concurrency(stub: StubServer):
    stub.delay_s = 0.05
    prompts = [f"p{i}" for i in range(12)]
    async with InferenceClient(settings(stub.base_url, concurrency=3)) as client:
        results = await client.run_all([completion(p) for p in prompts], progress=False)
    assert [r.text for r in results] == [f"echo:{p}" for p in prompts]
    assert stub.peak_in_flight == 3


# ---- cache ----------------------------------------------------------------------------------


def _served(model: str = "org/m", revision: str | None = "abc", **kw) -> AnswerSource:
    return AnswerSource(kind="served", backend="vllm", model=model, revision=revision, **kw)


def test_cache_key_is_canonical_and_covers_identity_revision_and_attempt():
    base = {"source": _served(), "endpoint": "/completions"}
    k = cache_key(body={"a": 1, "b": [1, 2]}, **base)
    assert k == cache_key(body={"b": [1, 2], "a": 1}, **base)
    assert k != cache_key(body={"a": 1, "b": [2, 1]}, **base)
    assert k != cache_key(body={"a": 1, "b": [1, 2]}, attempt=1, **base)
    assert k != cache_key(body={"a": 1, "b": [1, 2]}, **{**base, "source": _served(revision="def")})
    assert k != cache_key(body={"a": 1, "b": [1, 2]}, **{**base, "source": _served("org/other")})


def test_cache_key_names_the_endpoint_and_the_serving_backend():
    body = {"model": "gpt-4-0613", "messages": []}
    key = lambda source: cache_key(source=source, endpoint="/chat/completions", body=body)  # noqa: E731
    openai_ = key(AnswerSource.api("https://api.openai.com/v1", "gpt-4-0613"))
    # one endpoint however it is spelt
    assert openai_ == key(AnswerSource.api("HTTPS://API.OpenAI.com:443/v1/", "gpt-4-0613"))
    # another host, port or path is another endpoint, even for the same model name
    assert openai_ != key(AnswerSource.api("http://127.0.0.1:8000/v1", "gpt-4-0613"))
    assert openai_ != key(AnswerSource.api("https://api.openai.com:8443/v1", "gpt-4-0613"))
    assert openai_ != key(AnswerSource.api("https://proxy.example/openai/v1", "gpt-4-0613"))
    # a served model: the backend and output-changing settings count
    assert key(_served()) != key(_served().model_copy(update={"backend": "transformers"}))
    assert key(_served()) != key(_served(serving={"dtype": "float16"}))


def test_a_v1_cache_is_set_aside_never_read(tmp_path: Path):
    import sqlite3

    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:  # the v1 layout, keyed on the model name alone
        db.execute(
            "CREATE TABLE responses (key TEXT PRIMARY KEY, identity TEXT NOT NULL, revision TEXT, "
            "endpoint TEXT NOT NULL, request TEXT NOT NULL, result TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        db.execute("INSERT INTO responses VALUES ('k', 'gpt-4-0613', NULL, '/chat', '{}', '{}', 0)")
    with ResponseCache(path) as cache:
        assert len(cache) == 0 and cache.get("k") is None
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM responses_v1").fetchone()[0] == 1


async def test_same_model_name_at_two_endpoints_gives_two_entries(tmp_path: Path):
    path = tmp_path / "cache.sqlite"
    with StubServer() as a, StubServer() as b:
        for server in (a, b, a, b):
            async with InferenceClient(settings(server.base_url), cache=ResponseCache(path)) as client:
                await client.generate(completion("same question"))
        assert (a.calls, b.calls) == (1, 1)  # each endpoint asked once, then served from its own entry
    with ResponseCache(path) as cache:
        assert len(cache) == 2


async def test_second_run_is_served_from_the_cache(stub: StubServer, tmp_path: Path):
    requests = [completion(f"q{i}") for i in range(5)]
    path = tmp_path / "cache.sqlite"
    async with InferenceClient(settings(stub.base_url), cache=ResponseCache(path)) as client:
        first = await client.run_all(requests, progress=False)
    assert stub.calls == 5
    # a fresh process: new cache connection, new client
    async with InferenceClient(settings(stub.base_url), cache=ResponseCache(path)) as client:
        second = await client.run_all(requests, progress=False)
        assert stub.calls == 5 and stub.models_calls == 1  # nothing sent, not even the preflight
        assert all(r.cached for r in second)
        assert [r.text for r in second] == [r.text for r in first]
        assert [r.completion_tokens for r in second] == [r.completion_tokens for r in first]
        assert client.stats.cache_hits == 5 and client.stats.requests_sent == 0

        # a changed request misses; so does a new attempt number or another model identity
        await client.generate(completion("q0", max_tokens=9))
        await client.generate(completion("q0", attempt=1))
        assert stub.calls == 7
    other = settings(stub.base_url, source=_served("org/other-model"))
    async with InferenceClient(other, cache=ResponseCache(path)) as client:
        await client.generate(completion("q0"))
    assert stub.calls == 8


async def test_killed_run_resumes_without_repeating_finished_requests(stub: StubServer, tmp_path: Path):
    stub.delay_s = 0.02
    requests = [completion(f"q{i}") for i in range(10)]
    path = tmp_path / "cache.sqlite"
    finished: list[int] = []

    async with InferenceClient(settings(stub.base_url, concurrency=1), cache=ResponseCache(path)) as client:
        task: asyncio.Task | None = None

        def on_result(index: int, _result) -> None:
            finished.append(index)
            if len(finished) == 4:
                assert task is not None
                task.cancel()

        task = asyncio.create_task(client.run_all(requests, progress=False, on_result=on_result))
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(finished) == 4
    stub.settle()
    sent_before = stub.calls  # 4, or 5 if the next one was in flight when the run was killed

    async with InferenceClient(settings(stub.base_url), cache=ResponseCache(path)) as client:
        results = await client.run_all(requests, progress=False)
    assert stub.calls - sent_before == 6
    assert client.stats.cache_hits == 4 and client.stats.requests_sent == 6
    assert [r.text for r in results] == [f"echo:q{i}" for i in range(10)]
    assert {i for i, r in enumerate(results) if r.cached} == set(finished)


async def test_critical_path_requests_are_served_first(stub: StubServer):
    """With every slot taken, a queued priority request goes before earlier default ones."""
    from nejumi_eval.runtime.client.client import CRITICAL_PATH

    stub.delay_s = 0.05
    async with InferenceClient(settings(stub.base_url, concurrency=1)) as client:
        bulk = asyncio.create_task(client.run_all([completion(f"bulk{i}") for i in range(4)], progress=False))
        await asyncio.sleep(0.02)  # bulk0 in flight, bulk1..3 queued
        urgent = await client.generate(completion("urgent"), priority=CRITICAL_PATH)
        await bulk
    order = [p["prompt"] for p in stub.posts]
    assert order[:2] == ["bulk0", "urgent"] and urgent.text == "echo:urgent"
    assert sorted(order[2:]) == ["bulk1", "bulk2", "bulk3"]


async def test_a_cancelled_waiter_does_not_lose_a_slot(stub: StubServer):
    stub.delay_s = 0.05
    async with InferenceClient(settings(stub.base_url, concurrency=1)) as client:
        first = asyncio.create_task(client.generate(completion("a")))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(client.generate(completion("b")))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiter
        again = await asyncio.wait_for(client.generate(completion("c")), timeout=5)
    assert again.text == "echo:c"
