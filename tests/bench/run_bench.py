"""`make bench`: the evaluator's performance figures, each ratio measured within one run on one server.

Not a test: nothing here asserts on a timing. It prints a table and writes the same figures to
``.cache/bench/results.json``. Every server is local (127.0.0.1): the real ``transformers serve`` of
the tiny model, and the test doubles ``StubServer``/``ScriptedJudge`` (real HTTP, fixed latency).

1. generation, concurrency 1 (how Nejumi Neo generated) vs 8, on the same server and requests
2. client overhead: ``InferenceClient.run_all`` with a fresh cache vs a bare ``AsyncOpenAI`` loop
3. warm-cache rerun: the same requests again, answered from the cache
4. judging, concurrency 8 vs 1 (how Neo judged), 80 questions × 2 turns
5. GPU-holding time: a full ``pipeline.run`` on the tiny model; server down vs last judgment

Figures are wall-clock times on whatever else the machine is doing: the load average is recorded
with them. Best-of-N is taken where a run is cheap enough to repeat.

    python -m tests.bench.run_bench        # from the repo root (make bench)
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import openai

from nejumi_eval.client import (
    ClientSettings,
    ClientStats,
    CompletionRequest,
    InferenceClient,
    InferenceRequest,
    ResponseCache,
)
from nejumi_eval.config import JasterSpec, MtbenchSpec, parse_spec
from nejumi_eval.jaster.benchmark import plan
from nejumi_eval.mtbench.benchmark import MtbenchRun
from nejumi_eval.mtbench.data import default_mirror, load_variant
from nejumi_eval.pipeline import run
from nejumi_eval.serve import ModelServer, ServerSettings
from nejumi_eval.serve.tiny import TinyModel, build_tiny_model
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge

RESULTS_PATH = Path(".cache/bench/results.json")

GEN_SAMPLES_PER_DATASET = 2  # 16 jaster datasets × 2 = 32 completion requests
GEN_MAX_NEW_TOKENS = 16
GEN_ROUNDS = 3  # interleaved c1/c8 rounds per server; best of each
STUB_GEN_DELAY_S = 0.05

OVERHEAD_REQUESTS = 200
OVERHEAD_DELAY_S = 0.02
OVERHEAD_ROUNDS = 5

JUDGE_DELAY_S = 0.2
PIPELINE_JUDGE_DELAY_S = 3.0  # longer than the server's stop: judging is the run's tail

CONCURRENCY = 8  # the judge's default; the generation comparisons use the same
SEQUENTIAL = 1

# Everything stays on this machine: the tiny model is a local folder, W&B is off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ReplyTimes:
    """Mixin for the test doubles: records when each POST was answered."""

    replied_at: list[float]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base: type[BaseHTTPRequestHandler] = super()._handler()  # type: ignore[misc]
        replied_at: list[float] = []
        self.replied_at = replied_at

        class Handler(base):  # type: ignore[valid-type, misc]
            def do_POST(self) -> None:
                super().do_POST()
                replied_at.append(time.perf_counter())

        return Handler


class Stub(ReplyTimes, StubServer):
    pass


class Judge(ReplyTimes, ScriptedJudge):
    pass


# ---- the report ----------------------------------------------------------------------------


@dataclass
class Report:
    """Figures in measurement order: printed as a table, written as JSON."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def section(self, key: str, title: str) -> None:
        self.sections[key] = {}
        self.rows.append((f"== {title}", "", ""))
        print(f"{title}", flush=True)

    def add(self, key: str, label: str, value: Any, unit: str = "") -> None:
        section = next(reversed(self.sections))
        self.sections[section][key] = round(value, 4) if isinstance(value, float) else value
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        self.rows.append((f"   {label}", shown, unit))
        print(f"  {label:<58} {shown:>10} {unit}", flush=True)

    def table(self) -> str:
        width = max(len(label) for label, _, _ in self.rows)
        lines = []
        for label, value, unit in self.rows:
            lines.append(label if not value else f"{label:<{width}}  {value:>10}  {unit}".rstrip())
        return "\n".join(lines)


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "openai": openai.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _ratio(slow: float, fast: float) -> float:
    return slow / fast if fast > 0 else float("nan")


