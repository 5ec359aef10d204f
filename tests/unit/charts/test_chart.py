"""The Helm chart and the two Dockerfiles, checked without a cluster: `helm lint`, `helm template`
for the default and the namespaced install, the values schema, the RBAC rules, the CRD copy, and
what can be read statically from the Dockerfiles."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

import nejumi_operator.__main__ as operator_main
from nejumi_eval.api.v1alpha1.crd import CRD_PATH, LEADERBOARD_CRD_PATH
from nejumi_eval.api.v1alpha1.names import GROUP, LEADERBOARD_PLURAL, PLURAL
from nejumi_eval.api.v1alpha1.spec import ResultsSpec
from nejumi_operator.settings import DEFAULT_COMMAND, DEFAULT_IMAGE, OperatorConfig
from tests.support.helm import CHART, REPO, find, helm, set_args, template

pytestmark = pytest.mark.timeout(120)

OPERATOR_COMMAND = ["python", "-m", "nejumi_operator"]
# The operator's rules, exactly: a change here is a change in what the operator may do.
OPERATOR_RULES = {
    (GROUP, PLURAL): {"get", "list", "watch", "patch"},
    (GROUP, f"{PLURAL}/status"): {"patch"},
    (GROUP, f"{PLURAL}/finalizers"): {"update"},
    (GROUP, LEADERBOARD_PLURAL): {"get", "list", "watch", "patch"},
    (GROUP, f"{LEADERBOARD_PLURAL}/status"): {"patch"},
    (GROUP, f"{LEADERBOARD_PLURAL}/finalizers"): {"update"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},  # an edit's earlier unfinished Job
    ("leaderworkerset.x-k8s.io", "leaderworkersets"): {"create", "get", "list", "patch", "delete"},
    ("", "persistentvolumeclaims"): {"create", "get"},
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"create", "list"},
    ("", "configmaps"): {"create", "get", "list", "watch", "patch"},
    ("", "serviceaccounts"): {"create", "get"},
    ("rbac.authorization.k8s.io", "roles"): {"create", "get"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"create", "get"},
    ("kueue.x-k8s.io", "workloads"): {"list"},
    ("", "secrets"): {"get"},  # a named Secret's labels (consent), as PartialObjectMetadata
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="module")
def default_docs(home: Path) -> list[dict[str, Any]]:
    return template(home)


@pytest.fixture(scope="module")
def namespaced_docs(home: Path) -> list[dict[str, Any]]:
    return template(home, "--set", "watchNamespaces={team-a,team-b}")


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = find(docs, "Deployment")
    return dep


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return c


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs)["env"]}


def rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def chart_yaml() -> dict[str, Any]:
    return yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))


# ---- lint, versions, CRD copy ------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [[], ["--set", "watchNamespaces={a,b}"]], ids=["cluster-wide", "namespaced"]
)
def test_helm_lint_strict(home: Path, extra: list[str]) -> None:
    for flags in ([], ["--strict"]):
        out = helm(["lint", *flags, str(CHART), *extra], home)
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout, out.stdout
        assert "[ERROR]" not in out.stdout and "[WARNING]" not in out.stdout, out.stdout


def test_lint_fails_on_a_bad_value(home: Path) -> None:
    """The lint check can fail: a value the schema rejects fails `helm lint --strict`."""
    out = helm(["lint", "--strict", str(CHART), "--set", "replicaCount=x"], home, check=False)
    assert out.returncode != 0
    assert "at '/replicaCount': got string, want integer" in out.stdout + out.stderr


def test_app_version_is_the_package_version() -> None:
    chart = chart_yaml()
    assert chart["appVersion"] == metadata.version("nejumi") == "0.1.0"
    assert chart["apiVersion"] == "v2" and chart["name"] == "nejumi-operator"


def test_chart_crd_is_a_byte_identical_copy() -> None:
    """`make crd` writes both kinds' files and their chart copies; `make crd-check` and this test
    fail when they differ."""
    paths = sorted([CRD_PATH, LEADERBOARD_CRD_PATH])
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [p.name for p in paths]
    for path in paths:
        copy = CHART / "crds" / path.name
        assert copy.read_bytes() == path.read_bytes(), "charts/nejumi-operator/crds/ differs: run `make crd`"


def test_crd_check_catches_a_stale_chart_copy(tmp_path: Path) -> None:
    """The Makefile's crd-check compares each file with cmp: a changed copy must fail it."""
    recipe = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "cp $(CRD_FILES) charts/nejumi-operator/crds/" in recipe
    assert "cmp -s $$f charts/nejumi-operator/$$f" in recipe
    for path in (CRD_PATH, LEADERBOARD_CRD_PATH):
        assert f"{path.parent.name}/{path.name}" in recipe
    stale = tmp_path / "copy.yaml"
    stale.write_bytes(CRD_PATH.read_bytes() + b"\n")
    assert subprocess.run(["cmp", "-s", str(CRD_PATH), str(stale)], check=False).returncode != 0


