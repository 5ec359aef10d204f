"""The operator as users install it: the chart's Deployment running in the cluster as its own
ServiceAccount (no kubeconfig, only the projected token, the chart's RBAC and nothing more),
`kubectl apply` of an evaluation through to scores in status; two replicas that never create two
Jobs or post an Event twice, and that hand over when one is killed; and the second GPU node,
chosen by `resources.nodeSelector` + `resources.tolerations`.

The node agent ignores images and runs `command + args` as local processes, so the chart's
`operator.command` points at this checkout's interpreter and `evaluator.command` at its
`nejumi-eval`. All pods share this machine's one network namespace (pod IP 127.0.0.1): each
release gets a free `operator.livenessPort`, and where one Deployment runs two replicas each picks
its own port at start (see `PER_REPLICA_PORT`), as two pods with their own IPs would not need to.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, CoreV1Api

from nejumi_eval.api.v1alpha1.names import API_VERSION, KIND, LABEL_EVALUATION
from nejumi_operator.reconcile.job import job_name
from nejumi_operator.settings import ENV_POLICY
from tests.cluster import NodeAgent, wait_until
from tests.cluster.controlplane import free_ports
from tests.fixtures.openai_stub import StubServer
from tests.integration.conftest import SECOND_NODE_LABELS, SECOND_NODE_NAME, SECOND_NODE_TAINT
from tests.integration.test_operator import HANDLERS
from tests.integration.test_status_truth import Recorder, events_of, spec
from tests.support.helm import CHART, helm
from tests.support.kube import apply_crd, delete_crd, kubectl
from tests.support.kube import create_evaluation as create

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

INSTANCE = "app.kubernetes.io/instance"
BIN = Path(sys.executable).parent
# The operator's command for a Deployment with more than one replica on this one-network machine:
# each replica binds a free port of its own for kopf's liveness endpoint (the chart's
# `--liveness=…:<livenessPort>` would collide) and prints it; the rest is `python -m nejumi_operator`
# with the chart's args.
PER_REPLICA_PORT = (
    "import runpy, socket, sys\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
    "print(f'nejumi-test liveness port {port}', flush=True)\n"
    "sys.argv = ['nejumi_operator', *sys.argv[1:], f'--liveness=http://0.0.0.0:{port}/healthz']\n"
    "runpy.run_module('nejumi_operator', run_name='__main__', alter_sys=True)\n"
)


EVENTS = ["JobCreated", "Started", "Succeeded"]  # one successful evaluation's, in order


@pytest.fixture(scope="module")
def crd(k8s_client: ApiClient) -> Iterator[None]:
    """The committed CRD (helm install skips it when present, as Helm does with crds/)."""
    apply_crd(k8s_client)
    yield
    delete_crd(k8s_client)


@dataclass
class Release:
    name: str
    namespace: str
    kubeconfig: Path
    home: Path

    @property
    def fullname(self) -> str:
        return f"{self.name}-nejumi-operator"

    def helm(self, *args: str, check: bool = True) -> Any:
        return helm(
            [*args, "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace],
            self.home,
            check=check,
        )

    def install(self, values: dict[str, Any]) -> None:
        path = self.home / f"{self.name}-values.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        # --wait: the Deployment's pod is Running (the test node agent reports it ready then).
        self.helm("install", self.name, str(CHART), "-f", str(path), "--wait", "--timeout", "120s")

    def pods(self, core: CoreV1Api, running: bool = True) -> list[Any]:
        items = core.list_namespaced_pod(self.namespace, label_selector=f"{INSTANCE}={self.name}").items
        return [
            p
            for p in items
            if not running or (p.status.phase == "Running" and not p.metadata.deletion_timestamp)
        ]


@pytest.fixture
def release(kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Release]:
    rel = Release(f"r{secrets.token_hex(3)}", namespace, kubeconfig, tmp_path / "helm-home")
    yield rel
    rel.helm("uninstall", rel.name, "--ignore-not-found", "--wait", "--timeout", "60s", check=False)


def chart_values(data_mirror: Path, **operator: Any) -> dict[str, Any]:
    """This checkout's interpreter and evaluator, with the evaluator env `operator_env` uses."""
    return {
        "operator": {
            "command": [sys.executable, "-m", "nejumi_operator"],
            "resyncSeconds": 5,
            "serverTimeoutSeconds": 10,
            **operator,
        },
        "evaluator": {
            "command": [str(BIN / "nejumi-eval"), "run"],
            "env": {
                "NEJUMI_DATA_MIRROR": str(data_mirror),
                "NEJUMI_CACHE_DIR": os.environ["NEJUMI_CACHE_DIR"],
                "HF_HUB_OFFLINE": "1",
                "WANDB_MODE": "offline",
            },
        },
    }


def healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        return int(resp.status)


