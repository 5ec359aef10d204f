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
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from nejumi_eval.config import ConfigError, EvaluationSpec, ModelSource, parse_spec
from nejumi_eval.results import JasterSummary, MtbenchSummary, Summary, Usage

log = logging.getLogger(__name__)

MODEL_API_KEY_ENV = "NEJUMI_MODEL_API_KEY"
"""Where the operator mounts `model.apiKeySecretRef` (the evaluator never sees the Secret itself)."""
JUDGE_API_KEY_ENV = "NEJUMI_JUDGE_API_KEY"
OPENAI_BASE_URL = "https://api.openai.com/v1"

EMBEDDED_TEST_SAMPLES = 4
EMBEDDED_DEV_SAMPLES = 1
EMBEDDED_QUESTIONS_PER_CATEGORY = 1
EMBEDDED_MAX_NEW_TOKENS = 32


def embedded_default_spec(model: str | None = None) -> EvaluationSpec:
    """The spec `nejumi-eval run` uses without a config.

    No model: a tiny random-weight model built offline and served on CPU by `transformers serve`,
    with small caps (samples, questions, tokens) — a real run of every stage in a minute or two,
    no GPU, no network. Its scores are marked capped: a smoke test, never a leaderboard number.
    A model id: the full protocol on that model (vLLM when installed, else transformers).
    """
    if model is None:
        from nejumi_eval.serve.tiny import build_tiny_model

        tiny = build_tiny_model()
        return parse_spec(
            {
                "model": {"name": str(tiny.path), "revision": tiny.fingerprint, "source": "transformers"},
                "benchmarks": {
                    "jaster": {"testSamples": EMBEDDED_TEST_SAMPLES, "devSamples": EMBEDDED_DEV_SAMPLES},
                    "mtbench": {"questionsPerCategory": EMBEDDED_QUESTIONS_PER_CATEGORY},
                },
                "generation": {"concurrency": 8, "maxNewTokensCap": EMBEDDED_MAX_NEW_TOKENS},
                "wandb": {"mode": "offline", "runName": "embedded-default"},
            },
            source="embedded default",
        )
    source = "vllm" if shutil.which("vllm") else "transformers"
    return parse_spec({"model": {"name": model, "source": source}}, source="--model")


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
    """MT-bench answers go through the model's chat template (protocol-mtbench §4): a local model
    folder without one needs `model.chatTemplate`, or the run would only collect 160 failures."""
    m = spec.model
    if not spec.benchmarks.mtbench.enabled or m.source == ModelSource.OPENAI_COMPATIBLE:
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
            f"model.chatTemplate: {folder} has no chat template (MT-bench needs one); "
            "set model.chatTemplate to a Jinja template file, or disable benchmarks.mtbench"
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
    from nejumi_eval.serve.commands import ServerSettings
    from nejumi_eval.serve.process import ModelServer, ServerError

    settings = ServerSettings(
        backend=m.source.value,
        model=m.name,
        revision=m.revision,
        tensor_parallel_size=m.vllm.tensor_parallel_size,
        max_model_len=m.vllm.max_model_len,
        dtype=m.vllm.dtype,
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
    from nejumi_eval.client.cache import ResponseCache
    from nejumi_eval.client.client import InferenceClient
    from nejumi_eval.jaster import benchmark as jaster
    from nejumi_eval.mtbench.benchmark import MtbenchRun

    timeline = Timeline()
    workspace = Path(spec.workspace.path).expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results_dir = workspace / "results" / f"{_slug(spec.model.name)}-{stamp}"
    results_dir.mkdir(parents=True, exist_ok=True)
    jaster_cfg, mt_cfg = spec.benchmarks.jaster, spec.benchmarks.mtbench
    if not (jaster_cfg.enabled or mt_cfg.enabled):
        raise ConfigError("benchmarks: enable at least one of jaster, mtbench")

    check_chat_template(spec)
    cache = ResponseCache(workspace / "cache" / "responses.sqlite")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(cache.close)
        judge = None
        if mt_cfg.enabled and mt_cfg.judge is not None:
            judge = await stack.enter_async_context(InferenceClient(_judge_settings(spec), cache=cache))
        cap = spec.generation.max_new_tokens_cap
        with timeline.phase("prepare"):
            source = await asyncio.to_thread(answer_source, spec, workspace / "cache")
            jaster_plan = (
                await asyncio.to_thread(jaster.plan, jaster_cfg, spec.model.request_mode, cap)
                if jaster_cfg.enabled
                else None
            )
            mt_run = MtbenchRun.create(mt_cfg, judge, progress, cap) if mt_cfg.enabled else None

        async with (
            model_endpoint(spec, workspace / "logs", timeline) as endpoint,
            InferenceClient(_model_settings(spec, endpoint, source), cache=cache) as client,
        ):
            with timeline.phase("generate"):
                jobs = []
                if jaster_plan is not None:
                    requests = [item.request for item in jaster_plan.items]
                    jobs.append(client.run_all(requests, desc="jaster", progress=progress))
                if mt_run is not None:
                    jobs.append(mt_run.answer_all(client))
                done = await asyncio.gather(*jobs)
                jaster_results = done[0] if jaster_plan is not None else None
            model_stats = client.stats
        # The model server is down from here on: judging needs no GPU (design §Score).
        if mt_run is not None:
            with timeline.phase("judge"):
                await mt_run.judged()
            timeline.mark("judge.done")
        client_stats = {"model": model_stats.as_dict(), "judge": judge.stats.as_dict() if judge else None}
        usage = Usage(
            prompt_tokens=model_stats.prompt_tokens,
            completion_tokens=model_stats.completion_tokens,
            judge_tokens=(judge.stats.prompt_tokens + judge.stats.completion_tokens) if judge else 0,
            requests_sent=model_stats.requests_sent + (judge.stats.requests_sent if judge else 0),
            cache_hits=model_stats.cache_hits + (judge.stats.cache_hits if judge else 0),
        )

    with timeline.phase("score"):
        jaster_result = jaster.score(jaster_plan, jaster_results) if jaster_plan is not None else None
    with timeline.phase("report"):
        return _report(spec, results_dir, timeline, usage, client_stats, jaster_result, mt_run)


def answer_source(spec: EvaluationSpec, cache_dir: Path) -> Any:
    """The cache identity of the model under test: None for an API (the client keys on its base
    URL + model), else the served model by backend and content (see `serve.identity`)."""
    m = spec.model
    if m.source == ModelSource.OPENAI_COMPATIBLE:
        return None
    from nejumi_eval.serve.identity import served_source

    return served_source(
        backend=m.source.value,
        model=m.name,
        revision=m.revision,
        dtype=m.vllm.dtype,
        extra_args=m.vllm.extra_args,
        chat_template=Path(m.chat_template) if m.chat_template else None,
        memo_path=cache_dir / "folder-hashes.json",
    )


def _model_settings(spec: EvaluationSpec, endpoint: Endpoint, source: Any) -> Any:
    from nejumi_eval.client.models import ClientSettings
    from nejumi_eval.client.retry import RetryPolicy

    return ClientSettings(
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=endpoint.api_key,
        source=source,
        concurrency=spec.generation.concurrency,
        request_timeout_s=spec.generation.request_timeout_seconds,
        retry=RetryPolicy(max_attempts=spec.generation.max_retries + 1),
    )


def _judge_settings(spec: EvaluationSpec) -> Any:
    from nejumi_eval.client.models import ClientSettings
    from nejumi_eval.client.retry import RetryPolicy

    judge = spec.benchmarks.mtbench.judge
    assert judge is not None
    return ClientSettings(
        base_url=judge.endpoint or OPENAI_BASE_URL,
        model=judge.model,
        api_key=_api_key(
            judge.api_key_env,
            JUDGE_API_KEY_ENV,
            "benchmarks.mtbench.judge.apiKeyEnv",
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
    jaster_result: Any,
    mt_run: Any,
) -> Summary:
    """Results folder first (the durable record), then W&B (a view of it)."""
    from nejumi_eval.jaster import benchmark as jaster
    from nejumi_eval.mtbench.scoring import overall
    from nejumi_eval.report.results import ResultsFolder
    from nejumi_eval.report.wandb_log import publish

    folder = ResultsFolder(results_dir)
    model = spec.model.name
    leaderboard: dict[str, Any] = {"model_name": model}
    scalars: dict[str, Any] = {}
    run_doc: dict[str, Any] = {
        "model": {"name": model, "revision": spec.model.revision, "source": spec.model.source.value},
        "versions": _versions(),
    }
    jaster_summary = mt_summary = None
    if jaster_result is not None:
        folder.write_table("jaster_output_table", jaster_result.test_rows)
        folder.write_table("jaster_output_table_dev", jaster_result.dev_rows)
        folder.write_table("jaster_leaderboard_table", [jaster.leaderboard_row(model, jaster_result)])
        folder.write_table("jaster_radar_table", jaster.radar_rows(jaster_result))
        run_doc["jaster"] = {
            **jaster.provenance(jaster_result),
            "scores": jaster_result.scores,
            "dev_scores": jaster_result.dev_scores,
            "categories": jaster_result.categories,
            "failures": jaster_result.failures,
            "degraded": jaster_result.degraded,
        }
        leaderboard.update({"jaster_AVG": jaster_result.avg, "jaster_degraded": jaster_result.degraded})
        leaderboard.update({f"jaster_{k}": v for k, v in jaster_result.categories.items() if k != "AVG"})
        scalars.update({f"jaster/{k}": v for k, v in jaster_result.categories.items()})
        scalars.update({f"jaster/{k}": v for k, v in jaster_result.scores.items()})
        scalars["jaster/failures"] = jaster_result.n_failures
        jaster_summary = JasterSummary(
            avg=jaster_result.avg,
            categories={k: v for k, v in jaster_result.categories.items() if k != "AVG"},
            datasets=jaster_result.scores,
            samples=len(jaster_result.test_rows),
            failures=jaster_result.n_failures,
            degraded=jaster_result.degraded,
            capped=jaster_result.plan.capped,
        )
    if mt_run is not None:
        folder.write_table("mtbench_answers", mt_run.answer_rows(model))
        folder.write_table("mtbench_question_table", mt_run.question_rows())
        mt_scores = mt_run.scores()
        run_doc["mtbench"] = {**mt_run.provenance(spec.model.chat_template), "judged": mt_scores is not None}
        if mt_scores is not None:
            folder.write_table("mtbench_output_table", mt_run.output_rows())
            means = mt_scores.category_means
            folder.write_table(
                "mtbench_leaderboard_table", [{"model_name": model, **means, "AVG": mt_scores.mtbench_score}]
            )
            folder.write_table("mtbench_radar_table", [{"category": c, "score": v} for c, v in means.items()])
            run_doc["mtbench"].update(mt_scores.model_dump())
            leaderboard.update(
                {"mtbench_AVG": mt_scores.mtbench_score, "mtbench_degraded": mt_scores.degraded}
            )
            leaderboard.update({f"mtbench_{k}": v for k, v in means.items()})
            scalars.update({f"mtbench/{k}": v for k, v in means.items()})
            scalars.update({"mtbench/AVG": mt_scores.mtbench_score, "mtbench/invalid": mt_scores.n_invalid})
        mt_summary = MtbenchSummary(
            judged=mt_scores is not None,
            avg=mt_scores.mtbench_score if mt_scores else None,
            categories=mt_scores.category_means if mt_scores else {},
            judgments=mt_scores.n_judgments if mt_scores else 0,
            invalid=mt_scores.n_invalid if mt_scores else 0,
            generation_failures=mt_run.generation_failures,
            degraded=mt_scores.degraded if mt_scores else mt_run.generation_failures > 0,
            capped=len(mt_run.questions) < len(mt_run.data.questions)
            or mt_run.max_new_tokens_cap is not None,
        )
    overall_value, degraded = overall(
        jaster_summary.avg if jaster_summary else None,
        mt_summary.avg if mt_summary else None,
        bool(jaster_summary and jaster_summary.degraded),
        bool(mt_summary and mt_summary.degraded),
    )
    leaderboard = {"model_name": model, "Overall": overall_value, "degraded": degraded, **leaderboard}
    folder.write_table("leaderboard_table", [leaderboard])
    scalars.update({"Overall": overall_value, "degraded": degraded})
    runtime = {k: round(v, 3) for k, v in timeline.phases.items()}
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
    )
    summary = Summary(
        status="completed",
        model=model,
        overall=overall_value,
        degraded=degraded,
        jaster=jaster_summary,
        mtbench=mt_summary,
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
