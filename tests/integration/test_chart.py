"""The Helm chart on the real control plane: `helm install` (CRD established, objects created),
`kubectl auth can-i` for the operator's ServiceAccount and for users bound to the editor/viewer
roles, Pod Security `restricted` for the operator pod, and `helm uninstall` cleaning up.

The operator runs with `replicaCount=0` here: these tests check what the chart grants and admits;
tests/integration/test_in_cluster.py runs the chart's operator Deployment itself."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import (
    ApiClient,
    ApiextensionsV1Api,
    AppsV1Api,
    CoreV1Api,
    CustomObjectsApi,
    RbacAuthorizationV1Api,
)
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import CRD_NAME, GROUP, PLURAL
from tests.cluster import wait_until
from tests.support.helm import CHART, helm

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

EVALUATIONS = f"{PLURAL}.{GROUP}"
INSTANCE = "app.kubernetes.io/instance"
DEPLOYMENT = "templates/operator/deployment.yaml"


def kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl not found on PATH", pytrace=False)
    return path


def _exists(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@dataclass
class Release:
    name: str
    namespace: str
    kubeconfig: Path
    home: Path

    @property
    def fullname(self) -> str:
        return f"{self.name}-nejumi-operator"

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return helm(
            [*args, "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace],
            self.home,
            check=check,
        )

    def install(self, *values: str) -> subprocess.CompletedProcess[str]:
        # replicaCount=0: see the module docstring.
        return self.helm(
            "install", self.name, str(CHART), "--set", "replicaCount=0", *values, "--timeout", "90s"
        )

    def uninstall(self) -> None:
        self.helm("uninstall", self.name, "--wait", "--timeout", "60s")

    def can_i(self, verb: str, resource: str, namespace: str | None, user: str | None = None) -> bool:
        """`kubectl auth can-i` as the operator's ServiceAccount (or `user`); namespace None = all."""
        resource, _, sub = resource.partition("/")
        group_resource = EVALUATIONS if resource == PLURAL else resource
        args = [kubectl(), "--kubeconfig", str(self.kubeconfig), "auth", "can-i", verb, group_resource]
        args += ["--subresource", sub] if sub else []
        args += ["--namespace", namespace] if namespace else ["--all-namespaces"]
        args += ["--as", user or self.service_account]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        answer = (proc.stdout.split() or [""])[0]
        assert answer in ("yes", "no"), f"{' '.join(args)}: {proc.stdout}{proc.stderr}"
        assert proc.returncode == (0 if answer == "yes" else 1)
        return answer == "yes"

    def check(self, expected: list[tuple[str, str, str | None, bool]], user: str | None = None) -> None:
        wrong = [
            f"{'can' if want else 'cannot'} {verb} {res} in {ns or 'all namespaces'}"
            for verb, res, ns, want in expected
            if self.can_i(verb, res, ns, user) != want
        ]
        assert not wrong, (
            f"{user or self.service_account}: unexpected can-i answers (expected):\n" + "\n".join(wrong)
        )


@pytest.fixture
def release(kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Release]:
    rel = Release(f"t{secrets.token_hex(3)}", namespace, kubeconfig, tmp_path / "helm-home")
    yield rel
    rel.helm("uninstall", rel.name, "--ignore-not-found", "--wait", "--timeout", "60s", check=False)


@pytest.fixture
def crd_owner(k8s_client: ApiClient) -> Iterator[ApiextensionsV1Api]:
    """Helm installs the CRD but never deletes it: delete it here if this test created it, and
    wait until it is gone, so later suites start from the state they expect."""
    ext = ApiextensionsV1Api(k8s_client)
    existed = _exists(ext.read_custom_resource_definition, CRD_NAME)
    yield ext
    if not existed and _exists(ext.read_custom_resource_definition, CRD_NAME):
        ext.delete_custom_resource_definition(CRD_NAME)
        wait_until(lambda: not _exists(ext.read_custom_resource_definition, CRD_NAME), 60, "CRD deletion")


def crd_established(ext: ApiextensionsV1Api) -> bool:
    conds = ext.read_custom_resource_definition_status(CRD_NAME).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conds)


def released(k8s_client: ApiClient, release: str) -> list[str]:
    """Every cluster-scoped RBAC object of the release still there."""
    rbac = RbacAuthorizationV1Api(k8s_client)
    selector = f"{INSTANCE}={release}"
    roles = rbac.list_cluster_role(label_selector=selector).items
    bindings = rbac.list_cluster_role_binding(label_selector=selector).items
    return [f"ClusterRole/{r.metadata.name}" for r in roles] + [
        f"ClusterRoleBinding/{b.metadata.name}" for b in bindings
    ]


