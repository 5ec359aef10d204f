"""`make bench` figures for the NejumiLeaderboard kind: what keeping a leaderboard current costs the
operator, the store and the people waiting for it.

Not a test: nothing here asserts on a timing. One run on the real test control plane (tests/cluster:
etcd, kube-apiserver, controller-manager, scheduler; no node, so no pod ever runs), a real S3
server (versitygw, tests/support/s3) and the real operator, run as its own process (`python -m
nejumi_operator --namespace lb-bench`) so that its memory (/proc/<pid>/status VmRSS, VmHWM) is its
own. The operator's store identity is a user that may read the results bucket and write only under
`boards/` (as the chart's `leaderboard.store` sets it up); the leaderboard publishes to the chart's
default place, `<leaderboard.store.uri>/leaderboards/<namespace>/<name>/`.

The results are the other leaderboard benches' (`tests.bench.leaderboard_bench.write_models`, full
size: 16 jaster datasets x 120 samples + 8 MT-bench categories x 10 questions x 2 turns per model,
about 2.7 MB stored each), uploaded with the evaluator's own code (`storage.upload.upload`: objects,
then the manifest) to `s3://<bucket>/cluster/<namespace>/<name>/1/`. Each evaluation's status is
the one the operator's reducer writes for a finished run whose summary names those stored results
(`tests.fixtures.leaderboard_results.operator_status`).

1. 100 evaluations finished before the operator starts (labelled, status Succeeded with
   observedGeneration 1: the operator makes no Job for them). The operator starts; a
   NejumiLeaderboard selecting them is created: the time to its first computed status, the
   status's computeSeconds, computePeakMib (the child process's), bytesRead (and per
   evaluation), the page's size; the operator's RSS before and after. Then the same board again
   (a spec edit: `top` 10 → 11): its bytesRead, and whether the page was written again (the
   status's digest and the page's Last-Modified).
2. 70 simultaneous completions: 70 more evaluations created (labelled) while the operator runs (it
   makes their Jobs; with no node their pods stay Pending); once the board counts them as not
   finished and the operator is idle, all 70 statuses are patched to Succeeded (naming results
   uploaded beforehand) from 8 threads. Figures: the computations the board did for them
   (`status.computations` delta; a board computed on every change would do 70), the time from the
   last patch to a status ranking all 170, beside the configured quiet seconds + that
   computation's computeSeconds.

The debounce is set short but realistic (`--quiet 2`, `--max-delay 30`; the chart's defaults are 5
and 60). The child's memory limit is `--memory-mib` (default: the chart's `leaderboard.memoryMiB`,
2048, with the peak printed beside it); the operator keeps stored objects between computations in a
cache folder of the chart's default budget (`leaderboard.cacheMiB`, 2048), as the chart's Deployment
does: `bytesRead` is what came from the store, `bytesFromCache` what came from the copies.

    python -m tests.bench.leaderboard_resource_bench
    python -m tests.bench.leaderboard_resource_bench --first 20 --burst 10 --resamples 200

Seconds are wall-clock on whatever else the machine runs (the load average is recorded with each
measurement); the ratios and the counts are what to compare between runs.

Figures go to stdout as a table and to `.cache/bench/leaderboard_resource.json`; the operator's log
is kept in `.cache/bench/leaderboard_resource-operator.log`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".cache" / "bench" / "leaderboard_resource.json"
OPERATOR_LOG = REPO / ".cache" / "bench" / "leaderboard_resource-operator.log"
NAMESPACE = "lb-bench"
BOARD = "bench"
LABELS = {"nejumi.wandb.ai/board": "bench"}
BOARD_PREFIX = "boards"
OPERATOR_USER = "nejumi-operator"
CHART_MEMORY_MIB = 2048
"""The chart's `leaderboard.memoryMiB` default (charts/nejumi-operator/values.yaml)."""
CHART_QUIET_S, CHART_MAX_DELAY_S = 5.0, 60.0
"""The chart's `leaderboard.quietSeconds` and `maxDelaySeconds` defaults."""


@dataclass
class Setup:
    first: int = 100
    burst: int = 70
    quiet_s: float = 2.0
    max_delay_s: float = 30.0
    resamples: int = 1000
    memory_mib: int = CHART_MEMORY_MIB
    threads: int = 8
    timeout_s: float = 1800.0
    """The longest wait for any one condition (a loaded 2-core machine computes slowly)."""


