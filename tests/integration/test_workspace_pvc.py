"""Issue 10, "the workspace survives a pod", on the real control plane: the operator creates a PVC per
evaluation (the test cluster's default StorageClass, served by tests/cluster/provisioner.py), the node
agent mounts its volume as the evaluator's working dir, so a killed evaluator pod's retry (a new pod
of the same Job) resumes from the response cache and resends only what was missing; deleting the
evaluation collects the PVC, unless `workspace.retain`; `workspace.pvcName` is never the operator's."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import GROUP, KIND, LABEL_EVALUATION, PLURAL, VERSION
from nejumi_operator.reconcile.job import job_name, workspace_claim_name
from tests.cluster import NodeAgent, wait_until
from tests.cluster.provisioner import STORAGE_CLASS, HostPathProvisioner
from tests.fixtures.openai_stub import Reply, StubServer
from tests.integration.test_operator import HANDLERS, creator, run_evaluation, tiny_spec
from tests.support.kube import apply_crd, delete_crd

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def crd(k8s_client: ApiClient) -> Iterator[dict[str, Any]]:
    """The committed CRD, applied once for this module; it waits for its own deletion at the end."""
    yield apply_crd(k8s_client)
    delete_crd(k8s_client)


class KillingStub(StubServer):
    """Answers like the stub, but on POST number `kill_at` (1-based) first calls `killer` (which
    SIGKILLs the evaluator pod) and never answers that request."""

    def __init__(self, kill_at: int) -> None:
        super().__init__()
        self.kill_at = kill_at
        self.killer: Any = None
        self.killed = threading.Event()

    def reply(self, path: str, body: dict[str, Any]) -> Reply:
        if self.calls == self.kill_at and not self.killed.is_set():
            self.killed.set()
            self.killer()
            return Reply(status=503, delay_s=2.0)  # nobody is left to read it
        return super().reply(path, body)


def _pvc(core: CoreV1Api, namespace: str, name: str) -> Any:
    try:
        return core.read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_killed_pod_is_retried_from_the_cache_on_the_pvc_and_the_pvc_goes_with_the_evaluation(
    crd: dict[str, Any],
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    provisioner: HostPathProvisioner,
    operator_env: pytest.MonkeyPatch,
) -> None:
    core, batch, custom = CoreV1Api(k8s_client), BatchV1Api(k8s_client), CustomObjectsApi(k8s_client)
    name = "resumed"
    samples = 4
    with KillingStub(kill_at=3) as stub:

        def kill_the_evaluator() -> None:
            pods = core.list_namespaced_pod(namespace, label_selector=f"{LABEL_EVALUATION}={name}").items
            for pod in pods:
                for pid in node_agent.pids(namespace, pod.metadata.name):
                    os.killpg(pid, signal.SIGKILL)  # the agent starts each container in its own session

        stub.killer = kill_the_evaluator
        spec = tiny_spec(stub.base_url, stub.model, concurrency=1)
        spec["benchmarks"]["jaster"]["testSamples"] = samples
        runner, outcome, status = run_evaluation(k8s_client, namespace, name, spec)
        posts = list(stub.posts)

    pods = core.list_namespaced_pod(namespace, label_selector=f"{LABEL_EVALUATION}={name}").items
    logs = "".join(
        (node_agent.pod_dir(namespace, p.metadata.name) / "evaluator.log").read_text()[-2000:] for p in pods
    )
    assert stub.killed.is_set(), "the evaluator never reached the third request"
    assert outcome == "Complete", f"{outcome}: {json.dumps(status, indent=1)}\n{logs}"
    assert (runner.exit_code, runner.exception) == (0, None)
    # Two pods of one Job: the first killed (SIGKILL → 137), the second completed.
    exits = sorted(s.state.terminated.exit_code for p in pods for s in p.status.container_statuses or [])
    assert exits == [0, 137], logs

    # First attempt: requests 1 and 2 answered (and cached), request 3 killed in flight. Second
    # attempt: only what was missing, request 3 again and request 4; nothing answered is resent.
    key = lambda body: json.dumps(body, sort_keys=True)  # noqa: E731
    first, second = posts[:3], posts[3:]
    assert len(posts) == samples + 1, [key(p)[:200] for p in posts]
    assert key(second[0]) == key(first[2])
    assert not {key(b) for b in first[:2]} & {key(b) for b in second}
    assert len({key(b) for b in posts}) == samples
    assert status["usage"]["requestsSent"] == 2 and status["usage"]["cacheHits"] == 2, status["usage"]

    # The PVC: created by the operator, owned by the evaluation, bound to a provisioned volume.
    claim = workspace_claim_name(name)
    pvc = core.read_namespaced_persistent_volume_claim(claim, namespace)
    (owner,) = pvc.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == (KIND, name, True)
    assert pvc.spec.storage_class_name == STORAGE_CLASS  # the cluster default (none named)
    assert pvc.spec.resources.requests["storage"] == "50Gi"
    assert pvc.status.phase == "Bound"
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    folder = pv.spec.host_path.path
    # the response cache and the results live in the volume's folder (what a user copies out)
    assert os.path.isfile(os.path.join(folder, "cache", "responses.sqlite")), folder
    assert os.listdir(os.path.join(folder, "results")), folder
    (job,) = batch.list_namespaced_job(namespace).items
    volumes = {v.name: v for v in job.spec.template.spec.volumes}
    assert volumes["workspace"].persistent_volume_claim.claim_name == claim

    # Deleting the evaluation collects the Job and the PVC (ownerReference, no finalizer), and the
    # provisioner reclaims the volume.
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    wait_until(lambda: _pvc(core, namespace, claim) is None, 60, f"PVC {claim} to be collected")
    wait_until(lambda: not batch.list_namespaced_job(namespace).items, 60, "the Job to be collected")

    def volume_gone() -> bool:
        try:
            core.read_persistent_volume(pv.metadata.name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_until(volume_gone, 60, f"PV {pv.metadata.name} to be reclaimed")
    assert not os.path.exists(folder)


def test_retained_and_existing_pvcs_outlive_the_evaluation(
    crd: dict[str, Any],
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
) -> None:
    core, batch, custom = CoreV1Api(k8s_client), BatchV1Api(k8s_client), CustomObjectsApi(k8s_client)
    mine = "my-workspace"
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": mine},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    with StubServer() as stub:
        kept = tiny_spec(stub.base_url, stub.model)
        kept["workspace"] = {"retain": True, "size": "2Gi"}
        existing = tiny_spec(stub.base_url, stub.model)
        existing["workspace"] = {"pvcName": mine}
        args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
        with KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as runner:
            create = creator(k8s_client, namespace)
            wait_until(lambda: create("kept", kept), 15, "create the retained evaluation")
            create("existing", existing)
            for name in ("kept", "existing"):
                wait_until(
                    lambda name=name: (
                        batch.list_namespaced_job(
                            namespace, label_selector=f"{LABEL_EVALUATION}={name}"
                        ).items
                    ),
                    30,
                    f"{name}'s Job",
                )
            retained = wait_until(
                lambda: _pvc(core, namespace, workspace_claim_name("kept")), 30, "the retained PVC"
            )
            existing_job = batch.read_namespaced_job(job_name("existing", 1), namespace)
            for name in ("kept", "existing"):
                custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            wait_until(lambda: not batch.list_namespaced_job(namespace).items, 60, "the Jobs to be collected")
        assert (runner.exit_code, runner.exception) == (0, None)

    assert not retained.metadata.owner_references  # retain: no owner, nothing collects it
    assert retained.spec.resources.requests["storage"] == "2Gi"
    volumes = {v.name: v for v in existing_job.spec.template.spec.volumes}
    assert volumes["workspace"].persistent_volume_claim.claim_name == mine
    # no PVC of the operator's for the evaluation that names its own
    assert _pvc(core, namespace, workspace_claim_name("existing")) is None
    # Both Jobs are gone (the garbage collector has processed both owners); both PVCs remain.
    left = _pvc(core, namespace, workspace_claim_name("kept"))
    assert left is not None and left.metadata.deletion_timestamp is None
    ours = _pvc(core, namespace, mine)
    assert (
        ours is not None and ours.metadata.deletion_timestamp is None and not ours.metadata.owner_references
    )
