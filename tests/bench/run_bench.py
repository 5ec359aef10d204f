"""`make bench`: the evaluator's performance figures, each ratio measured within one run on one server.

Not a test: nothing here asserts on a timing. It prints a table and writes the same figures to
``.cache/bench/results.json``. Every server is local (127.0.0.1): the real ``transformers serve`` of
the tiny model, and the test doubles ``StubServer``/``ScriptedJudge`` (real HTTP, fixed latency).

1. generation, concurrency 1 (how Nejumi Neo generated) vs 8, on the same server and requests
2. client overhead: ``InferenceClient.run_all`` with a fresh cache vs a bare ``AsyncOpenAI`` loop
3. warm-cache rerun: the same requests again, answered from the cache
4. judging, concurrency 8 vs 1 (how Neo judged), 80 questions × 2 turns
5. GPU-holding time: a full ``pipeline.run`` on the tiny model; server down vs last judgment
6. generation at the server's limit: ``pipeline.run`` against servers of known capacity
   (tests/fixtures/capacity_server.py), measured / least possible time, and Neo's sequential run
7. the operator at scale: N evaluations at once on the test control plane (tests/bench/scale.py)

``--only capacity`` runs section 6 alone (it needs no tiny model) and writes
``.cache/bench/results.capacity.json`` instead; ``--capacity B --latency L`` change its model server.
``--only scale`` runs section 7 alone (``.cache/bench/results.scale.json``); ``--scale 50,500`` and
``--resync 2000`` choose its sizes (``--resync 0``: no resync run).

Figures are wall-clock times on whatever else the machine is doing: the load average is recorded
with them. Best-of-N is taken where a run is cheap enough to repeat.

    python -m tests.bench.run_bench                   # from the repo root (make bench)
    python -m tests.bench.run_bench --only capacity   # section 6 alone
    python -m tests.bench.run_bench --only scale      # section 7 alone
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import openai

from nejumi_eval.api.v1alpha1.spec import JasterSpec, MtbenchSpec, parse_spec
from nejumi_eval.benchmarks.jaster.benchmark import plan
from nejumi_eval.benchmarks.mtbench.benchmark import MtbenchRun
from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_eval.pipeline import run
from nejumi_eval.runtime.client import (
    ClientSettings,
    ClientStats,
    CompletionRequest,
    InferenceClient,
    InferenceRequest,
    ResponseCache,
)
from nejumi_eval.runtime.serve import ModelServer, ServerSettings
from nejumi_eval.runtime.serve.tiny import TinyModel, build_tiny_model
from tests.bench.scale import ScaleSetup, bench_scale
from tests.fixtures.capacity_server import CapacityProcess, Occupancy, Served, ServerConfig, occupancy
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
    mt = summary.benchmarks.get("mtbench")
    report.add(
        "status",
        "run status; MT-bench judgments, avg",
        f"{summary.status}; {mt and mt.samples}, {mt and mt.avg}",
    )


# ---- 6. generation at the server's limit -----------------------------------------------------

JASTER_GOAL = 0.95  # issue 8 §5: fractions of the limit
WHOLE_GOAL = 0.9


@dataclass(frozen=True)
class CapacitySetup:
    """The servers' capacities and the run's size: small enough for seconds per run on 2 cores.

    Defaults: 16 jaster datasets × 16 test samples = 256 completions (no dev samples) and
    8 categories × 2 questions = 32 MT-bench answers and 32 judgments; 256 / 16 × 0.1 s = 1.6 s
    of model-server time, 160 requests/s for the client to sustain. The judge's capacity is the
    product's default judge concurrency. Larger B at this L asks more of one Python client than
    a 2-core machine gives (``--capacity 32``/``64``: see the bare AsyncOpenAI reference row).
    """

    b: int = 16  # model server: requests in service at once
    latency_s: float = 0.1  # … each this long
    judge_b: int = 8
    judge_latency_s: float = 0.2
    test_samples: int = 16  # per jaster dataset
    questions_per_category: int = 2
    rounds: int = 2  # concurrent runs of each kind, interleaved; best of them (sequential: once)
    model: str = "capacity-model"
    judge_model: str = "gpt-4-0613"


REQUEST_PHASES = ("generate", "judge_tail")
"""The run.json phases inside which every request of a run is sent and answered, in order: the
model's (judging starts inside it, as answers come) and the judging that outlasts generation."""


