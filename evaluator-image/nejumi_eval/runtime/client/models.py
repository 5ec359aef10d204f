"""Boundary types of the inference client: settings, requests, results, counters.

Requests are pydantic models whose :meth:`body` is *exactly* the JSON sent to the server, so the
response cache can key on it and a changed request (prompt, sampling, extras) always misses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nejumi_eval.runtime.client.limits import MAX_ANSWER_BYTES, MAX_BODY_BYTES
from nejumi_eval.runtime.client.retry import RetryPolicy


def normalise_base_url(url: str) -> str:
    """One spelling per endpoint: lower-case scheme and host, no default port, no trailing slash.

    `https://API.openai.com:443/v1/` and `https://api.openai.com/v1` are one endpoint, so they
    share cache entries; any other difference (host, port, path) is another endpoint.
    """
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


_DEFAULT_PORTS = {"http": 80, "https": 443}


class AnswerSource(BaseModel):
    """Who answers a request: everything besides the request itself that decides the answer.

    The response cache keys on this plus the exact request, so an answer is reused only from the
    same source. An API (a model under test or a judge) is its normalised base URL and model name:
    two providers serving the same name never share entries, nor does a scripted judge at a local
    URL share them with the real one. A served model is its serving backend and what it serves (hub
    id + revision, or a local folder by content), plus what changes its outputs (dtype, extra
    server arguments, a chat template by content); the served name and the random local port are
    not part of it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["api", "served"]
    model: str | None = Field(default=None, description="API model name, or hub id of a served model")
    base_url: str | None = Field(default=None, description="API: the normalised base URL")
    backend: str | None = Field(default=None, description="served: vllm or transformers")
    revision: str | None = None
    content_sha256: str | None = Field(default=None, description="served from a local folder: its content")
    serving: dict[str, Any] = Field(
        default_factory=dict, description="served: settings that change outputs (dtype, args, template)"
    )

    @classmethod
    def api(cls, base_url: str, model: str) -> AnswerSource:
        return cls(kind="api", base_url=normalise_base_url(base_url), model=model)


class ClientSettings(BaseModel):
    """Where requests go and how hard the client pushes.

    ``model`` is the name sent in every request (vLLM's ``--served-model-name``, an API model id).
    ``source`` is what the cache keys on (:class:`AnswerSource`); unset, the client is an API and
    its source is its own base URL + model. A local model is served under a throwaway name on a
    random port, so the pipeline sets ``source`` to what is served instead.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="OpenAI-compatible base URL, ending in /v1")
    model: str = Field(description="model name sent in requests")
    api_key: SecretStr = SecretStr("EMPTY")
    source: AnswerSource | None = Field(
        default=None, description="who answers, for the cache key; default: this base URL + model"
    )
    concurrency: int = Field(default=8, ge=1, le=4096, description="requests in flight at once")
    request_timeout_s: float = Field(default=600.0, gt=0, description="read/write timeout of one attempt")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    verify_model: bool = Field(
        default=True, description="preflight: fail fast if GET /models does not list `model`"
    )
    max_answer_bytes: int = Field(
        default=MAX_ANSWER_BYTES,
        ge=1,
        description="ceiling on one answer's text in UTF-8 bytes; below it, the cap follows the "
        "request's max_tokens (`limits.answer_cap`)",
    )
    max_body_bytes: int = Field(
        default=MAX_BODY_BYTES, ge=1, description="the most of one HTTP response body read"
    )

    @property
    def answer_source(self) -> AnswerSource:
        return self.source or AnswerSource.api(self.base_url, self.model)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class _Sampling(BaseModel):
    """Decoding parameters shared by both endpoints. ``None`` fields are not sent at all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(ge=1)
    temperature: float = Field(default=0.0, ge=0)
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="non-standard fields sent as-is (e.g. vLLM's top_k)"
    )
    attempt: int = Field(
        default=0,
        ge=0,
        description="not sent; only part of the cache key, so a judge re-call can get a fresh answer",
    )

    def _sampling_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        for name in ("top_p", "seed", "stop"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


class CompletionRequest(_Sampling):
    """A raw-prompt text completion (``POST /completions``): jaster on local models."""

    kind: Literal["completion"] = "completion"
    prompt: str

    def body(self, model: str) -> dict[str, Any]:
        return {"model": model, "prompt": self.prompt, **self._sampling_body(), **self.extra_body}


class ChatRequest(_Sampling):
    """A chat completion (``POST /chat/completions``): chat-only APIs, MT-bench answers, the judge."""

    kind: Literal["chat"] = "chat"
    messages: list[ChatMessage] = Field(min_length=1)

    def body(self, model: str) -> dict[str, Any]:
        messages = [m.model_dump() for m in self.messages]
        return {"model": model, "messages": messages, **self._sampling_body(), **self.extra_body}


InferenceRequest = CompletionRequest | ChatRequest


class InferenceResult(BaseModel):
    """One answer, or one flagged failure (``error`` set, ``text == ""``) that callers count and score."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = Field(default=0.0, description="duration of the HTTP attempt that answered")
    cached: bool = False
    error: str | None = None
    model: str | None = Field(default=None, description="model name as returned by the server")
    attempts: int = Field(default=0, description="HTTP attempts this run (0 for a cache hit)")
    key: str = Field(default="", description="the response-cache key")
    truncated_from_bytes: int | None = Field(
        default=None,
        description="set when `text` was cut to the answer cap (`limits.answer_cap`): its UTF-8 "
        "size as received",
    )

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def truncated(self) -> bool:
        """The answer was longer than the cap and `text` is its first part."""
        return self.truncated_from_bytes is not None


@dataclass
class ClientStats:
    """Counters for status/report. Token counts are for requests sent this run, not cache hits."""

    requests_sent: int = 0
    http_attempts: int = 0
    retries: int = 0
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: int = 0
    """Answers cut to the answer cap, sent this run or from the cache (each is used cut)."""
    first_sent_at: float | None = None
    """`time.monotonic()` of the first request sent (for wall-time spans; not reported)."""
    last_done_at: float | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if not k.endswith("_at")}
