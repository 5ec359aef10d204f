"""The operator killed (SIGKILL, as a node failure or OOM would) at every phase of an evaluation's
life, then restarted: exactly one Job per evaluation generation, and every status converges to
what the cluster really did.

The phases, all in flight at once so one run covers them:
- before the Job exists: the operator dies within a moment of seeing a new evaluation;
- queued (a suspended Job, `queueName` without Kueue here), pending (16 GPUs on 8-GPU nodes) and
  running (a slow model server): killed while each holds;
- after its Job finished but before the status said so: the Job completes while no operator runs;
- during deletion: an evaluation deleted while the operator is down is gone with its Job, PVC and
  progress objects when it comes back, and nothing is recreated.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.openai_stub import StubServer
from tests.integration.test_status_truth import spec
from tests.support.kube import create_evaluation as create

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]


class Operator:
    """`python -m nejumi_operator` as a separate process, so it can be SIGKILLed."""

    def __init__(self, namespace: str, log: Path) -> None:
        self.namespace, self.log = namespace, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"---- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nejumi_operator", "--namespace", self.namespace, "--liveness", ""],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
            )

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def status_of(custom: CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return obj.get("status") or {}


def jobs_by_evaluation(batch: BatchV1Api, namespace: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for job in batch.list_namespaced_job(namespace).items:
        owner = (job.metadata.labels or {}).get("nejumi.wandb.ai/evaluation", "")
        out.setdefault(owner, []).append(job.metadata.name)
    return out


def test_the_operator_killed_at_every_phase_converges_with_one_job_each(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    operator_env.setenv("NEJUMI_OPERATOR_RESYNC_SECONDS", "3")
    batch, core, custom = BatchV1Api(k8s_client), CoreV1Api(k8s_client), CustomObjectsApi(k8s_client)
    operator = Operator(namespace, tmp_path / "operator.log")

    def phase(name: str) -> str | None:
        return status_of(custom, namespace, name).get("phase")

    def until(name: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
        return wait_until(
            lambda: status_of(custom, namespace, name) if phase(name) in phases else None,
            timeout,
            f"{name} to reach {phases} (now {status_of(custom, namespace, name).get('phase')}); "
            f"operator log: {operator.log}",
        )

    try:
        with StubServer(delay_s=0.5) as slow, StubServer() as fast:
            # Before the Job exists: created while no operator runs; the first one dies at once.
            create(k8s_client, namespace, "early", spec(fast.base_url, resources={"gpus": 0}))
            operator.start()
            time.sleep(1.5)  # python + kopf start-up: it is listing, creating, or just done
            operator.kill()
            operator.start()
            create(k8s_client, namespace, "queued", spec(fast.base_url, queueName="q", resources={"gpus": 0}))
            create(k8s_client, namespace, "pending", spec(fast.base_url, resources={"gpus": 16}))
            running = spec(slow.base_url, resources={"gpus": 0}, generation={"concurrency": 1})
            running["benchmarks"]["jaster"]["testSamples"] = 40  # ~20 s of generation
            create(k8s_client, namespace, "running", running)
            create(k8s_client, namespace, "doomed", spec(slow.base_url, queueName="q", resources={"gpus": 0}))
            until("early", "Succeeded")
            until("queued", "Queued")
            until("pending", "Pending")
            until("doomed", "Queued")
            until("running", "Running")
            # Killed while queued, pending and running; nobody watches while the run completes
            # and while "doomed" is deleted (its Job and pods go by garbage collection).
            operator.kill()
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "doomed")
            wait_until(
                lambda: (
                    (batch.read_namespaced_job_status("running-g1", namespace).status.succeeded or 0) >= 1
                ),
                120,
                "the running evaluation's Job to complete while the operator is down",
            )
            assert phase("running") == "Running"  # what the last operator saw: now stale
            operator.start()
            done = until("running", "Succeeded", timeout=60)
            assert "jaster" in done["scores"]["benchmarks"] and done["attempt"] == 1
            assert len(slow.posts) == 40  # one pod, each request once: the kill never touched it
            assert until("queued", "Queued")["reason"] == "Suspended"
            assert until("pending", "Pending")["reason"] == "Unschedulable"
            # Killed once more at rest, restarted: nothing changes, nothing is created twice.
            operator.kill()
            operator.start()
            time.sleep(8)  # > two resync rounds
            assert phase("early") == phase("running") == "Succeeded"
    finally:
        operator.stop()

    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "doomed")
    assert gone.value.status == 404

    def collected() -> bool:
        names = [p.metadata.name for p in core.list_namespaced_persistent_volume_claim(namespace).items]
        names += [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
        names += [a.metadata.name for a in core.list_namespaced_service_account(namespace).items]
        names += [j.metadata.name for j in batch.list_namespaced_job(namespace).items]
        return not any(n.startswith("doomed") for n in names)

    wait_until(
        collected, 60, "the deleted evaluation's Job, PVC, ConfigMap and ServiceAccount to be collected"
    )
    jobs = jobs_by_evaluation(batch, namespace)
    assert jobs == {
        "early": ["early-g1"],
        "queued": ["queued-g1"],
        "pending": ["pending-g1"],
        "running": ["running-g1"],
    }, jobs
    log = operator.log.read_text()
    assert log.count("---- start") == operator.starts == 4
    assert "Traceback" not in log, log[-4000:]


def test_a_node_lost_mid_run_is_retried_on_another_and_resumes(
    crd: None,
    control_plane: Any,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A third GPU node of pool b runs the evaluation; it dies (its agent stops: every process on it
    is gone) and its Node is deleted. The pod garbage collector removes the orphaned pod, the Job
    makes a new one, the scheduler places it on the other pool-b node, and it resumes from the
    workspace (a volume both nodes reach): the model gets each question about once."""
    import kopf
    from kopf.testing import KopfRunner

    from tests.integration.test_status_truth import HANDLERS, Recorder

    pool = dict(second_node.labels)
    operator_env.setenv(
        "NEJUMI_OPERATOR_POLICY", json.dumps({"nodeSelector": {k: [v] for k, v in pool.items()}})
    )
    kubeconfig = control_plane.write_kubeconfig(
        tmp_path / "doomed.kubeconfig", "system:node:nejumi-gpu-doomed", ("system:nodes",)
    )
    doomed = NodeAgent(
        kubeconfig,
        control_plane.kubeconfig,
        tmp_path / "pods",
        name="nejumi-gpu-doomed",
        labels=pool,
        extra_env=dict(second_node.extra_env),
    ).start()
    core = CoreV1Api(k8s_client)
    taints = core.read_node(second_node.name).spec.taints
    core.patch_node(doomed.name, {"spec": {"taints": [t.to_dict() for t in taints or []]}})
    second_node.set_gpus(0)  # the first pod can only go to the doomed node
    samples = 30
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    try:
        with (
            StubServer(delay_s=0.3) as model,
            Recorder(k8s_client, namespace) as seen,
            KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
        ):
            body = spec(
                model.base_url,
                resources={
                    "gpus": 1,
                    "nodeSelector": pool,
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                },
                generation={"concurrency": 1},
            )
            body["benchmarks"]["jaster"]["testSamples"] = samples
            create(k8s_client, namespace, "far", body)
            first = seen.wait_for("far", "Running", "JobRunning", timeout=120)
            assert "on node nejumi-gpu-doomed" in first["message"], first["message"]
            wait_until(lambda: len(model.posts) >= 8, 60, "some answers before the node dies")
            second_node.set_gpus(8)
            doomed.stop()  # the machine is gone: its processes with it, no more status from it
            core.delete_node(doomed.name)
            done = seen.wait_for("far", "Succeeded", "EvaluationCompleted", timeout=240)
        assert (operator.exit_code, operator.exception) == (0, None), operator.output
    finally:
        doomed.stop()
        with contextlib.suppress(ApiException):
            core.delete_node(doomed.name)
    nodes = {p.spec.node_name for p in core.list_namespaced_pod(namespace).items}
    assert nodes == {second_node.name}, nodes  # the lost node's pod was collected
    assert samples <= len(model.posts) <= samples + 2, len(model.posts)
    assert done["usage"]["cacheHits"] >= 7, done["usage"]