def request_span_s(run_doc: Mapping[str, Any]) -> float:
    """Wall seconds of a run's requests, from run.json: ``generate.start`` to the end of the last
    of :data:`REQUEST_PHASES` in its timeline (``judge_tail.end``, or ``generate.end`` without a
    judge). The servers' bound (:func:`capacity_minimum`) concerns exactly this span.

    Why not ``runtime_seconds`` generate + judge: ``judge`` is the judging *span* (first judge
    request to last reply), which runs beside generation, so the sum counts the overlap twice
    (issue 17: a whole run measured 2.77 s for a 1.80 s limit, 0.65, when generate took 1.92 s
    and judging ended with it, 0.94). Without the timeline's events (an older run.json) the
    phases are consecutive, so generate + judge_tail is the same span.
    """
    marks: dict[str, float] = {}
    for event in run_doc.get("timeline", []):
        marks.setdefault(event["event"], float(event["t"]))  # a phase entered twice: its first start
        if event["event"].endswith(".end"):
            marks[event["event"]] = float(event["t"])  # … and its last end
    ends = [marks[f"{phase}.end"] for phase in REQUEST_PHASES if f"{phase}.end" in marks]
    if "generate.start" in marks and ends:
        return max(ends) - marks["generate.start"]
    phases = run_doc.get("runtime_seconds", {})
    return sum(float(phases.get(phase, 0.0)) for phase in REQUEST_PHASES)


@dataclass
class CapacityRun:
    """One ``pipeline.run`` against the capacity servers, seen from both sides.

    ``measured_s`` is :func:`request_span_s`: from generate.start to the last judge reply (or the
    last model reply), in which every request of the run is sent, and the servers' bound
    concerns nothing else. Prepare (data loading and request building, before the first
    request), score and report are outside; ``total_s`` keeps them. With an API model there is
    no serve start or stop.
    """

    phases: dict[str, float]
    total_s: float
    measured_s: float
    events: dict[str, float]  # timeline, seconds since the run's start
    generate_started: float  # perf_counter of generate.start, to place the servers' records
    model: list[Served]
    judge: list[Served]
    status: str

    @property
    def served_span_s(self) -> float:
        """The servers' view of the same span: first request's arrival to the last reply's end."""
        records = [*self.model, *self.judge]
        return max(r.ended for r in records) - min(r.arrived for r in records) if records else 0.0

    @property
    def jaster(self) -> list[Served]:
        return [r for r in self.model if r.path.endswith("/v1/completions")]

    @property
    def mtbench(self) -> list[Served]:
        return [r for r in self.model if r.path.endswith("/chat/completions")]


