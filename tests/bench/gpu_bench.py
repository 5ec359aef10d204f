"""GPUs held vs GPUs serving, per evaluation, on the test cluster: one pod vs the stages (issue 21).

A GPU on a shared cluster is the scarce thing, and what the scheduler and Kueue count is the pod
that holds it, from the moment it is scheduled to its end, whatever runs inside. This bench runs
real evaluations of a served model through the real operator (its own process) on the test control
plane: a node agent with a GPU, a Hugging Face Hub double serving the model's weights at a known
rate (`tests.fixtures.hub_server`: the download takes a known time), a stub `vllm serve`
(`tests/fixtures/served_model.py`: downloads the weights as vLLM does, then serves with a known
capacity and records when it was ready and when each reply left) and a judge of known latency
(`capacity_server.CapacityJudge`). For each design it reports:

- **GPU-held seconds**: each pod asking for GPUs, from its scheduling to its container's end, × its
  GPUs (the pods' own timestamps, second resolution), summed;
- **serving seconds**: the stub server ready → its last reply (its own record);
- their **ratio** (1: GPUs held only while a model is served), and the bytes the Hub sent.

The workload is set so that the download and the judge tail each take about as long as the
generation, so one pod holding its GPU throughout (`evaluator.stages: false`, the design before
stages) holds it about three times as long as it serves; the stages (fetch and judge in CPU pods,
`api.v1alpha1.stages`) hold it only while serving. The staged runs use the shared model cache (the
chart's `evaluator.modelCache`); a second evaluation of the same model follows the first: what it
downloads is what the cache saves.

    python -m tests.bench.gpu_bench [--download 20] [--latency 1.0] [--capacity 8] [--samples 10]
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
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.served import model_folder, stub_vllm

NAMESPACE = "gpu-bench"
NODE = "gpu-bench-node"
RESULTS = REPO / ".cache" / "bench" / "gpu.json"
MODEL = "bench/stub-model"
RATE = 1_000_000
"""The Hub double's bytes per second: the weights file is `download_s × RATE` bytes."""


@dataclass
class Workload:
    download_s: float = 60.0
    capacity: int = 8
    latency_s: float = 1.0
    samples: int = 30
    """jaster test samples per dataset (16 datasets): with MT-bench's 16 turns, the requests the
    served model answers; ceil(requests / capacity) × latency is the least generation time."""
    judge_latency_s: float = 3.75
    """The judge answers one request at a time: 8 questions × 2 turns × this (60 s) is the judge
    tail, about the generation's 62 s (496 requests / 8 slots × 1 s) and the download's 60 s. (A
    minute each, so that a pod's own start and stop — a few seconds of process start, in either
    design — do not hide what the design changes.)"""
    gpus: int = 1


@dataclass
class Measured:
    design: str
    gpus: int
    gpu_pods: int
    gpu_held_s: float
    server_ready: float
    last_reply: float
    serving_s: float
    replies: int
    ratio: float
    downloaded_bytes: int = 0
    wall_s: float = 0.0


def _gpus(pod: dict[str, Any]) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        total += int(str(limits.get("nvidia.com/gpu", 0)))
    return total


def gpu_held_vs_serving(
    design: str, pods: Sequence[dict[str, Any]], record: list[dict[str, float]]
) -> Measured:
    """The figures from the evaluation's pods (as the API returns them: only those asking for GPUs
    count) and the stub server's record."""
    held = 0.0
    holding = [pod for pod in pods if _gpus(pod)]
    for pod in holding:
        status = pod.get("status") or {}
        scheduled = next(
            c["lastTransitionTime"] for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
        )
        (container,) = [c for c in status.get("containerStatuses") or [] if c.get("name") == "evaluator"]
        finished = container["state"]["terminated"]["finishedAt"]
        held += (_time(finished) - _time(scheduled)) * _gpus(pod)
    ready = min(e["ready"] for e in record if "ready" in e)
    replies = [e["reply"] for e in record if "reply" in e]
    serving = max(replies) - ready if replies else 0.0
    return Measured(
        design=design,
        gpus=max((_gpus(p) for p in holding), default=0),
        gpu_pods=len(holding),
        gpu_held_s=round(held, 1),
        server_ready=ready,
        last_reply=max(replies) if replies else ready,
        serving_s=round(serving, 1),
        replies=len(replies),
        ratio=round(held / serving, 2) if serving > 0 else float("inf"),
    )