# ---- timed runs ----------------------------------------------------------------------------


@dataclass
class Timed:
    seconds: float
    cpu_seconds: float
    stats: ClientStats
    texts: list[str]

    @property
    def failures(self) -> int:
        return self.stats.failures


async def timed_client_run(
    settings: ClientSettings, requests: Sequence[InferenceRequest], cache: ResponseCache | None = None
) -> Timed:
    """The product's generation path: one fresh InferenceClient, ``run_all``, progress bars off."""
    async with InferenceClient(settings, cache=cache) as client:
        started, cpu_started = time.perf_counter(), time.process_time()
        results = await client.run_all(requests, progress=False)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return Timed(seconds, cpu_seconds, client.stats, [r.text for r in results])


async def timed_bare_openai(
    base_url: str, model: str, requests: Sequence[CompletionRequest], concurrency: int
) -> tuple[float, float]:
    """The least a script can do: AsyncOpenAI, a semaphore and gather (no cache, no retries)."""
    semaphore = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0) as client:

        async def one(request: CompletionRequest) -> str:
            async with semaphore:
                response = await client.completions.create(
                    model=model,
                    prompt=request.prompt,
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                )
            return response.choices[0].text

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(r) for r in requests))
        return time.perf_counter() - started, time.process_time() - cpu_started


def jaster_requests(samples_per_dataset: int) -> list[CompletionRequest]:
    """Real jaster prompts (completion mode, the local-model path), capped at 16 new tokens."""
    spec = JasterSpec(test_samples=samples_per_dataset, dev_samples=0)
    items = plan(spec, "completion", max_new_tokens_cap=GEN_MAX_NEW_TOKENS).items
    return [item.request for item in items if isinstance(item.request, CompletionRequest)]


# ---- 1. concurrent vs one-at-a-time generation ------------------------------------------


async def compare_concurrency(
    report: Report,
    base_url: str,
    model: str,
    requests: Sequence[InferenceRequest],
    reference: list[str] | None = None,
) -> list[str]:
    """c1 and c8 interleaved on one server, no cache; best of each. Returns the c1 answers.

    Greedy answers must not depend on concurrency: every run is compared with ``reference`` (or
    the first c1 run).
    """

    def settings(concurrency: int) -> ClientSettings:
        return ClientSettings(base_url=base_url, model=model, concurrency=concurrency, request_timeout_s=300)

    # Warm-up: the first requests to a fresh server pay one-off costs (allocations, kernels).
    warm_up = await timed_client_run(settings(CONCURRENCY), requests[:CONCURRENCY])
    runs: dict[int, list[Timed]] = {SEQUENTIAL: [], CONCURRENCY: []}
    for _ in range(GEN_ROUNDS):
        for concurrency in (SEQUENTIAL, CONCURRENCY):
            runs[concurrency].append(await timed_client_run(settings(concurrency), requests))
    reference = reference or runs[SEQUENTIAL][0].texts
    all_runs = runs[SEQUENTIAL] + runs[CONCURRENCY]
    best_1 = min(t.seconds for t in runs[SEQUENTIAL])
    best_8 = min(t.seconds for t in runs[CONCURRENCY])
    report.add(
        "warm_up_s",
        f"warm-up: first {CONCURRENCY} requests at c{CONCURRENCY} (not compared)",
        warm_up.seconds,
        "s",
    )
    report.add("requests", "requests per run", len(requests))
    report.add("concurrency_1_s", f"concurrency 1 (Neo), best of {GEN_ROUNDS}", best_1, "s")
    report.add("concurrency_8_s", f"concurrency {CONCURRENCY}, best of {GEN_ROUNDS}", best_8, "s")
    report.add("all_runs_s", "all runs (c1 | c8)", _runs(runs[SEQUENTIAL], runs[CONCURRENCY]))
    report.add("speedup", f"speed-up c{CONCURRENCY} over c1", _ratio(best_1, best_8), "x")
    report.add("failed_requests", "failed requests (all runs)", sum(t.failures for t in all_runs))
    same = sum(1 for t in all_runs if t.texts == reference)
    report.add("same_answers", "runs with the reference's exact answers", f"{same}/{len(all_runs)}")
    return runs[SEQUENTIAL][0].texts