def bind(k8s_client: ApiClient, namespace: str, user: str, cluster_role: str) -> None:
    RbacAuthorizationV1Api(k8s_client).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"{user}-{cluster_role}"[:63]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def test_cluster_wide_install(
    release: Release, k8s_client: ApiClient, crd_owner: ApiextensionsV1Api, namespace: str, lws: Any
) -> None:
    """(`lws`: LeaderWorkerSet's API served, so `kubectl auth can-i` resolves its resource.)"""
    core = CoreV1Api(k8s_client)
    # Pod Security: warn on anything the `restricted` profile forbids (the API server sends the
    # warning for the Deployment's pod template; helm prints it).
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/warn": "restricted"}}}
    )
    out = release.install()
    assert "violate PodSecurity" not in out.stderr, out.stderr

    wait_until(lambda: crd_established(crd_owner), 30, f"CRD {CRD_NAME} to be Established")
    dep = AppsV1Api(k8s_client).read_namespaced_deployment(release.fullname, namespace)
    assert dep.spec.replicas == 0 and dep.spec.strategy.type == "Recreate"
    assert dep.spec.template.spec.service_account_name == release.fullname
    core.read_namespaced_service_account(release.fullname, namespace)
    assert sorted(released(k8s_client, release.name)) == sorted(
        [f"ClusterRole/{release.fullname}{s}" for s in ("", "-editor", "-scanning", "-viewer")]
        + [f"ClusterRoleBinding/{release.fullname}{s}" for s in ("", "-scanning")]
    )

    # The operator's ServiceAccount, in its own namespace, in another one, and cluster-wide.
    for ns in (namespace, "default"):
        release.check(
            [
                ("get", PLURAL, ns, True),
                ("watch", PLURAL, ns, True),
                ("patch", PLURAL, ns, True),
                ("patch", f"{PLURAL}/status", ns, True),
                ("update", f"{PLURAL}/finalizers", ns, True),
                ("create", "jobs", ns, True),
                ("watch", "jobs", ns, True),
                ("list", "pods", ns, True),
                ("create", "events", ns, True),
                ("list", "events", ns, True),
                # A named Secret's labels (consent, read as metadata): get, never list or watch.
                ("get", "secrets", ns, True),
                ("watch", "secrets", ns, False),
                # Never: spec writes, deletes (but Jobs), status PUTs, Secret listings, pods, logs.
                ("create", PLURAL, ns, False),
                ("update", PLURAL, ns, False),
                ("delete", PLURAL, ns, False),
                ("update", f"{PLURAL}/status", ns, False),
                # an earlier generation's unfinished Job, when an edit replaces it (and frees its GPUs)
                ("delete", "jobs", ns, True),
                ("patch", "jobs", ns, False),
                # a model served across nodes: its serving group, made, released (patched), replaced
                ("create", "leaderworkersets.leaderworkerset.x-k8s.io", ns, True),
                ("patch", "leaderworkersets.leaderworkerset.x-k8s.io", ns, True),
                ("delete", "leaderworkersets.leaderworkerset.x-k8s.io", ns, True),
                ("update", "leaderworkersets.leaderworkerset.x-k8s.io", ns, False),
                ("delete", "pods", ns, False),
                ("create", "pods", ns, False),
                ("get", "pods/log", ns, False),
                ("list", "secrets", ns, False),
                ("create", "configmaps", ns, True),  # progress ConfigMaps (reconcile.progress)
                ("delete", "configmaps", ns, False),
                ("update", "configmaps", ns, False),
                ("create", "roles", ns, True),
                ("delete", "roles", ns, False),
                ("escalate", "roles", ns, False),
                ("bind", "roles", ns, False),
                ("create", "clusterroles", None, False),
            ]
        )
    release.check(
        [
            ("list", PLURAL, None, True),
            ("watch", "jobs", None, True),
            ("list", "customresourcedefinitions.apiextensions.k8s.io", None, True),
            ("watch", "customresourcedefinitions.apiextensions.k8s.io", None, True),
            ("create", "customresourcedefinitions.apiextensions.k8s.io", None, False),
            ("list", "namespaces", None, False),  # kopf does not observe namespaces when cluster-wide
            ("list", "secrets", None, False),
        ]
    )

    # Users: the editor and viewer ClusterRoles bound in one namespace.
    bind(k8s_client, namespace, "alice", f"{release.fullname}-editor")
    bind(k8s_client, namespace, "bob", f"{release.fullname}-viewer")
    release.check(
        [
            ("create", PLURAL, namespace, True),
            ("update", PLURAL, namespace, True),
            ("delete", PLURAL, namespace, True),
            ("watch", PLURAL, namespace, True),
            ("get", f"{PLURAL}/status", namespace, True),
            ("patch", f"{PLURAL}/status", namespace, False),  # status belongs to the operator
            ("create", "jobs", namespace, False),
            ("create", PLURAL, "default", False),  # only where it is bound
        ],
        user="alice",
    )
    release.check(
        [
            ("get", PLURAL, namespace, True),
            ("list", PLURAL, namespace, True),
            ("watch", PLURAL, namespace, True),
            ("get", f"{PLURAL}/status", namespace, True),
            ("create", PLURAL, namespace, False),
            ("delete", PLURAL, namespace, False),
            ("list", PLURAL, "default", False),
        ],
        user="bob",
    )

    release.uninstall()
    assert released(k8s_client, release.name) == []
    assert not _exists(core.read_namespaced_service_account, release.fullname, namespace)
    assert not _exists(AppsV1Api(k8s_client).read_namespaced_deployment, release.fullname, namespace)
    assert release.can_i("create", "jobs", namespace) is False
    # Helm never deletes (or upgrades) what it installed from crds/.
    assert crd_established(crd_owner)


