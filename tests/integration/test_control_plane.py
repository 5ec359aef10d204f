"""Proof that the test control plane is the real thing: scheduling on GPU capacity, Jobs running
to completion on the node agent, garbage collection, RBAC and CRD validation all come from the
genuine Kubernetes components, so each assertion here would fail against a mock."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import (
    ApiClient,
    ApiextensionsV1Api,
    BatchV1Api,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
    RbacAuthorizationV1Api,
    VersionApi,
)
from kubernetes.client.exceptions import ApiException

from tests.cluster import GPU_RESOURCE, TERMINATION_ENV, ControlPlane, NodeAgent, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def job_manifest(name: str, script: str, gpus: int, **container: Any) -> dict[str, Any]:
    """A one-pod, no-retry Job running ``python -c script`` with ``gpus`` GPUs."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "nejumi/evaluator:test",  # ignored by the node agent
                            "command": [sys.executable, "-c", script],
                            "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                            **container,
                        }
                    ],
                }
            },
        },
    }


def api_message(exc: ApiException) -> str:
    """The human-readable message of an API error (the body is a JSON Status)."""
    return str(json.loads(exc.body)["message"])


def job_pods(core: CoreV1Api, namespace: str, job: str) -> list[Any]:
    return core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}").items


def job_condition(batch: BatchV1Api, namespace: str, name: str) -> str | None:
    """The first terminal condition type (Complete/Failed) that is True, if any."""
    job = batch.read_namespaced_job_status(name, namespace)
    for cond in job.status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None


def test_api_server_reports_pinned_version(k8s_client: ApiClient) -> None:
    """The -X ldflags took effect: clients see a real version, not v0.0.0-master."""
    version = VersionApi(k8s_client).get_code()
    assert version.git_version == "v1.34.4"
    assert (version.major, version.minor) == ("1", "34")


def test_gpu_job_runs_on_node_and_completes(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent
) -> None:
    core, batch = CoreV1Api(k8s_client), BatchV1Api(k8s_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"MODEL": "tiny"}}
    )
    # argv: --model <expanded> --summary <the terminationMessagePath, rewritten by the agent>
    script = (
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "keys = ['TOKEN', 'SECRET_token', 'CFG_MODEL', 'MODEL', 'POD_NAMESPACE', 'GREETING']\n"
        "summary = {k: os.environ.get(k) for k in keys}\n"
        "summary |= {'argv': args[:2], 'cwd': os.getcwd()}\n"
        f"summary['env_path'] = args[3] == os.environ['{TERMINATION_ENV}']\n"
        "open(args[3], 'w').write(json.dumps(summary))\n"
        "print('done')\n"
    )
    job = job_manifest(
        "gpu-eval",
        script,
        gpus=1,
        args=["--model", "$(CFG_MODEL)", "--summary", "/dev/termination-log"],
        workingDir="/workspace/run",
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODEL"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "GREETING", "value": "model=$(CFG_MODEL)"},
        ],
        envFrom=[
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}, "prefix": "SECRET_"},
        ],
    )
    batch.create_namespaced_job(namespace, job)

    wait_until(lambda: job_condition(batch, namespace, "gpu-eval"), 60, "Job gpu-eval to finish")
    assert job_condition(batch, namespace, "gpu-eval") == "Complete"
    (pod,) = job_pods(core, namespace, "gpu-eval")
    assert pod.spec.node_name == node_agent.name
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    sandbox = node_agent.pod_dir(namespace, pod.metadata.name)
    assert sandbox is not None
    assert json.loads(terminated.message) == {
        "TOKEN": "s3cret",
        "SECRET_token": "s3cret",
        "CFG_MODEL": "tiny",
        "MODEL": "tiny",
        "POD_NAMESPACE": namespace,
        "GREETING": "model=tiny",
        "argv": ["--model", "tiny"],
        "cwd": str(sandbox / "rootfs" / "workspace" / "run"),
        "env_path": True,
    }
    assert (sandbox / "main.log").read_text().strip() == "done"


def test_job_over_gpu_capacity_pends_until_node_grows(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent
) -> None:
    core, batch = CoreV1Api(k8s_client), BatchV1Api(k8s_client)
    # More than this node has; the second node (tests/integration/conftest.py) has no more and is
    # tainted, so no node can take the pod until this one grows.
    wanted = node_agent.gpus * 2
    batch.create_namespaced_job(namespace, job_manifest("too-big", "pass", gpus=wanted))
    (pod,) = wait_until(
        lambda: job_pods(core, namespace, "too-big"), 30, "the Job controller to create a pod"
    )

    def scheduling_event() -> Any:
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
        )
        return next((e for e in events.items if e.reason == "FailedScheduling"), None)

    event = wait_until(scheduling_event, 30, "the scheduler's FailedScheduling event")
    assert f"Insufficient {GPU_RESOURCE}" in event.message
    pod = core.read_namespaced_pod(pod.metadata.name, namespace)
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name

    # The capacity is the node's real allocatable: growing it lets the scheduler place the pod.
    node_agent.set_gpus(wanted)
    wait_until(
        lambda: job_condition(batch, namespace, "too-big"), 60, "Job too-big to run once the node grew"
    )
    assert job_condition(batch, namespace, "too-big") == "Complete"