def test_two_operators_refusing_one_evaluation_announce_it_once(
    crd: None, k8s_client: ApiClient, namespace: str, operator_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both replicas refuse it (no PVC may be created here); the guarded status write lets one of
    them win, and only the winner posts the Event."""
    core, custom = CoreV1Api(k8s_client), CustomObjectsApi(k8s_client)
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-claims"}, "spec": {"hard": {"persistentvolumeclaims": "0"}}}
    )
    wait_until(lambda: core.read_namespaced_resource_quota("no-claims", namespace).status.hard, 30, "quota")
    first, second = (Operator(namespace, tmp_path / f"operator-{i}.log") for i in (1, 2))
    first.start()
    second.start()
    try:
        time.sleep(3)  # both are watching
        for i in range(3):
            create(
                k8s_client, namespace, f"refused-{i}", spec("http://127.0.0.1:9/v1", resources={"gpus": 0})
            )
        for i in range(3):
            wait_until(
                lambda i=i: status_of(custom, namespace, f"refused-{i}").get("reason") == "JobRejected",
                60,
                "rejection",
            )
        time.sleep(5)  # let the slower replica finish its attempt too
    finally:
        first.stop()
        second.stop()
    events = core.list_namespaced_event(namespace, field_selector="reason=Rejected").items
    assert sorted(e.involved_object.name for e in events) == ["refused-0", "refused-1", "refused-2"], [
        (e.involved_object.name, e.reporting_instance) for e in events
    ]
