"""A model served across nodes (issue 22), end to end: the real operator, the real control plane,
the real Kueue and the real LeaderWorkerSet controller.

A 2-node evaluation runs its fetch and judge stages as Jobs and its serve stage as one
LeaderWorkerSet group: the leader pod runs the evaluator, which starts the stub `vllm serve`
(tests/fixtures/served_model.py) with the group's flags; the worker pod runs the evaluator's
`--join-group`, which becomes the stub's headless worker. The stub leader answers only once every
worker joined it (a rendezvous folder stands in for vLLM's torch.distributed setup: the pods are
local processes, no DNS), and it exits when a worker goes, as vLLM does. It records every request
before answering and every reply, so what was sent twice is counted.

- A 2-node evaluation succeeds; its group was made after the fetch stage and released (no pod, no
  Workload, no GPU) when generation ended; the GPU-seconds are both nodes'.
- 3 nodes asked, quota for 2: Queued with Kueue's own message, no pod of the group started; quota
  freed → admitted whole and serving.
- A worker killed mid-generation: the group restarts (GroupRestarting), the evaluation resumes from
  the response cache and succeeds; only requests in flight were sent again.
- Deleting the evaluation mid-run leaves no group, pod, Service or Workload.
- Preempted by a more urgent workload: Queued/Preempted, readmitted whole, resumed from the cache.
- A leader whose server never becomes ready (a worker that never joins) fails the evaluation after
  its attempts, the message quoting the server's last line; the group is released.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from nejumi_eval.api.v1alpha1.names import GROUP as NEJUMI
from nejumi_eval.api.v1alpha1.names import PLURAL, VERSION
from tests.cluster import NodeAgent, wait_until
from tests.cluster.kueue import API_VERSION as KUEUE_VERSION
from tests.cluster.kueue import GROUP as KUEUE_GROUP
from tests.cluster.lws import API_VERSION as LWS_VERSION
from tests.cluster.lws import GROUP as LWS_GROUP
from tests.cluster.lws import PLURAL as LWS_PLURAL
from tests.cluster.lws import SET_NAME_LABEL
from tests.integration.test_kueue import Kueues, is_true, queued_job
from tests.integration.test_status_truth import HANDLERS, Recorder
from tests.support.kube import create_evaluation as create
from tests.support.served import model_folder, stub_vllm

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

NODE_GPUS = 8  # the node agents' GPUs: one pod of the group per node
TIMEOUT = 240
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def served(operator_env: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The stub `vllm` on every pod's PATH, recording requests and replies in a folder, and the
    rendezvous folder where a group's stub leader and workers find each other."""
    bin_dir = stub_vllm(tmp_path / "bin").parent
    records, groups = tmp_path / "records", tmp_path / "groups"
    records.mkdir()
    groups.mkdir()
    env = json.loads(os.environ["NEJUMI_OPERATOR_EVALUATOR_ENV"])
    env |= {
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]),
        "NEJUMI_STUB_RECORD": str(records),
        "NEJUMI_STUB_GROUPS": str(groups),
        "NEJUMI_STUB_CAPACITY": "2",
        "NEJUMI_STUB_LATENCY_S": "0.2",
    }
    operator_env.setenv("NEJUMI_OPERATOR_EVALUATOR_ENV", json.dumps(env))
    return {"root": tmp_path, "records": records}


def spec(folder: Path, queue: str, nodes: int = 2, samples: int = 6) -> dict[str, Any]:
    """A model too large for one node: tensor-parallel over a node's GPUs, pipeline-parallel across
    `nodes` nodes; jaster only (its judge stage scores), two requests in flight."""
    return {
        "model": {
            "name": str(folder),
            "source": "vllm",
            "vllm": {"tensorParallelSize": NODE_GPUS, "pipelineParallelSize": nodes},
        },
        "benchmarks": {
            "jaster": {"datasets": ["jamp"], "testSamples": samples, "devSamples": 0},
            "mtbench": {"enabled": False},
        },
        "generation": {"concurrency": 2},
        "wandb": {"enabled": False},
        "resources": {"gpus": NODE_GPUS, "nodes": nodes, "tolerations": [GPU_TOLERATION]},
        "queueName": queue,
    }


