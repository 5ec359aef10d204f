"""The chart's read-only leaderboard server (`leaderboard.server`, templates/leaderboard-server/),
checked without a cluster: nothing when disabled; when enabled, RBAC that can only read
NejumiLeaderboards, a pod that passes PodSecurity `restricted` whatever the operator's own values
say, the store's settings as the standard AWS variables (the key pair by reference only), and args
the server itself accepts. On the real control plane: tests/integration/test_leaderboard_server.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nejumi_eval.api.v1alpha1.names import GROUP, LEADERBOARD_PLURAL
from nejumi_eval.leaderboard import server
from tests.support.helm import CHART, find, helm, set_args, template
from tests.unit.charts.test_chart import rules

pytestmark = pytest.mark.timeout(120)

NAME = "nejumi-nejumi-operator-leaderboard-server"
COMPONENT = "app.kubernetes.io/component"
READ_VERBS = {"get", "list", "watch"}
STORE = {
    "endpoint": "https://minio.storage.svc:9000",
    "region": "eu-1",
    "credentialsSecret": "leaderboard-s3",
    "caBundleConfigMap": "store-ca",
    "caBundleKey": "bundle.pem",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def render(home: Path, tmp: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return template(home, "-f", str(path))


def enabled(**leaderboard: Any) -> dict[str, Any]:
    server_values = {"enabled": True, **leaderboard.pop("server", {})}
    return {"leaderboard": {"server": server_values, **leaderboard}}


@pytest.fixture(scope="module")
def docs(home: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(home, tmp_path_factory.mktemp("v"), enabled(store=STORE))


@pytest.fixture(scope="module")
def namespaced(home: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(home, tmp_path_factory.mktemp("v"), {**enabled(), "watchNamespaces": ["team-a", "team-b"]})


def server_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if (d["metadata"].get("labels") or {}).get(COMPONENT) == "leaderboard-server"]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = find(docs, "Deployment", NAME)
    return dep


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(docs)["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = pod(docs)["containers"]
    return c


# ---- off by default ------------------------------------------------------------------------------


def test_nothing_is_rendered_when_disabled(home: Path) -> None:
    for extra in (
        [],
        ["--set", "watchNamespaces={a,b}"],
        ["--set", "leaderboard.store.credentialsSecret=s3"],
    ):
        docs = template(home, *extra)
        assert server_objects(docs) == []
        assert not [d for d in docs if "leaderboard-server" in d["metadata"]["name"]]
    out = helm(
        ["template", "x", str(CHART), "--show-only", "templates/leaderboard-server/deployment.yaml"],
        home,
        check=False,
    )
    assert out.returncode != 0 and "could not find template" in out.stderr


@pytest.mark.parametrize(
    "extra", [[], ["--set", "watchNamespaces={a,b}"]], ids=["cluster-wide", "namespaced"]
)
def test_helm_lint_strict_with_the_server(home: Path, extra: list[str]) -> None:
    out = helm(["lint", "--strict", str(CHART), "--set", "leaderboard.server.enabled=true", *extra], home)
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout, out.stdout
    assert "[WARNING]" not in out.stdout, out.stdout


# ---- what is installed ---------------------------------------------------------------------------


def test_the_server_objects(docs: list[dict[str, Any]]) -> None:
    assert sorted((d["kind"], d["metadata"]["name"]) for d in server_objects(docs)) == [
        ("ClusterRole", NAME),
        ("ClusterRoleBinding", NAME),
        ("Deployment", NAME),
        ("Service", NAME),
        ("ServiceAccount", NAME),
    ]
    for doc in server_objects(docs):
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "nejumi-system"
    spec = deployment(docs)["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["replicas"] == 1
    assert pod(docs)["serviceAccountName"] == NAME
    # The operator's Deployment never selects the server's pods, nor the other way round.
    (operator,) = find(docs, "Deployment", "nejumi-nejumi-operator")
    operator_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert not operator["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert not spec["selector"]["matchLabels"].items() <= operator_labels.items()
    (service,) = find(docs, "Service", NAME)
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_the_container_runs_the_server_from_the_operator_image(docs: list[dict[str, Any]]) -> None:
    c = container(docs)
    assert c["image"] == container_of(docs, "nejumi-nejumi-operator")["image"]
    assert c["command"] == ["python", "-m", "nejumi_eval.leaderboard.server"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["resources"]["limits"] == {"memory": "256Mi"}
    args = server.parse_args(c["args"])  # the server accepts what the chart passes
    assert (args.port, args.namespace, args.path_style) == (8080, [], None)


def container_of(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (dep,) = find(docs, "Deployment", name)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def test_namespaced_args_and_values(home: Path, tmp_path: Path, namespaced: list[dict[str, Any]]) -> None:
    args = server.parse_args(container(namespaced)["args"])
    assert args.namespace == ["team-a", "team-b"]
    values = enabled(server={"port": 9000, "replicaCount": 2, "serviceType": "NodePort"})
    docs = render(home, tmp_path, {**values, "image": {"tag": "dev"}})
    c = container(docs)
    assert server.parse_args(c["args"]).port == 9000
    assert c["image"] == "ghcr.io/nejumi/operator:dev"
    assert deployment(docs)["spec"]["replicas"] == 2
    (service,) = find(docs, "Service", NAME)
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["port"] == 9000


# ---- RBAC: read NejumiLeaderboards, nothing else ---------------------------------------------------


def test_rbac_reads_leaderboards_only(docs: list[dict[str, Any]], namespaced: list[dict[str, Any]]) -> None:
    (role,) = find(docs, "ClusterRole", NAME)
    assert rules(role) == {(GROUP, LEADERBOARD_PLURAL): {"get", "list"}}
    (binding,) = find(docs, "ClusterRoleBinding", NAME)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": NAME,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": "nejumi-system"}]

    roles = [r for r in find(namespaced, "Role") if r["metadata"]["name"] == NAME]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [b for b in find(namespaced, "RoleBinding") if b["metadata"]["name"] == NAME]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": "nejumi-system"}]
    assert not find(namespaced, "ClusterRole", NAME) and not find(namespaced, "ClusterRoleBinding", NAME)

    # No write verb anywhere: every rule of every role the server is bound to only reads.
    for role in [*find(docs, "ClusterRole", NAME), *roles]:
        for (_, resource), verbs in rules(role).items():
            assert verbs <= READ_VERBS, (role["metadata"], resource, verbs)
            assert resource == LEADERBOARD_PLURAL  # not their status, no Secret, no evaluation


def test_every_server_rule_says_why() -> None:
    lines = (
        (CHART / "templates" / "leaderboard-server" / "_helpers.tpl").read_text(encoding="utf-8").splitlines()
    )
    rule_lines = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(rule_lines) == 1
    assert all(lines[i - 1].strip().startswith("#") for i in rule_lines)


def test_no_server_rbac_without_rbac_create(home: Path) -> None:
    docs = template(home, "--set", "leaderboard.server.enabled=true", "--set", "rbac.create=false")
    assert sorted(d["kind"] for d in server_objects(docs)) == ["Deployment", "Service", "ServiceAccount"]


# ---- PodSecurity restricted -----------------------------------------------------------------------

INSECURE = {
    "podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
    "securityContext": {
        "allowPrivilegeEscalation": True,
        "privileged": True,
        "readOnlyRootFilesystem": False,
    },
}


@pytest.mark.parametrize("overrides", [{}, INSECURE], ids=["defaults", "insecure-operator-values"])
def test_the_pod_meets_pod_security_restricted(home: Path, tmp_path: Path, overrides: dict[str, Any]) -> None:
    """The checks of the `restricted` profile (pod-security-standards), one by one, whatever the
    operator's own security values say (they are the operator's)."""
    docs = render(home, tmp_path, {**enabled(store=STORE), **overrides})
    spec, c = pod(docs), container(docs)
    psc, csc = spec["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0 and psc["runAsGroup"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["allowPrivilegeEscalation"] is False and csc.get("privileged", False) is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["readOnlyRootFilesystem"] is True
    assert not {"hostNetwork", "hostPID", "hostIPC"} & spec.keys()
    assert all("hostPort" not in p for p in c["ports"])
    # Only volume types restricted allows; a writable /tmp under the read-only root.
    assert all(set(v) - {"name"} <= {"emptyDir", "configMap"} for v in spec["volumes"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_the_default_user_is_the_images(docs: list[dict[str, Any]]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert pod(docs)["securityContext"]["runAsUser"] == values["podSecurityContext"]["runAsUser"] == 10001


# ---- the store ------------------------------------------------------------------------------------


def test_store_env_is_rendered_from_values(docs: list[dict[str, Any]]) -> None:
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["AWS_ENDPOINT_URL"] == {"name": "AWS_ENDPOINT_URL", "value": STORE["endpoint"]}
    assert env["AWS_REGION"]["value"] == "eu-1"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # by reference, never a value
        assert env[key] == {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": "leaderboard-s3", "key": key}},
        }
    # The CA bundle: the ConfigMap's key, mounted read-only where AWS_CA_BUNDLE points.
    bundle = Path(env["AWS_CA_BUNDLE"]["value"])
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["mountPath"] == str(bundle.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod(docs)["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"] == {"name": "store-ca", "items": [{"key": "bundle.pem", "path": bundle.name}]}
    assert set(env) == {
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_CA_BUNDLE",
    }


def test_no_store_env_without_store_values(home: Path) -> None:
    docs = template(home, "--set", "leaderboard.server.enabled=true")
    c = container(docs)
    assert "env" not in c
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp"]
    assert [v["name"] for v in pod(docs)["volumes"]] == ["tmp"]
    docs = template(
        home, "--set", "leaderboard.server.enabled=true", "--set", "leaderboard.store.region=ap-1"
    )
    assert container(docs)["env"] == [{"name": "AWS_REGION", "value": "ap-1"}]


# ---- values and their schema ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"leaderboard.server.port": "0"}, "/leaderboard/server/port"),
        ({"leaderboard.server.port": "x"}, "/leaderboard/server/port"),
        ({"leaderboard.server.enabled": "yes"}, "/leaderboard/server/enabled"),
        ({"leaderboard.server.serviceType": "Ingress"}, "/leaderboard/server/serviceType"),
        ({"leaderboard.server.command": "{}"}, "/leaderboard/server/command/0"),
        ({"leaderboard.server.replicaCount": "-1"}, "/leaderboard/server/replicaCount"),
        ({"leaderboard.server.image": "x"}, "additional properties 'image' not allowed"),
        ({"leaderboard.store.uri": "https://bucket/x"}, "/leaderboard/store/uri"),
        ({"leaderboard.store.endpoint": "minio:9000"}, "/leaderboard/store/endpoint"),
        ({"leaderboard.store.credentialsSecret": "Not_A_Name"}, "/leaderboard/store/credentialsSecret"),
        ({"leaderboard.store.caBundleConfigMap": "Bad Name"}, "/leaderboard/store/caBundleConfigMap"),
        ({"leaderboard.store.secretKey": "x"}, "additional properties 'secretKey' not allowed"),
        ({"leaderboard.quietSeconds": "-1"}, "/leaderboard/quietSeconds"),
        ({"leaderboard.memoryMiB": "1.5"}, "/leaderboard/memoryMiB"),
        ({"policy.leaderboardNamespaces.Team_A": "{x}"}, "invalid propertyName 'Team_A'"),
    ],
)
def test_schema_rejects_bad_leaderboard_values(home: Path, values: dict[str, str], where: str) -> None:
    out = helm(["template", "x", str(CHART), *set_args(values)], home, check=False)
    assert out.returncode != 0, out.stdout
    assert where in out.stderr, out.stderr


def test_schema_accepts_leaderboard_namespaces(home: Path) -> None:
    docs = template(home, "--set-json", 'policy.leaderboardNamespaces={"*":["shared"],"team-a":["*"]}')
    assert find(docs, "Deployment")


def test_long_release_names_stay_within_63_characters(home: Path) -> None:
    docs = template(
        home, "--set", "leaderboard.server.enabled=true", "--set", "watchNamespaces={a}", release="r" * 53
    )
    for doc in server_objects(docs):
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
    names = {d["metadata"]["name"] for d in server_objects(docs)}
    assert len(names) == 1 and names.isdisjoint(
        {d["metadata"]["name"] for d in find(docs, "Deployment")} - names
    )
