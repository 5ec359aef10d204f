"""The read-only leaderboard server as users install it: the chart's Deployment
(`leaderboard.server.enabled`) on the real control plane, as its own ServiceAccount (the chart's
RBAC, a projected token, nothing else) in a namespace that enforces PodSecurity `restricted`,
reading a real S3 server (versitygw) with a read-only key from the chart's Secret reference.

What the operator would do is done here by hand: a board built with `compare.build` from fixture
results, its page (`html.write_html`) and JSON written to the store, a NejumiLeaderboard created
and its status (page URIs, leader, counts, Ready) written through the /status subresource. Then a
headless Chromium opens the index, follows the link to the page and drives it (ranking, radar
chart, drill-down into a stored question), and plain HTTP checks the rest: 405, 404, ETag, and a
stopped store → 502 naming the URI and no key, healed when it is back.

How the test reaches the pod: the node agent runs it as a local process, and every pod shares this
machine's network (pod IP 127.0.0.1: there is no kube-proxy behind the Service's ClusterIP). So the
test checks that the Service selects exactly the server's pod, and connects to that pod's IP
(`status.podIP`) at the Service's target port (the container's `http` port, a free port per test).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from nejumi_eval.api.v1alpha1.crd import LEADERBOARD_CRD_PATH
from nejumi_eval.api.v1alpha1.leaderboard import BOARD_FILE, PAGE_FILE
from nejumi_eval.api.v1alpha1.names import (
    API_VERSION,
    GROUP,
    LEADERBOARD_CRD_NAME,
    LEADERBOARD_KIND,
    LEADERBOARD_PLURAL,
    PLURAL,
    VERSION,
)
from nejumi_eval.leaderboard import compare, html, render
from nejumi_eval.leaderboard.sources import from_sources, load_results_folder
from tests.cluster import ControlPlane, NodeAgent, wait_until
from tests.cluster.controlplane import free_ports
from tests.fixtures.leaderboard_results import ratings, write_results
from tests.integration.test_chart import Release as ChartRelease
from tests.integration.test_in_cluster import process_env, token_subject
from tests.support.browser import headless_chromium
from tests.support.helm import CHART
from tests.support.kube import apply_crd, delete_crd
from tests.support.s3 import Credentials, S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

BUCKET = "nejumi-boards"
SECRET = "leaderboard-store"
CA_CONFIGMAP = "leaderboard-store-ca"
SAMPLES, QUESTIONS = 4, 2
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="module")
def crds(k8s_client: ApiClient) -> Iterator[None]:
    """Both committed CRDs, applied by the test (helm installs crds/ only where they are absent and
    never deletes them): the module's tests start from them and remove them."""
    apply_crd(k8s_client)
    apply_crd(k8s_client, LEADERBOARD_CRD_PATH)
    yield
    delete_crd(k8s_client, name=LEADERBOARD_CRD_NAME)
    delete_crd(k8s_client)


@dataclass
class Release(ChartRelease):
    @property
    def server(self) -> str:
        return f"{self.fullname}-leaderboard-server"

    def install_values(self, values: dict[str, Any]) -> None:
        path = self.home / "values.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        # --wait: the server's pod is Running (the node agent reports it ready then). --skip-crds:
        # the `crds` fixture applied them.
        self.helm(
            "install", self.name, str(CHART), "-f", str(path), "--skip-crds", "--wait", "--timeout", "120s"
        )


@pytest.fixture
def release(kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Release]:
    rel = Release(f"s{secrets.token_hex(3)}", namespace, kubeconfig, tmp_path / "helm-home")
    yield rel
    rel.helm("uninstall", rel.name, "--ignore-not-found", "--wait", "--timeout", "60s", check=False)


# ---- what the operator would have done ------------------------------------------------------------


def spread(period: int) -> Any:
    return lambda dataset, i: float(i % period == 0)


@dataclass
class Published:
    board: Any
    page: bytes
    doc: bytes
    prefix: str

    @property
    def page_uri(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}/{PAGE_FILE}"

    @property
    def json_uri(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}/{BOARD_FILE}"