def _time(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def spec(judge: str, w: Workload) -> dict[str, Any]:
    return {
        "model": {"name": MODEL, "source": "vllm"},
        "benchmarks": {
            "jaster": {"testSamples": w.samples, "devSamples": 0},
            "mtbench": {"questionsPerCategory": 1, "judge": {"endpoint": judge, "model": "gpt-4-0613"}},
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": w.gpus},
    }


def hub_model(root: Path, w: Workload) -> Path:
    """The model as the Hub double serves it: a config, a chat template and weights of a size the
    download takes `w.download_s` seconds for."""
    folder = model_folder(root, "hub-model")
    with (folder / "model.safetensors").open("wb") as fh:
        fh.truncate(int(w.download_s * RATE))
    return folder


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
def _operator(
    kubeconfig: Path, log: Path, evaluator_env: dict[str, str], staged: bool, namespace: str = NAMESPACE
) -> Iterator[Any]:
    """The operator as its own process, watching `namespace`; with stages, with the shared model
    cache too (`tests.bench.group_bench` runs it too)."""
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
            "NEJUMI_OPERATOR_STAGES": "true" if staged else "false",
            "NEJUMI_OPERATOR_MODEL_CACHE_PVC": "nejumi-model-cache" if staged else "",
        }
    )
    (port,) = free_ports(1)
    argv = [
        sys.executable,
        "-m",
        "nejumi_operator",
        "--namespace",
        namespace,
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
    ]
    proc = Process("operator", argv, log)
    proc.start(tie_to_parent=True, env=env, cwd=REPO)
    try:
        yield proc
    finally:
        proc.stop()


class Bench:
    """One cluster, one Hub double, one judge; an operator per design."""

    def __init__(self, w: Workload, work: Path, stack: contextlib.ExitStack) -> None:
        from tests.fixtures.capacity_server import CapacityJudge
        from tests.fixtures.hub_server import HubServer

        self.w, self.work = w, work
        self.cp, self.api = stack.enter_context(_cluster(work, w, stub_vllm(work / "stub-bin").parent))
        self.judge = stack.enter_context(CapacityJudge(capacity=1, latency_s=w.judge_latency_s))
        self.hub = stack.enter_context(HubServer(rate_bytes_per_s=RATE))
        self.hub.add_repo(MODEL, hub_model(work / "hub", w))

    def run(self, design: str, name: str, staged: bool) -> Measured:
        from kubernetes.client import CoreV1Api, CustomObjectsApi

        from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
        from tests.cluster import wait_until
        from tests.support.kube import create_evaluation

        w = self.w
        record = self.work / f"{name}.jsonl"
        evaluator_env = {
            "NEJUMI_DATA_MIRROR": os.environ.get(
                "NEJUMI_DATA_MIRROR", str(REPO.parent / "shared" / "datasets" / "raw")
            ),
            "NEJUMI_CACHE_DIR": str(self.work / "nejumi-cache"),
            "HF_ENDPOINT": self.hub.endpoint,
            "WANDB_MODE": "offline",
            "NEJUMI_STUB_CAPACITY": str(w.capacity),
            "NEJUMI_STUB_LATENCY_S": str(w.latency_s),
            "NEJUMI_STUB_RECORD": str(record),
        }
        if os.environ.get("PYTHONPATH"):
            evaluator_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        before = self.hub.stats()["bytesServed"]
        started = time.monotonic()
        log = self.work / f"operator-{name}.log"
        with _operator(self.cp.kubeconfig, log, evaluator_env, staged):
            create_evaluation(self.api, NAMESPACE, name, spec(self.judge.base_url, w))
            custom = CustomObjectsApi(self.api)

            def finished() -> dict[str, Any] | None:
                found = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
                status = found.get("status") or {}
                return status if status.get("phase") in ("Succeeded", "Failed") else None

            status = wait_until(finished, 1800, f"evaluation {name} to finish")
        if status["phase"] != "Succeeded":
            raise RuntimeError(f"{name} failed: {status.get('reason')}: {status.get('message')}")
        pods = CoreV1Api(self.api).list_namespaced_pod(
            NAMESPACE, label_selector=f"nejumi.wandb.ai/evaluation={name}"
        )
        events = [
            json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        measured = gpu_held_vs_serving(design, self.api.sanitize_for_serialization(pods.items), events)
        measured.downloaded_bytes = self.hub.stats()["bytesServed"] - before
        measured.wall_s = round(time.monotonic() - started, 1)
        return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.gpu_bench", description=__doc__.splitlines()[0]
    )
    d = Workload()
    parser.add_argument("--download", type=float, default=d.download_s, help="the weights' download, seconds")
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
        with contextlib.ExitStack() as stack:
            bench = Bench(w, work, stack)
            rows = [
                bench.run("one pod (stages off)", "single", staged=False),
                bench.run("stages", "staged", staged=True),
                bench.run("stages, same model again", "again", staged=True),
            ]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nGPU held vs serving (workload {asdict(w)}; {time.monotonic() - started:.0f} s)")
    print(
        f"{'design':28} {'GPU-held s':>11} {'serving s':>10} {'held-serving':>13} {'ratio':>6} "
        f"{'replies':>8} {'downloaded MB':>14} {'wall s':>7}"
    )
    for m in rows:
        print(
            f"{m.design:28} {m.gpu_held_s:>11} {m.serving_s:>10} {m.gpu_held_s - m.serving_s:>13.1f} "
            f"{m.ratio:>6} {m.replies:>8} {m.downloaded_bytes / 1e6:>14.1f} {m.wall_s:>7}"
        )
    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores: figures stretch with other work)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"workload": asdict(w), "designs": [asdict(m) for m in rows]}, indent=2) + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
