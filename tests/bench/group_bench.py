"""A model served across nodes (issue 22): what its group costs around the serving, on the stubs.

A 2-node evaluation (TP 8 × PP 2 on two node agents of 8 GPUs, a LocalQueue with 16 GPUs of quota;
jaster `jamp` only) runs through the real operator (its own process), the real Kueue and the real
LeaderWorkerSet controller on the test control plane. The stub `vllm serve`
(`tests/fixtures/served_model.py`) "loads" for a known time (`--load`), meets its workers in a
rendezvous folder, serves with a known capacity and latency, and records when it was ready, every
request on arrival and every reply. A thread polls the group (its LeaderWorkerSet, pods and
Workload) every 0.1 s. From the objects' own stamps (1 s resolution), the stub's records and the
poll (wall-clock floats), it reports:

- **admission → server ready**: the group Workload's `Admitted` lastTransitionTime → the stub
  leader's `ready`, as a multiple of the known load time, split at the leader's `vllm serve` start
  (`ready` − the leader's own `runtimeSeconds.serve_start`): before it, the pods scheduled and the
  evaluator started; after it, the load and the workers joining;
- **generation end → released → deleted**: the last reply → the leader's end (the `released`
  record's `completion_time`) → `spec.replicas: 0` seen → the group's last pod and its Workload
  gone. The release waits for a status sync of the operator, debounced (`syncs.QUIET_SECONDS`
  after the leader's outcome event, at most `syncs.MAX_DELAY_SECONDS` while events keep coming);
- **a worker lost**: a second evaluation whose worker pod's processes are SIGKILLed after
  `--kill-after` replies: requests received, distinct prompts, resent (the difference: the
  requests in flight, at most `--concurrency`), kill → the new group's server ready → Succeeded.

Results in .cache/bench/group.json (with each pod's creation, scheduling and start, as last seen).

    python -m tests.bench.group_bench [--load 2] [--capacity 2] [--latency 0.5] [--samples 24]
        [--concurrency 2] [--kill-after 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api, CustomObjectsApi

from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
from nejumi_operator import syncs
from nejumi_operator.reconcile.group import ANNOTATION_RELEASED, group_name
from tests.bench.gpu_bench import _operator, _time
from tests.cluster import ControlPlane, NodeAgent, find_binaries, kueue, lws, wait_until
from tests.cluster.provisioner import HostPathProvisioner
from tests.integration.test_kueue import Kueues
from tests.integration.test_multi_node import NODE_GPUS, log, spec
from tests.support.kube import apply_crd, create_evaluation
from tests.support.paths import REPO
from tests.support.served import model_folder, stub_vllm

NAMESPACE = "group-bench"
RESULTS = REPO / ".cache" / "bench" / "group.json"
NODES = 2
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
"""Kueue's label on the Workload of a LeaderWorkerSet: its uid."""


@dataclass
class Workload:
    load_s: float = 2.0
    capacity: int = 2
    latency_s: float = 0.5
    samples: int = 24
    """jamp test samples: generation takes ceil(samples / min(capacity, concurrency)) × latency."""
    concurrency: int = 2
    kill_after: int = 8