@pytest.fixture
def watched(k8s_client: ApiClient) -> Iterator[list[str]]:
    core = CoreV1Api(k8s_client)
    names = [f"watched-{secrets.token_hex(3)}" for _ in range(2)]
    for name in names:
        core.create_namespace({"metadata": {"name": name, "labels": {"nejumi.test/owner": "pytest"}}})
    yield names
    for name in names:
        core.delete_namespace(name)


def test_watch_namespaces_install(
    release: Release, k8s_client: ApiClient, crd_owner: ApiextensionsV1Api, watched: list[str], namespace: str
) -> None:
    a, b = watched
    release.install("--set", f"watchNamespaces={{{a},{b}}}")
    wait_until(lambda: crd_established(crd_owner), 30, f"CRD {CRD_NAME} to be Established")
    rbac = RbacAuthorizationV1Api(k8s_client)
    for ns in watched:
        assert rbac.read_namespaced_role(release.fullname, ns).rules
        assert rbac.read_namespaced_role_binding(release.fullname, ns).subjects[0].namespace == namespace
    assert sorted(released(k8s_client, release.name)) == sorted(
        [f"ClusterRole/{release.fullname}{s}" for s in ("-editor", "-scanning", "-viewer")]
        + [f"ClusterRoleBinding/{release.fullname}-scanning"]
    )

    expected: list[tuple[str, str, str | None, bool]] = []
    for ns in watched:
        expected += [
            ("watch", PLURAL, ns, True),
            ("patch", f"{PLURAL}/status", ns, True),
            ("create", "jobs", ns, True),
            ("list", "pods", ns, True),
            ("create", "events", ns, True),
            ("list", "events", ns, True),
            ("get", "secrets", ns, True),  # a named Secret's consent label
            ("list", "secrets", ns, False),
        ]
    for ns in (namespace, "default"):  # its own namespace is not watched, nor any other
        expected += [
            ("watch", PLURAL, ns, False),
            ("create", "jobs", ns, False),
            ("list", "pods", ns, False),
            ("get", "secrets", ns, False),
        ]
    expected += [
        ("list", PLURAL, None, False),
        ("list", "namespaces", None, True),  # kopf follows the watched namespaces
        ("watch", "namespaces", None, True),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None, True),
    ]
    release.check(expected)

    release.uninstall()
    assert released(k8s_client, release.name) == []
    for ns in watched:
        assert not _exists(rbac.read_namespaced_role, release.fullname, ns)
        assert not _exists(rbac.read_namespaced_role_binding, release.fullname, ns)
    assert release.can_i("create", "jobs", a) is False


def test_pod_security_warning_can_fire(release: Release, k8s_client: ApiClient, namespace: str) -> None:
    """The `restricted` check in test_cluster_wide_install can fail: an insecure override is
    reported by the API server (server-side dry run of the rendered Deployment)."""
    CoreV1Api(k8s_client).patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/warn": "restricted"}}}
    )

    def dry_run(*values: str) -> str:
        rendered = helm(
            [
                "template",
                release.name,
                str(CHART),
                "--namespace",
                namespace,
                *values,
                "--show-only",
                DEPLOYMENT,
            ],
            release.home,
        ).stdout
        proc = subprocess.run(
            [kubectl(), "--kubeconfig", str(release.kubeconfig), "apply", "--dry-run=server", "-f", "-"],
            input=rendered,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return proc.stderr

    assert "violate PodSecurity" not in dry_run()
    warning = dry_run("--set", "securityContext.allowPrivilegeEscalation=true")
    assert 'violate PodSecurity "restricted:latest"' in warning and "allowPrivilegeEscalation" in warning


def _try_create(k8s_client: ApiClient, namespace: str, spec: dict[str, Any]) -> str | None:
    """A server-side dry-run create: None if admitted, else the API server's message."""
    body = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "NejumiEvaluation", "metadata": {"name": "probe"}}
    try:
        CustomObjectsApi(k8s_client).create_namespaced_custom_object(
            GROUP, "v1alpha1", namespace, PLURAL, {**body, "spec": spec}, dry_run="All"
        )
    except ApiException as exc:
        if exc.status == 404:  # the CRD is not served yet
            return "not served"
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    return None