def capacity_minimum(n_jaster: int, n_mt: int, n_judge: int, setup: CapacitySetup) -> dict[str, float]:
    """Lower bounds on a run's request span (:func:`request_span_s`) for any client schedule; the
    limit is their max.

    From the requests the servers received: N_jaster completions, N_mt MT-bench answers (half
    turn 1, half turn 2: a question's turn 2 is sent after its turn 1 returns), N_judge judgments
    (one per answer, sent after the answer exists). A server of capacity B and latency L serves
    at most B requests per L, so N requests need ceil(N/B)·L, and a chain of dependent requests
    needs the sum of its latencies:

    - ``model``: ceil((N_jaster + N_mt)/B)·L — the model server's busy time.
      For jaster alone this is the limit: ceil(N/B)·L.
    - ``chain``: 2·L + L_j — turn 1 → turn 2 → the judgment of turn 2.
    - ``mt_judged``: ceil(N_mt/B)·L + L_j — the last MT-bench answer ends no earlier, and its
      judgment follows it.
    - ``judge``: L + ceil(N_judge/B_j)·L_j — no judgment starts before the first answer (L).
    - ``judge_turn2``: 2·L + ceil((N_mt/2)/B_j)·L_j — turn-2 judgments start after 2·L.

    MT-bench alone and the whole run: the max of all that apply. Jaster needs no judge, so a client
    that answers MT-bench first and fills the model server's free slots with jaster hides the
    judging behind jaster: the whole run's limit is then ``model`` whenever jaster is the larger
    part. The issue's ceil((N_jaster + N_mt)/B)·L + L_j (``mtbench_last``) holds only for a
    schedule whose last model request is an MT-bench answer — the product's, which queues MT-bench
    behind all of jaster; it is reported beside the limit, not as it.
    """
    b, lat, b_j, lat_j = setup.b, setup.latency_s, setup.judge_b, setup.judge_latency_s
    terms: dict[str, float] = {}
    n_model = n_jaster + n_mt
    if n_model:
        terms["model"] = math.ceil(n_model / b) * lat
    if n_mt and n_judge:
        terms["chain"] = 2 * lat + lat_j
        terms["mt_judged"] = math.ceil(n_mt / b) * lat + lat_j
        terms["judge"] = lat + math.ceil(n_judge / b_j) * lat_j
        terms["judge_turn2"] = 2 * lat + math.ceil((n_mt // 2) / b_j) * lat_j
    elif n_mt:
        terms["chain"] = 2 * lat
    terms["limit"] = max(terms.values(), default=0.0)
    if n_jaster and n_mt and n_judge:
        terms["mtbench_last"] = math.ceil(n_model / b) * lat + lat_j
    return terms


def capacity_run(
    servers: CapacityProcess,
    setup: CapacitySetup,
    workdir: Path,
    *,
    jaster: bool,
    mtbench: bool,
    concurrency: int,
    judge_concurrency: int,
) -> CapacityRun:
    """``pipeline.run`` on a fresh workspace (the response cache never hits), servers reused."""
    spec = parse_spec(
        {
            "model": {
                "name": setup.model,
                "source": "openai-compatible",
                "endpoint": servers.base_urls["model"],
                "mode": "completion",
            },
            "benchmarks": {
                "jaster": {"enabled": jaster, "testSamples": setup.test_samples, "devSamples": 0},
                "mtbench": {
                    "enabled": mtbench,
                    "questionsPerCategory": setup.questions_per_category,
                    "judge": {
                        "model": setup.judge_model,
                        "endpoint": servers.base_urls["judge"],
                        "apiKeyEnv": None,
                        "concurrency": judge_concurrency,
                    },
                },
            },
            "generation": {"concurrency": concurrency, "maxNewTokensCap": GEN_MAX_NEW_TOKENS},
            "wandb": {"enabled": False},
            "workspace": {"path": tempfile.mkdtemp(prefix="capacity-", dir=workdir)},
        },
        source="bench",
    )
    since_model, since_judge = len(servers.records("model")), len(servers.records("judge"))
    run_started = time.perf_counter()  # the run's timeline counts from (within ms of) here
    summary = run(spec, progress=False)
    run_doc = json.loads((Path(summary.results_dir) / "run.json").read_text(encoding="utf-8"))
    events = {e["event"]: float(e["t"]) for e in run_doc["timeline"]}
    return CapacityRun(
        phases={k: float(v) for k, v in run_doc["runtime_seconds"].items()},
        total_s=float(summary.runtime_seconds["total"]),
        measured_s=request_span_s(run_doc),
        events=events,
        generate_started=run_started + events["generate.start"],
        model=servers.records("model", since_model),
        judge=servers.records("judge", since_judge),
        status=summary.status,
    )


async def bare_completions(base_url: str, model: str, n: int, concurrency: int) -> float:
    """The least a Python client can do against the same server: AsyncOpenAI + a semaphore.

    ``n`` completions of one ~1 kB prompt (a jaster prompt's size): no cache, no retries, no
    pipeline. What it loses against the limit is the machine's and the HTTP stack's share; what
    the pipeline loses beyond it is the product's.
    """
    semaphore = asyncio.Semaphore(concurrency)
    prompt = "以下は、タスクを説明する指示です。" * 60
    async with openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0) as client:

        async def one() -> None:
            async with semaphore:
                await client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0)

        await client.models.list()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - started


def _add_occupancy(report: Report, key: str, label: str, occ: Occupancy, capacity: int) -> None:
    report.add(
        f"{key}_mean_in_service", f"{label}: mean in service, busy span (of {capacity})", occ.mean_in_service
    )
    report.add(f"{key}_occupancy", f"{label}: occupancy (mean in service / capacity)", occ.occupancy)
    report.add(f"{key}_peak_in_service", f"{label}: peak in service", occ.peak_in_service)
    report.add(
        f"{key}_mean_wait_ms", f"{label}: mean queueing inside the server", occ.mean_wait_s * 1e3, "ms"
    )
    report.add(
        f"{key}_mean_service_ms", f"{label}: mean service time as slept", occ.mean_service_s * 1e3, "ms"
    )


