"""The results of record on the cluster (issue 18): an evaluation applied through the API stores its
results in a real S3 server (versitygw) with the keys of a consented Secret; once the evaluation and
its workspace PVC are deleted, the leaderboard still ranks it from the store, with intervals, and the
HTML page's drill-down (real Chromium) shows its questions. A store lost at the end of a run leaves
`Degraded / ResultsNotStored`, and a rerun on the retained workspace stores the results with no
model or judge request (counted at the stubs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
from nejumi_eval.api.v1alpha1.results import MANIFEST, Location, manifest_digest
from nejumi_eval.cli import main
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.openai_stub import Reply, StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.integration.test_status_truth import Recorder
from tests.support.browser import headless_chromium
from tests.support.kube import create_evaluation as create
from tests.support.kube import judged_spec, operator_runner
from tests.support.s3 import RESULTS_BUCKET as BUCKET
from tests.support.s3 import S3Server, results_spec

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def _spec(model: str, judge: str, s3: S3Server, **workspace: Any) -> dict[str, Any]:
    return judged_spec(model, judge, samples=2, results=results_spec(s3), workspace=workspace)


def _delete(client: ApiClient, namespace: str, name: str) -> None:
    CustomObjectsApi(client).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    core = CoreV1Api(client)

    def gone() -> bool:
        claims = [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items]
        custom = CustomObjectsApi(client).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return not custom["items"] and f"{name}-workspace" not in claims

    wait_until(gone, 120, f"{name} and its workspace PVC to be deleted")


def test_a_pruned_evaluation_keeps_its_place_on_the_board(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    store: S3Server,
    questions: dict[int, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with (
        StubServer() as model,
        ScriptedJudge(questions) as judge,
        operator_runner(namespace) as operator,
        Recorder(k8s_client, namespace) as seen,
    ):
        create(k8s_client, namespace, "stored", _spec(model.base_url, judge.base_url, store))
        status = seen.wait_for("stored", "Succeeded", None, timeout=300)
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    results = status["results"]
    assert results["stored"] is True and results["uri"] == f"s3://{BUCKET}/cluster/{namespace}/stored/1/"
    manifest = store.client().get_object(Bucket=BUCKET, Key=f"cluster/{namespace}/stored/1/{MANIFEST}")
    assert results["manifestSha256"] == manifest_digest(manifest["Body"].read())
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Degraded"]["status"] == "False", conditions

    _delete(k8s_client, namespace, "stored")

    reader = store.add_user("reader")
    store.allow(BUCKET, reader, ["s3:GetObject", "s3:ListBucket"])
    for name, value in store.env(reader).items():
        monkeypatch.setenv(name, value)
    board = tmp_path / "board.json"
    page = tmp_path / "board.html"
    cluster = ["--cluster", "-n", namespace, "--kubeconfig", str(kubeconfig)]
    outputs = ["--include-all", "--json", str(board), "--html", str(page)]
    assert main(["leaderboard", *cluster, f"s3://{BUCKET}/cluster", *outputs]) == 0
    (entry,) = json.loads(board.read_text())["entries"]
    assert entry["model"] == "stub-model" and entry["overall"] == pytest.approx(status["scores"]["overall"])
    assert entry["overall_ci"] is not None, entry  # the questions came from the store
    assert main(["leaderboard", f"s3://{BUCKET}/cluster", "--include-all", "--json", str(board)]) == 0
    (entry,) = json.loads(board.read_text())["entries"]
    assert entry["overall_ci"] is not None

    driver = headless_chromium("--lang=ja")
    try:
        driver.get(page.as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
        driver.find_element(By.CSS_SELECTOR, "#drilldown > summary").click()
        WebDriverWait(driver, 10).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
        )
        Select(driver.find_element(By.ID, "dd-benchmark")).select_by_value("jaster")
        Select(driver.find_element(By.ID, "dd-stratum")).select_by_value("jamp")
        cards = driver.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
        assert len(cards) == 2
        assert cards[0].find_element(By.CSS_SELECTOR, ".answer pre.output").text.startswith("echo:")
    finally:
        driver.quit()


class _StoreKiller(StubServer):
    """A model API whose first completion stops the store: preflight passed, the upload will fail."""

    def __init__(self, s3: S3Server) -> None:
        super().__init__()
        self.s3: S3Server | None = s3

    def reply(self, path: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            s3, self.s3 = self.s3, None
        if s3 is not None:
            s3.stop()
        return super().reply(path, body)


def test_a_store_lost_at_the_end_is_degraded_and_a_rerun_stores_without_a_request(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    store: S3Server,
    questions: dict[int, str],
) -> None:
    with (
        _StoreKiller(store) as model,
        ScriptedJudge(questions) as judge,
        operator_runner(namespace) as operator,
        Recorder(k8s_client, namespace) as seen,
    ):
        spec = _spec(model.base_url, judge.base_url, store, retain=True)
        create(k8s_client, namespace, "lost", spec)
        status = seen.wait_for("lost", "Succeeded", "ResultsNotStored", timeout=300)
        ports = model.port, judge.port
        assert model.calls > 0 and judge.calls > 0
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    assert status["results"] == {"uri": f"s3://{BUCKET}/cluster/{namespace}/lost/1/", "stored": False}
    assert "cannot be reached" in status["message"] and "workspace" in status["message"], status
    assert status["scores"]["overall"] is not None  # the scores stand

    CustomObjectsApi(k8s_client).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lost")
    wait_until(
        lambda: (
            not CustomObjectsApi(k8s_client).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
                "items"
            ]
        ),
        120,
        "the evaluation to be deleted",
    )
    store.start()
    with (
        StubServer(port=ports[0]) as model,
        ScriptedJudge(questions, port=ports[1]) as judge,
        operator_runner(namespace) as operator,
        Recorder(k8s_client, namespace) as seen,
    ):
        create(k8s_client, namespace, "lost", spec)  # the same name: the retained workspace, generation 1
        again = seen.wait_for("lost", "Succeeded", None, timeout=300)
        assert model.calls == 0 and judge.calls == 0  # every answer and rating from the cache
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    assert again["results"]["stored"] is True and again["reason"] != "ResultsNotStored"
    assert again["scores"] == status["scores"]
    stored = Location.parse(again["results"]["uri"])
    manifest = store.client().get_object(Bucket=BUCKET, Key=stored.object_key(MANIFEST))["Body"].read()
    assert manifest_digest(manifest) == again["results"]["manifestSha256"]
    listed = {o["path"] for o in json.loads(manifest)["objects"]}
    keys = store.client().list_objects_v2(Bucket=BUCKET, Prefix=stored.prefix + "/")["Contents"]
    assert {k["Key"].rsplit("/", 1)[1] for k in keys} == listed | {MANIFEST, "started.json"}
