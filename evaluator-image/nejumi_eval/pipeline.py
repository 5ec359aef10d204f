"""`nejumi-eval run`: prepare data → serve → generate → score → report.

The order matters for cost: every request to the model under test is sent while the server is up,
and the server (the GPU) is released before anything that does not need it (judging, reporting).
Every request goes through one cached client, so a killed run restarted with the same spec sends
only what it had not finished.

In the cluster a served model's evaluation runs as three stages, each its own pod
(`api.v1alpha1.stages`, `--stage`): `fetch` prepares the data and the weights and checks the
judges and the store, `serve` serves and generates (no judge is asked), `judge` reads every answer
back from the response cache (nothing is sent to the model: a missing answer is a failed one) and
judges, scores and reports. The same code runs each; the stage only says which parts.

What an evaluation cost (`api.v1alpha1.cost`) is the reporting pod's to say, for the whole
evaluation: the judge stage takes the model's tokens and the serving span from the serve stage's
record in the workspace (`<workspace>/stages/serve.json`, written when that stage ends), the
GPU-seconds held from the operator (`$NEJUMI_GPU_SECONDS_HELD`) and the prices from
`$NEJUMI_PRICING`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from nejumi_eval.api.v1alpha1.contract import GPU_SECONDS_HELD_ENV, GROUP_SIZE_ENV, PRICING_ENV
from nejumi_eval.api.v1alpha1.cost import Cost, Pricing, PricingError, parse_pricing
from nejumi_eval.api.v1alpha1.progress import Step
from nejumi_eval.api.v1alpha1.spec import ConfigError, EvaluationSpec, JudgeSpec, ModelSource
from nejumi_eval.api.v1alpha1.stages import GPU_STAGES, REPORTING_STAGES, Stage
from nejumi_eval.api.v1alpha1.summary import Summary, Usage
from nejumi_eval.benchmarks.base import CountsProgress, DescribesPlan
from nejumi_eval.endpoints import ModelEndpoint, answer_source, judge_settings, model_settings
from nejumi_eval.errors import EXIT_BUG, InfrastructureError, classify, unwrap
from nejumi_eval.report.progress import ProgressPublisher
from nejumi_eval.report.results import ResultsFolder
from nejumi_eval.report.wandb_log import WandbRun
from nejumi_eval.runtime.files import atomic_write_text
from nejumi_eval.runtime.weights.handoff import Handoff, fetch_for, recorded, uses_cache
from nejumi_eval.storage.upload import destination

if TYPE_CHECKING:
    from nejumi_eval.benchmarks.base import BenchmarkOutput
    from nejumi_eval.runtime.serve.commands import NodeGroup

log = logging.getLogger(__name__)

# ---- phases and bookkeeping ----------------------------------------------------------------


@dataclass
class Timeline:
    """Wall-clock phases of one run (seconds), for the summary and the GPU-time accounting."""

    started: float = field(default_factory=time.perf_counter)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """Wall-clock start (run.json's `started_at`; the perf counter above times the phases)."""
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


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("nejumi", "openai", "transformers", "torch", "vllm", "wandb", "rhoknp", "rapidfuzz"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


ONE_HOST = (
    "resources.nodes: {nodes} nodes asked, but nejumi-eval serves the model on this one host "
    "(vllm serve over its own GPUs); a model is served across nodes only in the cluster, as a "
    "LeaderWorkerSet group (the operator's serve stage); set resources.nodes to 1 (or leave it "
    "unset) to serve on this host's model.vllm.tensorParallelSize * pipelineParallelSize GPUs"
)
WRONG_GROUP = (
    "resources.nodes: {nodes} nodes asked, but this pod's serving group has {size} "
    "(${size_env}): the group and the spec describe two deployments; the operator builds the group "
    "from the spec, so evaluate again"
)


def check_one_host(
    spec: EvaluationSpec, stage: Stage = Stage.RUN, env: Mapping[str, str] | None = None
) -> NodeGroup | None:
    """Where a stage that serves runs its server: this host alone (None), or the group of nodes
    it is a member of (a multi-node serve stage: a LeaderWorkerSet group of `resources.nodes` pods,
    whose environment `env`, default `os.environ`, says so). A model spread over several nodes is
    refused outside such a group before anything is fetched or started: this process would serve
    on the host it runs on, quietly evaluating a different deployment (one node's GPUs, if the
    model fits at all) under the multi-node spec's name. The stages that serve nothing (fetch,
    judge) run on one pod whatever the model's size."""
    from nejumi_eval.runtime.serve.commands import node_group

    if stage not in GPU_STAGES:
        return None
    try:
        group = node_group(os.environ if env is None else env)
    except ValueError as exc:
        raise ConfigError(f"resources.nodes: {exc}") from None
    nodes = spec.resources.nodes
    if group is None:
        if nodes > 1:
            raise ConfigError(ONE_HOST.format(nodes=nodes))
        return None
    if group.size != nodes:
        raise ConfigError(WRONG_GROUP.format(nodes=nodes, size=group.size, size_env=GROUP_SIZE_ENV))
    return group


def join_group_command(spec: EvaluationSpec, env: Mapping[str, str] | None = None) -> list[str]:
    """The command line of a worker of a serving group (`nejumi-eval run --stage serve
    --join-group`): `vllm serve --headless`, joining its leader's server (`--node-rank` its index,
    `--master-addr` the leader), with exactly the engine settings and weights the leader serves
    (`endpoints.server_settings`; the fetch stage's record of the weights, as the leader reads it).
    It evaluates nothing: the leader's evaluator sends every request and writes every answer."""
    from nejumi_eval.api.v1alpha1.contract import JOIN_GROUP_FLAG
    from nejumi_eval.endpoints import server_settings
    from nejumi_eval.runtime.serve.commands import ServerSettings, serving_folder, vllm_command

    group = check_one_host(spec, Stage.SERVE, env)
    if group is None or group.leader:
        raise ConfigError(
            f"{JOIN_GROUP_FLAG}: only a worker of a multi-node serve stage joins a group (this pod is "
            + ("the group's leader)" if group else "in no group of several nodes)")
        )
    settings = server_settings(spec).model_copy(
        update={"group": group, "port": ServerSettings.model_fields["port"].default}
    )
    handoff = _weights(spec, Path(spec.workspace.path).expanduser().resolve(), Stage.SERVE)
    if handoff is not None:  # the model cache's copy, as the leader serves it (`serve_from`)
        settings = serving_folder(settings, handoff.path)
    return vllm_command(settings)


def join_group(spec: EvaluationSpec) -> NoReturn:
    """Become this worker's `vllm serve` (`join_group_command`): the pod's process is the server, so
    its end (a crash, the group deleted) is the pod's."""
    command = join_group_command(spec)
    print(f"joining the serving group: {' '.join(command)}", file=sys.stderr, flush=True)
    os.execvp(command[0], command)


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


# ---- the run -------------------------------------------------------------------------------


NOT_SERVED = (
    "no answer in the response cache: the serve stage did not get one (its log says why); the judge "
    "stage sends nothing to the model"
)
"""The failure a judge-stage cache miss stands for (`InferenceClient(offline=…)`)."""


async def evaluate(spec: EvaluationSpec, *, progress: bool = True, stage: Stage = Stage.RUN) -> Summary:
    """One evaluation, end to end (or the part `stage` names). Raises on configuration or
    infrastructure failure found before anything was scored; a failure after that (a judge lost
    mid-run) is a `failed` summary that keeps every benchmark that was scored. A fetch or serve
    stage returns a summary without scores (`Summary.stage`)."""
    from nejumi_eval.benchmarks import registry
    from nejumi_eval.preflight import preflight

    group = check_one_host(spec, stage)
    if group is not None and not group.leader:
        raise ConfigError("a worker of a serving group runs `nejumi-eval run --stage serve --join-group`")
    reporting = stage in REPORTING_STAGES
    pricing, held = cost_settings(stage) if reporting else (None, None)
    timeline = Timeline()
    workspace = Path(spec.workspace.path).expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results_dir = workspace / "results" / f"{_slug(spec.model.name)}-{stamp}"  # made when reporting
    sections = spec.benchmarks.enabled()
    if not sections:
        raise ConfigError(f"benchmarks: enable at least one of {', '.join(registry.names())}")

    check_chat_template(spec)
    steps = Steps(progress, ProgressPublisher.from_env())
    endpoint = ModelEndpoint(spec, workspace / "logs", timeline, on_ready=steps.say, group=group)
    judges_to_check = [
        (f"benchmarks.{name}.judge", judge_settings(spec, judge, f"benchmarks.{name}.judge"))
        for name, judge in spec.benchmarks.judges().items()
    ]
    store = destination(spec, _slug(spec.model.name), stamp, evaluator=_versions().get("nejumi"))
    # The serve stage checks only what it uses (its model); the others check what comes after them
    # too, so a wrong judge key or store fails the fetch stage, before any GPU is asked for.
    model_checked = stage != Stage.JUDGE
    others_checked = stage != Stage.SERVE
    with timeline.phase("preflight"):
        await preflight(
            spec,
            endpoint,
            judges_to_check if others_checked else [],
            store if others_checked else None,
            model=model_checked,
        )
    checked = ", ".join(
        ["model"] * model_checked
        + ["judges, W&B"] * others_checked
        + ["results store"] * bool(others_checked and store)
    )
    steps.say(f"preflight: ok in {timeline.phases['preflight']:.1f} s ({checked})")
    handoff = None
    if stage != Stage.FETCH:
        with timeline.phase("weights"):
            handoff = await asyncio.to_thread(_weights, spec, workspace, stage)
        if handoff is not None and stage != Stage.JUDGE:
            endpoint.serve_from(Path(handoff.path))
            if stage == Stage.RUN:
                steps.say(f"{_weights_line(handoff)} ({timeline.phases['weights']:.1f} s)")
    if stage == Stage.FETCH:
        try:
            return await _fetch(spec, steps, timeline, workspace, sections)
        finally:
            await steps.close()
    wandb_run = WandbRun()
    if spec.wandb.enabled and reporting:  # opened now: the W&B run's start, end, runtime are the evaluation's
        results_dir.mkdir(parents=True, exist_ok=True)
        smoke = smoke_test_flags(spec)
        wandb_run = WandbRun.open(
            spec.wandb,
            results_dir,
            run_id=evaluation_id(spec),
            name=_slug(spec.model.name),
            config={"spec": spec.model_dump(mode="json", by_alias=True), "versions": _versions()},
            smoke_test=any(smoke.values()),
            tags=_tags(smoke),
        )
    try:
        summary = await _evaluate(
            spec,
            steps,
            timeline,
            workspace,
            results_dir,
            sections,
            endpoint,
            wandb_run,
            stage,
            CostInputs(pricing, held),
            handoff,
        )
    except BaseException as exc:
        if results_dir.exists():  # never a results folder that does not say how its run ended
            message = str(unwrap(exc)) or type(exc).__name__
            failed = Summary(status="failed", model=spec.model.name, error=message[-1500:])
            ResultsFolder(results_dir).write_json(
                "summary", failed.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
        wandb_run.close(failed=True)
        await steps.close()
        raise
    try:
        if store is not None and reporting:
            with timeline.phase("store"):
                summary.results = await asyncio.to_thread(store.upload, results_dir, summary)
            steps.say(_stored_line(summary, results_dir, timeline.phases["store"]))
            summary.runtime_seconds["store"] = round(timeline.phases["store"], 3)
        return summary
    finally:
        await steps.close()


def _stored_line(summary: Summary, results_dir: Path, seconds: float) -> str:
    stored = summary.results
    if stored is None:
        return ""
    if not stored.stored:
        return (
            f"results: NOT stored in {stored.uri}: {stored.error}. They are in {results_dir}; rerun the "
            "same command on the same workspace to store them (every answer comes from the cache)"
        )
    return (
        f"results: stored in {stored.uri} ({stored.objects} objects, {stored.bytes / 1e6:.2f} MB; "
        f"{stored.uploaded} written, manifest {stored.manifest_sha256}) in {seconds:.1f} s"
    )


def smoke_test_flags(spec: EvaluationSpec) -> dict[str, bool]:
    """What the spec already says about a smoke test (before any score exists)."""
    sections = spec.benchmarks.enabled().values()
    return {
        "capped": spec.generation.max_new_tokens_cap is not None or any(s.capped for s in sections),
        "synthetic_judge": any(j.synthetic for j in spec.benchmarks.judges().values()),
    }


def _tags(flags: dict[str, bool]) -> list[str]:
    return [name.replace("_", "-") for name, on in flags.items() if on]


def evaluation_id(spec: EvaluationSpec) -> str:
    """Names one evaluation: the same model, benchmarks and protocol settings give the same id,
    whatever the workspace, the W&B settings, the pod resources or the client's pacing."""
    doc = spec.model_dump(
        mode="json", by_alias=True, exclude={"workspace", "summary_path", "wandb", "results"}
    )
    for placement in ("resources", "queueName", "workloadPriorityClassName"):
        doc.pop(placement, None)
    for pacing in ("concurrency", "requestTimeoutSeconds", "maxRetries"):
        doc["generation"].pop(pacing, None)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


async def _evaluate(
    spec: EvaluationSpec,
    steps: Steps,
    timeline: Timeline,
    workspace: Path,
    results_dir: Path,
    sections: dict[str, Any],
    endpoint: ModelEndpoint,
    wandb_run: WandbRun,
    stage: Stage = Stage.RUN,
    costs: CostInputs | None = None,
    handoff: Handoff | None = None,
) -> Summary:
    from nejumi_eval.benchmarks import registry
    from nejumi_eval.benchmarks.base import RunContext
    from nejumi_eval.runtime.client.cache import ResponseCache
    from nejumi_eval.runtime.client.client import InferenceClient

    judging = stage != Stage.SERVE
    served_here = endpoint.served and stage != Stage.JUDGE  # the judge stage has no model server
    cache = ResponseCache(workspace / "cache" / "responses.sqlite")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(cache.close)
        judges: list[InferenceClient] = []

        def open_judge(judge: JudgeSpec, field_name: str) -> InferenceClient | None:
            if not judging:
                return None  # the serve stage generates only: the GPU never waits on a judge
            settings = judge_settings(spec, judge, field_name)
            if judge.synthetic:
                from nejumi_eval.demo.synthetic_judge import SyntheticJudge

                served = stack.enter_context(SyntheticJudge())
                settings = settings.model_copy(update={"base_url": served.base_url})
            client = InferenceClient(settings, cache=cache)
            stack.push_async_callback(client.aclose)
            judges.append(client)
            return client

        # Progress bars on a terminal; in a log (a pod, CI) plain lines every HEARTBEAT_S instead.
        ctx = RunContext(spec=spec, progress=steps.enabled and steps.tty, open_judge=open_judge)

        def prepare() -> dict[str, Any]:
            return {name: registry.get(name).plan(section, ctx) for name, section in sections.items()}

        key = handoff.key if handoff is not None else None  # the weights' content, when cached
        source = await asyncio.to_thread(answer_source, spec, workspace / "cache", key)
        async with contextlib.AsyncExitStack() as serving:
            serving.push_async_callback(endpoint.stop)
            # A fresh evaluation loads the model (minutes for vLLM) while the data is prepared: a
            # GPU never waits on CPU work that could run beside it; a failed prepare stops it. A
            # rerun starts the server only at its first cache miss: a fully cached one never does.
            eager = served_here and not (source is not None and cache.has_answers_from(source))
            starting = asyncio.create_task(endpoint.start()) if eager else None
            await steps.enter("prepare")
            try:
                with timeline.phase("prepare"):
                    runs = await asyncio.to_thread(prepare)
                plans = " · ".join(f"{n}: {_plan_line(r)}" for n, r in runs.items())
                steps.say(f"data: {plans} (prepared in {timeline.phases['prepare']:.1f} s)")
            except BaseException:
                if starting is not None:
                    starting.cancel()
                    with contextlib.suppress(BaseException):
                        await starting
                raise
            settings = model_settings(spec, endpoint.endpoint, source)
            client = await serving.enter_async_context(
                InferenceClient(
                    settings,
                    cache=cache,
                    connect=endpoint.start if served_here else None,
                    offline=NOT_SERVED if endpoint.served and not served_here else None,
                )
            )
            await steps.enter("generate", runs)
            heartbeat = steps.heartbeat()
            with timeline.phase("generate"):
                if starting is not None:
                    await starting
                await _gather(*(run.generate(client) for run in runs.values()))
            model_stats = client.stats
            not_started = served_here and endpoint.server.pid is None  # not one that died since
            steps.say(
                f"generate: {model_stats.requests_sent} sent, {model_stats.cache_hits} from the cache, "
                f"{model_stats.failures} failed{_cut(model_stats.truncated)} "
                f"({timeline.phases['generate']:.1f} s)"
                + ("; the model server was never started" if not_started else "")
            )
            if endpoint.group is not None and (lost := endpoint.lost()) is not None:
                # A group's server ends when any of its nodes does (vLLM's engine exits when a peer
                # dies): this attempt failed, and the next, in the group LeaderWorkerSet recreates,
                # resumes from the cache. (One node keeps its failed answers and completes.)
                raise InfrastructureError(
                    f"{model_stats.failures} requests failed: the serving group lost its server while "
                    f"generating (a node gone?): {lost}"
                )
        # The model server is down from here on: judging needs no GPU (design §Score).
        if stage == Stage.SERVE:
            heartbeat.cancel()
            usage = Usage(
                prompt_tokens=model_stats.prompt_tokens,
                completion_tokens=model_stats.completion_tokens,
                requests_sent=model_stats.requests_sent,
                cache_hits=model_stats.cache_hits,
            )
            serving_span = _span([model_stats])
            if serving_span is not None:  # first request sent → last answer: what the GPUs served
                timeline.phases["serving"] = serving_span
            cost = Cost(
                gpu_seconds_busy=_busy(spec, serving_span),
                model_prompt_tokens=model_stats.prompt_tokens,
                model_completion_tokens=model_stats.completion_tokens,
            )
            summary = _stage_summary(spec, stage, timeline, usage, cost)
            write_stage_record(workspace, spec, summary)  # the judge stage's cost takes it up
            return summary
        failures: dict[str, BaseException] = {}

        async def finish(name: str, run: Any) -> None:
            try:
                await run.finish()
            except Exception as exc:  # a typed failure (a judge lost) keeps every other benchmark
                if classify(exc) == EXIT_BUG:
                    raise
                log.error("%s: %s", name, unwrap(exc))
                failures[name] = unwrap(exc)

        if judges:
            await steps.enter("judge")
        with timeline.phase("judge_tail") if judges else contextlib.nullcontext():
            await _gather(*(finish(name, run) for name, run in runs.items()))
        heartbeat.cancel()
        await steps.enter("score")
        if judges:
            timeline.mark("judge.done")
        judge_stats = [j.stats for j in judges]
        if judges:
            sent, hits = sum(j.requests_sent for j in judge_stats), sum(j.cache_hits for j in judge_stats)
            cut = _cut(sum(j.truncated for j in judge_stats))
            tail = timeline.phases.get("judge_tail", 0.0)
            steps.say(f"judge: {sent} sent, {hits} from the cache{cut}; done {tail:.1f} s after generation")
        client_stats = {
            "model": model_stats.as_dict(),
            "judge": _sum_stats(judge_stats) if judges else None,
        }
        judge_prompt = sum(j.prompt_tokens for j in judge_stats)
        judge_completion = sum(j.completion_tokens for j in judge_stats)
        serve_record = read_stage_record(workspace, spec, Stage.SERVE) if stage == Stage.JUDGE else None
        # The evaluation's usage: in the judge stage, the model's side is the serve stage's (every
        # answer here is its answer, read back: not a cache hit of a rerun).
        model_usage = (
            serve_record.usage
            if serve_record is not None
            else Usage(
                prompt_tokens=model_stats.prompt_tokens,
                completion_tokens=model_stats.completion_tokens,
                requests_sent=model_stats.requests_sent,
                cache_hits=model_stats.cache_hits,
            )
        )
        usage = Usage(
            prompt_tokens=model_usage.prompt_tokens,
            completion_tokens=model_usage.completion_tokens,
            judge_tokens=judge_prompt + judge_completion,
            judge_prompt_tokens=judge_prompt,
            judge_completion_tokens=judge_completion,
            requests_sent=model_usage.requests_sent + sum(j.requests_sent for j in judge_stats),
            cache_hits=model_usage.cache_hits + sum(j.cache_hits for j in judge_stats),
        )
        truncated = model_stats.truncated + sum(j.truncated for j in judge_stats)
        judge_span = _span(judge_stats)
        if judge_span is not None:  # judging overlaps generation: its own wall time, first to last
            timeline.phases["judge"] = judge_span
        cost = evaluation_cost(
            spec,
            stage,
            costs or CostInputs(),
            model_stats,
            _judge_tokens(judges),
            served=endpoint.served,
            serve_record=serve_record,
        )

    with timeline.phase("score"):
        outputs = {
            name: run.output(spec.model.name, failure=failures.get(name))
            if name in failures
            else run.output(spec.model.name)
            for name, run in runs.items()
        }
    await steps.enter("report")
    with timeline.phase("report"):
        return _report(
            spec,
            results_dir,
            timeline,
            usage,
            client_stats,
            outputs,
            failures,
            wandb_run,
            truncated,
            gpu_in_pod=stage == Stage.RUN,
            cost=cost,
        )


async def _fetch(
    spec: EvaluationSpec, steps: Steps, timeline: Timeline, workspace: Path, sections: dict[str, Any]
) -> Summary:
    """The fetch stage: the data prepared (downloaded, verified, converted) and the weights
    downloaded into the workspace, on a CPU; the serve stage finds both there."""
    from nejumi_eval.benchmarks import registry
    from nejumi_eval.benchmarks.base import RunContext

    ctx = RunContext(spec=spec, progress=steps.enabled and steps.tty, open_judge=lambda *_: None)
    await steps.enter("prepare")
    with timeline.phase("prepare"):
        runs = await asyncio.to_thread(
            lambda: {name: registry.get(name).plan(section, ctx) for name, section in sections.items()}
        )
    plans = " · ".join(f"{n}: {_plan_line(r)}" for n, r in runs.items())
    steps.say(f"data: {plans} (prepared in {timeline.phases['prepare']:.1f} s)")
    with timeline.phase("weights"):
        if uses_cache(spec):
            handoff = await asyncio.to_thread(fetch_for, spec, workspace)
            line = _weights_line(handoff)
            await asyncio.to_thread(answer_source, spec, workspace / "cache", handoff.key)
        else:
            line = f"weights: {await asyncio.to_thread(fetch_weights, spec)}"
            # The served model's cache identity (a local folder's content hash, memoised in the
            # workspace): computed here once, read by the later stages.
            await asyncio.to_thread(answer_source, spec, workspace / "cache")
    steps.say(f"{line} ({timeline.phases['weights']:.1f} s)")
    return _stage_summary(spec, Stage.FETCH, timeline)


def _weights(spec: EvaluationSpec, workspace: Path, stage: Stage) -> Handoff | None:
    """The weights this stage serves (or, judging, whose answers it reads): what the fetch stage
    recorded; a run without stages fetches them itself. None: the server loads `model.name`."""
    if stage == Stage.RUN:
        return fetch_for(spec, workspace) if uses_cache(spec) else None
    return recorded(workspace, need_folder=stage == Stage.SERVE)


def _weights_line(handoff: Handoff) -> str:
    return (
        f"weights: {handoff.uri} → {handoff.path} ({handoff.bytes_downloaded / 1e6:.1f} MB downloaded, "
        f"{handoff.bytes_from_cache / 1e6:.1f} MB from the model cache)"
    )


def fetch_weights(spec: EvaluationSpec) -> str:
    """Download a Hub model's weights into the Hugging Face cache (`$HF_HOME`, on the workspace),
    where the serve stage's server loads them without the network; a local folder is used where
    it is. Returns where they are, for the log. (Weights that go through the model cache:
    `runtime.weights.handoff.fetch_for`.)"""
    m = spec.model
    if m.source == ModelSource.OPENAI_COMPATIBLE:
        return "none (an API model)"
    if m.name.startswith(("/", "./", "../", "~")):
        return f"the local folder {m.name}"
    from huggingface_hub import snapshot_download

    return str(snapshot_download(repo_id=m.name, revision=m.revision))


def _stage_summary(
    spec: EvaluationSpec,
    stage: Stage,
    timeline: Timeline,
    usage: Usage | None = None,
    cost: Cost | None = None,
) -> Summary:
    """The summary of a stage that is not the last: what it did and how long, no scores."""
    runtime = {k: round(v, 3) for k, v in timeline.phases.items()}
    return Summary(
        status="completed",
        model=spec.model.name,
        stage=stage.value,
        usage=usage or Usage(),
        cost=cost,
        runtime_seconds={**runtime, "total": round(timeline.total, 3)},
    )


# ---- cost ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostInputs:
    """What prices the evaluation, from the environment: the price table and the GPU-seconds the
    earlier stages held (the operator's observation; None: not told, e.g. a local run)."""

    pricing: Pricing | None = None
    gpu_seconds_held: float | None = None


def cost_settings(stage: Stage, env: Any = None) -> tuple[Pricing | None, float | None]:
    """`$NEJUMI_PRICING` and, for the judge stage, `$NEJUMI_GPU_SECONDS_HELD`, checked before
    anything is served or sent (a bad value is a configuration error, exit 2)."""
    env = os.environ if env is None else env
    try:
        pricing = parse_pricing(env.get(PRICING_ENV), PRICING_ENV)
    except PricingError as exc:
        raise ConfigError(str(exc)) from None
    raw = (env.get(GPU_SECONDS_HELD_ENV) or "").strip()
    if stage != Stage.JUDGE or not raw:
        return pricing, None
    try:
        held = float(raw)
    except ValueError:
        held = -1.0
    if not held >= 0 or held == float("inf"):
        raise ConfigError(f"{GPU_SECONDS_HELD_ENV}: expected a number of GPU-seconds ≥ 0, got {raw!r}")
    return pricing, held


STAGE_RECORDS = "stages"
"""`<workspace>/stages/<stage>.json`: a stage's summary, for the stages after it (the serve
stage's model tokens and serving span go into the judge stage's cost)."""


def write_stage_record(workspace: Path, spec: EvaluationSpec, summary: Summary) -> Path:
    """Keep a stage's summary in the workspace (atomically: a reader never sees half of it), with the
    evaluation it belongs to."""
    path = workspace / STAGE_RECORDS / f"{summary.stage}.json"
    doc = {
        "evaluationId": evaluation_id(spec),
        "summary": summary.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    atomic_write_text(path, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    return path


def read_stage_record(workspace: Path, spec: EvaluationSpec, stage: Stage) -> Summary | None:
    """The summary `stage` left in the workspace for this evaluation (None: none, or another
    evaluation's: a record of another spec never prices this one)."""
    path = workspace / STAGE_RECORDS / f"{stage.value}.json"
    unknown = f"the {stage.value} stage's figures are unknown in the cost"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log.warning("%s: no record of the %s stage: %s", path, stage.value, unknown)
        return None
    except ValueError as exc:
        log.warning("%s: unreadable (%s): %s", path, exc, unknown)
        return None
    if not isinstance(doc, dict) or doc.get("evaluationId") != evaluation_id(spec):
        log.warning("%s is another evaluation's: %s", path, unknown)
        return None
    try:
        return Summary.model_validate(doc.get("summary"))
    except ValueError as exc:
        log.warning("%s: not a summary (%s): %s", path, exc, unknown)
        return None


def _busy(spec: EvaluationSpec, serving_span: float | None) -> float:
    """GPU-seconds the model server was busy: first request sent → last answer, × the GPUs the pod
    asks for (`resources.gpus`); 0 when nothing was sent (a fully cached rerun starts no server)."""
    return round((serving_span or 0.0) * spec.resources.gpus, 3)


def _judge_tokens(judges: list[Any]) -> dict[str, tuple[int, int]]:
    """(prompt, completion) tokens sent to each judge model, by the name the table prices."""
    out: dict[str, tuple[int, int]] = {}
    for judge in judges:
        prompt, completion = out.get(judge.settings.model, (0, 0))
        out[judge.settings.model] = (
            prompt + judge.stats.prompt_tokens,
            completion + judge.stats.completion_tokens,
        )
    return out


def evaluation_cost(
    spec: EvaluationSpec,
    stage: Stage,
    inputs: CostInputs,
    model_stats: Any,
    judge_tokens: dict[str, tuple[int, int]],
    *,
    served: bool,
    serve_record: Summary | None = None,
) -> Cost:
    """The whole evaluation's cost, as the pod that reports it knows it.

    - one pod (`run`): the model's tokens and the serving span are its own; the GPU-seconds it
      holds are unknown to it (its Job has not ended: the operator adds them), 0 for an API model;
    - the judge stage: the model's tokens and the serving span are the serve stage's record's (none:
      unknown busy seconds), the GPU-seconds held the operator's (`inputs.gpu_seconds_held`)."""
    if stage == Stage.JUDGE:
        recorded = serve_record.cost if serve_record is not None else None
        base = recorded or Cost(
            model_prompt_tokens=model_stats.prompt_tokens,
            model_completion_tokens=model_stats.completion_tokens,
        )
        held = inputs.gpu_seconds_held
    else:
        base = Cost(
            gpu_seconds_busy=_busy(spec, _span([model_stats])) if served else 0.0,
            model_prompt_tokens=model_stats.prompt_tokens,
            model_completion_tokens=model_stats.completion_tokens,
        )
        held = None if served else 0.0
    cost = base.model_copy(
        update={
            "gpu_seconds_held": held,
            "judge_prompt_tokens": sum(p for p, _ in judge_tokens.values()),
            "judge_completion_tokens": sum(c for _, c in judge_tokens.values()),
        }
    )
    return cost.priced(inputs.pricing, judge_tokens)


def _cut(truncated: int) -> str:
    """The clause a step's line gets when answers were cut to the answer cap (else nothing)."""
    if not truncated:
        return ""
    return f", {truncated} answer{'s' if truncated != 1 else ''} cut to the size cap"


HEARTBEAT_S = 10.0


class Steps:
    """A line per step with its figure (stderr), and periodic progress lines where no progress bar
    can draw (not a terminal), so nothing is silent for more than ~10 s. In a pod the operator made,
    the same counts go to the evaluation's progress ConfigMap (`report.progress`) at every step
    change and every HEARTBEAT_S, whatever the terminal."""

    def __init__(self, enabled: bool, publisher: ProgressPublisher | None = None) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.publisher = publisher
        self.step: Step = "prepare"
        self.runs: dict[str, Any] = {}
        self._beat: asyncio.Task[None] | None = None

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def counts(self) -> dict[str, tuple[int, int]]:
        counts: dict[str, tuple[int, int]] = {}
        for run in self.runs.values():
            if isinstance(run, CountsProgress):
                counts.update(run.counts())
        return counts

    async def enter(self, step: Step, runs: dict[str, Any] | None = None) -> None:
        """A new step (with the runs to count, once they exist): published at once."""
        self.step = step
        if runs is not None:
            self.runs = runs
        if self.publisher is not None:
            await self.publisher.publish(step, self.counts())

    def heartbeat(self) -> Any:
        """A task printing (and publishing) the runs' counts each HEARTBEAT_S (cancel it when done)."""
        printing = self.enabled and not self.tty
        if not printing and self.publisher is None:
            return _NoTask()

        async def beat() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT_S)
                counts = self.counts()
                if printing:
                    self.say("progress: " + " · ".join(f"{k} {d}/{t}" for k, (d, t) in counts.items()))
                if self.publisher is not None:
                    await self.publisher.publish(self.step, counts)

        self._beat = asyncio.create_task(beat())
        return self._beat

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self.publisher is not None:
            await self.publisher.aclose()
            self.publisher = None


class _NoTask:
    def cancel(self) -> None:
        return None


def _plan_line(run: Any) -> str:
    return run.describe_plan() if isinstance(run, DescribesPlan) else "ready"


def _span(stats: list[Any]) -> float | None:
    """Seconds from the first request sent to the last answer, over clients (None: none sent)."""
    firsts = [s.first_sent_at for s in stats if s.first_sent_at is not None]
    lasts = [s.last_done_at for s in stats if s.last_done_at is not None]
    return round(max(lasts) - min(firsts), 3) if firsts and lasts else None


async def _gather(*aws: Any) -> list[Any]:
    """`asyncio.gather` that cancels the rest on the first error and raises it as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(aw) for aw in aws]
    except BaseExceptionGroup as eg:
        raise unwrap(eg) from None
    return [t.result() for t in tasks]


def _sum_stats(stats: list[Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for s in stats:
        for k, v in s.as_dict().items():
            total[k] = total.get(k, 0) + v
    return total


def _report(
    spec: EvaluationSpec,
    results_dir: Path,
    timeline: Timeline,
    usage: Usage,
    client_stats: dict[str, Any],
    outputs: dict[str, BenchmarkOutput],
    failures: dict[str, BaseException] | None = None,
    wandb_run: WandbRun | None = None,
    truncated: int = 0,
    gpu_in_pod: bool = True,
    cost: Cost | None = None,
) -> Summary:
    """Results folder first (the durable record), then W&B (a view of it).

    `truncated`: answers (model and judges) cut to the answer cap this run, for the summary.
    `gpu_in_pod`: this pod served the model (not the judge stage), so it held the GPUs throughout."""
    from nejumi_eval.api.v1alpha1.formula import OVERALL

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
    scalars.update(
        {OVERALL.name: overall_value, "degraded": degraded, **flags, "truncated_answers": truncated}
    )
    if cost is not None:
        scalars.update(cost.scalars())
    runtime = {k: round(v, 3) for k, v in timeline.phases.items()}
    if gpu_in_pod and spec.model.source != ModelSource.OPENAI_COMPATIBLE:
        # The pod holds its accelerator for the whole run; only `generate` uses it.
        runtime["gpu_idle"] = round(timeline.total - timeline.phases.get("generate", 0.0), 3)
    failures = failures or {}
    error = "; ".join(f"{name}: {exc}" for name, exc in failures.items()) or None
    run_doc.update(
        {
            "status": "failed" if failures else "completed",
            "error": error,
            "started_at": timeline.started_at.isoformat(),
            "ended_at": datetime.now(UTC).isoformat(),
            "overall": overall_value,
            "degraded": degraded,
            "spec": spec.model_dump(mode="json", by_alias=True),
            "runtime_seconds": runtime,
            "timeline": timeline.events,
            "usage": usage.model_dump(by_alias=True),
            "cost": cost.model_dump(by_alias=True) if cost is not None else None,
            "client_stats": client_stats,  # HTTP attempts, retries and answers cut, per client
            "truncated_answers": truncated,
        }
    )
    folder.write_json("run", run_doc)
    wandb_run = wandb_run or WandbRun()
    wandb_run.publish(folder.tables, scalars, config={k: v for k, v in run_doc.items() if k != "timeline"})
    wandb_run.close(failed=bool(failures))
    wandb_note = f"W&B: {wandb_run.error}" if wandb_run.error else None
    summary = Summary(
        status="failed" if failures else "completed",
        model=model,
        overall=overall_value,
        degraded=degraded,
        **flags,
        truncated_answers=truncated,
        benchmarks=summaries,
        usage=usage,
        cost=cost,
        runtime_seconds={**runtime, "total": round(timeline.total, 3)},
        results_dir=str(results_dir),
        wandb_run_path=wandb_run.path,
        error="; ".join(e for e in (error, wandb_note) if e) or None,
    )
    folder.write_json("summary", summary.model_dump(mode="json", by_alias=True, exclude_none=True))
    return summary


def _write_summary(path: str | None, summary: Summary) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(summary.to_json(), encoding="utf-8")


def failed_summary(spec: EvaluationSpec, stage: Stage, exc: BaseException) -> Summary:
    """The summary of a run `exc` ended: what `run` leaves at `spec.summaryPath`, and what a serving
    group's leader reports as its attempt's outcome (`group_leader`)."""
    message = str(exc) or type(exc).__name__
    of_stage = None if stage in (Stage.RUN, Stage.JUDGE) else stage.value
    return Summary(status="failed", model=spec.model.name, stage=of_stage, error=message[-1500:])


def run(spec: EvaluationSpec, *, progress: bool = True, stage: Stage = Stage.RUN) -> Summary:
    """Run `evaluate` and always leave a summary at `spec.summaryPath` (failed runs say why)."""
    try:
        summary = asyncio.run(evaluate(spec, progress=progress, stage=stage))
    except BaseException as exc:
        _write_summary(spec.summary_path, failed_summary(spec, stage, exc))
        raise
    _write_summary(spec.summary_path, summary)
    return summary