def test_the_policy_refuses_placement_a_creator_could_not_get_itself(
    release: Release, k8s_client: ApiClient, crd_owner: ApiextensionsV1Api, namespace: str
) -> None:
    """No confused deputy: the chart's ValidatingAdmissionPolicy refuses, at admission and naming the
    field and the allow-list, tolerations, node selectors, runtime and priority classes and vLLM
    flags the chart's `policy` does not list, and `--trust-remote-code` unless allowed."""
    release.install()
    wait_until(lambda: crd_established(crd_owner), 30, f"CRD {CRD_NAME} to be Established")
    base = {"model": {"name": "org/model"}}

    def spec(**resources: Any) -> dict[str, Any]:
        return {**base, "resources": {"gpus": 1, **resources}}

    def vllm(*args: str) -> dict[str, Any]:
        return {"model": {"name": "org/model", "vllm": {"extraArgs": list(args)}}}

    store = {"uri": "s3://nejumi-results/x", "credentialsSecretRef": {"name": "s3-creds"}}
    any_taint = spec(tolerations=[{"operator": "Exists"}])
    # the policy is loaded asynchronously after the install
    wait_until(
        lambda: _try_create(k8s_client, namespace, any_taint) not in (None, "not served"), 30, "the policy"
    )
    refused = {
        "tolerations": (any_taint, "policy.tolerations (allowed: nvidia.com/gpu Exists NoSchedule)"),
        "control-plane": (
            spec(tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]),
            "spec.resources.tolerations",
        ),
        "nodeSelector": (spec(nodeSelector={"kubernetes.io/hostname": "gpu-0"}), "policy.nodeSelector"),
        "runtimeClassName": (spec(runtimeClassName="privileged"), "policy.runtimeClassNames (allowed: none)"),
        "priorityClassName": (spec(priorityClassName="system-cluster-critical"), "policy.priorityClassNames"),
        "trust": (vllm("--trust-remote-code"), "policy.allowTrustRemoteCode is false"),
        "trust_": (vllm("--trust_remote_code=true"), "policy.allowTrustRemoteCode is false"),
        "flag": (vllm("--max-model-len", "4096"), "policy.vllmExtraArgs (allowed: none)"),
        "results": (
            {**base, "results": {**store, "endpoint": "https://collector.example.net"}},
            "spec.results.endpoint: the key pair in spec.results.credentialsSecretRef may not be sent to "
            "collector.example.net: the host is not in the operator's policy.keyHosts",
        ),
    }
    for case, (body, expected) in refused.items():
        message = _try_create(k8s_client, namespace, body)
        assert message is not None and expected in message, (case, message)
    gpu = spec(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    assert _try_create(k8s_client, namespace, gpu) is None
    assert _try_create(k8s_client, namespace, base) is None
    # A store's key pair: to AWS S3 (no endpoint) or an in-cluster store; without one, anywhere.
    for results in (store, {**store, "endpoint": "http://minio.team.svc:9000"}, {"uri": store["uri"]}):
        assert _try_create(k8s_client, namespace, {**base, "results": results}) is None, results

    # The cluster admin widens the lists: the same specs are admitted.
    release.helm(
        "upgrade", release.name, str(CHART), "--reuse-values",
        "--set", "policy.vllmExtraArgs={--max-model-len}", "--set", "policy.allowTrustRemoteCode=true",
        "--set", "policy.nodeSelector.kubernetes\\.io/hostname={gpu-0}",
    )  # fmt: skip

    def widened() -> bool:
        return _try_create(k8s_client, namespace, vllm("--max-model-len", "4096")) is None

    wait_until(widened, 30, "the widened policy")
    assert _try_create(k8s_client, namespace, vllm("--max_model_len=4096", "--trust-remote-code")) is None
    assert _try_create(k8s_client, namespace, refused["nodeSelector"][0]) is None
    other_host = spec(nodeSelector={"kubernetes.io/hostname": "gpu-1"})
    assert "policy.nodeSelector" in (_try_create(k8s_client, namespace, other_host) or "")
    assert "policy.vllmExtraArgs" in (_try_create(k8s_client, namespace, vllm("--enforce-eager")) or "")