class GroupWatch:
    """LeaderWorkerSet `name`, its pods and Workload, polled every 0.1 s in a thread: the Admitted
    stamps, each pod as last seen, and when the release and the group's end were first seen."""

    def __init__(self, api: Any, name: str) -> None:
        self.custom, self.core, self.name = CustomObjectsApi(api), CoreV1Api(api), name
        self.sanitize = api.sanitize_for_serialization
        self.admitted: list[str] = []
        self.pods: dict[str, dict[str, Any]] = {}  # by uid
        self.release: dict[str, Any] = {}
        self.admitted_seen: float | None = None
        self.released_seen: float | None = None
        self.gone_seen: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GroupWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1) and self.gone_seen is None:
            with contextlib.suppress(Exception):  # a refused poll is the next one's to make
                self._poll(time.time())

    def _poll(self, now: float) -> None:
        found = self.custom.list_namespaced_custom_object(
            lws.GROUP, lws.API_VERSION, NAMESPACE, lws.PLURAL, field_selector=f"metadata.name={self.name}"
        )["items"]
        if not found:
            return
        (group,) = found
        workloads = self.custom.list_namespaced_custom_object(
            kueue.GROUP,
            kueue.API_VERSION,
            NAMESPACE,
            "workloads",
            label_selector=f"{JOB_UID_LABEL}={group['metadata']['uid']}",
        )["items"]
        for wl in workloads:
            for c in (wl.get("status") or {}).get("conditions") or []:
                stamp = c["lastTransitionTime"]
                if (c["type"], c["status"]) == ("Admitted", "True") and stamp not in self.admitted:
                    self.admitted.append(stamp)
                    self.admitted_seen = self.admitted_seen or now
        pods = self.core.list_namespaced_pod(NAMESPACE, label_selector=f"{lws.SET_NAME_LABEL}={self.name}")
        self.pods |= {p["metadata"]["uid"]: p for p in self.sanitize(pods.items)}
        if group["spec"].get("replicas") == 0 and self.released_seen is None:
            self.released_seen = now
            self.release = json.loads(group["metadata"]["annotations"][ANNOTATION_RELEASED])
        if self.released_seen is not None and not pods.items and not workloads:
            self.gone_seen = now

    def timeline(self) -> list[dict[str, Any]]:
        """Each pod seen, by creation: when it was scheduled and its container first started."""
        rows = []
        for pod in self.pods.values():
            status = pod.get("status") or {}
            containers = status.get("containerStatuses") or []
            scheduled = [
                c["lastTransitionTime"]
                for c in status.get("conditions") or []
                if (c["type"], c["status"]) == ("PodScheduled", "True")
            ]
            starts = [  # a restart in place keeps the first start in lastState
                state["startedAt"]
                for c in containers
                for state in ((c.get("state") or {}) | (c.get("lastState") or {})).values()
                if (state or {}).get("startedAt")
            ]
            rows.append(
                {
                    "name": pod["metadata"]["name"],
                    "created": pod["metadata"]["creationTimestamp"],
                    "scheduled": scheduled[0] if scheduled else None,
                    "started": min(starts, key=_time) if starts else None,
                    "restarts": sum(c.get("restartCount") or 0 for c in containers),
                }
            )
        return sorted(rows, key=lambda r: _time(r["created"]))


def _gap(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 2)


