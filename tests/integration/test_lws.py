"""The real LeaderWorkerSet and Kueue on the test control plane: a group admitted whole.

These pin the behaviour a model larger than one node will be served on (issue 22), against the
genuine managers and webhooks (``tests/cluster/lws.py``, ``tests/cluster/kueue.py`` with Kueue's
LWS integration): a LeaderWorkerSet labelled with a LocalQueue becomes one Workload per group, which
Kueue admits whole or not at all; until then the group's pods exist but are gated (nothing is bound
to a node, nothing runs), and the Workload carries Kueue's own reason and message. Admitted, the
leader and its workers run on the node agents with LWS's group environment. Deleting the
LeaderWorkerSet removes every pod and the Workload.

Each pod asks for a whole node's GPUs (8), so a group of two spans both session nodes. The pods'
processes write their environment to a file and then serve until they are stopped, as a model
server would; no assertion depends on timing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from tests.cluster import GPU_RESOURCE, NodeAgent, wait_until
from tests.cluster.kueue import API_VERSION as KUEUE_VERSION
from tests.cluster.kueue import GROUP as KUEUE_GROUP
from tests.cluster.kueue import LWS_FRAMEWORK, QUEUE_LABEL
from tests.cluster.lws import (
    API_VERSION,
    GROUP,
    GROUP_INDEX_LABEL,
    GROUP_SIZE_ENV,
    KIND,
    LEADER_ADDRESS_ENV,
    PLURAL,
    SET_NAME_LABEL,
    WORKER_INDEX_ENV,
    WORKER_INDEX_LABEL,
)
from tests.integration.conftest import SECOND_NODE_TAINT
from tests.integration.test_kueue import Kueues, condition, is_true, queued_job, said

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

TIMEOUT = 180  # generous: LWS, Kueue, the StatefulSet controller, the scheduler and the agents take turns
NODE_GPUS = 8
ADMISSION_GATE = "kueue.x-k8s.io/admission"  # Kueue's scheduling gate on a group's pods until admitted

# Writes the group environment to <argv[1]>/<pod name>.json, then serves until stopped.
SERVE = (
    "import json, os, sys, time\n"
    "keys = ('HOSTNAME', 'LWS_LEADER_ADDRESS', 'LWS_GROUP_SIZE', 'LWS_WORKER_INDEX')\n"
    "path = os.path.join(sys.argv[1], os.environ['HOSTNAME'] + '.json')\n"
    "with open(path + '.tmp', 'w') as f:\n"
    "    json.dump({k: os.environ.get(k) for k in keys}, f)\n"
    "os.replace(path + '.tmp', path)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


def group_template(role: str, out: Path) -> dict[str, Any]:
    """A leader's or worker's pod: a whole node's GPUs; it tolerates the second node's taint, so
    the group may use both session nodes."""
    container = {
        "name": role,
        "image": "nejumi/vllm:test",  # ignored by the node agent
        "command": [sys.executable, "-c", SERVE, str(out)],
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {GPU_RESOURCE: str(NODE_GPUS)},
        },
    }
    return {"spec": {"containers": [container], "tolerations": [{**SECOND_NODE_TAINT, "operator": "Equal"}]}}


def leader_worker_set(name: str, queue: str, size: int, out: Path) -> dict[str, Any]:
    """One group of ``size`` pods (a leader and ``size - 1`` workers) queued in ``queue``."""
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": size,
                "leaderTemplate": group_template("leader", out),
                "workerTemplate": group_template("worker", out),
            },
        },
    }


class Group:
    """One LeaderWorkerSet of a test, with what the cluster holds for it."""

    def __init__(self, api: ApiClient, namespace: str, name: str) -> None:
        self.core, self.custom = CoreV1Api(api), CustomObjectsApi(api)
        self.namespace, self.name = namespace, name

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        custom = self.custom
        return dict(custom.create_namespaced_custom_object(GROUP, API_VERSION, self.namespace, PLURAL, body))

    def delete(self) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, API_VERSION, self.namespace, PLURAL, self.name)

    def pods(self) -> list[Any]:
        selector = f"{SET_NAME_LABEL}={self.name}"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def workloads(self) -> list[dict[str, Any]]:
        """The Workloads Kueue made for this LeaderWorkerSet (found by their owner)."""
        custom = self.custom
        items = custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, self.namespace, "workloads")
        owner = (KIND, self.name)
        return [
            dict(wl)
            for wl in items["items"]
            if any((ref["kind"], ref["name"]) == owner for ref in wl["metadata"].get("ownerReferences", []))
        ]

    def workload(self) -> dict[str, Any] | None:
        found = self.workloads()
        assert len(found) <= 1, f"one Workload per group, got {[w['metadata']['name'] for w in found]}"
        return found[0] if found else None

    def running(self, size: int) -> list[Any] | None:
        """All ``size`` pods of group 0, once each is bound to a node and Running."""
        pods = [p for p in self.pods() if p.metadata.labels.get(GROUP_INDEX_LABEL) == "0"]
        if len(pods) == size and all(p.spec.node_name and p.status.phase == "Running" for p in pods):
            return sorted(pods, key=lambda p: int(p.metadata.labels[WORKER_INDEX_LABEL]))
        return None

    def gone(self) -> bool:
        return not self.pods() and not self.workloads()


def gated(pod: Any) -> bool:
    return any(g.name == ADMISSION_GATE for g in pod.spec.scheduling_gates or [])


def test_a_two_node_group_is_one_workload_admitted_whole_and_deleted_whole(
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    queues: Kueues,
    tmp_path: Path,
) -> None:
    cluster_queue = queues.cluster_queue(queues.flavor(), gpus=2 * NODE_GPUS)
    queue = queues.local_queue(cluster_queue)
    group = Group(k8s_client, namespace, "vllm")
    created = group.create(leader_worker_set("vllm", queue, 2, tmp_path))
    # Kueue's LWS webhook marks both templates: their pods are gated until the group is admitted.
    templates = created["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        annotations = templates[role]["metadata"]["annotations"]
        assert annotations["kueue.x-k8s.io/pod-suspending-parent"] == LWS_FRAMEWORK

    leader, worker = wait_until(lambda: group.running(2), TIMEOUT, "the leader and its worker to run")

    # One Workload for the whole group: a leader pod set and a worker pod set, each with a node's GPUs.
    workload = group.workload()
    assert workload is not None
    assert said(workload, "Admitted") == ("True", "Admitted", "The workload is admitted")
    assert said(workload, "QuotaReserved") == (
        "True",
        "QuotaReserved",
        f"Quota reserved in ClusterQueue {cluster_queue}",
    )
    pod_sets = {ps["name"]: ps["count"] for ps in workload["spec"]["podSets"]}
    assert pod_sets == {"leader": 1, "worker": 1}
    assignments = workload["status"]["admission"]["podSetAssignments"]
    usage = {ps["name"]: ps["resourceUsage"][GPU_RESOURCE] for ps in assignments}
    assert usage == {"leader": str(NODE_GPUS), "worker": str(NODE_GPUS)}

    # Leader vllm-0 and worker vllm-0-1, each on a node of its own (a node's GPUs each).
    assert (leader.metadata.name, worker.metadata.name) == ("vllm-0", "vllm-0-1")
    assert {leader.spec.node_name, worker.spec.node_name} == {node_agent.name, second_node.name}
    assert not gated(leader) and not gated(worker)

    # Both processes got LWS's group environment.
    def env_of(pod: Any) -> dict[str, str] | None:
        path = tmp_path / f"{pod.metadata.name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    envs = [
        wait_until(lambda p=p: env_of(p), TIMEOUT, f"{p.metadata.name}'s environment")
        for p in (leader, worker)
    ]
    address = f"vllm-0.vllm.{namespace}"
    assert envs == [
        {"HOSTNAME": "vllm-0", LEADER_ADDRESS_ENV: address, GROUP_SIZE_ENV: "2", WORKER_INDEX_ENV: "0"},
        {"HOSTNAME": "vllm-0-1", LEADER_ADDRESS_ENV: address, GROUP_SIZE_ENV: "2", WORKER_INDEX_ENV: "1"},
    ]

    # An LWS never completes by itself: deleting it is what ends the group, and leaves nothing.
    group.delete()
    wait_until(group.gone, TIMEOUT, "the group's pods and Workload to go")
    for agent in (node_agent, second_node):
        for pod in ("vllm-0", "vllm-0-1"):
            assert not agent.pids(namespace, pod), f"{pod}'s process on {agent.name} was stopped"


def test_a_group_without_quota_for_all_its_nodes_waits_whole_until_quota_frees(
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    queues: Kueues,
    tmp_path: Path,
) -> None:
    # Three nodes' worth of quota and of GPUs (the first node doubled), one node's worth held by a
    # plain queued Job: a group of three has quota for two of its pods, which is not enough.
    node_agent.set_gpus(2 * NODE_GPUS)
    flavor = queues.flavor()
    cluster_queue = queues.cluster_queue(flavor, gpus=3 * NODE_GPUS)
    queue = queues.local_queue(cluster_queue)
    batch = BatchV1Api(k8s_client)
    release = tmp_path / "release-blocker"
    batch.create_namespaced_job(namespace, queued_job("blocker", queue, NODE_GPUS, release))
    wait_until(
        lambda: is_true(queues.workload("blocker"), "Admitted"),
        TIMEOUT,
        "the Job holding one node's quota to be admitted",
    )

    group = Group(k8s_client, namespace, "big")
    group.create(leader_worker_set("big", queue, 3, tmp_path))

    def waiting() -> dict[str, Any] | None:
        workload = group.workload()
        return workload if condition(workload, "QuotaReserved") else None

    workload = wait_until(waiting, TIMEOUT, "Kueue to say why the group waits")
    status, reason, message = said(workload, "QuotaReserved") or ("", "", "")
    assert (status, reason) == ("False", "Pending")
    # Kueue's own words: the whole group is weighed (the leader's pod set fits, the workers' do not).
    assert message == (
        f"couldn't assign flavors to pod set worker: insufficient unused quota for {GPU_RESOURCE} "
        f"in flavor {flavor}, {NODE_GPUS} more needed"
    )
    assert not is_true(workload, "Admitted")
    # Nothing of the group started: LWS made the leader's pod, which Kueue holds at its scheduling
    # gate, bound to no node; every pod of the group that exists is held so.
    pods = wait_until(group.pods, TIMEOUT, "the group's leader pod")
    assert "big-0" in [p.metadata.name for p in pods]
    for pod in group.pods():
        assert gated(pod) and not pod.spec.node_name, (pod.metadata.name, pod.spec)
    assert not is_true(group.workload(), "Admitted")

    # The Job ends, its quota is freed: the group is admitted whole and all three pods run.
    release.touch()
    wait_until(lambda: group.running(3), TIMEOUT, "the group of three to be admitted and run")
    workload = group.workload()
    assert said(workload, "Admitted") == ("True", "Admitted", "The workload is admitted")
    pod_sets = {ps["name"]: ps["count"] for ps in (workload or {})["spec"]["podSets"]}
    assert pod_sets == {"leader": 1, "worker": 2}

    group.delete()
    wait_until(group.gone, TIMEOUT, "the group's pods and Workload to go")
