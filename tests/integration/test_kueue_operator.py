"""Evaluations under the real Kueue: quota, queueing and preemption as users meet them.

A ClusterQueue with 8 GPUs of quota and a LocalQueue; the operator labels each evaluation's Job for
the queue, Kueue admits what fits, and the status says what Kueue decided in Kueue's own words:
three 4-GPU evaluations → two Running, the third Queued quoting Kueue's "insufficient unused quota",
admitted when one finishes. A higher WorkloadPriorityClass evaluation preempts a running one, which
goes back to Queued (reason Preempted, never Failed), is readmitted once the urgent one is done,
and resumes from its workspace's response cache: the test counts what the second pod sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from nejumi_eval.api.v1alpha1.names import GROUP as NEJUMI
from nejumi_eval.api.v1alpha1.names import PLURAL, VERSION
from tests.cluster import NodeAgent, wait_until
from tests.cluster.kueue import Kueue
from tests.fixtures.openai_stub import StubServer
from tests.integration.test_kueue import Kueues
from tests.integration.test_status_truth import HANDLERS, Recorder, spec
from tests.support.kube import create_evaluation as create

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]


@pytest.fixture
def gpu_queue(kueue: Kueue, k8s_client: ApiClient, namespace: str) -> Iterator[tuple[Kueues, str]]:
    objects = Kueues(k8s_client, namespace)
    try:
        flavor = objects.flavor()
        cq = objects.cluster_queue(flavor, gpus=8, preemption={"withinClusterQueue": "LowerPriority"})
        yield objects, objects.local_queue(cq)
    finally:
        objects.delete_all()


def evaluation(endpoint: str, queue: str, gpus: int, samples: int, **extra: Any) -> dict[str, Any]:
    body = spec(endpoint, queueName=queue, resources={"gpus": gpus}, generation={"concurrency": 1}, **extra)
    body["benchmarks"]["jaster"]["testSamples"] = samples
    return body


def test_two_of_three_run_the_third_waits_in_kueues_words(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    gpu_queue: tuple[Kueues, str],
) -> None:
    _, queue = gpu_queue
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with (
        StubServer(delay_s=0.4) as model,
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
    ):
        names = ["eval-a", "eval-b", "eval-c"]
        for name in names:
            create(k8s_client, namespace, name, evaluation(model.base_url, queue, gpus=4, samples=25))

        def split() -> tuple[list[str], str] | None:
            phases = {n: (seen.latest.get(n) or {}).get("phase") for n in names}
            runs = [n for n, p in phases.items() if p == "Running"]
            waits = [n for n, p in phases.items() if p == "Queued"]
            return (runs, waits[0]) if len(runs) == 2 and len(waits) == 1 else None

        _, waiting = wait_until(split, 120, f"two Running and one Queued (seen {seen.seen})")
        message = seen.latest[waiting]["message"]
        assert f"waiting for admission in LocalQueue {queue}; Kueue: Pending: " in message, message
        assert "insufficient unused quota for nvidia.com/gpu" in message and "4 more needed" in message
        for name in names:
            seen.wait_for(name, "Succeeded", "EvaluationCompleted", timeout=180)
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    # the waiting one ran only after a running one was done: Queued, then Running, never Failed
    assert [p for p, _ in seen.seen[waiting]][:1] == ["Queued"] and "Running" in dict(seen.seen[waiting])


def test_a_preempted_evaluation_requeues_and_resumes_from_its_cache(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    gpu_queue: tuple[Kueues, str],
    urgent: str,
) -> None:
    _, queue = gpu_queue
    operator_env.setenv("NEJUMI_OPERATOR_POLICY", json.dumps({"workloadPriorityClassNames": [urgent]}))
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    samples = 40
    with (
        StubServer(delay_s=0.3) as slow,
        StubServer() as fast,
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
    ):
        create(k8s_client, namespace, "background", evaluation(slow.base_url, queue, gpus=8, samples=samples))
        seen.wait_for("background", "Running", "JobRunning", timeout=120)
        wait_until(lambda: len(slow.posts) >= 10, 60, "the background evaluation to answer 10 questions")
        create(
            k8s_client,
            namespace,
            "urgent",
            evaluation(fast.base_url, queue, gpus=4, samples=2, workloadPriorityClassName=urgent),
        )
        preempted = seen.wait_for("background", "Queued", "Preempted", timeout=120)
        before = len(slow.posts)
        assert (
            "Kueue evicted Job background-g1 (Preempted: Preempted to accommodate a workload"
            in preempted["message"]
        )
        seen.wait_for("urgent", "Succeeded", "EvaluationCompleted", timeout=120)
        done = seen.wait_for("background", "Succeeded", "EvaluationCompleted", timeout=180)
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    phases = [p for p, _ in seen.seen["background"]]
    assert "Failed" not in phases and phases.index("Queued", 1) < len(phases) - 1, seen.seen["background"]
    # Every question once, plus at most the one in flight when the pod was stopped (concurrency 1):
    # the readmitted pod resumed from the response cache on the same workspace PVC.
    assert samples <= len(slow.posts) <= samples + 1, (before, len(slow.posts))
    assert before < samples
    assert done["usage"]["cacheHits"] >= before - 1, done["usage"]


def test_deleting_a_queued_evaluation_leaves_nothing_behind(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    gpu_queue: tuple[Kueues, str],
) -> None:
    """Queued (more GPUs than the quota), then deleted: no Workload, Job, pod, PVC or progress
    objects stay (owner references: evaluation → Job → Workload; evaluation → PVC, ConfigMap…)."""
    queues, queue = gpu_queue
    core, batch, custom = CoreV1Api(k8s_client), BatchV1Api(k8s_client), CustomObjectsApi(k8s_client)
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with (
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
    ):
        create(
            k8s_client, namespace, "too-big", evaluation("http://127.0.0.1:9/v1", queue, gpus=12, samples=2)
        )
        seen.wait_for("too-big", "Queued", "Suspended", timeout=120)
        wait_until(lambda: "; Kueue: " in seen.latest["too-big"]["message"], 60, "Kueue's reason in status")
        assert queues.workload("too-big-g1") is not None
        custom.delete_namespaced_custom_object(NEJUMI, VERSION, namespace, PLURAL, "too-big")

        def leftovers() -> list[str]:
            left = [f"Job/{j.metadata.name}" for j in batch.list_namespaced_job(namespace).items]
            left += [f"Pod/{p.metadata.name}" for p in core.list_namespaced_pod(namespace).items]
            left += [
                f"PVC/{c.metadata.name}"
                for c in core.list_namespaced_persistent_volume_claim(namespace).items
            ]
            left += [
                f"ConfigMap/{c.metadata.name}"
                for c in core.list_namespaced_config_map(namespace).items
                if c.metadata.name.startswith("too-big")
            ]
            left += ["Workload"] if queues.workload("too-big-g1") else []
            return left

        wait_until(lambda: not leftovers(), 60, "every object of the deleted evaluation to be collected")
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
