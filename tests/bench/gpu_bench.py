"""GPUs held vs GPUs serving, per evaluation, on the test cluster (issue 21's baseline).

A GPU on a shared cluster is the scarce thing, and what the scheduler and Kueue count is the pod
that holds it, from the moment it is scheduled to its end, whatever runs inside. This bench runs
one real evaluation of a served model through the real operator on the test control plane (a node
agent with GPUs; a stub `vllm serve`, `tests/fixtures/served_model.py`, that "downloads" its
weights for a known time and then serves with a known capacity; a judge of known latency,
`capacity_server.CapacityJudge`) and reports:

- **GPU-held seconds**: the evaluator pod's scheduling → its container's end, × its GPUs (the pod's
  own timestamps, second resolution);
- **serving seconds**: the stub server ready → its last reply (its own record);
- their **ratio**: 1 would be GPUs held only while a model is served. The workload is set so that
  the download and the judge tail each take about as long as the generation, so the single-pod
  design holds its GPU about three times as long as it serves (by construction: measured here).

    python -m tests.bench.gpu_bench [--download 20] [--latency 1.0] [--capacity 8] [--samples 10]

Today's single-pod design is the baseline; the staged design (issue 21: fetch and judge in CPU
pods, only serve + generate holding GPUs) will be measured beside it by the same bench.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.served import model_folder, stub_vllm

NAMESPACE = "gpu-bench"
NODE = "gpu-bench-node"
RESULTS = REPO / ".cache" / "bench" / "gpu.json"


@dataclass
class Workload:
    download_s: float = 20.0
    capacity: int = 8
    latency_s: float = 1.0
    samples: int = 10
    """jaster test samples per dataset (16 datasets): with MT-bench's 16 turns, the requests the
    served model answers; ceil(requests / capacity) × latency is the least generation time."""
    judge_latency_s: float = 1.4
    """The judge answers one request at a time: 8 questions × 2 turns × this (22.4 s) is the judge
    tail, about the generation's 22 s (176 requests / 8 slots × 1 s) and the download's 20 s."""
    gpus: int = 1


@dataclass
class Measured:
    design: str
    gpus: int
    pod_scheduled: str
    pod_finished: str
    gpu_held_s: float
    server_ready: float
    last_reply: float
    serving_s: float
    replies: int
    ratio: float


def gpu_held_vs_serving(
    design: str, pod: dict[str, Any], record: list[dict[str, float]], gpus: int
) -> Measured:
    """The figures from the evaluator pod (as the API returns it) and the stub server's record."""
    status = pod.get("status") or {}
    scheduled = next(
        c["lastTransitionTime"] for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
    )
    (container,) = [c for c in status.get("containerStatuses") or [] if c.get("name") == "evaluator"]
    finished = container["state"]["terminated"]["finishedAt"]
    held = (_time(finished) - _time(scheduled)) * gpus
    ready = min(e["ready"] for e in record if "ready" in e)
    replies = [e["reply"] for e in record if "reply" in e]
    serving = max(replies) - ready if replies else 0.0
    return Measured(
        design=design,
        gpus=gpus,
        pod_scheduled=scheduled,
        pod_finished=finished,
        gpu_held_s=round(held, 1),
        server_ready=ready,
        last_reply=max(replies) if replies else ready,
        serving_s=round(serving, 1),
        replies=len(replies),
        ratio=round(held / serving, 2) if serving > 0 else float("inf"),
    )


