"""The answer-size cap: text cut at a UTF-8 character boundary, flagged and counted where the client
receives it (sent or from the cache), and response bodies read only up to the byte limit."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nejumi_eval.runtime.client import (
    ChatMessage,
    ChatRequest,
    ClientSettings,
    CompletionRequest,
    InferenceClient,
    InferenceResult,
    ResponseCache,
    RetryPolicy,
)
from nejumi_eval.runtime.client.limits import (
    BYTES_PER_TOKEN,
    MAX_ANSWER_BYTES,
    MIN_ANSWER_BYTES,
    answer_cap,
    truncate_utf8,
)
from tests.support.paths import FIXTURES

sys.path.insert(0, str(FIXTURES))
from openai_stub import Reply, StubServer

FAST = RetryPolicy(max_attempts=3, initial_delay_s=0.001, max_delay_s=0.01)


# ---- the cap and the cut ------------------------------------------------------------------


def test_answer_cap_follows_max_tokens_between_the_floor_and_the_ceiling() -> None:
    assert answer_cap(3) == MIN_ANSWER_BYTES  # jaster's tiny budgets still get the floor
    assert answer_cap(1024) == MIN_ANSWER_BYTES  # MT-bench: 16 KiB < the floor
    assert answer_cap(32768) == 32768 * BYTES_PER_TOKEN  # a long budget scales
    assert answer_cap(10**6) == MAX_ANSWER_BYTES  # the hard ceiling
    assert answer_cap(None) == MAX_ANSWER_BYTES
    assert answer_cap(10**6, ceiling=100) == 100 and answer_cap(3, ceiling=100) == 100


def test_text_within_the_limit_is_returned_as_it_is() -> None:
    assert truncate_utf8("abc", 3) == ("abc", None)
    assert truncate_utf8("あいう", 9) == ("あいう", None)  # 9 bytes exactly
    assert truncate_utf8("", 0) == ("", None)


@pytest.mark.parametrize(
    ("text", "limit", "kept"),
    [
        ("abcdef", 4, "abcd"),
        ("あいう", 8, "あい"),  # 3-byte characters: never half of one
        ("あいう", 6, "あい"),
        ("aあ", 3, "a"),
        ("😀😀", 7, "😀"),  # 4-byte characters
        ("é" * 5, 5, "éé"),  # 2-byte characters
        ("あ", 2, ""),
        ("abc", 0, ""),
    ],
)
def test_text_over_the_limit_is_cut_at_a_character_boundary(text: str, limit: int, kept: str) -> None:
    cut, size = truncate_utf8(text, limit)
    assert cut == kept
    assert size == len(text.encode())
    assert len(cut.encode()) <= limit
    assert text.startswith(cut)


def test_lone_surrogates_are_measured_not_refused() -> None:
    text = "a\ud800" * 10  # what JSON "\ud800" decodes to: 4 bytes per pair with surrogatepass
    cut, size = truncate_utf8(text, 10)
    assert size == 40 and cut == "a\ud800a\ud800a"  # 9 bytes; the next surrogate would make 12


# ---- in the client ----------------------------------------------------------------------


def _chat_body(text: str) -> dict[str, object]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "stub-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5},
    }


def _big(text: str) -> Reply:
    return Reply(
        body={
            "id": "x",
            "object": "text_completion",
            "created": 0,
            "model": "stub-model",
            "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5},
        }
    )


def _settings(base_url: str, **overrides: object) -> ClientSettings:
    values: dict[str, object] = {"base_url": base_url, "model": "stub-model", "retry": FAST}
    values.update(overrides)
    return ClientSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


async def test_an_oversized_answer_is_cut_once_flagged_counted_and_cached_cut(
    stub: StubServer, tmp_path: Path
) -> None:
    answer = "答" * 100  # 300 bytes
    stub.script.extend([_big(answer), _big("short")])
    cache = ResponseCache(tmp_path / "c.sqlite")
    requests = [CompletionRequest(prompt="p1", max_tokens=4), CompletionRequest(prompt="p2", max_tokens=4)]
    async with InferenceClient(_settings(stub.base_url, max_answer_bytes=100), cache=cache) as client:
        cut, short = await client.run_all(requests, progress=False)
    assert cut.ok and cut.truncated and cut.truncated_from_bytes == 300
    assert cut.text == "答" * 33  # 99 bytes: the 34th character would pass 100
    assert short.text == "short" and not short.truncated
    assert client.stats.truncated == 1
    with sqlite3.connect(tmp_path / "c.sqlite") as db:  # the cache holds the cut text, not the answer
        stored = [r[0] for r in db.execute("SELECT result FROM responses")]
    assert sorted(len(InferenceResult.model_validate_json(r).text.encode()) for r in stored) == [5, 99]

    # a rerun gets the cut answer from the cache, still flagged and counted
    async with InferenceClient(_settings(stub.base_url, max_answer_bytes=100), cache=cache) as client:
        again = await client.generate(requests[0])
    assert again.cached and again.text == cut.text and again.truncated_from_bytes == 300
    assert client.stats.truncated == 1 and stub.calls == 2
    cache.close()


async def test_a_row_cached_before_the_cap_is_cut_on_the_way_out(stub: StubServer, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    request = ChatRequest(messages=[ChatMessage(role="user", content="q")], max_tokens=4)
    async with InferenceClient(_settings(stub.base_url), cache=cache) as client:
        key = client.key_for(request)
        body = request.body("stub-model")
        old = InferenceResult(text="x" * 500)
        cache.put(key, old, source=client.settings.answer_source, endpoint="/chat/completions", body=body)
    async with InferenceClient(_settings(stub.base_url, max_answer_bytes=50), cache=cache) as client:
        hit = await client.generate(request)
    assert hit.cached and hit.text == "x" * 50 and hit.truncated_from_bytes == 500
    assert client.stats.truncated == 1 and stub.calls == 0
    cache.close()


async def test_a_body_over_the_byte_limit_fails_without_retries(stub: StubServer) -> None:
    stub.script.append(_big("x" * 5000))
    async with InferenceClient(_settings(stub.base_url, max_body_bytes=2000)) as client:
        result = await client.generate(CompletionRequest(prompt="p", max_tokens=4))
    assert not result.ok and "over the 2,000-byte limit" in (result.error or "")
    assert "Content-Length" in (result.error or "")
    assert stub.calls == 1 and client.stats.failures == 1 and client.stats.retries == 0


class _Unsized(BaseHTTPRequestHandler):
    """Answers every POST with a body of `size` bytes and no Content-Length (HTTP/1.0: the body
    ends when the connection closes), so only a streaming count can bound it."""

    size = 0
    posts = 0

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        head = b'{"id":"x","object":"text_completion","created":0,"model":"stub-model","choices":[{"index":0,'
        text = b'"text":"' + b"x" * self.size + b'","finish_reason":"length"}]}'
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped reading
            self.wfile.write(head + text)


@pytest.mark.parametrize(("size", "ok"), [(1000, True), (200_000, False)])
async def test_a_body_without_length_is_read_only_up_to_the_limit(size: int, ok: bool) -> None:
    handler = type("Handler", (_Unsized,), {"size": size, "posts": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        settings = _settings(base_url, max_body_bytes=50_000, verify_model=False)
        async with InferenceClient(settings) as client:
            client._checked = True  # this server has no GET /models
            result = await client.generate(CompletionRequest(prompt="p", max_tokens=4))
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok is ok, result.error
    if ok:
        assert result.text == "x" * size
    else:
        assert "over the 50,000-byte limit: not read further" in (result.error or "")
        assert "Content-Length" not in (result.error or "")
    assert handler.posts == 1  # an oversized body is not asked for again


async def test_the_cache_stores_each_answer_once_and_no_request_text(
    stub: StubServer, tmp_path: Path
) -> None:
    """A second turn carries the first answer in its request: the cache keeps the answers (once each)
    and a digest of each request, so no answer is stored again inside a later request."""
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    first_answer = "FIRST-ANSWER-" + "x" * 200
    stub.script.append(Reply(body=_chat_body(first_answer)))
    stub.script.append(Reply(body=_chat_body("second")))
    async with InferenceClient(_settings(stub.base_url), cache=cache) as client:
        turn1 = [ChatMessage(role="user", content="QUESTION-ONE")]
        one = await client.generate(ChatRequest(messages=turn1, max_tokens=64))
        turn2 = [
            *turn1,
            ChatMessage(role="assistant", content=one.text),
            ChatMessage(role="user", content="Q2"),
        ]
        two = await client.generate(ChatRequest(messages=turn2, max_tokens=64))
    assert one.text == first_answer and two.text == "second"
    cache.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT request, result FROM responses").fetchall()
    assert len(rows) == 2 and all(request.startswith("sha256:") for request, _ in rows)
    stored = "".join(request + result for request, result in rows)
    assert stored.count("FIRST-ANSWER-") == 1  # the answer, once; not again inside turn 2's request
    assert "QUESTION-ONE" not in stored
