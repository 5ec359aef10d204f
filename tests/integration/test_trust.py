"""Trust boundaries, tried as a platform engineer would: the chart installed by `helm install` (its
operator Deployment running in the cluster, its admission policy, its roles), and a user bound
only to the chart's editor ClusterRole in one namespace (who may not read Secrets or create pods,
ServiceAccounts or ConfigMaps).

- No Secret leaves through a spec: a Secret without its owner's consent is refused by the operator
  before any pod exists, and no request carrying its value reaches the user's server; a key may go
  only to a host in `policy.keyHosts` (refused at admission); `apiKeyEnv` is refused in the cluster.
- No object is adopted by name: a ServiceAccount, ConfigMap or Job of the expected name that is not
  the evaluation's fails it with NameConflict, untouched; five evaluations deleted and re-created at
  once each run their own spec.
- A policy tightened by `helm upgrade` mid-run never rewrites a running evaluation.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config

from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
from nejumi_operator.policy import DEFAULT_KEY_HOSTS, LABEL_USABLE_BY_EVALUATIONS
from tests.cluster import ControlPlane, NodeAgent, wait_until
from tests.fixtures.openai_stub import StubServer
from tests.integration.test_in_cluster import CHART, Release, chart_values
from tests.integration.test_status_truth import Recorder, spec
from tests.support.kube import create_evaluation as create

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

CONSENT = {LABEL_USABLE_BY_EVALUATIONS: "true"}
LOOPBACK_KEYS = {"keyHosts": [*DEFAULT_KEY_HOSTS, "127.0.0.1"]}  # the user's stub listens here


@pytest.fixture
def release(kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Release]:
    rel = Release(f"u{secrets.token_hex(3)}", namespace, kubeconfig, tmp_path / "helm-home")
    yield rel
    rel.helm("uninstall", rel.name, "--ignore-not-found", "--wait", "--timeout", "60s", check=False)


@pytest.fixture
def operator_log(release: Release, k8s_client: ApiClient, node_agent: NodeAgent) -> Iterator[None]:
    """On failure, the tail of the chart operator's log (the pod's sandbox on the node agent)."""
    yield
    for pod in release.pods(CoreV1Api(k8s_client), running=False):
        sandbox = node_agent.pod_dir(release.namespace, pod.metadata.name)
        log = sandbox / "operator.log" if sandbox else None
        if log and log.exists():
            print(f"--- {pod.metadata.name} ---\n" + log.read_text(errors="replace")[-6000:])


def install(release: Release, data_mirror: Path, policy: dict[str, Any], command: str = "install") -> None:
    values = {**chart_values(data_mirror), "policy": policy}
    path = release.home / f"{release.name}-{command}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    release.helm(command, release.name, str(CHART), "-f", str(path), "--wait", "--timeout", "120s")


def dry_run_refusal(client: ApiClient, namespace: str, body: dict[str, Any]) -> str | None:
    """The API server's refusal of creating an evaluation with `body` as its spec (a dry run: nothing
    is stored), or None when it would be admitted."""
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NejumiEvaluation", "metadata": {"name": "probe"}}
    try:
        CustomObjectsApi(client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, {**manifest, "spec": body}, dry_run="All"
        )
    except ApiException as exc:
        if exc.status in (403, 422):
            return str(exc.body)
        raise
    return None


def editor(control_plane: ControlPlane, admin: ApiClient, release: Release, tmp_path: Path) -> ApiClient:
    """A user bound only to the chart's editor ClusterRole, in the release's namespace."""
    user = f"editor-{secrets.token_hex(3)}"
    RbacAuthorizationV1Api(admin).create_namespaced_role_binding(
        release.namespace,
        {
            "metadata": {"name": user},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{release.fullname}-editor",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )
    path = control_plane.write_kubeconfig(tmp_path / f"{user}.kubeconfig", user)
    client = new_client_from_config(config_file=str(path))
    # RBAC caches settle within a moment: the user can list evaluations, and cannot read Secrets.
    custom = CustomObjectsApi(client)

    def can_list() -> bool:
        try:
            custom.list_namespaced_custom_object(GROUP, VERSION, release.namespace, PLURAL)
        except ApiException as exc:
            if exc.status == 403:
                return False
            raise
        return True

    wait_until(can_list, 30, "the editor's RoleBinding")
    with pytest.raises(ApiException) as denied:
        CoreV1Api(client).list_namespaced_secret(release.namespace)
    assert denied.value.status == 403
    return client


def refused_at_admission(client: ApiClient, namespace: str, body: dict[str, Any]) -> str:
    """The API server's refusal (waiting a moment for a just-installed admission policy to load)."""
    return wait_until(lambda: dry_run_refusal(client, namespace, body), 30, "the admission policy")


