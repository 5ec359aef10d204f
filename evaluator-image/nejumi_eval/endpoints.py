"""Who answers: the model under test (an API, or a local server started on demand) and the judges,
as client settings the one client understands.

The model server is started on demand (`ModelEndpoint.start`, idempotent): the pipeline starts it
beside data preparation on a fresh evaluation, and the client starts it at its first cache miss
otherwise, so a fully cached rerun never loads a model. API keys come from the environment only:
secrets never appear in specs, logs or W&B.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nejumi_eval.api.v1alpha1.contract import JUDGE_API_KEY_ENV, MODEL_API_KEY_ENV
from nejumi_eval.api.v1alpha1.spec import ConfigError, EvaluationSpec, JudgeSpec, ModelSource
from nejumi_eval.errors import InfrastructureError
from nejumi_eval.runtime.client.models import AnswerSource, ClientSettings
from nejumi_eval.runtime.client.retry import RetryPolicy

if TYPE_CHECKING:  # the server's modules are imported only where a model is served
    from nejumi_eval.runtime.serve.commands import NodeGroup, ServerSettings

OPENAI_BASE_URL = "https://api.openai.com/v1"
TRANSFORMERS_CONCURRENCY = 8
"""`transformers serve` on CPU: a few requests at once keep it busy."""
API_CONCURRENCY = 32
"""A polite default for someone else's API (429s back off)."""
SYNTHETIC_JUDGE_SOURCE = "nejumi:synthetic-judge"
"""The synthetic judge's cache identity: stable across runs (its port is not), no real endpoint's."""


def api_key(
    explicit_env: str | None, operator_env: str, field_name: str, fallback_env: str | None = None
) -> str:
    """The API key from the environment only.

    Order: the env var the spec names (an error if it is unset), the operator's mount of the
    Secret reference, a conventional fallback (OPENAI_API_KEY for the OpenAI API), else no key
    ("EMPTY", which local servers accept and real APIs answer with a clear 401).
    """
    for name in (explicit_env, operator_env, fallback_env):
        if name and os.environ.get(name):
            return os.environ[name]
    if explicit_env:
        raise ConfigError(f"{field_name}: environment variable {explicit_env} is not set")
    return "EMPTY"


def request_concurrency(spec: EvaluationSpec) -> int:
    """Requests in flight to the model: `generation.concurrency` when set, else what the server can
    take — for vLLM its `--max-num-seqs` (passed explicitly), so continuous batching stays full."""
    if spec.generation.concurrency is not None:
        return spec.generation.concurrency
    source = spec.model.source
    if source == ModelSource.VLLM:
        return spec.model.vllm.max_num_seqs
    return TRANSFORMERS_CONCURRENCY if source == ModelSource.TRANSFORMERS else API_CONCURRENCY


def answer_source(spec: EvaluationSpec, cache_dir: Path, content: str | None = None) -> AnswerSource | None:
    """The cache identity of the model under test: None for an API (the client keys on its base
    URL + model), else the served model by backend and content (see `runtime.serve.identity`).
    `content`: the weights' cache key when they came through the model cache (a commit, an object
    listing's digest): it stands for the revision, so other weights at the same URI or name never
    share answers."""
    m = spec.model
    if m.source == ModelSource.OPENAI_COMPATIBLE:
        return None
    from nejumi_eval.runtime.serve.identity import served_source

    return served_source(
        backend=m.source.value,
        model=m.name,
        revision=content or m.revision,
        dtype=m.vllm.dtype,
        extra_args=m.vllm.extra_args,
        chat_template=Path(m.chat_template) if m.chat_template else None,
        memo_path=cache_dir / "folder-hashes.json",
    )


@dataclass
class Endpoint:
    base_url: str
    model: str
    api_key: str


def server_settings(spec: EvaluationSpec) -> ServerSettings:
    """How a served model's server is started (`port=0`: a free port, chosen at start): one place,
    for the pod that serves and answers (`ModelEndpoint`) and a group's workers, which must start
    the same engine (`pipeline.join_group_command`)."""
    from nejumi_eval.runtime.serve.commands import ServerSettings

    m = spec.model
    extra = list(m.vllm.extra_args)
    if m.vllm.gpu_memory_utilization and m.source == ModelSource.VLLM:
        extra += ["--gpu-memory-utilization", str(m.vllm.gpu_memory_utilization)]
    return ServerSettings(
        backend=m.source.value,
        model=m.name,
        revision=m.revision,
        tensor_parallel_size=m.vllm.tensor_parallel_size,
        pipeline_parallel_size=m.vllm.pipeline_parallel_size,
        max_model_len=m.vllm.max_model_len,
        dtype=m.vllm.dtype,
        max_num_seqs=m.vllm.max_num_seqs if m.source == ModelSource.VLLM else None,
        chat_template=Path(m.chat_template) if m.chat_template else None,
        extra_args=extra,
        port=0,
        startup_timeout_s=m.vllm.startup_timeout_seconds,
    )