def publish(s3: S3Server, namespace: str, name: str, tmp: Path) -> Published:
    """A board of three models from fixture results, its page and JSON written to the store (as
    root: the operator's identity), under the operator's default layout."""
    runs = [
        write_results(
            tmp, "org/strong-7b", jaster=spread(2), mtbench=ratings(8), samples=SAMPLES, questions=QUESTIONS
        ),
        write_results(
            tmp, "org/mid-3b", jaster=spread(3), mtbench=ratings(6), samples=SAMPLES, questions=QUESTIONS
        ),
        write_results(
            tmp, "org/weak-1b", jaster=spread(4), mtbench=ratings(3), samples=SAMPLES, questions=QUESTIONS
        ),
    ]
    board = compare.build(from_sources([[load_results_folder(r) for r in runs]]), resamples=200)
    page = html.write_html(board, tmp / PAGE_FILE, title=f"{namespace}/{name}").read_bytes()
    doc = render.write_json(board.leaderboard, tmp / BOARD_FILE).read_bytes()
    prefix = f"leaderboards/{namespace}/{name}"
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/{PAGE_FILE}", Body=page, ContentType="text/html")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/{BOARD_FILE}", Body=doc, ContentType="application/json")
    return Published(board, page, doc, prefix)


def leaderboard_status(published: Published) -> dict[str, Any]:
    """The status the operator writes for a computed, published board (camelCase, as the CRD)."""
    ranked = published.board.leaderboard.ranked()
    leader = ranked[0]
    ci = leader.overall_ci
    return {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Computed",
                "message": f"{len(ranked)} ranked",
                "lastTransitionTime": "2026-11-01T09:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "updatedAt": "2026-11-01T09:00:00Z",
        "leader": leader.model,
        "leaderOverall": render.with_interval(leader.overall, ci),
        "counts": {"matched": 4, "ranked": len(ranked), "pending": 1, "running": 1, "succeeded": 3},
        "page": {
            "uri": published.page_uri,
            "jsonUri": published.json_uri,
            "bytes": len(published.page),
            "published": True,
        },
    }