def _runs(a: Sequence[Timed], b: Sequence[Timed]) -> str:
    return " ".join(f"{t.seconds:.2f}" for t in a) + " | " + " ".join(f"{t.seconds:.2f}" for t in b)


async def bench_generation_transformers(
    report: Report, tiny: TinyModel, requests: Sequence[InferenceRequest], workdir: Path
) -> None:
    """The real CPU server as the product launches it, then with its continuous batching on."""
    variants = [
        ("gen_transformers", "1a. transformers serve (as the product launches it), tiny model", []),
        ("gen_transformers_cb", "1b. transformers serve --continuous-batching", ["--continuous-batching"]),
    ]
    reference: list[str] | None = None
    for key, title, extra_args in variants:
        report.section(key, title)
        settings = ServerSettings(
            backend="transformers",
            model=str(tiny.path),
            device="cpu",
            port=0,
            startup_timeout_s=300,
            extra_args=extra_args,
        )
        server = ModelServer.from_settings(settings, log_dir=workdir / key)
        async with server:
            report.add("server_startup_s", "server start (load + health)", server.startup_s or 0.0, "s")
            reference = await compare_concurrency(
                report, server.base_url, server.model_name, requests, reference
            )


async def bench_generation_stub(report: Report, requests: Sequence[InferenceRequest]) -> None:
    report.section("gen_stub", f"1c. StubServer, fixed {STUB_GEN_DELAY_S:g} s/request, serves concurrently")
    with Stub(delay_s=STUB_GEN_DELAY_S) as stub:
        await compare_concurrency(report, stub.base_url, stub.model, requests)
        report.add("floor_c1_s", "floor at c1 (requests × delay)", len(requests) * STUB_GEN_DELAY_S, "s")
        report.add("peak_in_flight", "peak requests in flight at the server", stub.peak_in_flight)


# ---- 2. client overhead and 3. warm-cache rerun -----------------------------------------