def test_deleting_job_garbage_collects_pods(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent
) -> None:
    core, batch = CoreV1Api(k8s_client), BatchV1Api(k8s_client)
    job = batch.create_namespaced_job(namespace, job_manifest("long", "import time; time.sleep(300)", gpus=1))

    def running_pod() -> Any:
        pods = job_pods(core, namespace, "long")
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    pod = wait_until(running_pod, 60, "the Job's pod to be Running")
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Job", "long", job.metadata.uid, True)
    (pid,) = node_agent.pids(namespace, pod.metadata.name)
    assert Path(f"/proc/{pid}").exists()

    # batch/v1 Jobs default to orphaning their pods; Background is what kubectl does.
    batch.delete_namespaced_job("long", namespace, propagation_policy="Background")
    wait_until(lambda: not job_pods(core, namespace, "long"), 60, "the garbage collector to delete the pod")
    assert node_agent.pids(namespace, pod.metadata.name) == []
    assert not Path(f"/proc/{pid}").exists(), "the node agent must kill a deleted pod's process"


def test_failed_container_reports_exit_code_and_log_fallback(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent
) -> None:
    core = CoreV1Api(k8s_client)
    pod = {
        "metadata": {"name": "crash"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": [sys.executable, "-c", "import sys; print('boom: no model'); sys.exit(3)"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, pod)
    wait_until(
        lambda: core.read_namespaced_pod("crash", namespace).status.phase == "Failed", 30, "pod crash to fail"
    )
    terminated = core.read_namespaced_pod("crash", namespace).status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert "boom: no model" in terminated.message


def test_missing_secret_blocks_container_until_created(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent
) -> None:
    """Like the kubelet: CreateContainerConfigError while the Secret is missing, then it runs."""
    core = CoreV1Api(k8s_client)
    pod = {
        "metadata": {"name": "needs-secret"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": [
                        sys.executable,
                        "-c",
                        "import os, sys; sys.exit(0 if os.environ['KEY'] == 'v' else 1)",
                    ],
                    "env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "late", "key": "k"}}}],
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, pod)

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("needs-secret", namespace).status.container_statuses or []
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    # ContainerCreating may be reported first (the agent has not resolved env yet): wait past it
    wait_until(lambda: waiting_reason() == "CreateContainerConfigError", 30, "CreateContainerConfigError")
    assert core.read_namespaced_pod("needs-secret", namespace).status.phase == "Pending"
    core.create_namespaced_secret(namespace, {"metadata": {"name": "late"}, "stringData": {"k": "v"}})
    wait_until(
        lambda: core.read_namespaced_pod("needs-secret", namespace).status.phase == "Succeeded",
        30,
        "the pod to succeed once its Secret exists",
    )


def _kubectl_can_i(kubeconfig: Path, namespace: str, verb: str, resource: str, who: str) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required for the RBAC checks (it ships on the CI machines)"
    proc = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig),
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            f"--as={who}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), (
        f"kubectl auth can-i failed ({proc.returncode}): {proc.stdout} {proc.stderr}"
    )
    return answer


def test_rbac_is_enforced(
    control_plane: ControlPlane, k8s_client: ApiClient, kubeconfig: Path, namespace: str
) -> None:
    core, rbac = CoreV1Api(k8s_client), RbacAuthorizationV1Api(k8s_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    token = core.create_namespaced_service_account_token(
        "robot", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token
    cfg = Configuration(
        host=control_plane.server, api_key={"BearerToken": token}, api_key_prefix={"BearerToken": "Bearer"}
    )
    cfg.ssl_ca_cert = str(control_plane.ca_file)
    who = f"system:serviceaccount:{namespace}:robot"

    with ApiClient(cfg) as robot_client:
        robot = CoreV1Api(robot_client)
        with pytest.raises(ApiException) as denied:
            robot.list_namespaced_pod(namespace)
        assert denied.value.status == 403
        assert f'User "{who}" cannot list resource "pods"' in api_message(denied.value)
        assert _kubectl_can_i(kubeconfig, namespace, "list", "pods", who) == "no"

        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "robot-reads-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}],
            },
        )
        # The authorizer learns about new bindings through its informers: allow a moment.
        wait_until(
            lambda: _kubectl_can_i(kubeconfig, namespace, "list", "pods", who) == "yes",
            15,
            "the binding to apply",
        )
        assert _kubectl_can_i(kubeconfig, namespace, "watch", "pods", who) == "yes"
        assert _kubectl_can_i(kubeconfig, namespace, "delete", "pods", who) == "no"
        assert _kubectl_can_i(kubeconfig, namespace, "get", "secrets", who) == "no"
        assert _kubectl_can_i(kubeconfig, "default", "list", "pods", who) == "no"

        assert robot.list_namespaced_pod(namespace).items == []
        with pytest.raises(ApiException) as still_denied:
            robot.list_namespaced_secret(namespace)
        assert still_denied.value.status == 403