def create_leaderboard(client: ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": API_VERSION, "kind": LEADERBOARD_KIND, "metadata": {"name": name}, "spec": spec}
    CustomObjectsApi(client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, LEADERBOARD_PLURAL, body
    )


# ---- HTTP --------------------------------------------------------------------------------------------


def fetch(
    address: tuple[str, int], path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def severe(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_chart_server_shows_the_leaderboards_from_the_store(
    crds: None,
    release: Release,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    s3_server: S3Server,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    core, custom = CoreV1Api(k8s_client), CustomObjectsApi(k8s_client)
    timings: dict[str, float] = {}

    # The store: a bucket the operator (root here) writes, and a key that may only read the pages.
    s3_server.start()
    s3_server.make_bucket(BUCKET)
    reader: Credentials = s3_server.add_user("leaderboard-reader")
    s3_server.allow(BUCKET, reader, ["s3:GetObject"], prefix="leaderboards/")
    published = publish(s3_server, namespace, "main", tmp_path / "board")

    # Two leaderboards: one computed and published, one the operator has not reached yet.
    create_leaderboard(k8s_client, namespace, "main", {"title": "Team A"})
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, LEADERBOARD_PLURAL, "main", {"status": leaderboard_status(published)}
    )
    create_leaderboard(k8s_client, namespace, "fresh", {})

    # The release namespace holds the key pair and the CA bundle, and admits only `restricted` pods.
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": SECRET},
            "stringData": {
                "AWS_ACCESS_KEY_ID": reader.access_key,
                "AWS_SECRET_ACCESS_KEY": reader.secret_key,
            },
        },
    )
    ca_pem = control_plane.ca_file.read_text()  # any PEM bundle: the store here is plain HTTP
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": CA_CONFIGMAP}, "data": {"bundle.pem": ca_pem}}
    )
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})

    (port,) = free_ports(1)
    command = [sys.executable, "-m", "nejumi_eval.leaderboard.server"]
    if os.environ.get("PYTHONPATH"):  # a checkout beside the venv's editable one (a git worktree)
        command = ["env", f"PYTHONPATH={os.environ['PYTHONPATH']}", *command]
    t0 = time.monotonic()
    release.install_values(
        {
            "replicaCount": 0,  # the operator itself is not under test here
            "leaderboard": {
                "server": {"enabled": True, "port": port, "command": command},
                "store": {
                    "endpoint": s3_server.endpoint,
                    "region": s3_server.region,
                    "credentialsSecret": SECRET,
                    "caBundleConfigMap": CA_CONFIGMAP,
                    "caBundleKey": "bundle.pem",
                },
            },
        }
    )
    timings["helm install --wait"] = time.monotonic() - t0

    # The pod: admitted under `restricted`, its only credentials the ServiceAccount's token and the
    # Secret's keys as variables, the CA bundle at AWS_CA_BUNDLE (read-only, the ConfigMap's key).
    service = core.read_namespaced_service(release.server, namespace)
    selector = ",".join(f"{k}={v}" for k, v in service.spec.selector.items())
    (pod,) = [
        p
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items
        if p.status.phase == "Running"
    ]
    assert pod.spec.service_account_name == release.server
    assert pod.metadata.labels["app.kubernetes.io/component"] == "leaderboard-server"
    (pid,) = node_agent.pids(namespace, pod.metadata.name)
    sandbox = node_agent.pod_dir(namespace, pod.metadata.name)
    assert sandbox is not None
    assert token_subject(sandbox) == f"system:serviceaccount:{namespace}:{release.server}"
    env = process_env(pid)
    assert "KUBECONFIG" not in env
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_ENDPOINT_URL"]) == (reader.access_key, s3_server.endpoint)
    assert Path(f"/proc/{pid}/root{env['AWS_CA_BUNDLE']}").read_text() == ca_pem  # in its mount namespace

    (service_port,) = service.spec.ports
    container_port = next(
        p.container_port for p in pod.spec.containers[0].ports if p.name == service_port.target_port
    )
    address = (pod.status.pod_ip, container_port)
    t0 = time.monotonic()
    wait_until(lambda: fetch(address, "/healthz")[0] == 200, 60, "the server's /healthz")
    timings["first /healthz"] = time.monotonic() - t0

    # Its RBAC: read NejumiLeaderboards, nothing else.
    as_server = ChartRelease(release.name, namespace, kubeconfig, release.home)
    user = f"system:serviceaccount:{namespace}:{release.server}"
    as_server.check(
        [
            ("get", f"{LEADERBOARD_PLURAL}.{GROUP}", namespace, True),
            ("list", f"{LEADERBOARD_PLURAL}.{GROUP}", None, True),
            ("watch", f"{LEADERBOARD_PLURAL}.{GROUP}", namespace, False),
            ("create", f"{LEADERBOARD_PLURAL}.{GROUP}", namespace, False),
            ("patch", f"{LEADERBOARD_PLURAL}.{GROUP}", namespace, False),
            ("delete", f"{LEADERBOARD_PLURAL}.{GROUP}", namespace, False),
            ("patch", f"{LEADERBOARD_PLURAL}.{GROUP}/status", namespace, False),
            ("list", PLURAL, namespace, False),
            ("get", "secrets", namespace, False),
            ("list", "pods", namespace, False),
        ],
        user=user,
    )

    # ---- in the browser -----------------------------------------------------------------------
    driver = headless_chromium("--lang=ja")
    try:
        t0 = time.monotonic()
        driver.get(f"http://{address[0]}:{address[1]}/")
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-leaderboard="{namespace}/main"]')
        leader = published.board.leaderboard.ranked()[0]
        assert leader.model == "org/strong-7b" and leader.model in row.text
        assert render.with_interval(leader.overall, leader.overall_ci) in row.text
        assert "Team A" in row.text and "True (Computed)" in row.text
        fresh = driver.find_element(By.CSS_SELECTOR, f'tr[data-leaderboard="{namespace}/fresh"]')
        assert "not published" in fresh.text
        row.find_element(By.LINK_TEXT, "page").click()
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
        timings["index → page loaded"] = time.monotonic() - t0
        assert driver.current_url == f"http://{address[0]}:{address[1]}/{namespace}/main/"

        # The ranking table: the ranked models, best first.
        models = driver.execute_script(
            "return [...document.querySelectorAll('#ranking tbody tr')]"
            ".map(r => window.nejumiLeaderboard.board.entries.find(e => e.id === r.dataset.entry).model)"
        )
        assert models == [e.model for e in published.board.leaderboard.ranked()]
        # The radar chart, drawn by plotly (under the server's CSP) as SVG with one trace per model.
        radar = driver.find_element(By.ID, "radar-jaster")
        assert radar.find_elements(By.CSS_SELECTOR, "svg.main-svg")
        assert driver.execute_script("return document.getElementById('radar-jaster').data.length") == 3
        assert (
            driver.execute_script(
                "return document.querySelectorAll('#radar-jaster .scatterlayer .trace').length"
            )
            == 3
        )

        # The drill-down into the stored questions (decompressed in the page on first opening).
        driver.find_element(By.CSS_SELECTOR, "#drilldown > summary").click()
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
        )
        total = 16 * SAMPLES + 8 * QUESTIONS
        assert driver.find_element(By.ID, "dd-count").text.startswith(f"{total} of {total}")
        Select(driver.find_element(By.ID, "dd-benchmark")).select_by_value("jaster")
        Select(driver.find_element(By.ID, "dd-stratum")).select_by_value("jsquad")
        cards = driver.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
        assert len(cards) == SAMPLES and {c.get_attribute("data-stratum") for c in cards} == {"jsquad"}
        first = cards[0]
        assert "jsquad" in first.find_element(By.CSS_SELECTOR, "pre.prompt").text
        assert first.find_element(By.CSS_SELECTOR, "pre.gold").text == "東京0"
        assert len(first.find_elements(By.CSS_SELECTOR, ".answer")) == 3
        assert severe(driver) == [], "the page logged errors under the server's CSP"

        # The CSP is real: the page may load nothing from anywhere (a stand-in for injected markup).
        violations = driver.execute_script(
            "const seen = [];"
            "document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective));"
            "fetch('http://127.0.0.1:9/x').catch(() => {});"
            "const s = document.createElement('script'); s.src = 'http://127.0.0.1:9/x.js';"
            "document.body.append(s);"
            "return new Promise(r => setTimeout(() => r(seen), 500));"
        )
        assert sorted(violations) == ["connect-src", "script-src-elem"], violations
    finally:
        driver.quit()

    # ---- plain HTTP ---------------------------------------------------------------------------
    status, headers, body = fetch(address, f"/{namespace}/main/")
    assert status == 200 and body == published.page
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["etag"] == '"' + hashlib.md5(published.page).hexdigest() + '"'  # the store's
    assert fetch(address, f"/{namespace}/main/", headers={"If-None-Match": headers["etag"]})[:1] == (304,)
    status, headers, body = fetch(address, f"/{namespace}/main/", "HEAD")
    assert (status, body, int(headers["content-length"])) == (200, b"", len(published.page))
    status, headers, body = fetch(address, f"/{namespace}/main/{BOARD_FILE}")
    assert status == 200 and json.loads(body) == json.loads(published.doc)

    for path in ("/", f"/{namespace}/main/"):
        status, headers, body = fetch(address, path, "POST")
        assert status == 405 and headers["allow"] == "GET, HEAD", body
    status, _, body = fetch(address, f"/{namespace}/nope/")
    assert (status, body.decode().strip()) == (404, f"no NejumiLeaderboard {namespace}/nope")
    status, _, body = fetch(address, f"/{namespace}/fresh/")
    assert status == 404 and f"{namespace}/fresh has no published page yet" in body.decode()
    assert fetch(address, "/../../etc/passwd")[0] == 404

    # ---- the store goes away, then comes back ----------------------------------------------------
    s3_server.stop()
    t0 = time.monotonic()
    status, _, body = fetch(address, f"/{namespace}/main/")
    timings["502 with the store stopped"] = time.monotonic() - t0
    text = body.decode()
    assert status == 502, text
    assert published.page_uri in text and "cannot be reached" in text, text
    for secret in (
        reader.access_key,
        reader.secret_key,
        s3_server.root.access_key,
        s3_server.root.secret_key,
    ):
        assert secret not in text
    assert fetch(address, "/healthz")[0] == 200  # not a restart loop
    s3_server.start()
    assert fetch(address, f"/{namespace}/main/")[0] == 200

    # One log line per request, no key in the log.
    def page_requests() -> list[str]:  # the container's output; a line is written once answered
        log = (sandbox / "server.log").read_text(errors="replace")
        return [line for line in log.splitlines() if f'"GET /{namespace}/main/" ' in line]

    lines = wait_until(lambda: len(found := page_requests()) >= 5 and found, 10, "the last log line")
    assert [line.split('" ')[1].split()[0] for line in lines] == ["200", "200", "304", "502", "200"], lines
    log = (sandbox / "server.log").read_text(errors="replace")
    assert reader.secret_key not in log and reader.access_key not in log
    print("\n" + "; ".join(f"{k}: {v:.2f}s" for k, v in timings.items()))


