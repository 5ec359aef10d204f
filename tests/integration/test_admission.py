"""Admission on the real control plane (issue 10): the generated CRD refuses every spec the Job or the
evaluator would refuse later, naming the field, and stores every valid one as written; the Job the
operator builds passes PodSecurity `restricted` (the API server's PodSecurity admission plugin is on
by default), where the same pod without its securityContext is refused.

The cases are `tests/unit/api/test_spec_admission.py`'s: there the evaluator's side of each, here the
API server's."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import KIND
from nejumi_operator.kube import calls
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile.job import build_job, job_name
from nejumi_operator.reconcile.progress import build_progress_objects
from nejumi_operator.settings import OperatorConfig
from tests.cluster import wait_until
from tests.integration.test_operator import api_message, creator, wait_served
from tests.support.kube import apply_crd, delete_crd
from tests.unit.api.test_spec_admission import ACCEPTED, MULTI_NODE, REJECTED

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def crd(k8s_client: ApiClient) -> Iterator[dict[str, Any]]:
    yield apply_crd(k8s_client)
    delete_crd(k8s_client)


def test_every_bad_spec_is_rejected_naming_the_field(
    crd: dict[str, Any],
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    create = creator(k8s_client, namespace)
    wait_served(create)
    wrong = []
    for param in REJECTED:
        spec, message, _ = param.values
        try:
            create("bad", spec)
        except ApiException as exc:
            got = api_message(exc)
            if exc.status != 422 or message not in got:
                wrong.append(f"{param.id}: {exc.status} {got}")
            continue
        wrong.append(f"{param.id}: admitted")
        CustomObjects(k8s_client).delete(namespace, "bad")
    assert not wrong, "\n".join(wrong)


def test_every_valid_spec_is_stored_as_written(
    crd: dict[str, Any],
    k8s_client: ApiClient,
    namespace: str,
) -> None:
    create = creator(k8s_client, namespace)
    wait_served(create)
    wrong = []
    for i, param in enumerate([*ACCEPTED, *MULTI_NODE]):  # multi-node: admitted, refused by the operator
        (spec,) = param.values
        try:
            created = create(f"good-{i}", spec)
        except ApiException as exc:
            wrong.append(f"{param.id}: {exc.status} {api_message(exc)}")
            continue
        if created["spec"] != spec:  # nothing pruned, nothing defaulted
            wrong.append(f"{param.id}: stored {created['spec']}")
    assert not wrong, "\n".join(wrong)


class CustomObjects:
    def __init__(self, client: ApiClient) -> None:
        from kubernetes.client import CustomObjectsApi

        self.api = CustomObjectsApi(client)

    def delete(self, namespace: str, name: str) -> None:
        from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION

        self.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def evaluation(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "uid": "u-1"},
        "spec": spec,
    }


def test_the_evaluator_pod_passes_pod_security_restricted(k8s_client: ApiClient, namespace: str) -> None:
    core, batch = CoreV1Api(k8s_client), BatchV1Api(k8s_client)
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    spec = {
        "model": {
            "name": "gpt-x",
            "source": "openai-compatible",
            "endpoint": "https://api.example/v1",
            "hfTokenSecretRef": {"name": "hf", "key": "token"},
        },
        "benchmarks": {"jaster": {"datasets": ["jamp"], "testSamples": 1}, "mtbench": {"enabled": False}},
        "wandb": {"enabled": False},
        # Admitted, never run: no node has this label (whether or not a node agent is up).
        "resources": {
            "nodeSelector": {"nejumi.test/no-such-node": "true"},
            "imagePullSecrets": [{"name": "reg"}],
        },
    }
    # The pod's shape, not the placement policy (tests/unit/operator/test_policy.py): nodeSelector allowed.
    placement = Policy(nodeSelector={"nejumi.test/no-such-node": ["true"]})
    job = build_job(evaluation("restricted", namespace, spec), OperatorConfig(policy=placement))
    bare = copy.deepcopy(job)  # the same pod, without its securityContext: what restricted refuses
    bare["metadata"]["name"] = "bare-g1"
    bare["spec"]["template"]["spec"].pop("securityContext")
    for c in bare["spec"]["template"]["spec"]["containers"]:
        c.pop("securityContext")
    for obj in build_progress_objects(evaluation("restricted", namespace, spec)):  # its ServiceAccount
        calls.create_or_get(k8s_client, namespace, obj)
    batch.create_namespaced_job(namespace, job)
    batch.create_namespaced_job(namespace, bare)

    def refused() -> str | None:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=bare-g1").items
        return next((e.message for e in events if e.reason == "FailedCreate"), None)

    message = wait_until(refused, 60, "the Job controller to be refused the bare pod")
    assert 'violates PodSecurity "restricted:latest"' in message, message

    name = job_name("restricted", 1)

    def created() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        return pods[0] if pods else None

    pod = wait_until(created, 60, f"a pod of Job {name} (admitted under PodSecurity restricted)")
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    assert not [e.message for e in events if e.reason == "FailedCreate"]
    sc, (container,) = pod.spec.security_context, pod.spec.containers
    assert (sc.run_as_non_root, sc.run_as_user, sc.seccomp_profile.type) == (True, 1000, "RuntimeDefault")
    csc = container.security_context
    assert (csc.allow_privilege_escalation, csc.read_only_root_filesystem) == (False, True)
    assert csc.capabilities.drop == ["ALL"]
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    assert {"/workspace", "/tmp", "/dev/shm"} <= set(mounts)
    shm = next(v for v in pod.spec.volumes if v.name == mounts["/dev/shm"])
    assert shm.empty_dir.medium == "Memory" and shm.empty_dir.size_limit == "1Gi"  # no GPUs: 1Gi
    assert [s.name for s in pod.spec.image_pull_secrets] == ["reg"]
    env = {e.name: e for e in container.env}
    assert env["HF_TOKEN"].value_from.secret_key_ref.name == "hf"
    assert "nvidia.com/gpu" not in ((container.resources and container.resources.limits) or {})
    assert batch.read_namespaced_job(name, namespace).spec.active_deadline_seconds == 24 * 3600


def test_a_flag_is_not_a_model_name(crd: dict[str, Any], k8s_client: ApiClient, namespace: str) -> None:
    """Issue 16: `--trust-remote-code` as model.name was admitted, then failed as a traceback in the
    Hub client; the API server now refuses it, naming the field (the table above has the variants)."""
    create = creator(k8s_client, namespace)
    wait_served(create)
    for spec, message in [
        ({"model": {"name": "--trust-remote-code"}}, "model.name must be a Hugging Face model id"),
        (
            {
                "model": {
                    "name": "--trust-remote-code",
                    "source": "openai-compatible",
                    "endpoint": "http://x/v1",
                }
            },
            "model.name must be the API's model name",
        ),
    ]:
        with pytest.raises(ApiException) as err:
            create("flag", spec)
        assert err.value.status == 422
        assert f'spec.model.name: Invalid value: "object": {message}' in api_message(err.value)
