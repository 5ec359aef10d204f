"""`nejumi-eval run`: prepare data → serve → generate → score → report.

The order matters for cost: every request to the model under test is sent while the server is up,
and the server (the GPU) is released before anything that does not need it (judging, reporting).
Every request goes through one cached client, so a killed run restarted with the same spec sends
only what it had not finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nejumi_eval.api.v1alpha1.contract import JUDGE_API_KEY_ENV, MODEL_API_KEY_ENV
from nejumi_eval.api.v1alpha1.spec import ConfigError, EvaluationSpec, JudgeSpec, ModelSource
from nejumi_eval.api.v1alpha1.summary import Summary, Usage

if TYPE_CHECKING:
    from nejumi_eval.benchmarks.base import BenchmarkOutput

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"

# ---- phases and bookkeeping ----------------------------------------------------------------


@dataclass
class Timeline:
    """Wall-clock phases of one run (seconds), for the summary and the GPU-time accounting."""

    started: float = field(default_factory=time.perf_counter)
    phases: dict[str, float] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self.mark(f"{name}.start")
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0
            self.mark(f"{name}.end")

    def mark(self, event: str) -> None:
        self.events.append({"event": event, "t": round(time.perf_counter() - self.started, 3)})

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).name if os.path.sep in text else text).strip("_")[:60]


def _api_key(
    explicit_env: str | None, operator_env: str, field_name: str, fallback_env: str | None = None
) -> str:
    """The API key from the environment only: secrets never appear in specs, logs or W&B.

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


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("nejumi", "openai", "transformers", "torch", "vllm", "wandb", "rhoknp", "rapidfuzz"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def check_chat_template(spec: EvaluationSpec) -> None:
    """A benchmark that chats with the model (MT-bench, protocol-mtbench §4) goes through its chat
    template: a local model folder without one needs `model.chatTemplate`, or the run would only
    collect failures."""
    from nejumi_eval.benchmarks import registry

    m = spec.model
    chat_benchmarks = [name for name in spec.benchmarks.enabled() if registry.get(name).chats]
    if not chat_benchmarks or m.source == ModelSource.OPENAI_COMPATIBLE:
        return
    if m.chat_template:
        if not Path(m.chat_template).is_file():
            raise ConfigError(f"model.chatTemplate: {m.chat_template} is not a file")
        return
    folder = Path(m.name)
    if not folder.is_dir():
        return  # a hub id: the server loads its tokenizer and refuses chat requests without a template
    config = folder / "tokenizer_config.json"
    has_template = (folder / "chat_template.jinja").is_file() or (
        config.is_file() and "chat_template" in json.loads(config.read_text(encoding="utf-8"))
    )
    if not has_template:
        raise ConfigError(
            f"model.chatTemplate: {folder} has no chat template ({', '.join(chat_benchmarks)} needs one); "
            "set model.chatTemplate to a Jinja template file, or disable "
            + ", ".join(f"benchmarks.{name}" for name in chat_benchmarks)
        )


# ---- serving -------------------------------------------------------------------------------


@dataclass
class Endpoint:
    base_url: str
    model: str
    api_key: str


@contextlib.asynccontextmanager
async def model_endpoint(spec: EvaluationSpec, log_dir: Path, timeline: Timeline) -> AsyncIterator[Endpoint]:
    """Serve a local model for the duration of the block, or point at the configured API."""
    m = spec.model
    if m.source == ModelSource.OPENAI_COMPATIBLE:
        assert m.endpoint is not None  # enforced by the spec
        yield Endpoint(m.endpoint, m.name, _api_key(m.api_key_env, MODEL_API_KEY_ENV, "model.apiKeyEnv"))
        return
    from nejumi_eval.runtime.serve.commands import ServerSettings
    from nejumi_eval.runtime.serve.process import ModelServer, ServerError

    settings = ServerSettings(
        backend=m.source.value,
        model=m.name,
        revision=m.revision,
        tensor_parallel_size=m.vllm.tensor_parallel_size,
        max_model_len=m.vllm.max_model_len,
        dtype=m.vllm.dtype,
        max_num_seqs=m.vllm.max_num_seqs if m.source == ModelSource.VLLM else None,
        chat_template=Path(m.chat_template) if m.chat_template else None,
        extra_args=[
            *m.vllm.extra_args,
            *(
                ["--gpu-memory-utilization", str(m.vllm.gpu_memory_utilization)]
                if m.vllm.gpu_memory_utilization and m.source == ModelSource.VLLM
                else []
            ),
        ],
        port=0,
    )
    from nejumi_eval.errors import InfrastructureError

    try:
        server = ModelServer.from_settings(settings, log_dir=log_dir)
    except ValueError as exc:  # a setting this backend cannot honour (e.g. transformers + chatTemplate)
        raise ConfigError(f"model: {exc}") from None

    with timeline.phase("serve_start"):
        try:
            await server.start()
        except ServerError as exc:
            raise InfrastructureError(str(exc)) from None
    timeline.mark("server.up")
    try:
        yield Endpoint(server.base_url, server.model_name, "EMPTY")
    finally:
        with timeline.phase("serve_stop"):
            await server.stop()
        timeline.mark("server.down")


# ---- the run -------------------------------------------------------------------------------


async def evaluate(spec: EvaluationSpec, *, progress: bool = True) -> Summary:
    """One evaluation, end to end. Raises on configuration or infrastructure failure."""
    from nejumi_eval.benchmarks import registry
    from nejumi_eval.benchmarks.base import RunContext
    from nejumi_eval.runtime.client.cache import ResponseCache
    from nejumi_eval.runtime.client.client import InferenceClient

    timeline = Timeline()
    workspace = Path(spec.workspace.path).expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results_dir = workspace / "results" / f"{_slug(spec.model.name)}-{stamp}"
    results_dir.mkdir(parents=True, exist_ok=True)
    sections = spec.benchmarks.enabled()
    if not sections:
        raise ConfigError(f"benchmarks: enable at least one of {', '.join(registry.names())}")

    check_chat_template(spec)
    cache = ResponseCache(workspace / "cache" / "responses.sqlite")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(cache.close)
        judges: list[InferenceClient] = []

        def open_judge(judge: JudgeSpec, field_name: str) -> InferenceClient:
            settings = _judge_settings(spec, judge, field_name)
            if judge.synthetic:
                from nejumi_eval.demo.synthetic_judge import SYNTHETIC_JUDGE_MODEL, SyntheticJudge
                from nejumi_eval.runtime.client.models import AnswerSource

                server = stack.enter_context(SyntheticJudge())
                settings = settings.model_copy(
                    update={
                        "base_url": server.base_url,
                        "model": SYNTHETIC_JUDGE_MODEL,
                        # stable across runs (the port is not), and no real endpoint's name
                        "source": AnswerSource(
                            kind="api", base_url="nejumi:synthetic-judge", model=SYNTHETIC_JUDGE_MODEL
                        ),
                    }
                )
            client = InferenceClient(settings, cache=cache)
            stack.push_async_callback(client.aclose)
            judges.append(client)
            return client

        ctx = RunContext(spec=spec, progress=progress, open_judge=open_judge)

        def prepare() -> tuple[Any, dict[str, Any]]:
            source = answer_source(spec, workspace / "cache")
            return source, {name: registry.get(name).plan(section, ctx) for name, section in sections.items()}

        async with contextlib.AsyncExitStack() as serving:
            # The model server loads (minutes for vLLM) while the data is prepared: a GPU never
            # waits on CPU work that could run beside it. A failed prepare stops the server.
            starting = asyncio.create_task(
                serving.enter_async_context(model_endpoint(spec, workspace / "logs", timeline))
            )
            try:
                with timeline.phase("prepare"):
                    source, runs = await asyncio.to_thread(prepare)
            except BaseException:
                starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting
                raise
            endpoint = await starting
            settings = _model_settings(spec, endpoint, source)
            client = await serving.enter_async_context(InferenceClient(settings, cache=cache))
            with timeline.phase("generate"):
                await _gather(*(run.generate(client) for run in runs.values()))
            model_stats = client.stats
        # The model server is down from here on: judging needs no GPU (design §Score).
        with timeline.phase("judge") if judges else contextlib.nullcontext():
            await _gather(*(run.finish() for run in runs.values()))
        if judges:
            timeline.mark("judge.done")
        judge_stats = [j.stats for j in judges]
        client_stats = {
            "model": model_stats.as_dict(),
            "judge": _sum_stats(judge_stats) if judges else None,
        }
        usage = Usage(
            prompt_tokens=model_stats.prompt_tokens,
            completion_tokens=model_stats.completion_tokens,
            judge_tokens=sum(j.prompt_tokens + j.completion_tokens for j in judge_stats),
            requests_sent=model_stats.requests_sent + sum(j.requests_sent for j in judge_stats),
            cache_hits=model_stats.cache_hits + sum(j.cache_hits for j in judge_stats),
        )

    with timeline.phase("score"):
        outputs = {name: run.output(spec.model.name) for name, run in runs.items()}
    with timeline.phase("report"):
        return _report(spec, results_dir, timeline, usage, client_stats, outputs)


async def _gather(*aws: Any) -> list[Any]:
    """`asyncio.gather` that cancels the rest on the first error and raises it as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(aw) for aw in aws]
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None
    return [t.result() for t in tasks]


def _sum_stats(stats: list[Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for s in stats:
        for k, v in s.as_dict().items():
            total[k] = total.get(k, 0) + v
    return total


def answer_source(spec: EvaluationSpec, cache_dir: Path) -> Any:
    """The cache identity of the model under test: None for an API (the client keys on its base
    URL + model), else the served model by backend and content (see `serve.identity`)."""
    m = spec.model
    if m.source == ModelSource.OPENAI_COMPATIBLE:
        return None
    from nejumi_eval.runtime.serve.identity import served_source

    return served_source(
        backend=m.source.value,
        model=m.name,
        revision=m.revision,
        dtype=m.vllm.dtype,
        extra_args=m.vllm.extra_args,
        chat_template=Path(m.chat_template) if m.chat_template else None,
        memo_path=cache_dir / "folder-hashes.json",
    )


TRANSFORMERS_CONCURRENCY = 8
"""`transformers serve` on CPU: a few requests at once keep it busy."""
API_CONCURRENCY = 32
"""A polite default for someone else's API (429s back off)."""


def request_concurrency(spec: EvaluationSpec) -> int:
    """Requests in flight to the model: `generation.concurrency` when set, else what the server can
    take — for vLLM its `--max-num-seqs` (passed explicitly), so continuous batching stays full."""
    if spec.generation.concurrency is not None:
        return spec.generation.concurrency
    source = spec.model.source
    if source == ModelSource.VLLM:
        return spec.model.vllm.max_num_seqs
    return TRANSFORMERS_CONCURRENCY if source == ModelSource.TRANSFORMERS else API_CONCURRENCY


def _model_settings(spec: EvaluationSpec, endpoint: Endpoint, source: Any) -> Any:
    from nejumi_eval.runtime.client.models import ClientSettings
    from nejumi_eval.runtime.client.retry import RetryPolicy

    return ClientSettings(
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=endpoint.api_key,
        source=source,
        concurrency=request_concurrency(spec),
        request_timeout_s=spec.generation.request_timeout_seconds,
        retry=RetryPolicy(max_attempts=spec.generation.max_retries + 1),
    )


def _judge_settings(spec: EvaluationSpec, judge: JudgeSpec, field_name: str) -> Any:
    from nejumi_eval.runtime.client.models import ClientSettings
    from nejumi_eval.runtime.client.retry import RetryPolicy

    return ClientSettings(
        base_url=judge.endpoint or OPENAI_BASE_URL,
        model=judge.model,
        api_key="EMPTY"
        if judge.synthetic
        else _api_key(
            judge.api_key_env,
            JUDGE_API_KEY_ENV,
            f"{field_name}.apiKeyEnv",
            fallback_env=None if judge.endpoint else "OPENAI_API_KEY",
        ),
        concurrency=judge.concurrency,
        request_timeout_s=spec.generation.request_timeout_seconds,
        retry=RetryPolicy(max_attempts=spec.generation.max_retries + 1),
    )


def _report(
    spec: EvaluationSpec,
    results_dir: Path,
    timeline: Timeline,
    usage: Usage,
    client_stats: dict[str, Any],
    outputs: dict[str, BenchmarkOutput],
) -> Summary:
    """Results folder first (the durable record), then W&B (a view of it)."""
    from nejumi_eval.leaderboard import OVERALL
    from nejumi_eval.report.results import ResultsFolder
    from nejumi_eval.report.wandb_log import publish

    folder = ResultsFolder(results_dir)
    model = spec.model.name
    leaderboard: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    run_doc: dict[str, Any] = {
        "model": {"name": model, "revision": spec.model.revision, "source": spec.model.source.value},
        "versions": _versions(),
    }
    for name, out in outputs.items():
        for table, rows in out.tables.items():
            folder.write_table(table, rows)
        run_doc[name] = out.record
        leaderboard.update({f"{name}_{k}": v for k, v in out.leaderboard.items()})
        scalars.update({f"{name}/{k}": v for k, v in out.scalars.items()})
    summaries = {name: out.summary for name, out in outputs.items()}
    overall_value = OVERALL.value({n: s.avg if s.scored else None for n, s in summaries.items()})
    degraded = any(s.degraded for s in summaries.values())
    # Smoke tests never look like leaderboard scores: the flags stand next to every score.
    flags = {
        "capped": any(s.capped for s in summaries.values()),
        "synthetic_judge": any(s.synthetic_judge for s in summaries.values()),
    }
    leaderboard = {
        "model_name": model,
        OVERALL.name: overall_value,
        "degraded": degraded,
        **flags,
        **leaderboard,
    }
    folder.write_table("leaderboard_table", [leaderboard])
    scalars.update({OVERALL.name: overall_value, "degraded": degraded, **flags})
    runtime = {k: round(v, 3) for k, v in timeline.phases.items()}
    if spec.model.source != ModelSource.OPENAI_COMPATIBLE:
        # The pod holds its accelerator for the whole run; only `generate` uses it.
        runtime["gpu_idle"] = round(timeline.total - timeline.phases.get("generate", 0.0), 3)
    run_doc.update(
        {
            "overall": overall_value,
            "degraded": degraded,
            "spec": spec.model_dump(mode="json", by_alias=True),
            "runtime_seconds": runtime,
            "timeline": timeline.events,
            "usage": usage.model_dump(by_alias=True),
            "client_stats": client_stats,  # HTTP attempts and retries, per client
        }
    )
    folder.write_json("run", run_doc)
    wandb_path, wandb_error = publish(
        spec.wandb,
        results_dir,
        folder.tables,
        scalars,
        config={k: v for k, v in run_doc.items() if k != "timeline"},
        run_name=spec.wandb.run_name or _slug(model),
        tags=[name.replace("_", "-") for name, on in flags.items() if on],
    )
    summary = Summary(
        status="completed",
        model=model,
        overall=overall_value,
        degraded=degraded,
        **flags,
        benchmarks=summaries,
        usage=usage,
        runtime_seconds={**runtime, "total": round(timeline.total, 3)},
        results_dir=str(results_dir),
        wandb_run_path=wandb_path,
        error=f"W&B: {wandb_error}" if wandb_error else None,
    )
    folder.write_json("summary", summary.model_dump(mode="json", by_alias=True, exclude_none=True))
    return summary


def _write_summary(path: str | None, summary: Summary) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(summary.to_json(), encoding="utf-8")


def run(spec: EvaluationSpec, *, progress: bool = True) -> Summary:
    """Run `evaluate` and always leave a summary at `spec.summaryPath` (failed runs say why)."""
    try:
        summary = asyncio.run(evaluate(spec, progress=progress))
    except BaseException as exc:
        if spec.summary_path:
            message = str(exc) or type(exc).__name__
            _write_summary(
                spec.summary_path,
                Summary(status="failed", model=spec.model.name, error=message[-1500:]),
            )
        raise
    _write_summary(spec.summary_path, summary)
    return summary