def test_rendered_crd_is_the_committed_one(default_docs: list[dict[str, Any]]) -> None:
    crds = sorted(find(default_docs, "CustomResourceDefinition"), key=lambda d: d["metadata"]["name"])
    committed = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in (LEADERBOARD_CRD_PATH, CRD_PATH)]
    assert crds == sorted(committed, key=lambda d: d["metadata"]["name"])


# ---- the Deployment ----------------------------------------------------------------------------


def test_default_objects(default_docs: list[dict[str, Any]]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in default_docs)
    assert kinds == [
        ("ClusterRole", "nejumi-nejumi-operator"),
        ("ClusterRole", "nejumi-nejumi-operator-editor"),
        ("ClusterRole", "nejumi-nejumi-operator-scanning"),
        ("ClusterRole", "nejumi-nejumi-operator-viewer"),
        ("ClusterRoleBinding", "nejumi-nejumi-operator"),
        ("ClusterRoleBinding", "nejumi-nejumi-operator-scanning"),
        ("CustomResourceDefinition", f"{PLURAL}.{GROUP}"),
        ("CustomResourceDefinition", f"{LEADERBOARD_PLURAL}.{GROUP}"),
        ("Deployment", "nejumi-nejumi-operator"),
        ("ServiceAccount", "nejumi-nejumi-operator"),
        ("ValidatingAdmissionPolicy", "nejumi-nejumi-operator-leaderboard-policy"),
        ("ValidatingAdmissionPolicy", "nejumi-nejumi-operator-policy"),
        ("ValidatingAdmissionPolicyBinding", "nejumi-nejumi-operator-leaderboard-policy"),
        ("ValidatingAdmissionPolicyBinding", "nejumi-nejumi-operator-policy"),
    ]
    for doc in default_docs:
        if doc["kind"] != "CustomResourceDefinition":
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "nejumi-operator"
            assert labels["app.kubernetes.io/instance"] == "nejumi"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_deployment_defaults(default_docs: list[dict[str, Any]]) -> None:
    dep = deployment(default_docs)
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["serviceAccountName"] == "nejumi-nejumi-operator"
    c = container(default_docs)
    assert c["image"] == f"ghcr.io/nejumi/operator:{chart_yaml()['appVersion']}"
    assert c["command"] == OPERATOR_COMMAND
    assert c["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert key not in pod


def test_secure_defaults(default_docs: list[dict[str, Any]]) -> None:
    pod = deployment(default_docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(default_docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # The read-only root filesystem gets a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container(default_docs)["volumeMounts"]


def test_default_evaluator_env_is_the_operator_default(default_docs: list[dict[str, Any]]) -> None:
    """The chart's defaults and settings.py's defaults say the same thing (but for the leaderboard
    cache's folder: only the chart has a volume to put it on)."""
    env = env_of(default_docs)
    assert env["NEJUMI_OPERATOR_EVALUATOR_IMAGE"] == f"ghcr.io/nejumi/evaluator:{chart_yaml()['appVersion']}"
    config = OperatorConfig.from_env(env)
    assert config.leaderboard_cache_dir == "/var/cache/nejumi/leaderboards"
    assert dataclasses.replace(config, leaderboard_cache_dir="") == OperatorConfig()
    assert config.image == DEFAULT_IMAGE and config.command == DEFAULT_COMMAND


def test_evaluator_values_reach_the_operator_settings(home: Path, tmp_path: Path) -> None:
    values = {
        "image": {"tag": "dev"},
        "evaluator": {
            "image": {"repository": "registry.local/eval", "tag": "1.2.3"},
            "command": ["python", "-m", "nejumi_eval.cli", "run"],
            "env": {"HF_HUB_OFFLINE": "1"},
            "backoffLimit": 0,
            "stages": False,
            "queueName": "gpu-queue",
        },
        "operator": {"resyncSeconds": 7.5, "serverTimeoutSeconds": 15, "verbose": True},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
    docs = template(home, "-f", str(tmp_path / "values.yaml"))
    config = OperatorConfig.from_env(env_of(docs))
    assert config.image == "registry.local/eval:1.2.3"
    assert config.command == ("python", "-m", "nejumi_eval.cli", "run")
    assert config.evaluator_env == {"HF_HUB_OFFLINE": "1"}
    assert config.default_queue_name == "gpu-queue"
    assert (config.backoff_limit, config.resync_seconds, config.server_timeout_seconds) == (0, 7.5, 15)
    assert config.staged is False
    assert container(docs)["image"] == "ghcr.io/nejumi/operator:dev"
    assert "--verbose" in container(docs)["args"]


def test_the_price_table_reaches_the_operator_settings(home: Path, tmp_path: Path) -> None:
    """`pricing` is configuration: a plain env value (never a Secret), parsed at startup into the
    table the Jobs get; without a price in it nothing is rendered (the operator's default: none)."""
    assert "NEJUMI_OPERATOR_PRICING" not in env_of(template(home))
    values = {
        "pricing": {
            "currency": "JPY",
            "models": {"gpt-4-0613": {"promptPerMillionTokens": 4500, "completionPerMillionTokens": 9000}},
            "gpuHour": 400,
        }
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
    docs = template(home, "-f", str(tmp_path / "values.yaml"))
    (entry,) = [e for e in container(docs)["env"] if e["name"] == "NEJUMI_OPERATOR_PRICING"]
    assert set(entry) == {"name", "value"}  # a value, not a secretKeyRef
    pricing = OperatorConfig.from_env(env_of(docs)).pricing
    assert pricing is not None and (pricing.currency, pricing.gpu_hour) == ("JPY", 400)
    assert pricing.models["gpt-4-0613"].completion_per_million_tokens == 9000
    free_gpus = template(home, "--set", "pricing.gpuHour=0")
    assert OperatorConfig.from_env(env_of(free_gpus)).pricing is not None  # 0 is a price


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pricing.gpuHour": "-1"}, "at '/pricing/gpuHour'"),
        ({"pricing.models.gpt-4.prompt": "1"}, "at '/pricing/models/gpt-4'"),
    ],
)
def test_the_schema_refuses_a_bad_price_table(home: Path, values: dict[str, str], message: str) -> None:
    out = helm(["template", "x", str(CHART), *set_args(values)], home, check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_operator_command_is_a_value(home: Path) -> None:
    """`operator.command` replaces the container's command (e.g. an interpreter outside the image);
    the chart's args follow it unchanged."""
    docs = template(home, "--set-json", 'operator.command=["/opt/venv/bin/python","-m","nejumi_operator"]')
    assert container(docs)["command"] == ["/opt/venv/bin/python", "-m", "nejumi_operator"]
    assert container(docs)["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `python -m nejumi_operator <args>` would hand to kopf.run (kopf itself not started)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "configure", lambda **kw: seen.update(configure=kw))
    monkeypatch.setattr(kopf, "run", lambda **kw: seen.update(kw))
    assert operator_main.main(args) == 0
    return seen


def test_rendered_args_run_the_operator_cluster_wide(
    default_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = run_main(container(default_docs)["args"], monkeypatch)
    assert seen["clusterwide"] is True and seen["namespaces"] == []
    assert seen["standalone"] is True
    assert seen["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"


def test_rendered_args_run_the_operator_namespaced(
    namespaced_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = container(namespaced_docs)["args"]
    assert args[1:] == ["--namespace=team-a", "--namespace=team-b"]
    seen = run_main(args, monkeypatch)
    assert seen["clusterwide"] is False and seen["namespaces"] == ["team-a", "team-b"]


# ---- RBAC --------------------------------------------------------------------------------------


def test_cluster_wide_rbac(default_docs: list[dict[str, Any]]) -> None:
    (role,) = find(default_docs, "ClusterRole", "nejumi-nejumi-operator")
    assert rules(role) == OPERATOR_RULES
    (binding,) = find(default_docs, "ClusterRoleBinding", "nejumi-nejumi-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "nejumi-nejumi-operator",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nejumi-nejumi-operator", "namespace": "nejumi-system"}
    ]
    (scanning,) = find(default_docs, "ClusterRole", "nejumi-nejumi-operator-scanning")
    assert rules(scanning) == {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
    assert not find(default_docs, "Role") and not find(default_docs, "RoleBinding")


def test_namespaced_rbac(namespaced_docs: list[dict[str, Any]]) -> None:
    roles = find(namespaced_docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules(role) == OPERATOR_RULES
    bindings = find(namespaced_docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role" and b["roleRef"]["name"] == "nejumi-nejumi-operator"
        assert b["subjects"][0]["namespace"] == "nejumi-system"
    # No cluster-wide operator rules; only kopf's scanning, now with namespaces.
    assert not find(namespaced_docs, "ClusterRole", "nejumi-nejumi-operator")
    assert not find(namespaced_docs, "ClusterRoleBinding", "nejumi-nejumi-operator")
    (scanning,) = find(namespaced_docs, "ClusterRole", "nejumi-nejumi-operator-scanning")
    assert rules(scanning) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }


def test_user_roles(default_docs: list[dict[str, Any]]) -> None:
    (editor,) = find(default_docs, "ClusterRole", "nejumi-nejumi-operator-editor")
    labels = editor["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    full = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
    assert rules(editor) == {
        (GROUP, PLURAL): full,
        (GROUP, f"{PLURAL}/status"): {"get"},
        (GROUP, LEADERBOARD_PLURAL): full,
        (GROUP, f"{LEADERBOARD_PLURAL}/status"): {"get"},
    }
    (viewer,) = find(default_docs, "ClusterRole", "nejumi-nejumi-operator-viewer")
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert rules(viewer) == {
        (GROUP, PLURAL): {"get", "list", "watch"},
        (GROUP, f"{PLURAL}/status"): {"get"},
        (GROUP, LEADERBOARD_PLURAL): {"get", "list", "watch"},
        (GROUP, f"{LEADERBOARD_PLURAL}/status"): {"get", "list", "watch"},
    }


def test_no_wildcards_secrets_or_escalation(default_docs: list[dict[str, Any]], namespaced_docs) -> None:
    for doc in default_docs + namespaced_docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        for (group, resource), verbs in rules(doc).items():
            assert "*" not in (group, resource) and "*" not in verbs, doc["metadata"]["name"]
            assert resource not in ("pods/exec", "pods/log", "clusterroles", "clusterrolebindings")
            if resource == "secrets":  # one named Secret's labels (consent); never list, watch or write
                assert verbs == {"get"}, doc["metadata"]["name"]
            assert not verbs & {"escalate", "bind", "impersonate"}
            # Roles only to create the evaluator's progress Role: without escalate/bind, RBAC lets the
            # operator grant no more than it holds itself, and never change or delete a Role.
            if resource in ("roles", "rolebindings"):
                assert verbs == {"create", "get"}


def test_rbac_without_create(home: Path) -> None:
    docs = template(home, "--set", "rbac.create=false", "--set", "serviceAccount.create=false")
    # No RBAC objects; the admission policy is not RBAC (policy.enabled=false drops it).
    assert sorted({d["kind"] for d in docs}) == [
        "CustomResourceDefinition",
        "Deployment",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "default"


def test_every_rbac_rule_says_why() -> None:
    """A comment line directly above every rule, in the templates (helm keeps them in the output)."""
    sources = [*(CHART / "templates" / "rbac").glob("*.yaml"), CHART / "templates" / "_helpers.tpl"]
    count = 0
    for path in sources:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                count += 1
                assert lines[i - 1].strip().startswith("#"), f"{path.name}:{i + 1}: a rule without a reason"
    assert count == 16 + 2 + 4 + 3  # operator, scanning, editor, viewer


def test_long_release_names_stay_within_63_characters(home: Path) -> None:
    release = "r" * 53  # helm's own limit for release names
    docs = template(home, "--set", "watchNamespaces={a}", release=release)
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        for value in (doc["metadata"].get("labels") or {}).values():
            assert len(value) <= 63
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"]
    assert len(set(names)) == len(names) == 3  # scanning, editor, viewer stay distinct


# ---- values and their schema -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "x"}, "at '/replicaCount': got string, want integer"),
        ({"replicaCount": -1}, "at '/replicaCount': minimum: got -1, want 0"),
        ({"replicaCoutn": "1"}, "additional properties 'replicaCoutn' not allowed"),
        ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy'"),
        ({"watchNamespaces": "{Team_A}"}, "at '/watchNamespaces/0'"),
        ({"evaluator.command": "null"}, "at '/evaluator': missing property 'command'"),
        ({"evaluator.command": "{}"}, "at '/evaluator/command/0': minLength: got 0, want 1"),
        ({"evaluator.env.N": "1"}, "at '/evaluator/env/N': got number, want string"),
        ({"operator.command": "null"}, "at '/operator': missing property 'command'"),
        ({"operator.command": "{}"}, "at '/operator/command/0': minLength: got 0, want 1"),
    ],
)
def test_schema_rejects_bad_values(home: Path, values: dict[str, str], message: str) -> None:
    out = helm(["template", "x", str(CHART), *set_args(values)], home, check=False)
    assert out.returncode != 0, out.stdout
    assert "values don't meet the specifications of the schema" in out.stderr
    assert message in out.stderr, out.stderr


def value_paths(node: Any, prefix: str = "") -> list[str]:
    """Leaf paths of values.yaml (an empty map/list or a scalar is a leaf)."""
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in value_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def documented_keys(text: str) -> set[str]:
    """Keys with a `# --` comment block directly above them (helm-docs style)."""
    out: set[str] = set()
    stack: list[tuple[int, str]] = []
    pending = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = True
            continue
        if stripped.startswith("#") and pending:
            continue  # the comment block goes on
        match = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if not match:
            pending = False if stripped else pending
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if pending:
            out.add(".".join(k for _, k in stack))
        pending = False
    return out


def test_every_value_is_documented_in_values_and_readme() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    documented = documented_keys(text)
    for path in value_paths(yaml.safe_load(text)):
        parts = path.split(".")
        assert any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)), (
            f"values.yaml: {path} has no `# --` comment"
        )
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `([\w.]+)` \|", readme, re.M))
    assert table == documented, f"README values table vs values.yaml: {sorted(table ^ documented)}"


def test_schema_accepts_the_defaults_and_names_every_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(values) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


# ---- Dockerfiles -------------------------------------------------------------------------------


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec (JSON) form: {args}"
    return value


@pytest.mark.parametrize("path", ["operator/Dockerfile", "evaluator-image/Dockerfile"])
def test_dockerfile_copies_exist_and_bases_are_pinned(path: str) -> None:
    steps = dockerfile(REPO / path)
    stages = {args.split()[-1] for word, args in steps if word == "FROM" and " AS " in args.upper()}
    for word, args in steps:
        if word == "FROM":
            image = args.split()[0]
            assert re.search(r":[\w][\w.-]*$", image) and not image.endswith(":latest"), f"unpinned: {image}"
        if word == "COPY":
            parts = shlex.split(args)
            if any(p.startswith("--from=") for p in parts):
                assert parts[0].split("=", 1)[1] in stages
                continue
            for src in parts[:-1]:
                assert (REPO / src).exists(), f"{path}: COPY {src}: not in the build context (repo root)"
    assert "pyproject.toml" in {s for w, a in steps if w == "COPY" for s in shlex.split(a)}


def test_operator_image() -> None:
    steps = dockerfile(REPO / "operator" / "Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    (run,) = [a for w, a in steps if w == "RUN" and "pip install" in a]
    assert 'pip install ".[operator,leaderboard]"' in run
    (user,) = [a for w, a in steps if w == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    (entrypoint,) = [exec_form(a) for w, a in steps if w == "ENTRYPOINT"]
    assert entrypoint == OPERATOR_COMMAND


def test_evaluator_image_default_command_is_the_operator_default() -> None:
    steps = dockerfile(REPO / "evaluator-image" / "Dockerfile")
    assert steps[-2][0] == "ENTRYPOINT" and steps[-1][0] == "CMD"
    assert exec_form(steps[-2][1]) + exec_form(steps[-1][1]) == list(DEFAULT_COMMAND)
    bases = [a.split()[0] for w, a in steps if w == "FROM"]
    assert bases[-1].startswith("vllm/vllm-openai:v")
    assert any('".[eval]"' in a for w, a in steps if w == "RUN")


def test_operator_imports_only_the_light_core() -> None:
    """operator/Dockerfile installs `.[operator]` only: the operator must not import the eval extras."""
    heavy = ["aiosqlite", "httpx", "openai", "rhoknp", "tenacity", "torch", "transformers", "wandb"]
    code = (
        "import sys, nejumi_operator.__main__, nejumi_operator.handlers\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ---- shared prepared data (issue 8 §5) ------------------------------------------------------------


def test_no_prepared_data_pvc_by_default(default_docs: list[dict[str, Any]]) -> None:
    env = env_of(default_docs)
    assert env["NEJUMI_OPERATOR_PREPARED_DATA_PVC"] == ""
    assert OperatorConfig.from_env(env).prepared_data_pvc == ""


def test_prepared_data_pvc_reaches_the_evaluator_jobs(home: Path) -> None:
    from nejumi_operator.reconcile.job import PREPARED_DATA_MOUNT, build_job

    docs = template(home, "--set", "evaluator.preparedDataPVC=nejumi-prepared")
    config = OperatorConfig.from_env(env_of(docs))
    assert config.prepared_data_pvc == "nejumi-prepared"
    job = build_job(
        {"metadata": {"name": "e", "namespace": "team-a"}, "spec": {"model": {"name": "m"}}}, config
    )
    pod = job["spec"]["template"]["spec"]
    assert {
        "name": "prepared-data",
        "persistentVolumeClaim": {"claimName": "nejumi-prepared", "readOnly": True},
    } in (pod["volumes"])
    (c,) = pod["containers"]
    assert {"name": "prepared-data", "mountPath": PREPARED_DATA_MOUNT, "readOnly": True} in c["volumeMounts"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["NEJUMI_PREPARED_DIRS"].split(":")[-1] == PREPARED_DATA_MOUNT


@pytest.mark.parametrize("bad", ["Not_A_Name", "-x", "x" * 254])
def test_schema_rejects_a_bad_prepared_data_pvc(home: Path, bad: str) -> None:
    out = helm(["template", "x", str(CHART), "--set", f"evaluator.preparedDataPVC={bad}"], home, check=False)
    assert out.returncode != 0, out.stdout
    assert "at '/evaluator/preparedDataPVC'" in out.stderr, out.stderr


def test_evaluator_image_bakes_prepared_data_at_its_searched_path() -> None:
    """The Dockerfile prepares every dataset at build time into the root NEJUMI_PREPARED_DIRS names,
    the one the operator names again when it appends a PVC (a container env replaces the image's)."""
    from nejumi_operator.reconcile.job import IMAGE_PREPARED_DIR

    steps = dockerfile(REPO / "evaluator-image" / "Dockerfile")
    envs = [a for w, a in steps if w == "ENV" and a.startswith("NEJUMI_PREPARED_DIRS=")]
    assert envs == [f"NEJUMI_PREPARED_DIRS={IMAGE_PREPARED_DIR}"]
    (prepare,) = [" ".join(a.split()) for w, a in steps if w == "RUN" and "jaster prepare" in a]
    assert f"NEJUMI_CACHE_DIR={IMAGE_PREPARED_DIR} nejumi-eval -q jaster prepare &&" in prepare
    assert "NEJUMI_DATA_MIRROR" not in prepare  # the full data from the pinned URLs, as a pod sees it
    # All 16 (no dataset names after `prepare`), then the raw files go: only prepared records are read.
    assert f"rm -rf {IMAGE_PREPARED_DIR}/raw" in prepare
    baked = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "jaster prepare" in a)
    assert baked < [w for w, _ in steps].index("ENTRYPOINT")


# ---- the default results destination (issue 18) ---------------------------------------------------


def test_no_default_results_without_a_uri(default_docs: list[dict[str, Any]], home: Path) -> None:
    assert "NEJUMI_OPERATOR_RESULTS" not in env_of(default_docs)
    # The other keys mean nothing without a uri: nothing is rendered for them either.
    docs = template(home, "--set", "results.credentialsSecret=s3-creds", "--set", "results.region=eu-west-1")
    assert "NEJUMI_OPERATOR_RESULTS" not in env_of(docs)
    assert OperatorConfig.from_env(env_of(docs)).default_results is None


def test_the_default_results_reach_the_evaluator_jobs(home: Path, tmp_path: Path) -> None:
    from nejumi_operator.reconcile.job import build_job

    values = {
        "results": {
            "uri": "s3://nejumi-results/cluster-a",
            "endpoint": "https://minio.storage.svc:9000",
            "region": "eu-1",
            "credentialsSecret": "nejumi-s3",
            "caBundleConfigMap": "store-ca",
            "pathStyle": False,
        }
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
    env = env_of(template(home, "-f", str(tmp_path / "values.yaml")))
    # Exactly a spec's `results` section, as JSON.
    assert json.loads(env["NEJUMI_OPERATOR_RESULTS"]) == {
        "uri": "s3://nejumi-results/cluster-a",
        "endpoint": "https://minio.storage.svc:9000",
        "region": "eu-1",
        "credentialsSecretRef": {"name": "nejumi-s3"},
        "caBundleRef": {"name": "store-ca", "key": "ca.crt"},
        "pathStyle": False,
    }
    config = OperatorConfig.from_env(env)
    assert (
        config.default_results is not None and config.default_results.uri == "s3://nejumi-results/cluster-a"
    )
    job = build_job(
        {"metadata": {"name": "e", "namespace": "team-a"}, "spec": {"model": {"name": "m"}}}, config
    )
    (c,) = job["spec"]["template"]["spec"]["containers"]
    by_name = {e["name"]: e for e in c["env"]}
    assert by_name["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "nejumi-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert by_name["NEJUMI_RESULTS_KEY"]["value"] == "team-a/e/1"
    # Only the uri: the rest left out, not sent empty.
    only = env_of(template(home, "--set", "results.uri=s3://nejumi-results"))
    assert json.loads(only["NEJUMI_OPERATOR_RESULTS"]) == {"uri": "s3://nejumi-results"}
    assert OperatorConfig.from_env(only).default_results == ResultsSpec(uri="s3://nejumi-results")


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"results.uri": "https://bucket/x"}, "/results/uri"),
        ({"results.uri": "s3://Bucket"}, "/results/uri"),
        ({"results.endpoint": "minio:9000"}, "/results/endpoint"),
        ({"results.credentialsSecret": "Not_A_Name"}, "/results/credentialsSecret"),
        ({"results.pathStyle": "yes"}, "/results/pathStyle"),
        ({"results.secret": "x"}, "additional properties 'secret' not allowed"),
    ],
)
def test_schema_rejects_bad_results_values(home: Path, values: dict[str, str], where: str) -> None:
    out = helm(["template", "x", str(CHART), *set_args(values)], home, check=False)
    assert out.returncode != 0, out.stdout
    assert where in out.stderr, out.stderr


def test_admission_policy_checks_the_results_endpoint(default_docs: list[dict[str, Any]]) -> None:
    """The chart's CEL mirrors policy.key_destinations: a store without an endpoint is AWS S3."""
    from nejumi_operator.policy import AWS_S3_HOST

    (vap,) = find(default_docs, "ValidatingAdmissionPolicy", "nejumi-nejumi-operator-policy")
    variables = {v["name"]: v["expression"] for v in vap["spec"]["variables"]}
    assert f"'{AWS_S3_HOST}'" in variables["resultsKeyHost"]
    assert "object.spec.results.credentialsSecretRef" in variables["resultsKeyHost"]
    (rule,) = [v for v in vap["spec"]["validations"] if "variables.resultsKeyHost ==" in v["expression"]]
    assert (
        "'spec.results.endpoint: the key pair in spec.results.credentialsSecretRef"
        in rule["messageExpression"]
    )


def test_leaderboard_settings_reach_the_operator(home: Path) -> None:
    """The chart's `leaderboard` values become the operator's settings; the cache is an emptyDir of
    twice its budget (trimmed to it after each computation), and none without one."""
    docs = template(home, "--set", "leaderboard.store.uri=s3://boards/x", "--set", "leaderboard.cacheMiB=512")
    c = container(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    config = OperatorConfig.from_env({k: v for k, v in env.items() if v is not None})
    assert config.leaderboard_store_uri == "s3://boards/x" and config.leaderboard_cache_mib == 512
    assert (
        config.leaderboard_memory_mib == 2048
        and config.leaderboard_cache_dir == "/var/cache/nejumi/leaderboards"
    )
    volumes = {v["name"]: v for v in deployment(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["leaderboard-cache"]["emptyDir"] == {"sizeLimit": "1024Mi"}
    assert {"name": "leaderboard-cache", "mountPath": config.leaderboard_cache_dir} in c["volumeMounts"]
    none = template(home, "--set", "leaderboard.cacheMiB=0")
    assert "NEJUMI_OPERATOR_LEADERBOARD_CACHE_DIR" not in {e["name"] for e in container(none)["env"]}
    assert OperatorConfig.from_env({}).leaderboard_cache_dir == ""
