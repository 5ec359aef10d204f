"""The real Kueue on the test control plane: quota, admission and preemption of plain batch/v1 Jobs.

These pin the Kueue behaviour the operator builds on, against the genuine manager and webhooks
(``tests/cluster/kueue.py``): a Job labelled with a LocalQueue is suspended on creation by Kueue's
webhook, admitted (unsuspended) while the ClusterQueue's quota allows, left suspended with Kueue's
own reason and message on its Workload otherwise, admitted when quota frees up, and evicted
(suspended again) when a higher-priority Job needs the quota.

The Jobs' pods run on the node agent as local processes that wait for a release file, so the test
decides when each one finishes; no assertion depends on timing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from tests.cluster import GPU_RESOURCE, NodeAgent, wait_until
from tests.cluster.kueue import API_VERSION, GROUP, QUEUE_LABEL

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
TIMEOUT = 90  # generous: Kueue, the Job controller, the scheduler and the node agent all take turns

# Waits until the file named by argv[1] exists, then exits 0.
WAIT_FOR_RELEASE = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.1)\n"


class Kueues:
    """Kueue's objects for one test: cluster-scoped ones get the namespace in their name and are
    deleted afterwards, so tests never see each other's queues."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.custom = CustomObjectsApi(api)
        self.namespace = namespace
        self.created: list[tuple[str, str]] = []

    def cluster_object(self, plural: str, kind: str, name: str, **fields: Any) -> str:
        """Create a cluster-scoped object (``fields``: its ``spec``, or ``value``); return its name."""
        name = f"{name}-{self.namespace}"
        body = {"apiVersion": f"{GROUP}/{API_VERSION}", "kind": kind, "metadata": {"name": name}}
        self.custom.create_cluster_custom_object(GROUP, API_VERSION, plural, body | fields)
        self.created.append((plural, name))
        return name

    def flavor(self) -> str:
        return self.cluster_object("resourceflavors", "ResourceFlavor", "default", spec={})

    def cluster_queue(self, flavor: str, gpus: int, **spec: Any) -> str:
        """A ClusterQueue for this test's namespace only, with ``gpus`` nvidia.com/gpu of quota."""
        quotas = {"cpu": "32", "memory": "64Gi", GPU_RESOURCE: str(gpus)}
        return self.cluster_object(
            "clusterqueues",
            "ClusterQueue",
            "gpus",
            spec={
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                "resourceGroups": [
                    {
                        "coveredResources": list(quotas),
                        "flavors": [
                            {
                                "name": flavor,
                                "resources": [{"name": r, "nominalQuota": q} for r, q in quotas.items()],
                            }
                        ],
                    }
                ],
                **spec,
            },
        )

    def priority_class(self, name: str, value: int) -> str:
        return self.cluster_object("workloadpriorityclasses", "WorkloadPriorityClass", name, value=value)

    def local_queue(self, cluster_queue: str, name: str = "gpu") -> str:
        body = {
            "apiVersion": f"{GROUP}/{API_VERSION}",
            "kind": "LocalQueue",
            "metadata": {"name": name},
            "spec": {"clusterQueue": cluster_queue},
        }
        self.custom.create_namespaced_custom_object(GROUP, API_VERSION, self.namespace, "localqueues", body)
        return name

    def workload(self, job: str) -> dict[str, Any] | None:
        """The Workload Kueue created for Job ``job`` (``job-<job>-<hash>``: found by its owner)."""
        items = self.custom.list_namespaced_custom_object(GROUP, API_VERSION, self.namespace, "workloads")
        for wl in items["items"]:
            if any(
                ref["kind"] == "Job" and ref["name"] == job
                for ref in wl["metadata"].get("ownerReferences", [])
            ):
                return dict(wl)
        return None

    def delete_all(self) -> None:
        for plural, name in reversed(self.created):
            try:
                self.custom.delete_cluster_custom_object(GROUP, API_VERSION, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def condition(workload: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The Workload's condition of type ``kind``, if present."""
    for cond in (workload or {}).get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return None


def said(workload: dict[str, Any] | None, kind: str) -> tuple[str, str, str] | None:
    """(status, reason, message) of the Workload's ``kind`` condition: what Kueue says about it."""
    cond = condition(workload, kind)
    return (cond["status"], cond["reason"], cond["message"]) if cond else None


def is_true(workload: dict[str, Any] | None, kind: str) -> bool:
    cond = condition(workload, kind)
    return cond is not None and cond["status"] == "True"


def queued_job(
    name: str, queue: str, gpus: int, release: Path, priority: str | None = None
) -> dict[str, Any]:
    """A one-pod Job for LocalQueue ``queue``, created *unsuspended* (Kueue's webhook suspends
    it), whose pod runs until ``release`` exists."""
    labels = {QUEUE_LABEL: queue} | ({PRIORITY_LABEL: priority} if priority else {})
    container = {
        "name": "main",
        "image": "nejumi/evaluator:test",  # ignored by the node agent
        "command": [sys.executable, "-c", WAIT_FOR_RELEASE, str(release)],
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {GPU_RESOURCE: str(gpus)},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "suspend": False,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def suspended(batch: BatchV1Api, namespace: str, name: str) -> bool:
    return bool(batch.read_namespaced_job(name, namespace).spec.suspend)


def completed(batch: BatchV1Api, namespace: str, name: str) -> bool:
    conditions = batch.read_namespaced_job_status(name, namespace).status.conditions or []
    return any(c.type == "Complete" and c.status == "True" for c in conditions)


def test_quota_admits_two_of_three_gpu_jobs_then_the_third(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent, queues: Kueues, tmp_path: Path
) -> None:
    batch = BatchV1Api(k8s_client)
    flavor = queues.flavor()
    cluster_queue = queues.cluster_queue(flavor, gpus=8)
    queue = queues.local_queue(cluster_queue)
    names = ["eval-a", "eval-b", "eval-c"]
    for name in names:
        created = batch.create_namespaced_job(namespace, queued_job(name, queue, 4, tmp_path / name))
        assert created.spec.suspend is True, "Kueue's mutating webhook suspends a queued Job on create"

    def split() -> tuple[list[str], list[str]] | None:
        """(admitted, pending) once two Jobs run and the third one's Workload says why it waits."""
        admitted = [
            n for n in names if is_true(queues.workload(n), "Admitted") and not suspended(batch, namespace, n)
        ]
        pending = [n for n in names if n not in admitted]
        if len(admitted) == 2 and condition(queues.workload(pending[0]), "QuotaReserved"):
            return admitted, pending
        return None

    admitted, (waiting,) = wait_until(split, TIMEOUT, "two Jobs admitted and one pending")
    running = queues.workload(admitted[0])
    assert said(running, "QuotaReserved") == (
        "True",
        "QuotaReserved",
        f"Quota reserved in ClusterQueue {cluster_queue}",
    )
    assert said(running, "Admitted") == ("True", "Admitted", "The workload is admitted")
    # Kueue's own words for why the third Job waits (the Job itself only stays suspended).
    workload = queues.workload(waiting)
    assert said(workload, "QuotaReserved") == (
        "False",
        "Pending",
        f"couldn't assign flavors to pod set main: insufficient unused quota for {GPU_RESOURCE} "
        f"in flavor {flavor}, 4 more needed",
    )
    assert not is_true(workload, "Admitted")
    assert suspended(batch, namespace, waiting)

    # One admitted Job finishes: its quota is released and the waiting Job is admitted.
    (tmp_path / admitted[0]).touch()
    wait_until(lambda: completed(batch, namespace, admitted[0]), TIMEOUT, f"Job {admitted[0]} to complete")
    wait_until(
        lambda: is_true(queues.workload(waiting), "Admitted") and not suspended(batch, namespace, waiting),
        TIMEOUT,
        f"Job {waiting} to be admitted once quota freed up",
    )
    for name in names:
        (tmp_path / name).touch()
    for name in names:
        wait_until(lambda n=name: completed(batch, namespace, n), TIMEOUT, f"Job {name} to complete")

    # The v1beta1 API is served through Kueue's conversion webhook.
    old = queues.custom.get_cluster_custom_object(GROUP, "v1beta1", "clusterqueues", cluster_queue)
    assert old["apiVersion"] == f"{GROUP}/v1beta1"


def test_higher_priority_job_preempts_a_running_lower_priority_one(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent, queues: Kueues, tmp_path: Path
) -> None:
    batch = BatchV1Api(k8s_client)
    cluster_queue = queues.cluster_queue(
        queues.flavor(), gpus=8, preemption={"withinClusterQueue": "LowerPriority"}
    )
    queue = queues.local_queue(cluster_queue)
    low = queues.priority_class("low", 100)
    high = queues.priority_class("high", 1000)

    batch.create_namespaced_job(namespace, queued_job("background", queue, 8, tmp_path / "background", low))
    wait_until(
        lambda: (
            is_true(queues.workload("background"), "Admitted")
            and batch.read_namespaced_job_status("background", namespace).status.active
        ),
        TIMEOUT,
        "the low-priority Job to be admitted and running",
    )

    urgent = batch.create_namespaced_job(namespace, queued_job("urgent", queue, 4, tmp_path / "urgent", high))
    wait_until(
        lambda: is_true(queues.workload("urgent"), "Admitted") and not suspended(batch, namespace, "urgent"),
        TIMEOUT,
        "the high-priority Job to be admitted",
    )
    # The running Job was evicted to make room: suspended again, its pod removed, its Workload
    # saying who preempted it and why, and requeued.
    assert suspended(batch, namespace, "background"), "the preempted Job is suspended again"
    wait_until(
        lambda: not batch.read_namespaced_job_status("background", namespace).status.active,
        TIMEOUT,
        "the preempted Job's pod to go",
    )
    preempted = queues.workload("background")
    preemptor = queues.workload("urgent")
    assert preemptor is not None
    reason = (
        f"Preempted to accommodate a workload (UID: {preemptor['metadata']['uid']}, "
        f"JobUID: {urgent.metadata.uid}) due to prioritization in the ClusterQueue"
    )
    for kind, why in (("Evicted", "Preempted"), ("Preempted", "InClusterQueue"), ("Requeued", "Preempted")):
        cond = condition(preempted, kind)
        assert cond is not None, kind
        assert (cond["status"], cond["reason"]) == ("True", why), cond
        assert cond["message"].startswith(reason), cond
    assert not is_true(preempted, "Admitted")

    # Once the urgent Job is done, the preempted one is admitted again and runs to completion.
    (tmp_path / "urgent").touch()
    wait_until(lambda: completed(batch, namespace, "urgent"), TIMEOUT, "the urgent Job to complete")
    wait_until(
        lambda: (
            is_true(queues.workload("background"), "Admitted")
            and not suspended(batch, namespace, "background")
        ),
        TIMEOUT,
        "the preempted Job to be admitted again",
    )
    (tmp_path / "background").touch()
    wait_until(lambda: completed(batch, namespace, "background"), TIMEOUT, "the preempted Job to complete")
