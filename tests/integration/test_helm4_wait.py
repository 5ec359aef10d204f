"""Real kstatus through Helm 4 (issue 19): `helm install --wait` over a chart of NejumiEvaluations,
on the real control plane with the real operator. Helm 4's `--wait` (the `watcher` strategy) reads
each object's health with kstatus, so it returns only once every evaluation is Succeeded (Current),
and fails, naming the evaluation and its failure, once one is Failed (Stalled) — without running
into its timeout, since kstatus's Failed is terminal for Helm.

The chart is what a team might keep beside its models: written by the test into tmp, one
NejumiEvaluation per name in `values.evaluations`, all with the spec in `values.spec`. The model is
the stub server, the MT-bench judge a scripted one (rating every answer, or never).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, CustomObjectsApi

from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tests.cluster import NodeAgent
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.support.helm import helm, helm4_binary
from tests.support.kstatus import kstatus

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

HELM_WAIT = "5m"
"""`helm install --timeout`: a bound on a hang, far above a run of these tiny evaluations."""
HELM_SUBPROCESS_TIMEOUT_S = 5 * 60 + 60
"""Helm's own timeout plus room for it to report, so a hang fails with Helm's message first."""

TEMPLATE = "\n".join(
    [
        "{{- range .Values.evaluations }}",
        "---",
        f"apiVersion: {API_VERSION}",
        f"kind: {KIND}",
        "metadata:",
        "  name: {{ $.Release.Name }}-{{ . }}",
        "spec:",
        "  {{- toYaml $.Values.spec | nindent 2 }}",
        "{{- end }}",
        "",
    ]
)


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    root = tmp_path / "evaluations-chart"
    (root / "templates").mkdir(parents=True)
    chart_yaml = {"apiVersion": "v2", "name": "evaluations", "version": "0.1.0", "type": "application"}
    (root / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
    (root / "values.yaml").write_text(yaml.safe_dump({"evaluations": [], "spec": {}}))
    (root / "templates" / "evaluations.yaml").write_text(TEMPLATE)
    return root


def _spec(model: StubServer, judge: ScriptedJudge) -> dict[str, Any]:
    return {
        "model": {"name": "stub-model", "source": "openai-compatible", "endpoint": model.base_url},
        "benchmarks": {
            "jaster": {"datasets": ["jamp"], "testSamples": 1, "devSamples": 0},
            "mtbench": {
                "questionsPerCategory": 1,
                "judge": {"endpoint": judge.base_url, "model": judge.model},
            },
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": 0},
    }


def _install_and_wait(
    chart: Path, release: str, names: list[str], spec: dict[str, Any], kubeconfig: Path, namespace: str
) -> tuple[int, str]:
    """`helm install --wait=watcher` (Helm 4's kstatus wait; `--wait` alone means the same);
    returns Helm's exit code and its output."""
    values = chart.parent / f"{release}-values.yaml"
    values.write_text(yaml.safe_dump({"evaluations": names, "spec": spec}))
    args = ["install", release, str(chart), "-f", str(values), "--wait=watcher", "--timeout", HELM_WAIT]
    args += ["--kubeconfig", str(kubeconfig), "--namespace", namespace]
    proc = helm(
        args,
        chart.parent / "helm-home",
        check=False,
        timeout=HELM_SUBPROCESS_TIMEOUT_S,
        binary=helm4_binary(),
    )
    return proc.returncode, proc.stdout + proc.stderr


def _evaluation(client: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = CustomObjectsApi(client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def _release_status(chart: Path, release: str, kubeconfig: Path, namespace: str) -> str:
    args = ["status", release, "-o", "json", "--kubeconfig", str(kubeconfig), "--namespace", namespace]
    proc = helm(args, chart.parent / "helm-home", binary=helm4_binary())
    return str(json.loads(proc.stdout)["info"]["status"])


def test_helm4_wait_returns_once_every_evaluation_succeeded(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator: KopfRunner,
    questions: dict[int, str],
    chart: Path,
) -> None:
    with StubServer() as model, ScriptedJudge(questions) as judge:
        code, output = _install_and_wait(
            chart, "models", ["alpha", "beta"], _spec(model, judge), kubeconfig, namespace
        )
        # read at once, before anything else: Helm returned because both were done
        done = [_evaluation(k8s_client, namespace, name) for name in ("models-alpha", "models-beta")]
        assert code == 0, output
        assert [d["status"]["phase"] for d in done] == ["Succeeded", "Succeeded"], [d["status"] for d in done]
        assert model.calls > 0 and judge.calls > 0  # they ran; they were not read as done on creation
    assert all(d["status"]["observedGeneration"] == d["metadata"]["generation"] for d in done)
    assert {name: result[0] for name, result in kstatus(done).items()} == {
        "models-alpha": "Current",
        "models-beta": "Current",
    }
    assert _release_status(chart, "models", kubeconfig, namespace) == "deployed"


def test_helm4_wait_fails_naming_the_evaluation_that_failed(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator: KopfRunner,
    questions: dict[int, str],
    chart: Path,
) -> None:
    """A judge that answers every request but never rates: MT-bench has no score, the evaluation is
    Failed/NoScore (Stalled), and Helm stops waiting and fails the release."""
    with (
        StubServer() as model,
        ScriptedJudge(questions, default="I would rather not rate this answer.") as judge,
    ):
        code, output = _install_and_wait(
            chart, "dead-judge", ["stub"], _spec(model, judge), kubeconfig, namespace
        )
        failed = _evaluation(k8s_client, namespace, "dead-judge-stub")
        assert judge.calls > 0
    assert code != 0, output
    status = failed["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "NoScore"), status
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "NoScore", stalled
    # Helm names the object, kstatus's verdict and the evaluation's own message (the Stalled one)
    assert f"{KIND}/{namespace}/dead-judge-stub" in output, output
    assert "status: Failed" in output and "mtbench has no score" in output, output
    assert kstatus([failed])["dead-judge-stub"][0] == "Failed"
    assert _release_status(chart, "dead-judge", kubeconfig, namespace) == "failed"
