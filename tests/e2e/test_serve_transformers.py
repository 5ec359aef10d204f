"""End to end on CPU: build the tiny model, serve it with the real `transformers serve`, query it
through the inference client in both modes, and stop it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nejumi_eval.runtime.client import (
    AnswerSource,
    ChatMessage,
    ChatRequest,
    ClientSettings,
    CompletionRequest,
    InferenceClient,
    ModelNotFoundError,
    ResponseCache,
    RetryPolicy,
)
from nejumi_eval.runtime.serve import ModelServer, ServerSettings
from nejumi_eval.runtime.serve.tiny import TINY_MODEL_NAME, build_tiny_model

pytestmark = pytest.mark.slow

PROMPT = "以下は、タスクを説明する指示です。\n\n### 指示:\n東京は日本の首都ですか？\n\n### 応答:\n"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_model_is_deterministic_and_cached(tmp_path: Path):
    first = build_tiny_model(tmp_path / "cache")
    assert first.built and first.path == tmp_path / "cache" / "models" / "tiny-random-llama"
    assert str(first) == str(first.path)
    assert (first.path / "model.safetensors").is_file() and (first.path / "chat_template.jinja").is_file()
    again = build_tiny_model(tmp_path / "cache")
    assert not again.built and again.fingerprint == first.fingerprint
    other = build_tiny_model(dest=tmp_path / "b")
    assert _digests(first.path) == _digests(other.path)


async def test_transformers_serve_end_to_end(tmp_path: Path):
    from transformers import AutoTokenizer

    tiny = build_tiny_model(dest=tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(tiny.path)
    settings = ServerSettings(
        backend="transformers", model=str(tiny.path), device="cpu", port=0, startup_timeout_s=240
    )
    server = ModelServer.from_settings(settings, log_dir=tmp_path / "logs")
    client_settings = ClientSettings(
        base_url=server.base_url,
        model=server.model_name,
        source=AnswerSource(
            kind="served", backend="transformers", model=TINY_MODEL_NAME, revision=tiny.fingerprint
        ),
        concurrency=4,
        request_timeout_s=120,
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.1),
    )
    cache = ResponseCache(tmp_path / "cache.sqlite")
    completion = CompletionRequest(prompt=PROMPT, max_tokens=8, temperature=0.0)
    question = "こんにちは。自己紹介してください。"
    chat = ChatRequest(messages=[ChatMessage(role="user", content=question)], max_tokens=6)

    async with server:
        assert server.running
        async with InferenceClient(client_settings, cache=cache) as client:
            assert await client.check() == [str(tiny.path)]
            batch = [completion, chat] + [
                CompletionRequest(prompt=f"質問 {i}: 富士山の高さは？", max_tokens=4) for i in range(6)
            ]
            results = await client.run_all(batch, desc="e2e", progress=False)
            assert all(r.ok for r in results), [r.error for r in results]
            first, second = results[0], results[1]

            # completion mode: raw prompt tokenised with BOS, no chat template; continuation only
            prompt_ids = tokenizer(PROMPT)["input_ids"]
            assert prompt_ids[0] == tokenizer.bos_token_id
            assert first.prompt_tokens == len(prompt_ids)
            assert first.completion_tokens == 8 and first.finish_reason == "length"
            assert first.model == str(tiny.path) and first.latency_s > 0 and not first.cached
            assert isinstance(first.text, str) and not first.text.startswith(PROMPT)

            # chat mode: the model's own template with the generation prompt
            chat_ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": question}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
            assert second.prompt_tokens == len(chat_ids)
            assert second.completion_tokens is not None and 1 <= second.completion_tokens <= 6

            # greedy is deterministic: asking again (a new attempt, so no cache hit) gives the same text
            rerun = await client.generate(completion.model_copy(update={"attempt": 1}))
            assert not rerun.cached and rerun.text == first.text
            assert client.stats.requests_sent == 9 and client.stats.failures == 0

        # a second run is served entirely from the cache
        async with InferenceClient(client_settings, cache=cache) as client:
            cached = await client.run_all(batch, progress=False)
            assert all(r.cached for r in cached) and client.stats.requests_sent == 0
            assert [r.text for r in cached] == [r.text for r in results]

        # a wrong model name fails fast with the served name in the message
        wrong = client_settings.model_copy(update={"model": "not-the-model"})
        async with InferenceClient(wrong) as client:
            with pytest.raises(ModelNotFoundError, match=str(tiny.path)):
                await client.generate(completion)
        pid = server.pid

    assert not server.running and server.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "Uvicorn running" in server.log_path.read_text()


async def test_transformers_serve_answers_under_a_deep_tmpdir(tmp_path: Path):
    """A pod sandbox's TMPDIR (~105 characters on the test cluster) is too deep for the Unix socket
    `transformers serve` 5.x hands each request to its model's process through: it logged
    ``AF_UNIX path too long`` and never answered (issue 17 §3: the operator's end-to-end test
    waited 420 s). The server is now given a short path to the same folder, and answers."""
    import httpx

    deep = tmp_path / ("sandbox-" + "x" * max(0, 100 - len(str(tmp_path)))) / "tmp"
    deep.mkdir(parents=True)
    tiny = build_tiny_model()
    settings = ServerSettings(
        backend="transformers",
        model=str(tiny.path),
        device="cpu",
        port=0,
        startup_timeout_s=240,
        env={"TMPDIR": str(deep)},
    )
    async with (
        ModelServer.from_settings(settings, log_dir=tmp_path / "logs") as server,
        httpx.AsyncClient(timeout=120, trust_env=False) as http,  # the bug hangs: no answer ever
    ):
        response = await http.post(
            f"{server.base_url}/completions",
            json={"model": server.model_name, "prompt": PROMPT, "max_tokens": 4, "temperature": 0},
        )
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 4
    assert "AF_UNIX path too long" not in server.log_path.read_text()
