"""The one async OpenAI-compatible client: bounded concurrency, retries, response cache."""

from nejumi_eval.runtime.client.cache import ResponseCache, cache_key
from nejumi_eval.runtime.client.client import InferenceClient
from nejumi_eval.runtime.client.errors import (
    EndpointAuthError,
    EndpointUnreachableError,
    InferenceClientError,
    ModelNotFoundError,
)
from nejumi_eval.runtime.client.models import (
    AnswerSource,
    ChatMessage,
    ChatRequest,
    ClientSettings,
    ClientStats,
    CompletionRequest,
    InferenceRequest,
    InferenceResult,
)
from nejumi_eval.runtime.client.retry import RetryPolicy

__all__ = [
    "AnswerSource",
    "ChatMessage",
    "ChatRequest",
    "ClientSettings",
    "ClientStats",
    "CompletionRequest",
    "EndpointAuthError",
    "EndpointUnreachableError",
    "InferenceClient",
    "InferenceClientError",
    "InferenceRequest",
    "InferenceResult",
    "ModelNotFoundError",
    "ResponseCache",
    "RetryPolicy",
    "cache_key",
]