def _since(records: Sequence[Served], t0: float, last: bool = False) -> float:
    """First arrival (or last end) of ``records``, in seconds after ``t0``."""
    return (max(r.ended for r in records) if last else min(r.arrived for r in records)) - t0


def _report_capacity_run(
    report: Report, key: str, runs: list[CapacityRun], setup: CapacitySetup, goal: float | None
) -> CapacityRun:
    """Best of ``runs`` against its own limit, with the servers' view of it. Returns the best."""
    best = min(runs, key=lambda r: r.measured_s)
    bounds = capacity_minimum(len(best.jaster), len(best.mtbench), len(best.judge), setup)
    limit = bounds["limit"]
    report.add(
        f"{key}_requests",
        "requests received: jaster | MT-bench answers | judgments",
        f"{len(best.jaster)} | {len(best.mtbench)} | {len(best.judge)}",
    )
    shown = ", ".join(f"{k} {v:.2f}" for k, v in bounds.items() if k not in ("limit", "mtbench_last"))
    report.add(f"{key}_bounds", "lower bounds (s)", shown)
    report.add(f"{key}_minimum_s", "minimum: the largest bound", limit, "s")
    report.add(
        f"{key}_measured_s",
        f"measured: generate.start → last reply (run.json), best of {len(runs)}",
        best.measured_s,
        "s",
    )
    report.add(
        f"{key}_all_runs_s",
        "all runs: generate.start → last reply",
        " ".join(f"{r.measured_s:.2f}" for r in runs),
    )
    report.add(f"{key}_measured_over_minimum", "measured / minimum", _ratio(best.measured_s, limit), "x")
    fraction = _ratio(limit, best.measured_s)
    report.add(f"{key}_fraction_of_limit", "fraction of the limit (minimum / measured)", fraction)
    if goal is not None:
        report.add(f"{key}_goal_met", f"goal ≥ {goal:g} of the limit met", fraction >= goal)
    report.add(
        f"{key}_served_span_s", "  servers: first request's arrival → last reply", best.served_span_s, "s"
    )
    report.add(
        f"{key}_served_fraction", "  fraction of the limit (servers' span)", _ratio(limit, best.served_span_s)
    )
    if "mtbench_last" in bounds:
        report.add(
            f"{key}_minimum_mtbench_last_s",
            "issue's ceil((N_jaster+N_mt)/B)·L + L_j (MT-bench last)",
            bounds["mtbench_last"],
            "s",
        )
        report.add(
            f"{key}_fraction_mtbench_last",
            "  fraction of that",
            _ratio(bounds["mtbench_last"], best.measured_s),
        )
    report.add(
        f"{key}_phases", "run.json runtime_seconds", ", ".join(f"{k} {v:.2f}" for k, v in best.phases.items())
    )
    report.add(f"{key}_total_s", "summary total (prepare … report)", best.total_s, "s")
    report.add(f"{key}_fraction_of_total", "  minimum / total", _ratio(limit, best.total_s))
    t0 = best.generate_started
    report.add(
        f"{key}_first_request_s", "after generate.start: first model request", _since(best.model, t0), "s"
    )
    if best.jaster and best.mtbench:
        report.add(
            f"{key}_first_mtbench_s",
            "  first MT-bench answer's arrival | last jaster's end",
            f"{_since(best.mtbench, t0):.3f} | {_since(best.jaster, t0, last=True):.3f}",
            "s",
        )
    report.add(f"{key}_last_model_end_s", "  last model reply", _since(best.model, t0, last=True), "s")
    if best.judge:
        report.add(
            f"{key}_judge_span_s",
            "  judge: first arrival | last reply",
            f"{_since(best.judge, t0):.3f} | {_since(best.judge, t0, last=True):.3f}",
            "s",
        )
    _add_occupancy(report, f"{key}_model", "model server", occupancy(best.model, setup.b), setup.b)
    if best.judge:
        judge_occ = occupancy(best.judge, setup.judge_b)
        _add_occupancy(report, f"{key}_judge", "judge", judge_occ, setup.judge_b)
    return best