# ---- pure helpers (tests/unit/bench/test_leaderboard_resource_bench.py) ------------------------


def computations_after(
    history: Sequence[tuple[float, Mapping[str, Any]]], since: float
) -> list[dict[str, Any]]:
    """Each computation whose status was first seen after `since` (perf_counter seconds), from the
    statuses seen in order: when (seconds after `since`), its number, what it counted and took.
    A status is a new computation when its `computations` exceeds every one seen before it."""
    out: list[dict[str, Any]] = []
    highest = 0
    for t, status in history:
        n = int(status.get("computations") or 0)
        if n <= highest:
            continue
        highest = n
        if t < since:
            continue
        counts = status.get("counts") or {}
        out.append(
            {
                "after_s": round(t - since, 2),
                "computation": n,
                "ranked": counts.get("ranked", 0),
                "pending": counts.get("pending", 0),
                "compute_s": status.get("computeSeconds"),
            }
        )
    return out


def ratios(figures: Mapping[str, Any]) -> dict[str, float | None]:
    """The bench's ratios from its figures (None where a figure is missing or a divisor is 0)."""

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    first, again, burst = figures["first"], figures["again"], figures["burst"]
    return {
        "computations_per_completion": div(burst["computations"], burst["completions"]),
        "latency_vs_quiet_plus_compute": div(
            burst["last_patch_to_ranked_s"], figures["quiet_s"] + (burst["compute_s"] or 0)
        ),
        "first_status_vs_quiet_plus_compute": div(
            first["to_status_s"], figures["quiet_s"] + (first["compute_s"] or 0)
        ),
        "bytes_read_per_evaluation_vs_stored": div(
            first["bytes_per_evaluation"], figures["stored_bytes_mean"]
        ),
        "unchanged_vs_first_bytes_read": div(again["bytes_read"], first["bytes_read"]),
        "unchanged_vs_first_compute": div(again["compute_s"], first["compute_s"]),
        "operator_rss_after_vs_before": div(
            figures["operator"]["end"]["rss_mib"], figures["operator"]["ready"]["rss_mib"]
        ),
        "compute_peak_vs_chart_memory": div(
            max(first["peak_mib"] or 0, burst["peak_mib"] or 0), CHART_MEMORY_MIB
        ),
    }


# ---- the cluster, the store, the operator ------------------------------------------------------


class Failed(RuntimeError):
    """The leaderboard said it failed (Stalled=True): no figure can come."""


@dataclass
class BoardSeen:
    """Every distinct status of the leaderboard seen by the watch, with when (perf_counter)."""

    history: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED" or obj["metadata"]["name"] != BOARD:
            return
        status = obj.get("status") or {}
        with self.lock:
            if not self.history or self.history[-1][1] != status:
                self.history.append((time.perf_counter(), status))

    @property
    def status(self) -> dict[str, Any]:
        with self.lock:
            return self.history[-1][1] if self.history else {}

    def first(self, predicate: Callable[[dict[str, Any]], bool]) -> tuple[float, dict[str, Any]] | None:
        with self.lock:
            return next(((t, s) for t, s in self.history if predicate(s)), None)


def stalled(status: Mapping[str, Any]) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return f"{c.get('reason')}: {c.get('message')}"
    return None


def compute_children(pid: int) -> list[int]:
    """The operator's leaderboard computations running now (its `nejumi_eval.leaderboard.compute`
    children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"nejumi_eval.leaderboard.compute" in (entry / "cmdline").read_bytes():
                out.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def memory(pid: int) -> dict[str, float]:
    """The process's RSS now and at its peak (VmRSS, VmHWM), MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mib": found["VmRSS"], "hwm_mib": found["VmHWM"]}