class ModelEndpoint:
    """The model under test's endpoint, known before anything starts; a local server on demand."""

    def __init__(
        self,
        spec: EvaluationSpec,
        log_dir: Path,
        timeline: Any,
        on_ready: Callable[[str], None] | None = None,
        group: NodeGroup | None = None,
    ) -> None:
        """`group`: this pod leads a group of nodes that serve the model together (the leader of a
        multi-node serve stage): its server is started with the group's flags and answers here."""
        self.timeline = timeline
        self.on_ready = on_ready
        self.group = group
        self.server: Any = None
        self._lock = asyncio.Lock()
        m = spec.model
        if m.source == ModelSource.OPENAI_COMPATIBLE:
            assert m.endpoint is not None  # enforced by the spec
            key = api_key(m.api_key_env, MODEL_API_KEY_ENV, "model.apiKeyEnv")
            self.endpoint = Endpoint(m.endpoint, m.name, key)
            return
        from nejumi_eval.runtime.serve.process import ModelServer

        settings = server_settings(spec).model_copy(update={"group": group})
        self._settings, self._log_dir = settings, log_dir
        try:
            self.server = ModelServer.from_settings(settings, log_dir=log_dir)
        except ValueError as exc:  # a setting this backend cannot honour (e.g. transformers + chatTemplate)
            raise ConfigError(f"model: {exc}") from None
        self.endpoint = Endpoint(self.server.base_url, self.server.model_name, "EMPTY")

    def serve_from(self, folder: Path) -> None:
        """Serve the weights in `folder` (the model cache's copy) under the model's own name, so
        requests, and the response cache's keys, are those of `model.name`. vLLM only."""
        from nejumi_eval.runtime.serve.commands import serving_folder
        from nejumi_eval.runtime.serve.process import ModelServer

        self.server = ModelServer.from_settings(serving_folder(self._settings, folder), log_dir=self._log_dir)
        self.endpoint = Endpoint(self.server.base_url, self.server.model_name, "EMPTY")

    @property
    def served(self) -> bool:
        return self.server is not None

    @property
    def started(self) -> bool:
        return self.served and self.server.running

    async def start(self) -> None:
        """Start the local server once (later calls wait for the first); a no-op for an API."""
        if not self.served:
            return
        async with self._lock:
            if self.server.running:
                return
            from nejumi_eval.runtime.serve.process import ServerError

            with self.timeline.phase("serve_start"):
                try:
                    await self.server.start()
                except ServerError as exc:
                    raise InfrastructureError(str(exc)) from None
            self.timeline.mark("server.up")
            if self.on_ready is not None:
                backend = Path(self.server.command[0]).name
                self.on_ready(f"model: {backend} serve ready in {self.server.startup_s:.1f} s")

    def lost(self) -> str | None:
        """Why the local server that was started is gone (its exit code, its log's last lines), or
        None: still up, never started, or no local server."""
        if not self.served or self.server.returncode is None:
            return None
        return (
            f"the model server exited with code {self.server.returncode}; last lines of "
            f"{self.server.log_path}:\n{self.server.log_tail()}"
        )

    async def stop(self) -> None:
        if self.started:
            with self.timeline.phase("serve_stop"):
                await self.server.stop()
            self.timeline.mark("server.down")


def model_settings(spec: EvaluationSpec, endpoint: Endpoint, source: AnswerSource | None) -> ClientSettings:
    return ClientSettings(
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=endpoint.api_key,
        source=source,
        concurrency=request_concurrency(spec),
        request_timeout_s=spec.generation.request_timeout_seconds,
        retry=RetryPolicy(max_attempts=spec.generation.max_retries + 1),
    )


def judge_settings(spec: EvaluationSpec, judge: JudgeSpec, field_name: str) -> ClientSettings:
    """A judge's client settings; the synthetic judge's base URL is set when it is served."""
    if judge.synthetic:
        from nejumi_eval.demo.synthetic_judge import SYNTHETIC_JUDGE_MODEL

        return ClientSettings(
            base_url="http://127.0.0.1:0/v1",
            model=SYNTHETIC_JUDGE_MODEL,
            source=AnswerSource(kind="api", base_url=SYNTHETIC_JUDGE_SOURCE, model=SYNTHETIC_JUDGE_MODEL),
            concurrency=judge.concurrency,
            request_timeout_s=spec.generation.request_timeout_seconds,
            retry=RetryPolicy(max_attempts=spec.generation.max_retries + 1),
        )
    return ClientSettings(
        base_url=judge.endpoint or OPENAI_BASE_URL,
        model=judge.model,
        api_key=api_key(
            judge.api_key_env,
            JUDGE_API_KEY_ENV,
            f"{field_name}.apiKeyEnv",
            fallback_env=None if judge.endpoint else "OPENAI_API_KEY",
        ),
        concurrency=judge.concurrency,
        request_timeout_s=spec.generation.request_timeout_seconds,
        retry=RetryPolicy(max_attempts=spec.generation.max_retries + 1),
    )