async def bench_client_overhead(report: Report, requests: Sequence[CompletionRequest], workdir: Path) -> None:
    n = len(requests)
    report.section(
        "client_overhead",
        f"2. client overhead: {n} requests, StubServer {OVERHEAD_DELAY_S:g} s/request, "
        f"concurrency {CONCURRENCY}",
    )
    with Stub(delay_s=OVERHEAD_DELAY_S) as stub:
        settings = ClientSettings(base_url=stub.base_url, model=stub.model, concurrency=CONCURRENCY)
        await timed_bare_openai(stub.base_url, stub.model, requests[:CONCURRENCY], CONCURRENCY)  # warm-up
        ours: list[Timed] = []
        bare: list[tuple[float, float]] = []
        cache_path = workdir / "unused"
        for i in range(OVERHEAD_ROUNDS):
            bare.append(await timed_bare_openai(stub.base_url, stub.model, requests, CONCURRENCY))
            cache_path = workdir / f"overhead-{i}" / "responses.sqlite"
            with ResponseCache(cache_path) as cache:
                ours.append(await timed_client_run(settings, requests, cache))
        best_bare, best_ours = min(s for s, _ in bare), min(t.seconds for t in ours)
        cpu_bare, cpu_ours = min(c for _, c in bare), min(t.cpu_seconds for t in ours)
        runs = " ".join(f"{s:.2f}" for s, _ in bare) + " | " + " ".join(f"{t.seconds:.2f}" for t in ours)
        report.add(
            "latency_floor_s",
            "latency floor (requests / concurrency × delay)",
            n / CONCURRENCY * OVERHEAD_DELAY_S,
            "s",
        )
        report.add("bare_openai_s", f"bare AsyncOpenAI loop, best of {OVERHEAD_ROUNDS}", best_bare, "s")
        report.add(
            "inference_client_s", f"InferenceClient + cache, best of {OVERHEAD_ROUNDS}", best_ours, "s"
        )
        report.add("all_runs_s", "all runs (bare | ours)", runs)
        report.add("ratio", "wall ratio ours / bare (aim ≤ 1.10)", _ratio(best_ours, best_bare), "x")
        report.add(
            "bare_cpu_ms_per_request",
            "process CPU per request, bare (client + stub)",
            cpu_bare / n * 1e3,
            "ms",
        )
        report.add(
            "ours_cpu_ms_per_request",
            "process CPU per request, ours (client + stub)",
            cpu_ours / n * 1e3,
            "ms",
        )
        report.add("cpu_ratio", "CPU ratio ours / bare", _ratio(cpu_ours, cpu_bare), "x")
        report.add("failed_requests", "failed requests (ours, all runs)", sum(t.failures for t in ours))

        report.section("warm_cache", "3. warm-cache rerun: the same requests, the last run's cache")
        posts_before, models_before = stub.calls, stub.models_calls
        with ResponseCache(cache_path) as cache:
            timed = await timed_client_run(settings, requests, cache)
        report.add("seconds", f"rerun of {n} requests", timed.seconds, "s")
        report.add("requests_sent", "client.stats.requests_sent", timed.stats.requests_sent)
        report.add("cache_hits", "client.stats.cache_hits", timed.stats.cache_hits)
        report.add("server_posts", "POSTs the stub received", stub.calls - posts_before)
        report.add("server_model_checks", "GET /models the stub received", stub.models_calls - models_before)
        report.add("same_answers", "answers equal to the cold run's", timed.texts == ours[-1].texts)


# ---- 4. judging concurrency -------------------------------------------------------------


async def bench_judging(report: Report) -> None:
    """The full MT-bench schedule (answers from an instant stub), judged at concurrency 8 and 1."""
    data = load_variant("neo", default_mirror())
    n = 2 * len(data.questions)
    report.section("judging", f"4. judging: {n} judgments, ScriptedJudge {JUDGE_DELAY_S:g} s/call")
    questions = {q.question_id: q.turns[0] for q in data.questions}
    with Stub() as model, Judge(questions, delay_s=JUDGE_DELAY_S) as judge:
        model_settings = ClientSettings(base_url=model.base_url, model=model.model, concurrency=CONCURRENCY)
        times: dict[int, float] = {}
        for c in (CONCURRENCY, SEQUENTIAL):
            judge_settings = ClientSettings(base_url=judge.base_url, model=judge.model, concurrency=c)
            judge.peak_in_flight = 0
            async with (
                InferenceClient(model_settings) as client,
                InferenceClient(judge_settings) as judge_client,
            ):
                mt = MtbenchRun.create(MtbenchSpec(), judge_client, progress=False, max_new_tokens_cap=16)
                started = time.perf_counter()
                await mt.answer_all(client)
                await mt.judged()
                times[c] = time.perf_counter() - started
            valid = sum(1 for j in mt.judgments if j["valid"])
            report.add(f"concurrency_{c}_s", f"judge concurrency {c}", times[c], "s")
            report.add(f"concurrency_{c}_judged", "  judgments (valid)", f"{len(mt.judgments)} ({valid})")
            report.add(f"concurrency_{c}_peak", "  peak calls in flight at the judge", judge.peak_in_flight)
        report.add("floor_c1_s", "floor at c1 (judgments × delay)", n * JUDGE_DELAY_S, "s")
        report.add("floor_c8_s", f"floor at c{CONCURRENCY}", n * JUDGE_DELAY_S / CONCURRENCY, "s")
        speedup = _ratio(times[SEQUENTIAL], times[CONCURRENCY])
        report.add("speedup", f"speed-up c{CONCURRENCY} over c1", speedup, "x")