def test_no_secret_leaves_through_a_spec(
    crd: None,
    operator_log: None,
    release: Release,
    control_plane: ControlPlane,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    data_mirror: Path,
    tmp_path: Path,
) -> None:
    core, batch = CoreV1Api(k8s_client), BatchV1Api(k8s_client)
    values = {name: f"{name}-{secrets.token_hex(12)}" for name in ("db-password", "ci-token", "model-key")}
    for name, value in values.items():
        labels = CONSENT if name == "model-key" else {}
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": name, "labels": labels}, "stringData": {"k": value}}
        )
    install(release, data_mirror, LOOPBACK_KEYS)
    user = editor(control_plane, k8s_client, release, tmp_path)

    def ref(name: str) -> dict[str, str]:
        return {"name": name, "key": "k"}

    with StubServer() as theirs, Recorder(k8s_client, namespace) as seen:
        # Secrets that never consented, sent to the user's own server (a host the policy allows).
        create(
            user, namespace, "take-db", spec(theirs.base_url, model={"apiKeySecretRef": ref("db-password")})
        )
        judged = spec(theirs.base_url)
        judged["benchmarks"]["mtbench"] = {
            "questionsPerCategory": 1,
            "judge": {"endpoint": theirs.base_url, "model": "stub-model", "apiKeySecretRef": ref("ci-token")},
        }
        create(user, namespace, "take-ci", judged)
        # A key towards a host outside policy.keyHosts, and an environment variable of the evaluator.
        outside = spec(theirs.base_url)
        outside["benchmarks"]["mtbench"] = {
            "judge": {"endpoint": "https://collector.example.net/v1", "apiKeySecretRef": ref("model-key")}
        }
        body = refused_at_admission(user, namespace, outside)
        assert "spec.benchmarks.mtbench.judge.endpoint" in body and "collector.example.net" in body, body
        assert "policy.keyHosts" in body, body
        body = refused_at_admission(user, namespace, spec(theirs.base_url, model={"apiKeyEnv": "SECRET"}))
        assert "spec.model.apiKeyEnv" in body and "apiKeySecretRef" in body, body
        # The one Secret that consented is used, towards an allowed host.
        create(user, namespace, "fair", spec(theirs.base_url, model={"apiKeySecretRef": ref("model-key")}))

        for name, secret, field in (
            ("take-db", "db-password", "spec.model.apiKeySecretRef"),
            ("take-ci", "ci-token", "spec.benchmarks.mtbench.judge.apiKeySecretRef"),
        ):
            status = seen.wait_for(name, "Failed", "SecretNotUsable", timeout=120)
            assert f"{field}: Secret {secret} is not usable by evaluations" in status["message"], status
            assert (
                LABEL_USABLE_BY_EVALUATIONS in status["message"]
                and "policy.usableSecrets" in status["message"]
            )
        seen.wait_for("fair", "Succeeded", "EvaluationCompleted", timeout=240)
    # Nothing was ever sent with a Secret that did not consent; the consenting one was really used.
    assert theirs.authorizations == {f"Bearer {values['model-key']}"}, theirs.authorizations
    jobs = {j.metadata.name for j in batch.list_namespaced_job(namespace).items}
    assert jobs == {"fair-g1"}, jobs
    assert {
        p.metadata.labels.get("nejumi.wandb.ai/evaluation") for p in core.list_namespaced_pod(namespace).items
    } <= {
        "fair",
        None,
    }


def test_objects_of_the_expected_name_are_never_adopted(
    crd: None,
    release: Release,
    control_plane: ControlPlane,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    data_mirror: Path,
    tmp_path: Path,
) -> None:
    core, batch = CoreV1Api(k8s_client), BatchV1Api(k8s_client)
    install(release, data_mirror, LOOPBACK_KEYS)
    user = editor(control_plane, k8s_client, release, tmp_path)
    # Squatters, made first by someone else: a ServiceAccount (that could read Secrets), a
    # ConfigMap, and a Job (suspended: it would report whatever it likes once it ran).
    planted = {
        "ServiceAccount": core.create_namespaced_service_account(
            namespace, {"metadata": {"name": "sq-sa-evaluator"}}
        ),
        "ConfigMap": core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "sq-cm-progress"}, "data": {"note": "not yours"}}
        ),
        "Job": batch.create_namespaced_job(
            namespace,
            {
                "metadata": {"name": "sq-job-g1"},
                "spec": {
                    "suspend": True,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                        }
                    },
                },
            },
        ),
    }
    with StubServer() as stub, Recorder(k8s_client, namespace) as seen:
        for name in ("sq-sa", "sq-cm", "sq-job"):
            create(user, namespace, name, spec(stub.base_url, resources={"gpus": 0}))
        for name, kind, obj in (
            ("sq-sa", "ServiceAccount", "sq-sa-evaluator"),
            ("sq-cm", "ConfigMap", "sq-cm-progress"),
            ("sq-job", "Job", "sq-job-g1"),
        ):
            status = seen.wait_for(name, "Failed", "NameConflict", timeout=120)
            assert (
                f"{kind} {obj} already exists and is not this evaluation's (no owner)" in status["message"]
            ), status
    assert stub.calls == 0
    # Untouched: the same resourceVersion, no owner added, nothing written into them.
    now = {
        "ServiceAccount": core.read_namespaced_service_account("sq-sa-evaluator", namespace),
        "ConfigMap": core.read_namespaced_config_map("sq-cm-progress", namespace),
        "Job": batch.read_namespaced_job("sq-job-g1", namespace),
    }
    for kind, obj in now.items():
        if kind != "Job":  # the Job controller itself writes the Job's status (its Suspended condition)
            assert obj.metadata.resource_version == planted[kind].metadata.resource_version, kind
        assert obj.metadata.generation == planted[kind].metadata.generation, kind
        assert obj.metadata.labels == planted[kind].metadata.labels, kind
        assert not obj.metadata.owner_references, kind
    assert now["ConfigMap"].data == {"note": "not yours"}
    assert now["Job"].spec.suspend is True
    assert {j.metadata.name for j in batch.list_namespaced_job(namespace).items} == {"sq-job-g1"}