def _subtitle(report: Report, title: str) -> None:
    report.rows.append((f"  -- {title}", "", ""))
    print(f"  -- {title}", flush=True)


def bench_capacity(report: Report, workdir: Path, setup: CapacitySetup) -> None:
    """The whole pipeline against servers of known capacity, and Neo's sequential protocol.

    The model server serves at most B requests at once, L s each; the judge B_j at L_j s. The
    concurrent runs set generation.concurrency = B and the judge's concurrency = B_j: a client
    that keeps the servers full reaches the limit of :func:`capacity_minimum`. The servers run in
    a child process so their threads do not take the client's GIL (on 2 cores they would
    otherwise slow the client being measured). Sequential: the same servers and requests at
    concurrency 1 and judge concurrency 1, as Nejumi Neo ran.
    """
    configs = {
        "model": ServerConfig("model", setup.b, setup.latency_s, setup.model),
        "judge": ServerConfig("judge", setup.judge_b, setup.judge_latency_s, setup.judge_model),
    }
    kinds = {
        "jaster": ("jaster alone", {"jaster": True, "mtbench": False}, JASTER_GOAL),
        "mtbench": ("MT-bench alone", {"jaster": False, "mtbench": True}, None),
        "whole": ("whole run (jaster + MT-bench)", {"jaster": True, "mtbench": True}, WHOLE_GOAL),
    }
    concurrent = {"concurrency": setup.b, "judge_concurrency": setup.judge_b}
    runs: dict[str, list[CapacityRun]] = {k: [] for k in kinds}
    bare: list[tuple[int, float, list[Served]]] = []
    with CapacityProcess(configs) as servers:
        for _ in range(setup.rounds):  # interleaved, so a slow moment does not hit one kind only
            for kind, (_, enabled, _) in kinds.items():
                runs[kind].append(capacity_run(servers, setup, workdir, **enabled, **concurrent))
            n = len(runs["jaster"][-1].jaster)
            since = len(servers.records("model"))
            seconds = asyncio.run(bare_completions(servers.base_urls["model"], setup.model, n, setup.b))
            bare.append((n, seconds, servers.records("model", since)))
        sequential = capacity_run(
            servers, setup, workdir, **kinds["whole"][1], concurrency=1, judge_concurrency=1
        )

    report.section(
        "capacity",
        f"6. at the server's limit: pipeline.run; model server B={setup.b} L={setup.latency_s:g} s, "
        f"judge B_j={setup.judge_b} L_j={setup.judge_latency_s:g} s",
    )
    report.add("concurrency", "generation.concurrency | judge concurrency", f"{setup.b} | {setup.judge_b}")
    best: dict[str, CapacityRun] = {}
    for kind, (title, _, goal) in kinds.items():
        _subtitle(report, title)
        best[kind] = _report_capacity_run(report, kind, runs[kind], setup, goal)
    n, bare_s, bare_records = min(bare, key=lambda x: x[1])
    _subtitle(report, "reference: bare AsyncOpenAI + semaphore B, as many completions as jaster")
    bare_limit = math.ceil(n / setup.b) * setup.latency_s
    report.add("bare_minimum_s", f"minimum ceil({n}/B)·L", bare_limit, "s")
    report.add("bare_measured_s", f"measured, best of {len(bare)}", bare_s, "s")
    report.add("bare_all_runs_s", "all runs", " ".join(f"{s:.2f}" for _, s, _ in bare))
    report.add(
        "bare_fraction_of_limit", "fraction of the limit (minimum / measured)", _ratio(bare_limit, bare_s)
    )
    report.add("bare_model_occupancy", "model server: occupancy", occupancy(bare_records, setup.b).occupancy)
    report.add(
        "jaster_over_bare",
        "pipeline jaster alone / bare loop",
        _ratio(best["jaster"].measured_s, bare_s),
        "x",
    )
    report.add(
        "failed_runs",
        "runs not completed",
        sum(1 for rs in runs.values() for r in rs if r.status != "completed"),
    )

    _subtitle(report, "Neo's protocol: generation concurrency 1, judge concurrency 1")
    report.add(
        "sequential_requests",
        "requests received: jaster | MT-bench answers | judgments",
        f"{len(sequential.jaster)} | {len(sequential.mtbench)} | {len(sequential.judge)}",
    )
    floor = len(sequential.model) * setup.latency_s
    report.add("sequential_floor_s", "floor at concurrency 1 (model requests × L)", floor, "s")
    report.add(
        "sequential_measured_s",
        "measured: generate.start → last reply (run.json)",
        sequential.measured_s,
        "s",
    )
    report.add("sequential_total_s", "summary total (prepare … report)", sequential.total_s, "s")
    ordered = sorted(sequential.model, key=lambda r: r.arrived)
    gaps = [b.arrived - a.ended for a, b in itertools.pairwise(ordered)]
    report.add(
        "sequential_gap_ms",
        "model server idle between a reply and the next request, mean",
        sum(gaps) / len(gaps) * 1e3 if gaps else 0.0,
        "ms",
    )
    t0 = sequential.generate_started
    report.add(
        "sequential_tail_s",
        "last model reply | last judge reply (after generate.start)",
        f"{_since(sequential.model, t0, last=True):.3f} | {_since(sequential.judge, t0, last=True):.3f}",
        "s",
    )
    whole = best["whole"]
    speedup = _ratio(sequential.measured_s, whole.measured_s)
    report.add("speedup", "speed-up concurrent over sequential (generate.start → last reply)", speedup, "x")
    speedup_total = _ratio(sequential.total_s, whole.total_s)
    report.add("speedup_total", "speed-up concurrent over sequential (summary total)", speedup_total, "x")