# ---- 5. GPU-holding time ----------------------------------------------------------------


def bench_gpu_holding(report: Report, tiny: TinyModel, workdir: Path) -> None:
    """The whole pipeline on the real tiny model: when did the server stop, when did judging end?"""
    report.section(
        "gpu_holding",
        f"5. GPU holding: pipeline.run, tiny model served, judge {PIPELINE_JUDGE_DELAY_S:g} s/call",
    )
    data = load_variant("neo", default_mirror())
    questions = {q.question_id: q.turns[0] for q in data.questions}
    with Judge(questions, delay_s=PIPELINE_JUDGE_DELAY_S) as judge:
        spec = parse_spec(
            {
                "model": {"name": str(tiny.path), "source": "transformers"},
                "benchmarks": {
                    "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0},
                    "mtbench": {
                        "questionsPerCategory": 1,
                        "judge": {"endpoint": judge.base_url, "apiKeyEnv": None},
                    },
                },
                "generation": {"maxNewTokensCap": GEN_MAX_NEW_TOKENS},
                "wandb": {"enabled": False},
                "workspace": {"path": str(workdir / "pipeline")},
            },
            source="bench",
        )
        # The run's timeline counts from its start; this is that start to within milliseconds.
        run_started = time.perf_counter()
        summary = run(spec, progress=False)
        replied = [t - run_started for t in judge.replied_at]
    run_doc = json.loads((Path(summary.results_dir) / "run.json").read_text(encoding="utf-8"))
    events = {e["event"]: float(e["t"]) for e in run_doc["timeline"]}
    for event in ("server.up", "generate.end", "server.down", "judge.done"):
        report.add(f"t_{event}", f"t({event}) since run start", events[event], "s")
    down = events["server.down"]
    report.add(
        "server_held_s",
        "server held: serve_start.start → server.down",
        down - events["serve_start.start"],
        "s",
    )
    report.add("judge_tail_after_server_down_s", "judge.done − server.down", events["judge.done"] - down, "s")
    report.add("last_judge_reply_s", "last judge reply (judge side) since run start", max(replied), "s")
    after = sum(1 for t in replied if t > down)
    report.add(
        "judge_replies_after_server_down", "judge replies after server.down", f"{after}/{len(replied)}"
    )
    report.add(
        "server_down_before_judge_done", "server down before the last judgment", events["judge.done"] > down
    )
    mt = summary.mtbench
    report.add(
        "status",
        "run status; MT-bench judgments, avg",
        f"{summary.status}; {mt and mt.judgments}, {mt and mt.avg}",
    )


# ---- main --------------------------------------------------------------------------------


async def bench_async(report: Report, tiny: TinyModel, workdir: Path) -> None:
    gen_requests = jaster_requests(GEN_SAMPLES_PER_DATASET)
    overhead_requests = jaster_requests(-(-OVERHEAD_REQUESTS // 16))[:OVERHEAD_REQUESTS]
    await bench_generation_transformers(report, tiny, gen_requests, workdir)
    await bench_generation_stub(report, gen_requests)
    await bench_client_overhead(report, overhead_requests, workdir)
    await bench_judging(report)


def main() -> None:
    started = time.perf_counter()
    machine = {"before": _machine()}
    print(f"load average before: {machine['before']['loadavg']} on {machine['before']['cpus']} CPUs")
    tiny = build_tiny_model()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="nejumi-bench-") as tmp:
        workdir = Path(tmp)
        asyncio.run(bench_async(report, tiny, workdir))
        bench_gpu_holding(report, tiny, workdir)
    machine["after"] = _machine()
    machine["bench_seconds"] = round(time.perf_counter() - started, 1)

    print("\n" + report.table())
    print(
        f"\nload average before {machine['before']['loadavg']}, after {machine['after']['loadavg']} "
        f"({machine['before']['cpus']} CPUs); whole bench {machine['bench_seconds']} s"
    )
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({"machine": machine, **report.sections}, indent=2) + "\n")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