@contextlib.contextmanager
def operator(
    kubeconfig: Path, store_env: Mapping[str, str], store_uri: str, setup: Setup, log: Path
) -> Iterator[Any]:
    from tests.bench.scale import Operator
    from tests.cluster.controlplane import Process, free_ports

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEJUMI_OPERATOR_", "AWS_"))}
    env.update(store_env)
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "NEJUMI_OPERATOR_LEADERBOARD_STORE_URI": store_uri,
            "NEJUMI_OPERATOR_LEADERBOARD_QUIET_SECONDS": str(setup.quiet_s),
            "NEJUMI_OPERATOR_LEADERBOARD_MAX_DELAY_SECONDS": str(setup.max_delay_s),
            "NEJUMI_OPERATOR_LEADERBOARD_MEMORY_MIB": str(setup.memory_mib),
            "NEJUMI_OPERATOR_LEADERBOARD_CACHE_DIR": str(log.parent / "leaderboard-cache"),
            "NEJUMI_OPERATOR_LEADERBOARD_CACHE_MIB": "2048",
        }
    )
    (port,) = free_ports(1)
    liveness = f"http://127.0.0.1:{port}/healthz"
    argv = [sys.executable, "-m", "nejumi_operator", "--namespace", NAMESPACE, "--liveness", liveness]
    proc = Process("operator", argv, log)
    proc.start(tie_to_parent=True, env=env, cwd=REPO)
    try:
        yield Operator(proc, liveness)
    finally:
        proc.stop()


def wait_idle(op: Any, quiet_s: float, timeout: float, cpu_per_s: float = 0.05) -> None:
    """Until the operator has used almost no CPU for `quiet_s` and runs no computation (its startup
    listing handled, its last handlers done)."""
    deadline = time.monotonic() + timeout
    since, cpu = time.monotonic(), op.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if not op.process.alive():
            raise RuntimeError(f"operator exited:\n{op.process.log_tail()}")
        now_cpu = op.cpu_seconds()
        if now_cpu - cpu > cpu_per_s * 0.5 or compute_children(op.pid):
            since = time.monotonic()
        cpu = now_cpu
        if time.monotonic() - since >= quiet_s:
            return
    raise TimeoutError(f"the operator was still busy after {timeout:.0f} s")


def wait_no_computation(op: Any, quiet_s: float, timeout: float) -> None:
    """Until no computation has run for `quiet_s` (longer than the debounce's quiet time: nothing
    waits in it either, when no change comes)."""
    deadline = time.monotonic() + timeout
    since = time.monotonic()
    while time.monotonic() < deadline:
        if not op.process.alive():
            raise RuntimeError(f"operator exited:\n{op.process.log_tail()}")
        if compute_children(op.pid):
            since = time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the operator kept computing for {timeout:.0f} s")


def wait_board(
    op: Any, seen: BoardSeen, what: str, ok: Callable[[dict[str, Any]], bool], timeout: float
) -> tuple[float, dict[str, Any]]:
    """The first status seen that is `ok` (when, status); Failed if the board stalls instead."""
    from tests.bench.scale import wait_for

    def check() -> bool:
        status = seen.status
        if (why := stalled(status)) is not None and not ok(status):
            raise Failed(f"the leaderboard stalled waiting for {what}: {why}")
        return seen.first(ok) is not None

    wait_for(check, timeout, what, op)
    found = seen.first(ok)
    assert found is not None
    return found


def evaluation_body(name: str, model: str) -> dict[str, Any]:
    from nejumi_eval.api.v1alpha1.names import API_VERSION, KIND
    from tests.bench.scale import spec

    body_spec = spec(0)
    body_spec["model"]["name"] = model
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "labels": dict(LABELS)},
        "spec": body_spec,
    }


def create_evaluations(api: Any, bodies: Sequence[dict[str, Any]], threads: int) -> None:
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION

    custom = CustomObjectsApi(api)

    def one(body: dict[str, Any]) -> None:
        for attempt in range(100):
            try:
                custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
                return
            except ApiException as exc:  # 404: the REST mapping lags the CRD a moment
                if exc.status not in (404, 429, 500, 503) or attempt == 99:
                    raise
                time.sleep(0.2)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, bodies))


def patch_statuses(api: Any, statuses: Mapping[str, dict[str, Any]], threads: int) -> tuple[float, float]:
    """Write each evaluation's whole status (JSON patch `add /status` on the /status subresource:
    it replaces what the operator wrote; no resourceVersion, so it never loses to a concurrent
    write, and the operator leaves a finished status alone). (first start, last return), perf_counter."""
    from kubernetes.client import CustomObjectsApi

    from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION

    custom = CustomObjectsApi(api)
    returned: list[float] = []

    def one(item: tuple[str, dict[str, Any]]) -> None:
        name, status = item
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            _content_type="application/json-patch+json",
        )
        returned.append(time.perf_counter())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, statuses.items()))
    return t0, max(returned)