# ---- main --------------------------------------------------------------------------------


async def bench_async(report: Report, tiny: TinyModel, workdir: Path) -> None:
    gen_requests = jaster_requests(GEN_SAMPLES_PER_DATASET)
    overhead_requests = jaster_requests(-(-OVERHEAD_REQUESTS // 16))[:OVERHEAD_REQUESTS]
    await bench_generation_transformers(report, tiny, gen_requests, workdir)
    await bench_generation_stub(report, gen_requests)
    await bench_client_overhead(report, overhead_requests, workdir)
    await bench_judging(report)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="make bench: the evaluator's performance figures")
    parser.add_argument(
        "--only",
        choices=["capacity", "scale"],
        help="run one section alone (results go to .cache/bench/results.<section>.json)",
    )
    default = CapacitySetup()
    parser.add_argument("--capacity", type=int, default=default.b, help="section 6: model server's B")
    parser.add_argument(
        "--latency", type=float, default=default.latency_s, help="section 6: model server's L (s)"
    )
    parser.add_argument("--scale", default="50,500", help="section 7: evaluation counts (comma-separated)")
    parser.add_argument("--resync", default="2000", help="section 7: resync-loop run sizes (0: none)")
    args = parser.parse_args(argv)
    setup = CapacitySetup(b=args.capacity, latency_s=args.latency)
    scale_setup = ScaleSetup(counts=_counts(args.scale), resync_counts=_counts(args.resync))
    started = time.perf_counter()
    machine = {"before": _machine()}
    print(f"load average before: {machine['before']['loadavg']} on {machine['before']['cpus']} CPUs")
    report = Report()
    with tempfile.TemporaryDirectory(prefix="nejumi-bench-") as tmp:
        workdir = Path(tmp)
        if args.only is None:
            tiny = build_tiny_model()
            asyncio.run(bench_async(report, tiny, workdir))
            bench_gpu_holding(report, tiny, workdir)
        if args.only in (None, "capacity"):
            bench_capacity(report, workdir, setup)
        if args.only in (None, "scale"):
            bench_scale(report, workdir / "scale", scale_setup)
    machine["after"] = _machine()
    machine["bench_seconds"] = round(time.perf_counter() - started, 1)

    print("\n" + report.table())
    print(
        f"\nload average before {machine['before']['loadavg']}, after {machine['after']['loadavg']} "
        f"({machine['before']['cpus']} CPUs); whole bench {machine['bench_seconds']} s"
    )
    path = RESULTS_PATH if args.only is None else RESULTS_PATH.with_suffix(f".{args.only}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, **report.sections}, indent=2) + "\n")
    print(f"wrote {path}")


def _counts(text: str) -> tuple[int, ...]:
    return tuple(n for n in (int(x) for x in text.split(",") if x.strip()) if n > 0)


if __name__ == "__main__":
    main()