def test_delete_and_recreate_at_once_runs_each_new_spec(
    crd: None,
    release: Release,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    data_mirror: Path,
) -> None:
    """`kubectl replace --force` (Argo CD Replace=true,Force=true; Flux force) on five evaluations:
    the new ones wait for the old ones' objects to be collected and then run their own spec."""
    custom, batch = CustomObjectsApi(k8s_client), BatchV1Api(k8s_client)
    install(release, data_mirror, LOOPBACK_KEYS)
    names = [f"re-{i}" for i in range(5)]
    with (
        StubServer(model="stub-a") as old,
        StubServer(model="stub-b") as new,
        Recorder(k8s_client, namespace) as seen,
    ):
        for name in names:
            create(k8s_client, namespace, name, spec(old.base_url, model={"name": "stub-a"}))
        for name in names:
            seen.wait_for(name, "Succeeded", "EvaluationCompleted", timeout=300)
        old_uids = {
            name: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)["metadata"][
                "uid"
            ]
            for name in names
        }
        calls_before = old.calls
        for name in names:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        seen.latest.clear()
        for name in names:
            create(k8s_client, namespace, name, spec(new.base_url, model={"name": "stub-b"}))
        finals = {
            name: seen.wait_for(name, "Succeeded", "EvaluationCompleted", timeout=300) for name in names
        }
    for name in names:
        evaluation = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        uid = evaluation["metadata"]["uid"]
        assert uid != old_uids[name]
        job = batch.read_namespaced_job(f"{name}-g1", namespace)
        assert [r.uid for r in job.metadata.owner_references] == [uid], name
        assert finals[name]["usage"]["requestsSent"] == 2, finals[name]
        (env,) = [e.value for e in job.spec.template.spec.containers[0].env if e.name == "NEJUMI_SPEC"]
        assert '"name":"stub-b"' in env and "stub-a" not in env, name
    # The race really happened: new evaluations met their namesakes' objects and waited for them.
    assert any(("Pending", "WaitingForCleanup") in seen.seen[name] for name in names), seen.seen
    assert old.calls == calls_before  # nothing of the new run went to the old spec's server
    assert new.calls == 5 * 2, new.calls  # each new evaluation ran its own 2 samples


def test_a_tightened_policy_never_rewrites_a_running_evaluation(
    crd: None,
    release: Release,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    data_mirror: Path,
) -> None:
    core = CoreV1Api(k8s_client)
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    install(release, data_mirror, {**LOOPBACK_KEYS, "tolerations": [gpu]})
    # Slow enough (8 requests one at a time, 4 s each) to be running through the upgrade.
    with StubServer(delay_s=4.0) as stub, Recorder(k8s_client, namespace) as seen:
        body = spec(stub.base_url, resources={"gpus": 0, "tolerations": [gpu]}, generation={"concurrency": 1})
        body["benchmarks"]["jaster"]["testSamples"] = 8
        create(k8s_client, namespace, "admitted", body)
        seen.wait_for("admitted", "Running", None, timeout=120)
        (before,) = release.pods(core)
        install(release, data_mirror, {**LOOPBACK_KEYS, "tolerations": []}, command="upgrade")
        # The upgraded operator (a new pod: Recreate) resumes every evaluation under the new policy.
        wait_until(
            lambda: [p for p in release.pods(core) if p.metadata.name != before.metadata.name],
            120,
            "new operator",
        )
        assert seen.latest["admitted"].get("phase") == "Running", seen.seen["admitted"]
        # New evaluations get the new policy (at admission: the chart's ValidatingAdmissionPolicy,
        # tried with dry runs until the API server has loaded the new version).
        refusal = wait_until(
            lambda: dry_run_refusal(k8s_client, namespace, body), 30, "the new admission policy"
        )
        assert "spec.resources.tolerations" in refusal, refusal
        done = seen.wait_for("admitted", "Succeeded", "EvaluationCompleted", timeout=240)
    assert done["usage"]["requestsSent"] == 8, done
    assert ("Failed", "InvalidSpec") not in seen.seen["admitted"], seen.seen["admitted"]