def page_modified(s3: Any, bucket: str, key: str) -> str | None:
    try:
        head = s3.client().head_object(Bucket=bucket, Key=key)
    except Exception:
        return None
    return f"{head['LastModified'].isoformat()} {head['ETag']}"


# ---- the run -----------------------------------------------------------------------------------


def run(setup: Setup, work: Path, figures: dict[str, Any]) -> None:
    """Measure, filling `figures` as it goes (what was measured stays there if a wait fails)."""
    from kubernetes.client import BatchV1Api, CoreV1Api, CustomObjectsApi

    from nejumi_eval.api.v1alpha1.crd import LEADERBOARD_CRD_PATH
    from nejumi_eval.api.v1alpha1.names import (
        GROUP,
        LABEL_EVALUATION,
        LEADERBOARD_KIND,
        LEADERBOARD_PLURAL,
        VERSION,
    )
    from nejumi_eval.api.v1alpha1.results import EvaluationRef, Location
    from nejumi_eval.storage.store import ObjectStore
    from nejumi_eval.storage.upload import upload
    from tests.bench.leaderboard_bench import write_models
    from tests.bench.scale import Watcher, wait_alive, wait_for
    from tests.cluster import ControlPlane, find_binaries
    from tests.fixtures.leaderboard_results import operator_status
    from tests.support.kube import apply_crd, create_object
    from tests.support.s3 import RESULTS_BUCKET as BUCKET
    from tests.support.s3 import running_s3

    total = setup.first + setup.burst
    names = [f"model-{k:03d}" for k in range(total)]
    t = time.perf_counter()
    folders = write_models(work / "results", total)
    print(f"{total} results folders written in {time.perf_counter() - t:.0f} s", flush=True)
    figures.update(
        evaluations=total,
        quiet_s=setup.quiet_s,
        max_delay_s=setup.max_delay_s,
        resamples=setup.resamples,
        memory_mib=setup.memory_mib,
    )
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(running_s3(work / "s3"))
        s3.make_bucket(BUCKET)
        os.environ.update(s3.env())  # this process uploads as root
        board_user = s3.add_user("leaderboards")
        s3.allow(BUCKET, board_user, ["s3:GetObject", "s3:ListBucket"])
        s3.allow(BUCKET, board_user, ["s3:PutObject", "s3:GetObject"], prefix=f"{BOARD_PREFIX}/")
        store = ObjectStore()
        t = time.perf_counter()
        stored = {}
        for name, folder in zip(names, folders, strict=True):
            result = upload(
                store,
                folder,
                Location(BUCKET, f"cluster/{NAMESPACE}/{name}/1"),
                model=f"org/{name}",
                status="completed",
                evaluation=EvaluationRef(namespace=NAMESPACE, name=name, generation=1),
            )
            assert result.stored, result.error
            stored[name] = result
        sizes = [stored[n].bytes for n in names]
        figures["stored_bytes_mean"] = round(sum(sizes) / len(sizes))
        figures["stored_objects_per_evaluation"] = stored[names[0]].objects
        print(f"{total} evaluations stored in {time.perf_counter() - t:.0f} s", flush=True)
        statuses = {
            name: operator_status(folder, job_name=f"{name}-g1", stored=stored[name])
            for name, folder in zip(names, folders, strict=True)
        }

        cp = stack.enter_context(ControlPlane(work / "control-plane", bin_dir=find_binaries()))
        api = cp.api_client()
        stack.callback(api.close)
        apply_crd(api)
        apply_crd(api, LEADERBOARD_CRD_PATH)
        CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        operator_kubeconfig = cp.write_kubeconfig(
            work / "operator.kubeconfig", OPERATOR_USER, ("system:masters",)
        )

        # 1. The first 100, finished before the operator starts.
        first = names[: setup.first]
        create_evaluations(api, [evaluation_body(n, f"org/{n}") for n in first], setup.threads)
        patch_statuses(api, {n: statuses[n] for n in first}, setup.threads)
        print(f"{setup.first} finished evaluations created", flush=True)

        log = work / "operator.log"
        store_uri = f"s3://{BUCKET}/{BOARD_PREFIX}"
        stack.callback(lambda: shutil.copyfile(log, OPERATOR_LOG) if log.exists() else None)
        op = stack.enter_context(operator(operator_kubeconfig, s3.env(board_user), store_uri, setup, log))
        wait_alive(op, 120)
        wait_idle(op, 3.0, setup.timeout_s)
        batch = BatchV1Api(api)
        figures["jobs_for_finished"] = len(batch.list_namespaced_job(NAMESPACE).items)
        rss = figures["operator"] = {"ready": memory(op.pid)}
        print(f"operator ready, idle: {rss['ready']}", flush=True)

        seen = BoardSeen()
        custom = CustomObjectsApi(api)
        watcher = Watcher(
            lambda **kw: custom.list_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, LEADERBOARD_PLURAL, **kw
            ),
            seen.on,
        )
        watcher.start()
        stack.callback(watcher.stop)
        spec = {"selector": {"matchLabels": dict(LABELS)}, "resamples": setup.resamples, "top": 10}
        t0 = time.perf_counter()
        create_object(api, NAMESPACE, BOARD, spec, plural=LEADERBOARD_PLURAL, kind=LEADERBOARD_KIND)
        at, status = wait_board(
            op, seen, "the first computation", lambda s: bool(s.get("computations")), setup.timeout_s
        )
        rss["first"] = memory(op.pid)
        page = status.get("page") or {}
        page_key = f"{BOARD_PREFIX}/leaderboards/{NAMESPACE}/{BOARD}/index.html"
        modified = page_modified(s3, BUCKET, page_key)
        counts = status.get("counts") or {}
        figures["first"] = {
            "to_status_s": round(at - t0, 2),
            "compute_s": status.get("computeSeconds"),
            "peak_mib": status.get("computePeakMib"),
            "bytes_read": status.get("bytesRead"),
            "bytes_from_cache": status.get("bytesFromCache"),
            "bytes_per_evaluation": round((status.get("bytesRead") or 0) / max(setup.first, 1)),
            "ranked": counts.get("ranked"),
            "matched": counts.get("matched"),
            "page_bytes": page.get("bytes"),
            "published": page.get("published"),
            "computations": status.get("computations"),
            "load": round(os.getloadavg()[0], 2),
        }
        print(f"first computation: {json.dumps(figures['first'])}", flush=True)
        wait_no_computation(op, setup.quiet_s + 3, setup.timeout_s)

        # The same board again: a spec edit, nothing else changed.
        before = seen.status
        t0 = time.perf_counter()
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            LEADERBOARD_PLURAL,
            BOARD,
            {"spec": {"top": 11}},
            _content_type="application/merge-patch+json",
        )
        at, status = wait_board(
            op,
            seen,
            "the computation after the spec edit",
            lambda s: s.get("observedGeneration") == 2 and len(s.get("top") or []) == min(11, setup.first),
            setup.timeout_s,
        )
        rss["again"] = memory(op.pid)
        figures["again"] = {
            "to_status_s": round(at - t0, 2),
            "compute_s": status.get("computeSeconds"),
            "peak_mib": status.get("computePeakMib"),
            "bytes_read": status.get("bytesRead"),
            "bytes_from_cache": status.get("bytesFromCache"),
            "digest_unchanged": status.get("digest") == before.get("digest"),
            "page_rewritten": page_modified(s3, BUCKET, page_key) != modified,
            "computations": status.get("computations"),
            "load": round(os.getloadavg()[0], 2),
        }
        print(f"unchanged board again: {json.dumps(figures['again'])}", flush=True)
        wait_no_computation(op, setup.quiet_s + 3, setup.timeout_s)

        # 2. 70 more: created while the operator runs (Jobs, pods Pending), then finished at once.
        burst = names[setup.first :]
        c0 = int(seen.status.get("computations") or 0)
        t0 = time.perf_counter()
        create_evaluations(api, [evaluation_body(n, f"org/{n}") for n in burst], setup.threads)
        selector = f"{LABEL_EVALUATION}"
        wait_for(
            lambda: len(batch.list_namespaced_job(NAMESPACE, label_selector=selector).items) >= len(burst),
            setup.timeout_s,
            f"{len(burst)} Jobs",
            op,
        )
        jobs_s = time.perf_counter() - t0
        wait_board(
            op,
            seen,
            f"{len(burst)} more counted as not finished",
            lambda s: (
                (s.get("counts") or {}).get("matched") == total
                and (s.get("counts") or {}).get("pending") == len(burst)
            ),
            setup.timeout_s,
        )
        wait_idle(op, setup.quiet_s + 3, setup.timeout_s)
        c1 = int(seen.status.get("computations") or 0)
        figures["created"] = {
            "evaluations": len(burst),
            "jobs_s": round(jobs_s, 2),
            "computations": c1 - c0,
        }
        print(f"{len(burst)} created: {json.dumps(figures['created'])}", flush=True)

        first_patch, last_patch = patch_statuses(api, {n: statuses[n] for n in burst}, setup.threads)
        at, status = wait_board(
            op,
            seen,
            f"all {total} ranked",
            lambda s: (s.get("counts") or {}).get("ranked") == total,
            setup.timeout_s,
        )
        wait_no_computation(op, setup.quiet_s + 3, setup.timeout_s)
        c2 = int(seen.status.get("computations") or 0)
        rss["end"] = memory(op.pid)
        figures["burst"] = {
            "completions": len(burst),
            "patch_s": round(last_patch - first_patch, 2),
            "computations": c2 - c1,
            "last_patch_to_ranked_s": round(at - last_patch, 2),
            "first_patch_to_ranked_s": round(at - first_patch, 2),
            "compute_s": status.get("computeSeconds"),
            "peak_mib": status.get("computePeakMib"),
            "bytes_read": status.get("bytesRead"),
            "bytes_from_cache": status.get("bytesFromCache"),
            "page_bytes": (status.get("page") or {}).get("bytes"),
            "timeline": computations_after(seen.history, first_patch),
            "load": round(os.getloadavg()[0], 2),
        }
        print(f"{len(burst)} finished at once: {json.dumps(figures['burst'])}", flush=True)
        figures["jobs_for_burst"] = len(batch.list_namespaced_job(NAMESPACE, label_selector=selector).items)