def token_subject(sandbox: Path) -> str:
    """The `sub` of the ServiceAccount token the agent mounted into the pod."""
    (token,) = sandbox.glob("volumes/kube-api-access-*/token")
    payload = token.read_text().split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def manifest(name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def raw_events(core: CoreV1Api, namespace: str) -> list[Any]:
    return [e for e in core.list_namespaced_event(namespace).items if e.involved_object.kind == KIND]


def test_chart_operator_runs_an_evaluation_as_its_service_account(
    crd: None,
    release: Release,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    data_mirror: Path,
    tmp_path: Path,
) -> None:
    core, batch = CoreV1Api(k8s_client), BatchV1Api(k8s_client)
    (port,) = free_ports(1)
    t0 = time.monotonic()
    release.install(chart_values(data_mirror, livenessPort=port))
    installed = time.monotonic() - t0
    (pod,) = release.pods(core)
    assert pod.spec.service_account_name == release.fullname
    assert pod.spec.node_name == node_agent.name
    (pid,) = node_agent.pids(namespace, pod.metadata.name)
    sandbox = node_agent.pod_dir(namespace, pod.metadata.name)
    assert sandbox is not None
    # Its only credentials: the projected token of the chart's ServiceAccount (no kubeconfig; HOME
    # is the pod sandbox).
    env = process_env(pid)
    assert "KUBECONFIG" not in env and env["HOME"] == str(sandbox), env
    assert token_subject(sandbox) == f"system:serviceaccount:{namespace}:{release.fullname}"
    assert wait_until(lambda: healthz(port) == 200, 30, "the operator's /healthz")

    with StubServer() as stub, Recorder(k8s_client, namespace) as seen:
        body = spec(stub.base_url, resources={"gpus": 1})
        # All 16 jaster datasets, one sample each: every category, so the jaster AVG is a number.
        body["benchmarks"]["jaster"] = {"testSamples": 1, "devSamples": 0}
        path = tmp_path / "evaluation.yaml"
        path.write_text(yaml.safe_dump(manifest("in-cluster", namespace, body)))
        kubectl(kubeconfig, "apply", "-f", str(path))
        status = seen.wait_for("in-cluster", "Succeeded", "EvaluationCompleted", timeout=180)
    log = (sandbox / "operator.log").read_text(errors="replace")
    jaster = status["scores"]["benchmarks"]["jaster"]
    assert isinstance(jaster["avg"], float) and len(jaster["categories"]) == 7, status
    assert status["usage"]["requestsSent"] == 16 == stub.calls, status
    (job,) = batch.list_namespaced_job(namespace).items
    assert job.metadata.name == job_name("in-cluster", 1)

    def succeeded_events() -> list[str] | None:
        reasons = [r for _, r, _ in events_of(k8s_client, namespace, "in-cluster")]
        return reasons if reasons and reasons[-1] == "Succeeded" else None

    reasons = wait_until(succeeded_events, 20, "the Succeeded Event")
    assert reasons[0] == "JobCreated" and "Started" in reasons and reasons[-1] == "Succeeded", reasons
    # Posted by the operator pod (reportingInstance is its HOSTNAME), not by anything in the test.
    assert {e.reporting_instance for e in raw_events(core, namespace)} == {pod.metadata.name}
    assert "Job in-cluster-g1 created" in log, log[-3000:]
    assert healthz(port) == 200

    # A deleted operator pod is replaced by the Deployment's ReplicaSet, healthy on the same port.
    core.delete_namespaced_pod(pod.metadata.name, namespace)
    t1 = time.monotonic()
    wait_until(
        lambda: [p for p in release.pods(core) if p.metadata.name != pod.metadata.name],
        60,
        "the replacement operator pod",
    )
    wait_until(lambda: healthz(port) == 200, 30, "the replacement's /healthz")
    replaced = time.monotonic() - t1
    print(
        f"\nhelm install --wait: {installed:.1f}s; evaluation Succeeded; events {reasons}; "
        f"a deleted operator pod was replaced and healthy in {replaced:.1f}s"
    )


def test_two_replicas_never_double_a_job_or_an_event_and_hand_over(
    crd: None,
    release: Release,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    data_mirror: Path,
    tmp_path: Path,
) -> None:
    """Active-active by construction: Job names are `<name>-g<generation>` (create 409 → get) and
    every status write carries the resourceVersion it was computed from; an Event is posted only by
    the writer whose status write won. Both replicas handle every evaluation. Mid-run the active one
    (the latest Event's writer) is SIGKILLed, and killed again whenever its container restarts until
    the run is over, so the other one alone must finish it; then it is let back, resumes, and
    announces nothing twice."""
    core, apps, batch = CoreV1Api(k8s_client), AppsV1Api(k8s_client), BatchV1Api(k8s_client)
    values = chart_values(data_mirror, command=[sys.executable, "-c", PER_REPLICA_PORT])
    release.install(values)
    # The chart's schema allows replicaCount 0 or 1 only: scale the Deployment as an admin would.
    apps.patch_namespaced_deployment_scale(release.fullname, namespace, {"spec": {"replicas": 2}})
    pods = wait_until(lambda: len(p := release.pods(core)) == 2 and p, 60, "two operator replicas")
    names = sorted(p.metadata.name for p in pods)

    def port_of(pod: str) -> int | None:
        """The liveness port the replica's latest start picked (PER_REPLICA_PORT prints it)."""
        sandbox = node_agent.pod_dir(namespace, pod)
        text = (sandbox / "operator.log").read_text(errors="replace") if sandbox else ""
        ports = [
            int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if "nejumi-test liveness port" in line
        ]
        return ports[-1] if ports else None

    def healthy(pod: str) -> bool:
        return bool((port := port_of(pod)) and healthz(port) == 200)

    for pod in names:
        wait_until(lambda pod=pod: healthy(pod), 30, f"{pod}'s /healthz")

    evaluations = [f"eval-{i}" for i in range(6)]
    kills: set[int] = set()  # distinct processes killed
    reaping = threading.Event()

    def reap(victim: str) -> None:
        """SIGKILL the victim's operator process, and each one its restarts bring, while reaping."""
        while reaping.is_set():
            for pid in node_agent.pids(namespace, victim):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    kills.add(pid)
            time.sleep(0.02)

    with StubServer(delay_s=0.5) as stub, Recorder(k8s_client, namespace) as seen:
        body = spec(stub.base_url, resources={"gpus": 1}, generation={"concurrency": 1})
        body["benchmarks"]["jaster"]["testSamples"] = 8
        path = tmp_path / "evaluations.yaml"
        path.write_text(yaml.safe_dump_all([manifest(n, namespace, body) for n in evaluations]))
        kubectl(kubeconfig, "apply", "-f", str(path))

        # Mid-run: every evaluation has started (its JobCreated and Started Events are posted) and
        # none has finished. Killing the writer in a burst of transitions can lose an Event (see
        # below); here the next transitions (Succeeded) are seconds away.
        def mid_run() -> bool:
            started = all(
                [r for _, r, _ in events_of(k8s_client, namespace, n)] == EVENTS[:2] for n in evaluations
            )
            return started and not {(seen.latest.get(n) or {}).get("phase") for n in evaluations} & {
                "Succeeded",
                "Failed",
            }

        wait_until(mid_run, 120, f"every evaluation started, none finished (seen {seen.seen})")
        # The active replica: the one that posted the latest Event (reportingInstance = its pod).
        victim = max(raw_events(core, namespace), key=lambda e: e.event_time).reporting_instance
        (survivor,) = [n for n in names if n != victim]
        statuses = {n: seen.latest.get(n) for n in evaluations}
        killed_at = time.time()
        reaping.set()
        reaper = threading.Thread(target=reap, args=(victim,), daemon=True)
        reaper.start()
        try:
            # The survivor's first status write (the victim is dead; nothing else writes status).
            wait_until(
                lambda: any(seen.latest.get(n) != statuses[n] for n in evaluations), 60, "a status write"
            )
            first_write = time.time() - killed_at

            def survivor_event_after_kill() -> float | None:
                late = [
                    e.event_time.timestamp()
                    for e in raw_events(core, namespace)
                    if e.reporting_instance == survivor and e.event_time.timestamp() > killed_at
                ]
                return min(late) - killed_at if late else None

            took_over = wait_until(survivor_event_after_kill, 120, f"an Event from {survivor} after the kill")
            for name in evaluations:
                seen.wait_for(name, "Succeeded", "EvaluationCompleted", timeout=240)
            finished = time.time() - killed_at
        finally:
            reaping.clear()
            reaper.join()
        # Every transition after the kill was the survivor's (the victim never got back in).
        after_kill = {
            e.reporting_instance for e in raw_events(core, namespace) if e.event_time.timestamp() > killed_at
        }
        assert after_kill == {survivor}, after_kill

        # The victim comes back (the agent restarts its container), resumes every evaluation (all
        # finished: nothing to do) and posts nothing.
        back_from = time.time()
        before = sorted((e.metadata.name, e.reason) for e in raw_events(core, namespace))
        wait_until(lambda: healthy(victim), 60, f"{victim} back and healthy")
        back = time.time() - back_from
        time.sleep(2 * values["operator"]["resyncSeconds"])  # two resync rounds of both replicas
        assert sorted((e.metadata.name, e.reason) for e in raw_events(core, namespace)) == before

    # Exactly one Job per evaluation, named for its generation, and one pod each (no retries).
    jobs = batch.list_namespaced_job(namespace).items
    assert sorted(j.metadata.name for j in jobs) == sorted(job_name(n, 1) for n in evaluations)
    for job in jobs:
        assert job.metadata.labels[LABEL_EVALUATION] + "-g1" == job.metadata.name
    pods_of = Counter(
        p.metadata.labels.get(LABEL_EVALUATION) for p in core.list_namespaced_pod(namespace).items
    )
    assert all(pods_of[n] == 1 for n in evaluations), pods_of

    # Exactly one Event per transition: JobCreated, Started, Succeeded. (At most one in general: a
    # transition's Events are posted after its status write wins (controller.py), so a writer killed
    # between the two — or with the write's response still in flight — leaves that transition
    # without an Event, and no later writer posts it: it sees no change.)
    for name in evaluations:
        seq = [r for _, r, _ in events_of(k8s_client, namespace, name)]
        assert seq == EVENTS, (name, seq)
        final = seen.latest[name]
        assert "jaster" in final["scores"]["benchmarks"] and final["usage"]["requestsSent"] == 8, final
    writers = Counter(e.reporting_instance for e in raw_events(core, namespace))
    assert set(writers) <= set(names), writers

    # Both replicas raced for every create: the Job was created once; the loser (and the victim's
    # resume) found it there (409 → get).
    logs = {n: (node_agent.pod_dir(namespace, n) / "operator.log").read_text(errors="replace") for n in names}
    created = Counter(
        n for text in logs.values() for n in evaluations if f"Job {job_name(n, 1)} created" in text
    )
    assert all(created[n] == 1 for n in evaluations), created
    existing = sum(text.count(" already exists") for text in logs.values())
    print(
        f"\nkilled {victim} (the latest Event's writer) {len(kills)}x; {survivor} wrote status "
        f"{first_write:.2f}s and posted an Event {took_over:.2f}s after the kill; all "
        f"{len(evaluations)} Succeeded {finished:.1f}s after it; the victim healthy again "
        f"{back:.1f}s after release; Events by writer {dict(writers)}; "
        f"'already exists' (lost create races) {existing}"
    )


def test_second_gpu_node_by_node_selector_and_toleration(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    operator_env: pytest.MonkeyPatch,
) -> None:
    """`nejumi-gpu-1` is tainted and labelled: an evaluation selecting its label and tolerating its
    taint runs there; two 8-GPU evaluations (one node's worth each) run at the same time on the two
    nodes; the selector without the toleration is Unschedulable and says why."""
    core = CoreV1Api(k8s_client)
    # The admin allows selecting the pool label (the chart's `policy.nodeSelector`); the GPU taint's
    # toleration is allowed by default.
    operator_env.setenv(ENV_POLICY, json.dumps({"nodeSelector": {"nejumi.test/pool": ["b"]}}))
    on_b = {
        "gpus": 8,
        "nodeSelector": dict(SECOND_NODE_LABELS),
        "tolerations": [{"key": SECOND_NODE_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
    }
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with (
        StubServer(delay_s=0.5) as stub,
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as runner,
    ):

        def body(resources: dict[str, Any]) -> dict[str, Any]:
            out = spec(stub.base_url, resources=resources, generation={"concurrency": 1})
            out["benchmarks"]["jaster"]["testSamples"] = 8
            return out

        create(k8s_client, namespace, "pool-b", body(on_b))
        create(k8s_client, namespace, "pool-a", body({"gpus": 8}))
        create(
            k8s_client,
            namespace,
            "no-toleration",
            body({"gpus": 1, "nodeSelector": dict(SECOND_NODE_LABELS)}),
        )

        def pod_of(name: str) -> Any:
            pods = core.list_namespaced_pod(namespace, label_selector=f"{LABEL_EVALUATION}={name}").items
            return pods[0] if pods else None

        def both_running() -> dict[str, str] | None:
            pods = {n: pod_of(n) for n in ("pool-a", "pool-b")}
            if all(p is not None and p.status.phase == "Running" for p in pods.values()):
                return {n: p.spec.node_name for n, p in pods.items()}
            return None

        nodes = wait_until(both_running, 120, f"both 8-GPU evaluations running at once (seen {seen.seen})")
        assert nodes == {"pool-a": node_agent.name, "pool-b": SECOND_NODE_NAME}
        assert second_node.name == SECOND_NODE_NAME and second_node.pids(
            namespace, pod_of("pool-b").metadata.name
        )
        stuck = seen.wait_for("no-toleration", "Pending", "Unschedulable")
        for name in ("pool-a", "pool-b"):
            seen.wait_for(name, "Succeeded", "EvaluationCompleted", timeout=180)
    assert (runner.exit_code, runner.exception) == (0, None), runner.output
    assert "untolerated taint" in stuck["message"] and "spec.resources.tolerations" in stuck["message"], stuck
    assert pod_of("no-toleration").status.phase == "Pending"