@pytest.fixture
def other_namespace(k8s_client: ApiClient) -> Iterator[str]:
    core = CoreV1Api(k8s_client)
    name = f"lb-other-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"nejumi.test/owner": "pytest"}}})
    yield name
    core.delete_namespace(name)


def test_a_namespaced_server_reads_its_namespaces_only(
    crds: None,
    release: Release,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    other_namespace: str,
    node_agent: NodeAgent,
) -> None:
    """`watchNamespaces`: `--namespace` per entry and a Role in each, so the server lists there only
    (namespaced list calls) and answers 404 for any other namespace without asking the API."""
    core = CoreV1Api(k8s_client)
    create_leaderboard(k8s_client, namespace, "here", {"title": "Here"})
    create_leaderboard(k8s_client, other_namespace, "there", {"title": "There"})
    (port,) = free_ports(1)
    command = [sys.executable, "-m", "nejumi_eval.leaderboard.server"]
    if os.environ.get("PYTHONPATH"):
        command = ["env", f"PYTHONPATH={os.environ['PYTHONPATH']}", *command]
    release.install_values(
        {
            "replicaCount": 0,
            "watchNamespaces": [namespace],
            "leaderboard": {"server": {"enabled": True, "port": port, "command": command}},
        }
    )
    service = core.read_namespaced_service(release.server, namespace)
    selector = ",".join(f"{k}={v}" for k, v in service.spec.selector.items())
    (pod,) = core.list_namespaced_pod(namespace, label_selector=selector).items
    address = (pod.status.pod_ip or "127.0.0.1", port)
    wait_until(lambda: fetch(address, "/healthz")[0] == 200, 60, "the server's /healthz")

    status, _, body = fetch(address, "/")
    text = body.decode()
    assert status == 200 and f'data-leaderboard="{namespace}/here"' in text
    assert other_namespace not in text and f"NejumiLeaderboards in {namespace}." in text
    status, _, body = fetch(address, f"/{other_namespace}/there/")
    assert status == 404 and f"namespace {other_namespace} is not served here" in body.decode()
    status, _, body = fetch(address, f"/{namespace}/here/")
    assert status == 404 and "has no published page yet" in body.decode()

    as_server = ChartRelease(release.name, namespace, kubeconfig, release.home)
    as_server.check(
        [
            ("list", f"{LEADERBOARD_PLURAL}.{GROUP}", namespace, True),
            ("list", f"{LEADERBOARD_PLURAL}.{GROUP}", other_namespace, False),
            ("list", f"{LEADERBOARD_PLURAL}.{GROUP}", None, False),
        ],
        user=f"system:serviceaccount:{namespace}:{release.server}",
    )