def log(served: dict[str, Any], model: str, kind: str) -> list[dict[str, Any]]:
    """The stub's record of `model`, every server of it together: the `request`s as they arrived
    (before answering) or the `reply`s, each with a digest of what was asked (`prompt`)."""
    name = f"{model}.requests.jsonl" if kind == "request" else f"{model}.jsonl"
    path = served["records"] / name
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [event for event in map(json.loads, lines) if kind in event]


class Cluster:
    """What a group leaves in the namespace, read as the API server has it."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.core, self.batch, self.custom = CoreV1Api(api), BatchV1Api(api), CustomObjectsApi(api)
        self.namespace = namespace

    def group(self, name: str) -> dict[str, Any] | None:
        items = self.custom.list_namespaced_custom_object(LWS_GROUP, LWS_VERSION, self.namespace, LWS_PLURAL)
        return next((g for g in items["items"] if g["metadata"]["name"] == name), None)

    def pods(self, group: str) -> list[Any]:
        selector = f"{SET_NAME_LABEL}={group}"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def workloads(self) -> list[str]:
        items = self.custom.list_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, self.namespace, "workloads"
        )
        return [
            wl["metadata"]["name"]
            for wl in items["items"]
            if any(ref["kind"] == "LeaderWorkerSet" for ref in wl["metadata"].get("ownerReferences", []))
        ]

    def leftovers(self) -> list[str]:
        items = self.custom.list_namespaced_custom_object(LWS_GROUP, LWS_VERSION, self.namespace, LWS_PLURAL)
        left = [f"LeaderWorkerSet/{g['metadata']['name']}" for g in items["items"]]
        left += [f"Job/{j.metadata.name}" for j in self.batch.list_namespaced_job(self.namespace).items]
        left += [f"Pod/{p.metadata.name}" for p in self.core.list_namespaced_pod(self.namespace).items]
        left += [
            f"Service/{s.metadata.name}" for s in self.core.list_namespaced_service(self.namespace).items
        ]
        left += [f"Workload/{w}" for w in self.workloads()]
        return left


@contextlib.contextmanager
def operating(k8s_client: ApiClient, namespace: str) -> Iterator[Recorder]:
    """The operator running on `namespace` (kopf's runner), every status version recorded; the
    operator must have ended cleanly."""
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with (
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as runner,
    ):
        yield seen
    assert (runner.exit_code, runner.exception) == (0, None), runner.output


@pytest.fixture
def queue(queues: Kueues) -> str:
    """A LocalQueue whose ClusterQueue has two nodes' GPUs of quota."""
    return queues.local_queue(queues.cluster_queue(queues.flavor(), gpus=2 * NODE_GPUS))


def test_a_two_node_evaluation_succeeds_and_its_group_held_the_gpus_only_while_serving(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    served: dict[str, Any],
    queue: str,
) -> None:
    cluster = Cluster(k8s_client, namespace)
    folder = model_folder(served["root"], "big")
    with operating(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "big", spec(folder, queue))
        serving = wait_until(
            lambda: (
                (s := seen.latest.get("big") or {}).get("stage") == "serve"
                and s.get("reason") == "JobRunning"
                and s
            ),
            TIMEOUT,
            f"the group serving (seen {seen.seen.get('big')})",
        )
        pods = cluster.pods("big-g1-serve")
        nodes = {p.metadata.name: p.spec.node_name for p in pods}
        done = seen.wait_for("big", "Succeeded", "EvaluationCompleted", timeout=TIMEOUT)

    # One pod per node, the leader running the evaluator; the message says where and how many nodes.
    assert sorted(nodes) == ["big-g1-serve-0", "big-g1-serve-0-1"]
    assert len(set(nodes.values())) == 2, nodes
    assert "the model server across the 2 nodes of LeaderWorkerSet big-g1-serve" in serving["message"] or (
        "serving the model across the 2 nodes of LeaderWorkerSet big-g1-serve" in serving["message"]
    ), serving["message"]
    # Every question answered once (the worker joined: the stub leader serves only then).
    assert len(log(served, "big", "reply")) == len(log(served, "big", "request")) == 6

    # The stages: fetch and judge are Jobs; serve was the group, held for both nodes' GPUs.
    assert [(s["name"], s["phase"]) for s in done["stages"]] == [
        ("fetch", "Succeeded"),
        ("serve", "Succeeded"),
        ("judge", "Succeeded"),
    ]
    serve = done["stages"][1]
    assert serve["jobName"] == "big-g1-serve" and serve["gpus"] == 2 * NODE_GPUS
    assert done["runtime"]["gpuSeconds"] == serve["gpuSeconds"] > 0
    jobs = {j.metadata.name: j for j in cluster.batch.list_namespaced_job(namespace).items}
    assert sorted(jobs) == ["big-g1-fetch", "big-g1-judge"]

    # The group existed only during the GPU stage: made after the fetch stage completed, released
    # (no replica, its record on it) before the judge stage started, and nothing of it is left.
    group = cluster.group("big-g1-serve")
    assert group is not None and group["spec"]["replicas"] == 0
    release = json.loads(group["metadata"]["annotations"]["nejumi.wandb.ai/released"])
    assert (release["succeeded"], release["reason"], release["exit_code"]) == (True, "Completed", 0)
    fetched = jobs["big-g1-fetch"].status.completion_time
    assert fetched.strftime("%Y-%m-%dT%H:%M:%SZ") <= group["metadata"]["creationTimestamp"]
    assert release["completion_time"] <= jobs["big-g1-judge"].status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    wait_until(lambda: not cluster.pods("big-g1-serve") and not cluster.workloads(), 60, "the group to go")


def test_a_group_without_quota_for_every_node_is_queued_whole_then_admitted(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    served: dict[str, Any],
    queues: Kueues,
    tmp_path: Path,
) -> None:
    # Three nodes' quota, one held by another Job: a group of three gets quota for two pods only.
    node_agent.set_gpus(2 * NODE_GPUS)
    flavor = queues.flavor()
    queue = queues.local_queue(queues.cluster_queue(flavor, gpus=3 * NODE_GPUS))
    release = tmp_path / "release-blocker"
    cluster = Cluster(k8s_client, namespace)
    cluster.batch.create_namespaced_job(namespace, queued_job("blocker", queue, NODE_GPUS, release))
    wait_until(lambda: is_true(queues.workload("blocker"), "Admitted"), TIMEOUT, "the blocker admitted")
    folder = model_folder(served["root"], "huge")
    with operating(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "huge", spec(folder, queue, nodes=3))
        queued = wait_until(
            lambda: (
                (s := seen.latest.get("huge") or {}).get("stage") == "serve"
                and s.get("phase") == "Queued"
                and "Kueue:" in (s.get("message") or "")
                and s
            ),
            TIMEOUT,
            f"the group queued with Kueue's reason (seen {seen.seen.get('huge')})",
        )
        # Nothing of the group started: every pod that exists waits at Kueue's gate, on no node.
        for pod in cluster.pods("huge-g1-serve"):
            assert not pod.spec.node_name and pod.spec.scheduling_gates, pod.metadata.name
        release.touch()  # the other Job ends: its quota is free
        running = wait_until(
            lambda: (s := seen.latest.get("huge") or {}).get("reason") == "JobRunning" and s,
            TIMEOUT,
            f"the group admitted whole and serving (seen {seen.seen.get('huge')})",
        )
        done = seen.wait_for("huge", "Succeeded", "EvaluationCompleted", timeout=TIMEOUT)
    assert queued["reason"] == "Suspended"
    assert queued["message"].startswith(
        "the serve stage: LeaderWorkerSet huge-g1-serve (3 nodes, admitted whole or not at all) is waiting "
        f"for admission in LocalQueue {queue}; Kueue: Pending: couldn't assign flavors to pod set worker: "
        f"insufficient unused quota for nvidia.com/gpu in flavor {flavor}, {NODE_GPUS} more needed"
    ), queued["message"]
    assert "across the 3 nodes" in running["message"]
    assert done["stages"][1]["gpus"] == 3 * NODE_GPUS
    # Queued, then running: never a partly started group shown as running.
    phases = [phase for phase, _ in seen.seen["huge"]]
    assert phases.index("Queued") < phases.index("Running") if "Queued" in phases else False, seen.seen[
        "huge"
    ]


def test_a_worker_lost_mid_generation_restarts_the_group_which_resumes_from_the_cache(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    served: dict[str, Any],
    queue: str,
) -> None:
    folder = model_folder(served["root"], "fragile")
    samples = 40
    with operating(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "fragile", spec(folder, queue, samples=samples))
        wait_until(lambda: len(log(served, "fragile", "reply")) >= 6, TIMEOUT, "generation under way")
        worker = "fragile-g1-serve-0-1"
        agent = next(a for a in (node_agent, second_node) if a.pids(namespace, worker))
        answered = {e["prompt"] for e in log(served, "fragile", "reply")}
        for pid in agent.pids(namespace, worker):
            os.kill(pid, signal.SIGKILL)  # the node's server dies: vLLM's group cannot go on without it
        done = seen.wait_for("fragile", "Succeeded", "EvaluationCompleted", timeout=TIMEOUT)

    reasons = [reason for _, reason in seen.seen["fragile"]]
    assert "GroupRestarting" in reasons, seen.seen["fragile"]
    assert reasons.index("GroupRestarting") < len(reasons) - 1
    # Resumed, not redone: what was answered before the loss was never asked again; only requests in
    # flight then (at most the 2 the client keeps in flight) were sent a second time.
    requests = [e["prompt"] for e in log(served, "fragile", "request")]
    assert len(set(requests)) == samples
    again = len(requests) - samples
    assert 0 <= again <= 2, again
    assert not [p for p in requests[len(answered) + 2 :] if p in answered]
    degraded = next(c for c in done["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False", degraded  # every question answered: no failure scored
    # The attempt the loss stopped: failed if the leader saw its server die first (exit 3, counted:
    # the next is attempt 2 of 3), interrupted if the group's SIGTERM came first (not counted).
    group = Cluster(k8s_client, namespace).group("fragile-g1-serve")
    release = json.loads((group or {})["metadata"]["annotations"]["nejumi.wandb.ai/released"])
    assert release["reason"] == "Completed" and release["attempt"] in (1, 2), release


def test_deleting_a_multi_node_evaluation_mid_run_leaves_nothing(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    served: dict[str, Any],
    queue: str,
) -> None:
    cluster = Cluster(k8s_client, namespace)
    folder = model_folder(served["root"], "doomed")
    with operating(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "doomed", spec(folder, queue, samples=60))
        wait_until(lambda: len(log(served, "doomed", "reply")) >= 3, TIMEOUT, f"serving (seen {seen.seen})")
        assert cluster.group("doomed-g1-serve") is not None and len(cluster.pods("doomed-g1-serve")) == 2
        cluster.custom.delete_namespaced_custom_object(NEJUMI, VERSION, namespace, PLURAL, "doomed")
        wait_until(lambda: not cluster.leftovers(), 120, "the group, its pods, Service and Workload to go")
        count = len(log(served, "doomed", "reply"))
    assert count < 60  # stopped mid-generation, not run to its end


def test_a_leader_never_ready_fails_quoting_its_servers_last_line_and_releases_the_group(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    served: dict[str, Any],
    queue: str,
    operator_env: pytest.MonkeyPatch,
) -> None:
    env = json.loads(os.environ["NEJUMI_OPERATOR_EVALUATOR_ENV"])
    operator_env.setenv(
        "NEJUMI_OPERATOR_EVALUATOR_ENV", json.dumps(env | {"NEJUMI_STUB_WORKERS_NEVER_JOIN": "1"})
    )
    operator_env.setenv("NEJUMI_OPERATOR_BACKOFF_LIMIT", "1")  # two attempts of the server's 10 s timeout
    cluster = Cluster(k8s_client, namespace)
    folder = model_folder(served["root"], "lonely")
    lonely = spec(folder, queue)
    lonely["model"]["vllm"]["startupTimeoutSeconds"] = 10
    with operating(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "lonely", lonely)
        failed = seen.wait_for("lonely", "Failed", None, timeout=TIMEOUT)
        wait_until(
            lambda: not cluster.pods("lonely-g1-serve") and not cluster.workloads(), 60, "the group to go"
        )
    assert failed["reason"] == "InfrastructureFailure", failed
    # The server's last line ends the message (a long one is cut at its start, never at its end).
    assert failed["message"].endswith("vllm (stub): waiting for workers: 0 of 1 joined"), failed["message"]
    succeeded = next(c for c in failed["conditions"] if c["type"] == "Succeeded")
    assert succeeded["message"] == failed["message"]
    reasons = [reason for _, reason in seen.seen["lonely"]]
    assert "GroupRestarting" in reasons, seen.seen["lonely"]  # the first attempt failed, the group restarted
    group = cluster.group("lonely-g1-serve")
    release = json.loads((group or {})["metadata"]["annotations"]["nejumi.wandb.ai/released"])
    assert (release["succeeded"], release["exit_code"], release["attempt"]) == (False, 3, 2), release
    assert [s["name"] for s in failed["stages"]] == ["fetch", "serve"]  # no judge stage after it
    assert not log(served, "lonely", "request")  # nothing was served


def test_a_preempted_group_is_queued_then_readmitted_whole_and_resumes_from_the_cache(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    served: dict[str, Any],
    queues: Kueues,
    tmp_path: Path,
) -> None:
    urgent = queues.priority_class("urgent", 1000)
    flavor = queues.flavor()
    cluster_queue = queues.cluster_queue(
        flavor, gpus=2 * NODE_GPUS, preemption={"withinClusterQueue": "LowerPriority"}
    )
    queue = queues.local_queue(cluster_queue)
    cluster = Cluster(k8s_client, namespace)
    folder = model_folder(served["root"], "background")
    samples, release = 40, tmp_path / "release-urgent"
    with operating(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "background", spec(folder, queue, samples=samples))
        wait_until(lambda: len(log(served, "background", "reply")) >= 6, TIMEOUT, "the group answering")
        # A more urgent workload needs one node's GPUs: Kueue evicts the whole group to admit it.
        cluster.batch.create_namespaced_job(
            namespace, queued_job("urgent", queue, NODE_GPUS, release, urgent)
        )
        preempted = seen.wait_for("background", "Queued", "Preempted", timeout=TIMEOUT)
        wait_until(
            lambda: not [p for p in cluster.pods("background-g1-serve") if p.spec.node_name], 60, "evicted"
        )
        before = len(log(served, "background", "reply"))
        release.touch()  # the urgent Job ends: the group is readmitted whole
        done = seen.wait_for("background", "Succeeded", "EvaluationCompleted", timeout=TIMEOUT)
    assert preempted["stage"] == "serve", preempted
    assert preempted["message"].startswith(
        "the serve stage: Kueue evicted LeaderWorkerSet background-g1-serve ("
    ), preempted["message"]
    assert "the group resumes from the workspace's response cache" in preempted["message"]
    assert "Failed" not in [phase for phase, _ in seen.seen["background"]]
    # Resumed: every question asked, at most the 2 in flight at the eviction asked twice.
    requests = [e["prompt"] for e in log(served, "background", "request")]
    assert before < samples and len(set(requests)) == samples and len(requests) - samples <= 2
    assert [s["name"] for s in done["stages"]] == ["fetch", "serve", "judge"]