@dataclass
class Bench:
    """Control plane, volumes, two 8-GPU node agents, LWS, Kueue (a LocalQueue of 16 GPUs) and the
    operator, for the evaluations of `evaluate`."""

    w: Workload
    work: Path
    stack: contextlib.ExitStack

    def __post_init__(self) -> None:
        work, stack, w = self.work, self.stack, self.w
        self.rec = work / "records"
        self.rec.mkdir()
        (work / "groups").mkdir()
        bins = [str(stub_vllm(work / "bin").parent), str(Path(sys.executable).parent), os.environ["PATH"]]
        path = os.pathsep.join(bins)
        cp = stack.enter_context(ControlPlane(work / "control-plane", bin_dir=find_binaries()))
        stack.enter_context(HostPathProvisioner(cp.kubeconfig, work / "volumes"))
        self.agents = []
        for i in range(NODES):
            node = f"group-bench-{i}"
            creds = cp.write_kubeconfig(
                cp.workdir / f"{node}.kubeconfig", f"system:node:{node}", ("system:nodes",)
            )
            agent = NodeAgent(
                creds, cp.kubeconfig, work / node, name=node, gpus=NODE_GPUS, extra_env={"PATH": path}
            )
            self.agents.append(stack.enter_context(agent))
        stack.enter_context(lws.Lws(cp, work / "lws"))  # first: Kueue's LWS integration needs its API
        stack.enter_context(kueue.Kueue(cp, work / "kueue", frameworks=("batch/job", kueue.LWS_FRAMEWORK)))
        self.api = cp.api_client()
        stack.callback(self.api.close)
        apply_crd(self.api)
        core = CoreV1Api(self.api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_until(lambda: core.read_namespaced_service_account("default", NAMESPACE), 30, "default SA")
        queues = Kueues(self.api, NAMESPACE)
        self.queue = queues.local_queue(queues.cluster_queue(queues.flavor(), gpus=NODES * NODE_GPUS))
        mirror = os.environ.get("NEJUMI_DATA_MIRROR", str(REPO.parent / "shared" / "datasets" / "raw"))
        evaluator_env = {
            "NEJUMI_DATA_MIRROR": mirror,
            "NEJUMI_CACHE_DIR": str(work / "nejumi-cache"),
            "HF_HUB_OFFLINE": "1",
            "WANDB_MODE": "offline",
            "PATH": path,
            "NEJUMI_STUB_RECORD": str(self.rec),
            "NEJUMI_STUB_GROUPS": str(work / "groups"),
            "NEJUMI_STUB_DOWNLOAD_S": str(w.load_s),
            "NEJUMI_STUB_CAPACITY": str(w.capacity),
            "NEJUMI_STUB_LATENCY_S": str(w.latency_s),
        }
        if os.environ.get("PYTHONPATH"):
            evaluator_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        operator_log = work / "operator.log"
        stack.enter_context(
            _operator(cp.kubeconfig, operator_log, evaluator_env, staged=True, namespace=NAMESPACE)
        )

    def evaluate(self, name: str, kill: bool) -> dict[str, Any]:
        """One evaluation to its end and its group's deletion (`kill`: a worker killed mid-generation)."""
        w, group, killed = self.w, group_name(name, 1), None
        samples = w.samples + (2 * w.kill_after if kill else 0)  # still generating well after the kill
        custom, served = CustomObjectsApi(self.api), {"records": self.rec}  # as test_multi_node's `log` reads

        def finished() -> dict[str, Any] | None:
            found = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            status = found.get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        with GroupWatch(self.api, group) as watch:
            created = time.time()
            body = spec(model_folder(self.work, name), self.queue, NODES, samples)
            create_evaluation(
                self.api, NAMESPACE, name, body | {"generation": {"concurrency": w.concurrency}}
            )
            if kill:
                wait_until(lambda: len(log(served, name, "reply")) >= w.kill_after, 600, "replies")
                worker = f"{group}-0-1"
                agent = next(a for a in self.agents if a.pids(NAMESPACE, worker))
                killed = time.time()
                for pid in agent.pids(NAMESPACE, worker):
                    os.kill(pid, signal.SIGKILL)  # the node's server dies: the group cannot go on
            status = wait_until(finished, 900, f"evaluation {name} to finish")
            done = time.time()
            if status["phase"] != "Succeeded":
                raise RuntimeError(f"{name} failed: {status.get('reason')}: {status.get('message')}")
            wait_until(lambda: watch.gone_seen, 120, f"{group}'s pods and Workload to go")
        readies = sorted(e["ready"] for e in log(served, name, "ready"))
        last_reply = max(e["reply"] for e in log(served, name, "reply"))
        requests = [e["prompt"] for e in log(served, name, "request")]
        release = watch.release
        serve_start = json.loads(release["summary"])["runtimeSeconds"]["serve_start"]  # the leader's own
        admitted = _time(watch.admitted[0])
        figures = {
            "admitted": watch.admitted[0],
            "admission_to_ready_s": _gap(admitted, readies[0]),
            "ready_over_load": round((readies[0] - admitted) / w.load_s, 2),
            "admission_to_server_start_s": _gap(admitted, readies[0] - serve_start),
            "server_start_to_ready_s": serve_start,
            "admission_seen_to_ready_s": _gap(watch.admitted_seen, readies[0]),
            "last_reply_to_leader_end_s": _gap(last_reply, _time(release["completion_time"])),
            "last_reply_to_released_seen_s": _gap(last_reply, watch.released_seen),
            "released_to_gone_s": _gap(watch.released_seen, watch.gone_seen),
            "last_reply_to_gone_s": _gap(last_reply, watch.gone_seen),
            "requests": len(requests),
            "distinct_prompts": len(set(requests)),
            "resent": len(requests) - len(set(requests)),
            "samples": samples,
            "concurrency": w.concurrency,
            "wall_s": round(done - created, 1),
            "release": release,
            "admissions": watch.admitted,
            "pods": watch.timeline(),
        }
        if killed is not None:
            after = [t for t in readies if t > killed]
            figures |= {
                "killed_after_replies": len([e for e in log(served, name, "reply") if e["reply"] <= killed]),
                "kill_to_new_ready_s": _gap(killed, after[0] if after else None),
                "kill_to_succeeded_s": _gap(killed, done),
            }
        return figures


def report(w: Workload, clean: dict[str, Any], lost: dict[str, Any], wall: float) -> None:
    print(f"\nA {NODES}-node group (TP {NODE_GPUS} × PP {NODES}) on the stubs ({asdict(w)}; {wall:.0f} s)")
    rows = [
        (f"admission → server ready (×{clean['ready_over_load']} the load)", "admission_to_ready_s"),
        ("  admission → the leader starts vllm (pods, evaluator)", "admission_to_server_start_s"),
        (f"  vllm start → ready (load {w.load_s} s, workers joining)", "server_start_to_ready_s"),
        ("admission seen by the poll → server ready", "admission_seen_to_ready_s"),
        ("last reply → the leader's end (release record)", "last_reply_to_leader_end_s"),
        (f"last reply → replicas 0 seen (debounce {syncs.QUIET_SECONDS} s)", "last_reply_to_released_seen_s"),
        ("replicas 0 → pods and Workload gone", "released_to_gone_s"),
        ("last reply → group gone", "last_reply_to_gone_s"),
    ]
    for label, key in rows:
        print(f"  {label:60} {clean[key]:>7} s")
    print(f"A worker killed after {lost['killed_after_replies']} replies:")
    print(f"  {'kill → the new group server ready':60} {lost['kill_to_new_ready_s']:>7} s")
    print(f"  {'kill → Succeeded':60} {lost['kill_to_succeeded_s']:>7} s")
    print(
        f"  {lost['requests']} requests, {lost['distinct_prompts']} distinct prompts: "
        f"{lost['resent']} resent (concurrency {w.concurrency}; without the loss: {clean['resent']})"
    )
    print(
        "Object stamps have 1 s resolution (admission, the release record). The release waits for a "
        f"status sync: {syncs.QUIET_SECONDS} s after the leader's outcome event, at most "
        f"{syncs.MAX_DELAY_SECONDS} s."
    )
    print(f"load average: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores: figures stretch with other work)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.group_bench", description=__doc__.splitlines()[0]
    )
    d = Workload()
    parser.add_argument("--load", type=float, default=d.load_s, help="the stub's load time, seconds")
    parser.add_argument("--capacity", type=int, default=d.capacity)
    parser.add_argument("--latency", type=float, default=d.latency_s, help="the stub's per-request seconds")
    parser.add_argument("--samples", type=int, default=d.samples, help="jamp test samples")
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help="generation.concurrency")
    parser.add_argument("--kill-after", type=int, default=d.kill_after, help="replies before the kill")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    w = Workload(args.load, args.capacity, args.latency, args.samples, args.concurrency, args.kill_after)
    work = Path(tempfile.mkdtemp(prefix="group-bench-"))
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            bench = Bench(w, work, stack)
            clean, lost = bench.evaluate("big", kill=False), bench.evaluate("fragile", kill=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(w, clean, lost, time.monotonic() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"workload": asdict(w), "clean": clean, "worker_lost": lost}, indent=2) + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