def _time(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def spec(model: Path, judge: str, w: Workload) -> dict[str, Any]:
    return {
        "model": {"name": str(model), "source": "vllm"},
        "benchmarks": {
            "jaster": {"testSamples": w.samples, "devSamples": 0},
            "mtbench": {"questionsPerCategory": 1, "judge": {"endpoint": judge, "model": "gpt-4-0613"}},
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": w.gpus},
    }


@contextlib.contextmanager
def _cluster(work: Path, w: Workload, stub_bin: Path) -> Iterator[Any]:
    from kubernetes.client import CoreV1Api

    from tests.cluster import ControlPlane, NodeAgent, find_binaries, wait_until
    from tests.cluster.provisioner import HostPathProvisioner
    from tests.support.kube import apply_crd

    with contextlib.ExitStack() as stack:
        cp = ControlPlane(work / "control-plane", bin_dir=find_binaries())
        stack.enter_context(cp)
        stack.enter_context(HostPathProvisioner(cp.kubeconfig, work / "volumes"))
        node_kubeconfig = cp.write_kubeconfig(
            cp.workdir / "node.kubeconfig", f"system:node:{NODE}", ("system:nodes",)
        )
        path = os.pathsep.join([str(stub_bin), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        agent = NodeAgent(
            node_kubeconfig, cp.kubeconfig, work / "pods", name=NODE, gpus=w.gpus, extra_env={"PATH": path}
        )
        stack.enter_context(agent)
        api = cp.api_client()
        stack.callback(api.close)
        apply_crd(api)
        core = CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_until(lambda: core.read_namespaced_service_account("default", NAMESPACE), 30, "default SA")
        yield cp, api


@contextlib.contextmanager
def _operator(kubeconfig: Path, work: Path, evaluator_env: dict[str, str]) -> Iterator[Any]:
    from tests.cluster.controlplane import Process, free_ports

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEJUMI_OPERATOR_")}
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "NEJUMI_OPERATOR_EVALUATOR_COMMAND": json.dumps(
                [str(Path(sys.executable).parent / "nejumi-eval"), "run"]
            ),
            "NEJUMI_OPERATOR_EVALUATOR_ENV": json.dumps(evaluator_env),
            "NEJUMI_OPERATOR_RESYNC_SECONDS": "5",
        }
    )
    (port,) = free_ports(1)
    argv = [
        sys.executable,
        "-m",
        "nejumi_operator",
        "--namespace",
        NAMESPACE,
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
    ]
    proc = Process("operator", argv, work / "operator.log")
    proc.start(tie_to_parent=True, env=env, cwd=REPO)
    try:
        yield proc
    finally:
        proc.stop()


def run_single_pod(w: Workload, work: Path) -> Measured:
    """Today's design: one pod downloads, serves, generates and judges, holding its GPUs throughout."""
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
    from tests.cluster import wait_until
    from tests.fixtures.capacity_server import CapacityJudge
    from tests.support.kube import create_evaluation

    record = work / "served.jsonl"
    model = model_folder(work)
    with contextlib.ExitStack() as stack:
        cp, api = stack.enter_context(_cluster(work, w, stub_vllm(work / "stub-bin").parent))
        judge = stack.enter_context(CapacityJudge(capacity=1, latency_s=w.judge_latency_s))
        evaluator_env = {
            "NEJUMI_DATA_MIRROR": os.environ.get(
                "NEJUMI_DATA_MIRROR", str(REPO.parent / "shared" / "datasets" / "raw")
            ),
            "NEJUMI_CACHE_DIR": str(work / "nejumi-cache"),
            "HF_HUB_OFFLINE": "1",
            "WANDB_MODE": "offline",
            "NEJUMI_STUB_DOWNLOAD_S": str(w.download_s),
            "NEJUMI_STUB_CAPACITY": str(w.capacity),
            "NEJUMI_STUB_LATENCY_S": str(w.latency_s),
            "NEJUMI_STUB_RECORD": str(record),
        }
        if os.environ.get("PYTHONPATH"):
            evaluator_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        stack.enter_context(_operator(cp.kubeconfig, work, evaluator_env))
        create_evaluation(api, NAMESPACE, "baseline", spec(model, judge.base_url, w))
        custom = CustomObjectsApi(api)

        def finished() -> dict[str, Any] | None:
            status = (
                custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "baseline").get(
                    "status"
                )
                or {}
            )
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status = wait_until(finished, 1800, "the evaluation to finish")
        if status["phase"] != "Succeeded":
            raise RuntimeError(f"the evaluation failed: {status.get('reason')}: {status.get('message')}")
        (pod,) = CoreV1Api(api).list_namespaced_pod(NAMESPACE).items
        events = [
            json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        return gpu_held_vs_serving("single pod (today)", api.sanitize_for_serialization(pod), events, w.gpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.gpu_bench", description=__doc__.splitlines()[0]
    )
    d = Workload()
    parser.add_argument(
        "--download", type=float, default=d.download_s, help="the stub's weight download, seconds"
    )
    parser.add_argument("--capacity", type=int, default=d.capacity)
    parser.add_argument(
        "--latency", type=float, default=d.latency_s, help="the stub model's per-request seconds"
    )
    parser.add_argument("--samples", type=int, default=d.samples, help="jaster test samples per dataset")
    parser.add_argument("--judge-latency", type=float, default=d.judge_latency_s)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    w = Workload(args.download, args.capacity, args.latency, args.samples, args.judge_latency)
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    started = time.monotonic()
    try:
        baseline = run_single_pod(w, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nGPU held vs serving (workload {asdict(w)}; {time.monotonic() - started:.0f} s)")
    print(f"{'design':28} {'GPU-held s':>11} {'serving s':>10} {'ratio':>6} {'replies':>8}")
    b = baseline
    print(f"{b.design:28} {b.gpu_held_s:>11} {b.serving_s:>10} {b.ratio:>6} {b.replies:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"workload": asdict(w), "designs": [asdict(baseline)]}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