def test_crd_schema_and_cel_rules_are_enforced(k8s_client: ApiClient, namespace: str) -> None:
    ext, custom = ApiextensionsV1Api(k8s_client), CustomObjectsApi(k8s_client)
    group = f"t{secrets.token_hex(4)}.nejumi.test"
    spec_schema = {
        "type": "object",
        "required": ["model", "minReplicas", "maxReplicas"],
        "x-kubernetes-validations": [
            {
                "rule": "self.minReplicas <= self.maxReplicas",
                "message": "minReplicas must not exceed maxReplicas",
            },
            {"rule": "self.model == oldSelf.model", "message": "model is immutable"},
        ],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "minReplicas": {"type": "integer", "minimum": 0},
            "maxReplicas": {"type": "integer", "minimum": 1},
        },
    }
    crd = {
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:

        def established() -> bool:
            conds = ext.read_custom_resource_definition_status(f"widgets.{group}").status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conds)

        wait_until(established, 30, "the CRD to be Established")

        def create(name: str, spec: dict[str, Any]) -> Any:
            body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
            return custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", body)

        # The new REST mapping can take a moment to be served after Established.
        wait_until(
            lambda: create("good", {"model": "tiny", "minReplicas": 1, "maxReplicas": 2}), 15, "create"
        )

        with pytest.raises(ApiException) as cel:
            create("bad", {"model": "tiny", "minReplicas": 3, "maxReplicas": 2})
        assert cel.value.status == 422
        assert 'spec: Invalid value: "object": minReplicas must not exceed maxReplicas' in api_message(
            cel.value
        )

        with pytest.raises(ApiException) as typed:
            create("typed", {"model": "tiny", "minReplicas": "one", "maxReplicas": 2})
        assert typed.value.status == 422
        assert "spec.minReplicas in body must be of type integer" in api_message(typed.value)

        with pytest.raises(ApiException) as immutable:
            custom.patch_namespaced_custom_object(
                group,
                "v1",
                namespace,
                "widgets",
                "good",
                {"spec": {"model": "other"}},
                _content_type="application/merge-patch+json",
            )
        assert immutable.value.status == 422
        assert "model is immutable" in api_message(immutable.value)
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


def test_pod_gets_a_projected_service_account_token_bound_by_rbac(
    k8s_client: ApiClient, namespace: str, node_agent: NodeAgent
) -> None:
    """The ServiceAccount admission plugin adds the `kube-api-access-*` projected volume; the agent
    fills it with a real TokenRequest (as the node) and the root CA, mounted at the well-known path.
    The pod's own code then talks to the API server with `load_incluster_config()`, as itself: its
    Role lets it read one ConfigMap and nothing else."""
    core, rbac = CoreV1Api(k8s_client), RbacAuthorizationV1Api(k8s_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    for name in ("mine", "other"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"k": name}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "read-mine"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"], "verbs": ["get"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "read-mine"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-mine"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    script = (
        "import json, os, sys\n"
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "core = client.CoreV1Api()\n"
        "ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()\n"
        "out = {'ns': ns, 'mine': core.read_namespaced_config_map('mine', ns).data['k']}\n"
        "try:\n"
        "    core.read_namespaced_config_map('other', ns)\n"
        "    out['other'] = 'read'\n"
        "except client.exceptions.ApiException as exc:\n"
        "    out['other'] = exc.status\n"
        f"open(os.environ['{TERMINATION_ENV}'], 'w').write(json.dumps(out))\n"
    )
    pod = {
        "metadata": {"name": "in-cluster"},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "reader",
            "containers": [{"name": "main", "image": "python", "command": [sys.executable, "-c", script]}],
        },
    }
    created = core.create_namespaced_pod(namespace, pod)
    assert any(v.projected for v in created.spec.volumes or []), "admission added the token volume"
    wait_until(
        lambda: core.read_namespaced_pod("in-cluster", namespace).status.phase in ("Succeeded", "Failed"),
        60,
        "the in-cluster pod to finish",
    )
    done = core.read_namespaced_pod("in-cluster", namespace)
    terminated = done.status.container_statuses[0].state.terminated
    sandbox = node_agent.pod_dir(namespace, "in-cluster")
    log_text = (sandbox / "main.log").read_text() if sandbox else ""
    assert done.status.phase == "Succeeded", log_text
    assert json.loads(terminated.message) == {"ns": namespace, "mine": "mine", "other": 403}