def table(figures: Mapping[str, Any]) -> str:
    first, again, created, burst = figures["first"], figures["again"], figures["created"], figures["burst"]
    r = figures["ratios"]
    op = figures["operator"]
    n_first, n_burst = first["matched"], burst["completions"]
    rows: list[tuple[str, Any, str]] = [
        (
            "debounce: quiet | max delay (chart: 5 | 60)",
            f"{figures['quiet_s']:g} | {figures['max_delay_s']:g}",
            "s",
        ),
        ("bootstrap resamples", figures["resamples"], ""),
        (
            f"load average (1 min, {os.cpu_count()} CPUs) at 1. | again | 2.",
            f"{first['load']} | {again['load']} | {burst['load']}",
            "",
        ),
        ("stored per evaluation (objects, mean)", f"{figures['stored_bytes_mean'] / 2**20:.2f}", "MiB"),
        (f"Jobs made for the {n_first} finished evaluations", figures["jobs_for_finished"], ""),
        (
            f"1. {n_first} evaluations: leaderboard created -> first computed status",
            first["to_status_s"],
            "s",
        ),
        ("   computeSeconds", first["compute_s"], "s"),
        (
            f"   computePeakMib (memory limit {figures['memory_mib']}; chart default {CHART_MEMORY_MIB})",
            first["peak_mib"],
            "MiB",
        ),
        ("   bytesRead", f"{(first['bytes_read'] or 0) / 2**20:.1f}", "MiB"),
        ("   bytes read per evaluation", f"{first['bytes_per_evaluation'] / 2**20:.2f}", "MiB"),
        ("   page", f"{(first['page_bytes'] or 0) / 2**20:.1f}", "MiB"),
        ("   same board again (spec edit): -> status", again["to_status_s"], "s"),
        (
            "   computeSeconds | bytesRead | bytesFromCache",
            f"{again['compute_s']} | {(again['bytes_read'] or 0) / 2**20:.1f} | "
            f"{(again.get('bytes_from_cache') or 0) / 2**20:.1f}",
            "s | MiB | MiB",
        ),
        (
            "   digest unchanged | page written again",
            f"{again['digest_unchanged']} | {again['page_rewritten']}",
            "",
        ),
        (
            "operator RSS (VmRSS | VmHWM): ready",
            f"{op['ready']['rss_mib']} | {op['ready']['hwm_mib']}",
            "MiB",
        ),
        ("   after the first computation", f"{op['first']['rss_mib']} | {op['first']['hwm_mib']}", "MiB"),
        ("   after the unchanged one", f"{op['again']['rss_mib']} | {op['again']['hwm_mib']}", "MiB"),
        ("   at the end", f"{op['end']['rss_mib']} | {op['end']['hwm_mib']}", "MiB"),
        (f"2. {created['evaluations']} created while running: all Jobs after", created["jobs_s"], "s"),
        ("   computations for the creations", created["computations"], ""),
        (f"   {n_burst} statuses patched to Succeeded in", burst["patch_s"], "s"),
        (f"   computations for the {n_burst} completions (naive: {n_burst})", burst["computations"], ""),
        (f"   last patch -> all {figures['evaluations']} ranked", burst["last_patch_to_ranked_s"], "s"),
        (
            "   quiet + that computation's computeSeconds",
            round(figures["quiet_s"] + (burst["compute_s"] or 0), 2),
            "s",
        ),
        (
            "   its computePeakMib | bytesRead | bytesFromCache",
            f"{burst['peak_mib']} | {(burst['bytes_read'] or 0) / 2**20:.1f} | "
            f"{(burst.get('bytes_from_cache') or 0) / 2**20:.1f}",
            "MiB",
        ),
        ("ratios", "", ""),
        ("   computations per completion (naive 1)", r["computations_per_completion"], ""),
        ("   latency / (quiet + compute)", r["latency_vs_quiet_plus_compute"], "x"),
        ("   first status / (quiet + compute)", r["first_status_vs_quiet_plus_compute"], "x"),
        (
            "   bytes read per evaluation / stored per evaluation",
            r["bytes_read_per_evaluation_vs_stored"],
            "x",
        ),
        ("   unchanged board's bytesRead / first's", r["unchanged_vs_first_bytes_read"], "x"),
        (
            "   unchanged board's computeSeconds / first's (no page written)",
            r["unchanged_vs_first_compute"],
            "x",
        ),
        ("   operator RSS end / ready", r["operator_rss_after_vs_before"], "x"),
        (f"   compute peak / chart's memoryMiB ({CHART_MEMORY_MIB})", r["compute_peak_vs_chart_memory"], "x"),
    ]
    width = max(len(label) for label, _, _ in rows)
    lines = [f"{label:<{width}}  {value!s:>14} {unit}".rstrip() for label, value, unit in rows]
    lines.append("   computations during the burst (after the first patch):")
    for c in burst["timeline"]:
        lines.append(
            f"     #{c['computation']} at +{c['after_s']} s: ranked {c['ranked']}, "
            f"pending {c['pending']}, {c['compute_s']} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Setup()
    parser.add_argument("--first", type=int, default=d.first, help="evaluations finished at the start")
    parser.add_argument("--burst", type=int, default=d.burst, help="evaluations finishing together")
    parser.add_argument("--quiet", type=float, default=d.quiet_s, help="the debounce's quiet seconds")
    parser.add_argument("--max-delay", type=float, default=d.max_delay_s, help="the debounce's max delay")
    parser.add_argument("--resamples", type=int, default=d.resamples)
    parser.add_argument("--memory-mib", type=int, default=d.memory_mib, help="a computation's memory limit")
    parser.add_argument("--timeout", type=float, default=d.timeout_s, help="the longest wait, seconds")
    parser.add_argument("--keep", metavar="DIR", help="keep the results, store and cluster files in DIR")
    args = parser.parse_args(argv)
    setup = Setup(
        first=args.first,
        burst=args.burst,
        quiet_s=args.quiet,
        max_delay_s=args.max_delay,
        resamples=args.resamples,
        memory_mib=args.memory_mib,
        timeout_s=args.timeout,
    )
    os.environ.setdefault("NEJUMI_DATA_MIRROR", str(REPO.parent / "shared" / "datasets" / "raw"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lb-resource-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    try:
        run(setup, work, figures)
    except (Failed, TimeoutError) as exc:
        print(json.dumps(figures, indent=2))
        print(f"leaderboard resource bench: {exc} (figures so far above; operator log: {OPERATOR_LOG})")
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    figures["ratios"] = ratios(figures)
    print()
    print(
        f"NejumiLeaderboard on the test control plane (real operator, versitygw; debounce quiet "
        f"{setup.quiet_s:g} s, max delay {setup.max_delay_s:g} s: short but realistic, the chart's "
        f"are {CHART_QUIET_S:g} and {CHART_MAX_DELAY_S:g}):"
    )
    print(table(figures))
    doc = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "results": figures,
    }
    OUT.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT} (operator log: {OPERATOR_LOG})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
