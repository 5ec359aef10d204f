"""`make bench` section 7 (`--only scale`): the operator at scale, on the real test control plane.

Not a test: nothing here asserts on a timing. Each run gets a fresh cluster (tests/cluster: etcd,
kube-apiserver, controller-manager, scheduler, the node agent and the hostPath provisioner; nothing
left over from the run before) and a fresh operator, run as its own process (`python -m
nejumi_operator --namespace scale`) so that its memory and CPU are its own. The evaluator is
tests/bench/fake_evaluator.py (sleeps ~1 s, writes a valid summary): what is measured is the
operator and the control plane, not an evaluation.

- lifecycle, N in `--scale` (50, 500): N NejumiEvaluations (openai-compatible, gpus 0) created at
  once (8 threads) in one namespace; the time until every Job exists and until every status is
  final (Succeeded), per evaluation too; the operator's peak RSS (VmHWM) and CPU seconds; its API
  requests over the whole lifecycle by verb and resource, its status syncs (each one reads the
  evaluation first: its GETs of evaluations), its kopf handler calls (from its log; events are
  debounced into syncs, `nejumi_operator.syncs`) and the API server's mean latency per kind; then
  the 500/50 ratios (a per-evaluation ratio above 1 is superlinear growth).
- resync, N in `--resync` (2000): N evaluations whose Jobs can never be scheduled (16 GPUs asked of
  an 8-GPU node), so all stay unfinished and the only work left is the resync loop's; with
  `NEJUMI_OPERATOR_RESYNC_SECONDS` 5, the API requests and operator CPU seconds per round, and how
  long a round takes (the operator logs each round: how many it synced, in how long), against the
  interval. The window starts at the end of a round that synced every evaluation without any
  create request since the round before, and spans three more such rounds. The provisioner is
  stopped for the window: no pod is ever scheduled, so no claim is ever provisioned, and its
  listing of every claim each second would be most of what the window measures at 2,000.

How requests are counted: the API server's audit log (ControlPlane `audit_policy`, opt-in, here
only for the operator's own identity). The operator runs with its own client certificate (user
`nejumi-operator`, group `system:masters`: admin rights, like the admin kubeconfig), so the log
holds its requests alone, never the node agent's, the provisioner's or this bench's. Each request
counts once (a watch at its start); `kopf` (the framework: watches, its own patches) and `client`
(the operator's kubernetes-client calls) are told apart by user agent. The API server's
`apiserver_request_total` (from `/metrics`, before and after) gives every client's total.

CPU: each process's user + system time from /proc (the pods: this process's reaped children);
"others" is the rest of the machine's busy time (other work on a shared machine: it slows every
figure here). Each run's operator log and gzipped audit log are kept in .cache/bench/scale-logs/.

Concurrency on the node: the node agent runs each pod as local processes; its `max_pods` (110, a
real kubelet's default) caps how many run at once. The provisioner polls every 1 s.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import ssl
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import watch
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from nejumi_operator.settings import OperatorConfig
from tests.bench.fake_evaluator import SECONDS_ENV, SUMMARY_ENV, summary_json
from tests.cluster import ControlPlane, NodeAgent, find_binaries, wait_until
from tests.cluster.controlplane import REPO, Process, free_ports
from tests.cluster.provisioner import HostPathProvisioner
from tests.support.kube import apply_crd

if TYPE_CHECKING:
    from tests.bench.run_bench import Report

NAMESPACE = "scale"
LOGS = Path(".cache/bench/scale-logs")  # each run's operator log and (gzipped) audit log
NODE = "nejumi-gpu-0"
NODE_GPUS = 8
OPERATOR_USER = "nejumi-operator"
FAKE_EVALUATOR = Path(__file__).with_name("fake_evaluator.py")
FINAL = ("Succeeded", "Failed")
DEFAULT_RESYNC_S = OperatorConfig().resync_seconds
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


@dataclass
class ScaleSetup:
    counts: tuple[int, ...] = (50, 500)
    resync_counts: tuple[int, ...] = (2000,)
    max_pods: int = 110
    evaluator_seconds: float = 1.0
    apply_threads: int = 8
    # The lifecycle runs keep the operator's default (30 s); the resync runs make rounds frequent.
    lifecycle_resync_seconds: float | None = None
    resync_seconds: float = 5.0
    resync_rounds: int = 3
    provisioner_interval_s: float = 1.0
    timeout_s: float = 900.0


def spec(gpus: int) -> dict[str, Any]:
    """tests/integration/test_status_truth.py's minimal spec; the endpoint is never called."""
    return {
        "model": {"name": "stub-model", "source": "openai-compatible", "endpoint": "http://127.0.0.1:9/v1"},
        "benchmarks": {
            "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0},
            "mtbench": {"enabled": False},
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": gpus},
    }


# ---- the cluster -------------------------------------------------------------------------------


@dataclass
class Cluster:
    cp: ControlPlane
    agent: NodeAgent
    provisioner: HostPathProvisioner
    api: ApiClient
    operator_kubeconfig: Path


@contextlib.contextmanager
def cluster(workdir: Path, setup: ScaleSetup) -> Iterator[Cluster]:
    """A fresh control plane (auditing the operator's user), provisioner, node agent, CRD and
    namespace; everything stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        cp = ControlPlane(workdir / "control-plane", bin_dir=find_binaries(), audit_policy=AUDIT_POLICY)
        stack.enter_context(cp)
        prov = HostPathProvisioner(cp.kubeconfig, workdir / "volumes", interval=setup.provisioner_interval_s)
        stack.enter_context(prov)
        node_kubeconfig = cp.write_kubeconfig(
            cp.workdir / "node.kubeconfig", f"system:node:{NODE}", ("system:nodes",)
        )
        agent = NodeAgent(
            node_kubeconfig,
            cp.kubeconfig,
            workdir / "pods",
            name=NODE,
            gpus=NODE_GPUS,
            max_pods=setup.max_pods,
            extra_env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
        stack.enter_context(agent)
        api = cp.api_client()
        stack.callback(api.close)
        apply_crd(api)
        core = CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_until(lambda: core.read_namespaced_service_account("default", NAMESPACE), 30, "default SA")
        operator_kubeconfig = cp.write_kubeconfig(
            workdir / "operator.kubeconfig", OPERATOR_USER, ("system:masters",)
        )
        yield Cluster(cp, agent, prov, api, operator_kubeconfig)


# ---- the operator process ----------------------------------------------------------------------


@dataclass
class Operator:
    process: Process
    liveness: str

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the operator process (all its threads)."""
        try:
            import psutil
        except ImportError:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def memory_mb(self) -> tuple[float, float]:
        """(peak RSS = VmHWM, current RSS = VmRSS) in MB, as the kernel counts them."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) / 1024  # kB → MB (MiB)
        return found["VmHWM"], found["VmRSS"]

    def log_text(self) -> str:
        try:
            return self.process.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def operator(
    c: Cluster, workdir: Path, setup: ScaleSetup, resync_seconds: float | None
) -> Iterator[Operator]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEJUMI_OPERATOR_")}
    env.update(
        {
            "KUBECONFIG": str(c.operator_kubeconfig),
            "NEJUMI_OPERATOR_EVALUATOR_COMMAND": json.dumps([sys.executable, str(FAKE_EVALUATOR)]),
            "NEJUMI_OPERATOR_EVALUATOR_ENV": json.dumps(
                {SUMMARY_ENV: summary_json("stub-model"), SECONDS_ENV: str(setup.evaluator_seconds)}
            ),
        }
    )
    if resync_seconds is not None:
        env["NEJUMI_OPERATOR_RESYNC_SECONDS"] = str(resync_seconds)
    (port,) = free_ports(1)
    liveness = f"http://127.0.0.1:{port}/healthz"
    argv = [sys.executable, "-m", "nejumi_operator", "--namespace", NAMESPACE, "--liveness", liveness]
    proc = Process("operator", argv, workdir / "operator.log")
    proc.start(tie_to_parent=True, env=env, cwd=REPO)
    try:
        yield Operator(proc, liveness)
    finally:
        proc.stop()


def wait_alive(op: Operator, timeout: float = 60) -> None:
    """The operator's liveness endpoint answers (its process still runs)."""

    def alive() -> bool:
        if not op.process.alive():
            raise RuntimeError(f"operator exited:\n{op.process.log_tail()}")
        with urllib.request.urlopen(op.liveness, timeout=2) as resp:
            return resp.status == 200

    wait_until(alive, timeout, "operator liveness")


def wait_operator_ready(op: Operator, audit: Audit, timeout: float = 60) -> None:
    """Liveness answers and the operator watches its four resources (seen in the audit log)."""
    wait_alive(op, timeout)
    wanted = {PLURAL, "jobs", "pods", "configmaps"}
    wait_until(
        lambda: wanted <= {e["resource"] for e in audit.read(0) if e["verb"] == "watch"},
        timeout,
        f"operator watches on {sorted(wanted)}",
    )


# ---- the audit log and the API server's metrics -----------------------------------------------


class Audit:
    """The operator's requests, from the audit log: one record per request, a watch at its start
    (ResponseStarted), any other request at its end (ResponseComplete)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def read(self, start: int) -> list[dict[str, Any]]:
        return AuditTail(self.path, start).poll()


class AuditTail:
    """The requests logged since `start`, read incrementally (`poll` parses only new lines)."""

    def __init__(self, path: Path, start: int) -> None:
        self.path, self.position = path, start
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return self.events
        with open(self.path, "rb") as f:
            f.seek(self.position)
            data = f.read()
        complete = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self.position += complete
        for line in data[:complete].split(b"\n"):
            if line.strip() and (request := _request(json.loads(line))) is not None:
                self.events.append(request)
        return self.events


def _request(event: dict[str, Any]) -> dict[str, Any] | None:
    verb, stage = event.get("verb", ""), event.get("stage")
    if stage != ("ResponseStarted" if verb == "watch" else "ResponseComplete"):
        return None
    ref = event.get("objectRef") or {}
    resource = ref.get("resource") or event.get("requestURI", "").split("?")[0]
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    agent = str(event.get("userAgent") or "")
    return {
        "verb": verb,
        "resource": resource,
        "name": ref.get("name"),
        "code": (event.get("responseStatus") or {}).get("code"),
        "by": "kopf" if agent.startswith("kopf") else "client",
        # a list for many evaluations at once (a resync round's `labelSelector=… in (…)`)
        "batch": " in (" in urllib.parse.unquote_plus(str(event.get("requestURI") or "")),
        "t": _timestamp(event.get("requestReceivedTimestamp", "")),
    }


def keep_logs(key: str, op: Operator, audit: Audit) -> None:
    """Copy the run's operator log and audit log (gzipped) to `LOGS`/<key>/, for a closer look."""
    folder = LOGS / key
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(op.process.log_path, folder / "operator.log")
    with open(audit.path, "rb") as src, gzip.open(folder / "audit.log.gz", "wb", compresslevel=3) as dst:
        shutil.copyfileobj(src, dst)


def _timestamp(text: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


METRICS = (
    "apiserver_request_total",
    "apiserver_request_duration_seconds_sum",
    "apiserver_request_duration_seconds_count",
)


def api_metrics(cp: ControlPlane) -> dict[str, Counter[str]]:
    """`METRICS` from the API server's `/metrics`, each summed by `verb resource[/subresource]`,
    every client together."""
    ctx = ssl.create_default_context(cafile=str(cp.ca_file))
    ctx.load_cert_chain(str(cp.pki / "admin.crt"), str(cp.pki / "admin.key"))
    with urllib.request.urlopen(f"{cp.server}/metrics", context=ctx, timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, Counter[str]] = {name: Counter() for name in METRICS}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in out:
            continue
        labels_text, _, value = rest.rpartition("} ")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        resource = labels.get("resource") or "(non-resource)"
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        out[name][f"{labels.get('verb', '').lower()} {resource}"] += float(value)
    return out


def metrics_delta(after: dict[str, Counter[str]], before: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    return {name: after[name] - before[name] for name in METRICS}


LATENCY_KINDS = (
    "get nejumievaluations",
    "patch nejumievaluations/status",
    "get jobs",
    "list pods",
    "list events",
)


def by_kind(events: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{e['by']}: {e['verb']} {e['resource']}" for e in events)


# ---- watching what happens ---------------------------------------------------------------------


class Watcher(threading.Thread):
    """List, then watch one namespaced resource (this bench's admin identity, not audited);
    `on(type, obj)` for each object seen. Relists after an error or an expired resourceVersion."""

    def __init__(self, lister: Callable[..., Any], on: Callable[[str, dict[str, Any]], None]) -> None:
        super().__init__(daemon=True)
        self.lister, self.on = lister, on
        self.stopping = threading.Event()
        self.resp: Any = None

    def run(self) -> None:
        rv = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    listing = json.loads(self.lister(_preload_content=False).data)
                    rv = listing["metadata"]["resourceVersion"]
                    for obj in listing["items"]:
                        self.on("ADDED", obj)
                self.resp = resp = self.lister(
                    watch=True, resource_version=rv, timeout_seconds=60, _preload_content=False
                )
                try:
                    for line in watch.watch.iter_resp_lines(resp):
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            rv = None
                            break
                        rv = event["object"]["metadata"].get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            self.on(event["type"], event["object"])
                finally:
                    resp.close()
                    resp.release_conn()
            except Exception:
                if not self.stopping.is_set():
                    rv = None
                    time.sleep(0.2)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(Exception):
            self.resp.shutdown()


@dataclass
class Seen:
    """When this bench first saw each Job, and each evaluation's status versions."""

    jobs: dict[str, float] = field(default_factory=dict)
    jobs_complete: dict[str, float] = field(default_factory=dict)
    phase: dict[str, str] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    status_versions: Counter[str] = field(default_factory=Counter)
    scored: set[str] = field(default_factory=set)
    _last: dict[str, Any] = field(default_factory=dict)

    def on_job(self, _: str, obj: dict[str, Any]) -> None:
        name, now = obj["metadata"]["name"], time.perf_counter()
        self.jobs.setdefault(name, now)
        conditions = (obj.get("status") or {}).get("conditions") or []
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
            self.jobs_complete.setdefault(name, now)

    def on_evaluation(self, kind: str, obj: dict[str, Any]) -> None:
        name, status = obj["metadata"]["name"], obj.get("status") or {}
        if kind == "DELETED":
            return
        if status and status != self._last.get(name):
            self._last[name] = status
            self.status_versions[name] += 1
        self.phase[name], self.reason[name] = status.get("phase", ""), status.get("reason", "")
        if status.get("phase") in FINAL:
            self.final.setdefault(name, time.perf_counter())
        if (status.get("scores") or {}).get("benchmarks", {}).get("jaster", {}).get("avg") is not None:
            self.scored.add(name)


@contextlib.contextmanager
def watching(api: ApiClient) -> Iterator[Seen]:
    seen = Seen()
    jobs = Watcher(lambda **kw: BatchV1Api(api).list_namespaced_job(NAMESPACE, **kw), seen.on_job)
    evaluations = Watcher(
        lambda **kw: CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, **kw
        ),
        seen.on_evaluation,
    )
    for w in (jobs, evaluations):
        w.start()
    try:
        yield seen
    finally:
        for w in (jobs, evaluations):
            w.stop()


def create_all(
    api: ApiClient, names: Sequence[str], body_spec: dict[str, Any], threads: int
) -> dict[str, float]:
    """Create the evaluations from `threads` threads; name → when its create returned."""
    custom = CustomObjectsApi(api)
    done: dict[str, float] = {}

    def one(name: str) -> None:
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": body_spec}
        for attempt in range(50):
            try:
                custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
                break
            except ApiException as exc:
                if exc.status not in (404, 429, 500, 503) or attempt == 49:  # 404: REST mapping lag
                    raise
                time.sleep(0.2)
        done[name] = time.perf_counter()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
    return done


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, op: Operator) -> None:
    def check() -> bool:
        if not op.process.alive():
            raise RuntimeError(f"operator exited:\n{op.process.log_tail()}")
        return predicate()

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def settle(audit: Audit, quiet_s: float = 3.0, limit_s: float = 60.0) -> None:
    """Until the operator has sent no request for `quiet_s` (its last Events, kopf's last patches)."""
    deadline = time.monotonic() + limit_s
    size, since = audit.offset(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now_size = audit.offset()
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def _quantiles(values: Sequence[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(ordered):.2f} | {p90:.2f} | {ordered[-1]:.2f}"


# ---- the lifecycle run -------------------------------------------------------------------------


@dataclass
class LifecycleResult:
    n: int
    jobs_s: float
    final_s: float
    requests: int
    cpu_s: float
    peak_mb: float
    apiserver_cpu_s: float
    create_runs: float
    syncs: float
    handler_calls: float
    by_kind: Counter[str]


class Sampler(threading.Thread):
    """Every 0.25 s: how many pods have a live process on the node, and the operator's RSS."""

    def __init__(self, agent: NodeAgent, op: Operator) -> None:
        super().__init__(daemon=True)
        self.agent, self.op = agent, op
        self.peak_pods = 0
        self.rss: list[tuple[float, float]] = []  # (perf_counter, MB)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            with self.agent._workers_lock:
                workers = list(self.agent.workers.values())
            self.peak_pods = max(self.peak_pods, sum(1 for w in workers if w.pids()))
            with contextlib.suppress(OSError, KeyError):
                self.rss.append((time.perf_counter(), self.op.memory_mb()[1]))

    def rss_at(self, t: float) -> float:
        before = [mb for at, mb in self.rss if at <= t]
        return before[-1] if before else float("nan")

    def stop(self) -> None:
        self.stopping.set()


HANDLERS = ("ensure_job", "job_changed", "pod_changed", "progress_reported")


def lifecycle_run(report: Report, workdir: Path, setup: ScaleSetup, n: int) -> LifecycleResult:
    key = f"scale_{n}"
    report.section(key, f"7. scale: {n} evaluations at once (fake evaluator, gpus 0)")
    with cluster(workdir, setup) as c:
        assert c.cp.audit_log is not None
        audit = Audit(c.cp.audit_log)
        with operator(c, workdir, setup, setup.lifecycle_resync_seconds) as op, watching(c.api) as seen:
            wait_operator_ready(op, audit)
            time.sleep(1.0)  # the initial listings' handlers (nothing to handle) are done
            offset, metrics0, cpu0 = audit.offset(), api_metrics(c.cp), op.cpu_seconds()
            names = [f"eval-{i:04d}" for i in range(n)]
            sampler = Sampler(c.agent, op)
            sampler.start()
            components0 = cpu_by_component(c, op)
            t0 = time.perf_counter()
            created = create_all(c.api, names, spec(0), setup.apply_threads)
            applied_s = time.perf_counter() - t0
            wait_for(lambda: len(seen.jobs) >= n, setup.timeout_s, f"{n} Jobs", op)
            jobs_s = max(seen.jobs.values()) - t0
            wait_for(lambda: len(seen.final) >= n, setup.timeout_s, f"{n} final statuses", op)
            final_s = max(seen.final.values()) - t0
            after = cpu_by_component(c, op)
            components = {k: after[k] - components0[k] for k in COMPONENT_SHORT}
            settle(audit, quiet_s=5.0, limit_s=180.0)
            sampler.stop()
            cpu_s = op.cpu_seconds() - cpu0
            peak_mb, rss_mb = op.memory_mb()
            events = audit.read(offset)
            metrics = metrics_delta(api_metrics(c.cp), metrics0)
            log = op.log_text()
            keep_logs(key, op, audit)

    succeeded = sum(1 for name in names if seen.phase.get(name) == "Succeeded")
    kinds = by_kind(events)
    requests = len(events)
    codes = Counter(str(e["code"]) for e in events)
    job_of = {name: f"{name}-g1" for name in names}
    job_latency = [seen.jobs[job_of[x]] - created[x] for x in names if job_of[x] in seen.jobs]
    final_latency = [seen.final[x] - created[x] for x in names if x in seen.final]
    react = [
        seen.final[x] - seen.jobs_complete[job_of[x]]
        for x in names
        if x in seen.final and job_of[x] in seen.jobs_complete
    ]
    handlers = Counter(re.findall(r"Handler '(\w+)' succeeded", log))
    handler_calls = sum(handlers[h] for h in HANDLERS)
    # Each status sync that reads for itself (an event's: a resync round lists a batch of
    # evaluations at once) lists its evaluation's Jobs once per attempt; so does the create handler.
    own_lists = sum(1 for e in events if e["verb"] == "list" and e["resource"] == "jobs" and not e["batch"])
    create_runs = sum(1 for e in events if e["verb"] == "create" and e["resource"] == "jobs")
    syncs = own_lists - create_runs
    repeats = _repeat_delays(events)

    report.add("evaluations", "evaluations", n)
    report.add("max_pods", "node max_pods (pods running at once at most)", setup.max_pods)
    report.add("evaluator_s", "fake evaluator's run", setup.evaluator_seconds, "s")
    resync = setup.lifecycle_resync_seconds
    report.add("resync_s", "operator resync interval", f"{resync:g}" if resync else "30 (default)", "s")
    report.add("apply_s", f"all created ({setup.apply_threads} threads)", applied_s, "s")
    report.add("jobs_s", "every Job exists (since the first create)", jobs_s, "s")
    report.add("final_s", "every status final (since the first create)", final_s, "s")
    report.add("jobs_per_eval_ms", "  per evaluation: Jobs time / N", jobs_s / n * 1e3, "ms")
    report.add("final_per_eval_ms", "  per evaluation: final time / N", final_s / n * 1e3, "ms")
    report.add("job_latency_s", "create → Job seen: median | p90 | max", _quantiles(job_latency), "s")
    report.add("final_latency_s", "create → final: median | p90 | max", _quantiles(final_latency), "s")
    report.add("react_s", "Job Complete → status final: median | p90 | max", _quantiles(react), "s")
    report.add("succeeded", "Succeeded | with jaster score in status", f"{succeeded} | {len(seen.scored)}")
    versions = [seen.status_versions[name] for name in names]
    report.add("status_versions", "distinct statuses seen per evaluation (mean)", statistics.mean(versions))
    report.add("peak_pods_running", "pods running at once, at most (sampled)", sampler.peak_pods)
    report.add("peak_rss_mb", "operator peak RSS (VmHWM)", peak_mb, "MB")
    report.add(
        "rss_jobs_end_mb",
        "operator RSS when every Job exists | at the end",
        f"{sampler.rss_at(t0 + jobs_s):.1f} | {rss_mb:.1f}",
        "MB",
    )
    report.add("operator_cpu_s", "operator CPU (user + system)", cpu_s, "s")
    report.add("operator_cpu_per_eval_ms", "  per evaluation", cpu_s / n * 1e3, "ms")
    report.add(
        "apiserver_cpu_per_eval_ms",
        "kube-apiserver CPU per evaluation",
        components["kube-apiserver"] / n * 1e3,
        "ms",
    )
    cores = os.cpu_count() or 1
    report.add(
        "cpu_busy",
        f"machine CPU busy until final, of {cores} cores × {final_s:.0f} s",
        sum(components.values()) / (cores * final_s),
    )
    report.add(
        "cpu_by_component_s",
        "  CPU s: " + " ".join(COMPONENT_SHORT[k] for k in components),
        " ".join(f"{v:.0f}" for v in components.values()),
        "s",
    )
    report.add("operator_requests", "operator API requests (audit log)", requests)
    report.add("requests_per_eval", "  per evaluation", requests / n)
    report.add("responses", "  response codes", " ".join(f"{k}:{v}" for k, v in sorted(codes.items())))
    report.add(
        "log_warnings_errors",
        "operator log: WARNING | ERROR lines",
        f"{log.count('[WARNING')} | {log.count('[ERROR')}",
    )
    report.add(
        "syncs_per_eval",
        "status sync attempts per evaluation, resync rounds' aside (LISTs of its Jobs, less the create's)",
        syncs / n,
    )
    report.add(
        "resync_listings",
        "resync rounds' listings of a batch of evaluations (LISTs by `in (…)`)",
        sum(1 for e in events if e["batch"]),
    )
    report.add(
        "handler_calls_per_eval",
        "kopf handler calls per evaluation (events; debounced into syncs)",
        handler_calls / n,
    )
    report.add(
        "handler_calls_by_handler",
        "  " + " | ".join(HANDLERS),
        " | ".join(f"{handlers[h] / n:.2f}" for h in HANDLERS),
    )
    report.add("create_runs_per_eval", "create handler runs per evaluation (POST jobs / N)", create_runs / n)
    report.add(
        "create_repeat_delay_s",
        "  a repeat's delay after the first: median | p90 | max",
        _quantiles(repeats),
        "s",
    )
    conflicts = sum(1 for e in events if e["code"] == 409 and e["resource"].endswith("/status"))
    report.add(
        "status_conflicts_per_eval", "status patches refused 409 (stale), per evaluation", conflicts / n
    )
    all_clients = sum(metrics["apiserver_request_total"].values())
    report.add(
        "all_clients_per_eval", "every client's API requests per evaluation (/metrics)", all_clients / n
    )
    latency = {
        k: 1e3 * metrics["apiserver_request_duration_seconds_sum"][k] / count
        for k in LATENCY_KINDS
        if (count := metrics["apiserver_request_duration_seconds_count"][k])
    }
    _subtitle(report, "API server mean latency by kind (every client; /metrics)")
    for kind, ms in latency.items():
        report.add(f"latency_{kind.replace(' ', '_')}_ms", f"  {kind}", ms, "ms")
    _subtitle(report, "operator requests per evaluation, by who, verb and resource")
    section = report.sections[key]
    section["api_latency_ms_by_kind"] = {k: round(v, 2) for k, v in latency.items()}
    section["requests_by_kind_per_eval"] = {k: round(v / n, 3) for k, v in kinds.most_common()}
    section["all_clients_by_kind_per_eval"] = {
        k: round(v / n, 3) for k, v in metrics["apiserver_request_total"].most_common()
    }
    for kind, count in kinds.most_common():
        if count / n >= 0.05:
            report.rows.append((f"     {kind}", f"{count / n:.2f}", ""))
            print(f"    {kind:<56} {count / n:>10.2f}", flush=True)
    return LifecycleResult(
        n,
        jobs_s,
        final_s,
        requests,
        cpu_s,
        peak_mb,
        components["kube-apiserver"],
        create_runs / n,
        syncs / n,
        handler_calls / n,
        kinds,
    )


def _repeat_delays(events: Sequence[dict[str, Any]]) -> list[float]:
    """For each Job the operator POSTed more than once: seconds from the first POST to the next."""
    posts: dict[str, list[float]] = {}
    for e in events:
        if e["verb"] == "create" and e["resource"] == "jobs" and e["name"]:
            posts.setdefault(e["name"], []).append(e["t"])
    return [sorted(ts)[1] - min(ts) for ts in posts.values() if len(ts) > 1]


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


COMPONENT_SHORT = {
    "operator": "operator",
    "etcd": "etcd",
    "kube-apiserver": "apiserver",
    "kube-controller-manager": "kcm",
    "kube-scheduler": "scheduler",
    "bench": "bench+agent+provisioner",
    "pods": "pods",
    "others": "others",
}


def cpu_by_component(c: Cluster, op: Operator) -> Counter[str]:
    """CPU seconds so far of each process: the operator, the control plane's, this one (the node
    agent, the provisioner and the watchers are its threads) and the pods (ended children)."""
    out: Counter[str] = Counter({"operator": op.cpu_seconds()})
    for name, pid in c.cp.pids().items():
        with contextlib.suppress(OSError):
            out[name] = _process_cpu(pid)
    out["bench"] = time.process_time()
    times = os.times()
    out["pods"] = times.children_user + times.children_system
    # Whatever else this machine runs (other test sessions): busy CPU time minus all of the above.
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(cpu[:8]) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    out["others"] = busy - sum(out.values())
    return Counter({k: out[k] for k in COMPONENT_SHORT})


def _subtitle(report: Report, title: str) -> None:
    report.rows.append((f"  -- {title}", "", ""))
    print(f"  -- {title}", flush=True)


def report_ratios(report: Report, results: Sequence[LifecycleResult]) -> None:
    small, large = results[0], results[-1]
    report.section("scale_ratios", f"7. scale: {large.n} vs {small.n} (per evaluation: 1 = linear)")

    def ratio(get: Callable[[LifecycleResult], float]) -> float:
        a, b = get(large) / large.n, get(small) / small.n
        return a / b if b else float("nan")

    report.add("n_ratio", "evaluations ratio", large.n / small.n, "x")
    rows: list[tuple[str, str, Callable[[LifecycleResult], float]]] = [
        ("jobs_time_per_eval", "Jobs time per evaluation", lambda r: r.jobs_s),
        ("final_time_per_eval", "final time per evaluation", lambda r: r.final_s),
        ("requests_per_eval", "operator requests per evaluation", lambda r: r.requests),
        ("cpu_per_eval", "operator CPU per evaluation", lambda r: r.cpu_s),
        ("apiserver_cpu_per_eval", "kube-apiserver CPU per evaluation", lambda r: r.apiserver_cpu_s),
        ("create_runs_per_eval", "create handler runs per evaluation", lambda r: r.create_runs * r.n),
        ("syncs_per_eval", "status syncs per evaluation", lambda r: r.syncs * r.n),
        ("handler_calls_per_eval", "kopf handler calls per evaluation", lambda r: r.handler_calls * r.n),
    ]
    for key, label, get in rows:
        report.add(key, f"{label}: {large.n} / {small.n}", ratio(get), "x")
    report.add("peak_rss", f"operator peak RSS: {large.n} / {small.n}", large.peak_mb / small.peak_mb, "x")
    report.add(
        "rss_per_eval_mb",
        f"  peak RSS growth per added evaluation ({small.n} → {large.n})",
        (large.peak_mb - small.peak_mb) / (large.n - small.n),
        "MB",
    )
    growth = {}
    for kind in large.by_kind:
        a, b = large.by_kind[kind] / large.n, small.by_kind.get(kind, 0) / small.n
        growth[kind] = round(a / b, 3) if b else None
    report.sections["scale_ratios"]["requests_per_eval_ratio_by_kind"] = growth


# ---- the resync run ----------------------------------------------------------------------------


def resync_run(report: Report, workdir: Path, setup: ScaleSetup, n: int) -> None:
    key = f"scale_resync_{n}"
    report.section(key, f"7. scale: the resync loop with {n} unfinished (Unschedulable) evaluations")
    with cluster(workdir, setup) as c:
        assert c.cp.audit_log is not None
        audit = Audit(c.cp.audit_log)
        with operator(c, workdir, setup, setup.resync_seconds) as op, watching(c.api) as seen:
            wait_operator_ready(op, audit)
            names = [f"wait-{i:04d}" for i in range(n)]
            t0 = time.perf_counter()
            create_all(c.api, names, spec(2 * NODE_GPUS), setup.apply_threads)
            wait_for(
                lambda: sum(1 for x in names if seen.reason.get(x) == "Unschedulable") >= n,
                setup.timeout_s,
                f"{n} evaluations Pending/Unschedulable",
                op,
            )
            settled_s = time.perf_counter() - t0
            c.provisioner.stop()  # nothing left to provision (see the module's docstring)
            # Then whole rounds until one passes with no create request (kopf may still re-run a
            # create handler long after the status is written: see the lifecycle's repeats). Rounds
            # are read from the operator's log (one line each: how many it synced, how long it
            # took); a round syncs everything when no event synced anything in the interval.
            deadline = time.monotonic() + setup.timeout_s
            while True:
                offset, seen_rounds = audit.offset(), len(_rounds(op.log_text()))
                wait_for(
                    lambda k=seen_rounds: len(_full_rounds(op.log_text(), n, k)) >= 1,
                    setup.timeout_s,
                    "a resync round",
                    op,
                )
                if not any(e["verb"] == "create" for e in audit.read(offset)):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the operator kept creating objects")
            quiet_s = time.perf_counter() - t0
            offset, cpu0, w0 = audit.offset(), op.cpu_seconds(), time.perf_counter()
            components0, metrics0 = cpu_by_component(c, op), api_metrics(c.cp)
            first = len(_rounds(op.log_text()))
            wait_for(
                lambda: len(_full_rounds(op.log_text(), n, first)) >= setup.resync_rounds,
                setup.timeout_s,
                f"{setup.resync_rounds} resync rounds",
                op,
            )
            window_s, cpu_s = time.perf_counter() - w0, op.cpu_seconds() - cpu0
            after, metrics = cpu_by_component(c, op), metrics_delta(api_metrics(c.cp), metrics0)
            components = {k: after[k] - components0[k] for k in COMPONENT_SHORT}
            events = audit.read(offset)
            peak_mb, _ = op.memory_mb()
            rounds = _rounds(op.log_text())[first:]
            keep_logs(key, op, audit)
    # Requests per round: over the window, which spans these rounds and their sleeps.
    rounds_seen = max(1, len(rounds))
    per_round = by_kind(events)
    full = [took for synced, _, took in rounds if synced >= n * 0.98]
    report.add("evaluations", "unfinished evaluations (16 GPUs asked, the node has 8)", n)
    report.add("resync_s", "NEJUMI_OPERATOR_RESYNC_SECONDS", setup.resync_seconds, "s")
    report.add("settled_s", "all created and Pending/Unschedulable after", settled_s, "s")
    report.add("quiet_s", "a whole round without a create request after", quiet_s, "s")
    report.add("rounds", "resync rounds in the window (the operator's log)", rounds_seen)
    report.add(
        "synced_per_round",
        "  evaluations each synced (of N)",
        " ".join(str(synced) for synced, _, _ in rounds),
    )
    report.add("window_s", "window", window_s, "s")
    report.add("requests_per_round", "operator API requests per round", len(events) / rounds_seen)
    report.add("requests_per_eval_round", "  per evaluation per round", len(events) / rounds_seen / n)
    report.add("cpu_per_round_s", "operator CPU per round", cpu_s / rounds_seen, "s")
    report.add("cpu_per_eval_round_ms", "  per evaluation", cpu_s / rounds_seen / n * 1e3, "ms")
    api_cpu = components["kube-apiserver"]
    report.add("apiserver_cpu_per_round_s", "kube-apiserver CPU per round", api_cpu / rounds_seen, "s")
    report.add(
        "cpu_by_component_s",
        "  window CPU s: " + " ".join(COMPONENT_SHORT[k] for k in components),
        " ".join(f"{v:.0f}" for v in components.values()),
        "s",
    )
    count = metrics["apiserver_request_duration_seconds_count"]["list pods"]
    if count:
        mean = 1e3 * metrics["apiserver_request_duration_seconds_sum"]["list pods"] / count
        report.add("latency_list_pods_ms", "API server mean latency of list pods (window)", mean, "ms")
    if full:
        report.add(
            "round_duration_s",
            "a round's duration (the operator's log), median",
            statistics.median(full),
            "s",
        )
        report.add(
            "round_period_s",
            "period (round + sleep)",
            statistics.median(full) + setup.resync_seconds,
            "s",
        )
        report.add(
            "ms_per_evaluation", "  per evaluation in a round", statistics.median(full) / n * 1e3, "ms"
        )
        report.add(
            "round_over_interval",
            "a round's duration / the interval (< 1: the loop keeps up)",
            statistics.median(full) / setup.resync_seconds,
            "x",
        )
        report.add(
            "round_over_default_interval",
            f"  / the default interval ({DEFAULT_RESYNC_S:g} s)",
            statistics.median(full) / DEFAULT_RESYNC_S,
            "x",
        )
    report.add("peak_rss_mb", "operator peak RSS (VmHWM)", peak_mb, "MB")
    _subtitle(report, "operator requests per resync round, by who, verb and resource")
    report.sections[key]["requests_by_kind_per_round"] = {
        k: round(v / rounds_seen, 1) for k, v in per_round.most_common()
    }
    for kind, count in per_round.most_common():
        report.rows.append((f"     {kind}", f"{count / rounds_seen:.1f}", ""))
        print(f"    {kind:<56} {count / rounds_seen:>10.1f}", flush=True)


ROUND = re.compile(r"resync round: (\d+) of (\d+) unfinished evaluations synced in ([\d.]+) s")


def _rounds(log: str) -> list[tuple[int, int, float]]:
    """The resync rounds the operator logged: (synced, unfinished, seconds) each."""
    return [(int(a), int(b), float(t)) for a, b, t in ROUND.findall(log)]


def _full_rounds(log: str, n: int, after: int) -> list[tuple[int, int, float]]:
    """The rounds after the first `after` that synced (nearly) all `n` evaluations."""
    return [r for r in _rounds(log)[after:] if r[0] >= n * 0.98]


# ---- the section -------------------------------------------------------------------------------


def bench_scale(report: Report, workdir: Path, setup: ScaleSetup) -> None:
    results = []
    for n in setup.counts:
        results.append(lifecycle_run(report, workdir / f"lifecycle-{n}", setup, n))
    if len(results) > 1:
        report_ratios(report, results)
    for n in setup.resync_counts:
        resync_run(report, workdir / f"resync-{n}", setup, n)
