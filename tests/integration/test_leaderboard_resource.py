"""A NejumiLeaderboard on the real control plane, kept current by the real operator from the results
stored in a real S3 server (versitygw), with evaluations of API stubs of known quality: each model
is rated by its own scripted judge around a known level, so the ranking, the tie and the failed
gates are known before the board is computed.

- The status ranks them as `nejumi-eval leaderboard --cluster` does on the same results: the same
  Overall, intervals, `≈` ties and rank intervals. `kubectl get nejumilb` prints the leader.
- A sixth evaluation finishing updates the board; a deleted one stays on it from the store.
- Gates: a threshold on a category fails the weaker models, naming the category and its interval;
  a non-inferiority gate against the strongest fails the others; GatesPassed says so.
- The page and its JSON are written to the store, under the operator's own store identity.
- A leaderboard reading a namespace the policy does not name is refused (by the operator here; by
  the chart's admission policy in `test_a_leaderboard_may_not_read_another_namespace_unless_allowed`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.crd import LEADERBOARD_CRD_PATH
from nejumi_eval.api.v1alpha1.names import (
    API_VERSION,
    GROUP,
    LEADERBOARD_CRD_NAME,
    LEADERBOARD_KIND,
    LEADERBOARD_PLURAL,
    PLURAL,
    VERSION,
)
from nejumi_eval.cli import main
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.support.kube import apply_crd, create_object, delete_crd, judged_spec, kubectl, operator_runner
from tests.support.s3 import RESULTS_BUCKET as BUCKET
from tests.support.s3 import S3Server, results_spec

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

LABELS = {"nejumi.wandb.ai/board": "neo"}
LEVELS = {"model-a": 3, "model-b": 5, "model-c": 5, "model-d": 7, "model-e": 9}
"""Each model's MT-bench level: its judge rates every turn level−1, level or level+1 (by question).
model-b and model-c are rated alike: not distinguishable (≈)."""
SIXTH = ("model-f", 8)
RESAMPLES = 200
WANDB_KEY = "local-0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def leaderboard_crd(k8s_client: ApiClient) -> Iterator[None]:
    apply_crd(k8s_client, LEADERBOARD_CRD_PATH)
    yield
    delete_crd(k8s_client, name=LEADERBOARD_CRD_NAME)


@pytest.fixture
def board_store(store: S3Server, operator_env: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """The operator's own store identity: read every evaluation's results, write pages under
    `boards/` (the standard AWS variables, as the chart's `leaderboard.store` sets them)."""
    board = store.add_user("leaderboards")
    store.allow(BUCKET, board, ["s3:GetObject", "s3:ListBucket"])
    store.allow(BUCKET, board, ["s3:PutObject", "s3:GetObject"], prefix="boards/")
    for name, value in store.env(board).items():
        operator_env.setenv(name, value)
    operator_env.setenv("NEJUMI_OPERATOR_LEADERBOARD_STORE_URI", f"s3://{BUCKET}/boards")
    operator_env.setenv("NEJUMI_OPERATOR_LEADERBOARD_QUIET_SECONDS", "1")
    operator_env.setenv("NEJUMI_OPERATOR_LEADERBOARD_MAX_DELAY_SECONDS", "10")
    operator_env.setenv("NEJUMI_OPERATOR_LEADERBOARD_CACHE_DIR", str(tmp_path / "leaderboard-cache"))
    return store


def _judge(stack: ExitStack, questions: dict[int, str], level: int) -> ScriptedJudge:
    plan: dict[tuple[int, int], list[str | int]] = {}
    for qid in questions:
        rating = min(10, max(1, level + (qid % 3) - 1))
        plan[(qid, 1)] = plan[(qid, 2)] = [f"Rating: [[{rating}]]"]
    return stack.enter_context(ScriptedJudge(questions, plan=plan))


def _evaluate(
    stack: ExitStack,
    client: ApiClient,
    namespace: str,
    questions: dict[int, str],
    store: S3Server,
    model: str,
    level: int,
    labels: dict[str, str] = LABELS,
) -> None:
    server = stack.enter_context(StubServer(model=model))
    judge = _judge(stack, questions, level)
    spec = judged_spec(server.base_url, judge.base_url, samples=1, results=results_spec(store))
    spec["model"]["name"] = model
    create_object(client, namespace, model, spec, labels=labels)


def _board(client: ApiClient, namespace: str, name: str = "neo") -> dict[str, Any]:
    return CustomObjectsApi(client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, LEADERBOARD_PLURAL, name
    )


def _create_board(client: ApiClient, namespace: str, spec: dict[str, Any], name: str = "neo") -> None:
    create_object(client, namespace, name, spec, plural=LEADERBOARD_PLURAL, kind=LEADERBOARD_KIND)


def _phases(client: ApiClient, namespace: str) -> dict[str, str]:
    items = CustomObjectsApi(client).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}


def _wait_board(
    client: ApiClient, namespace: str, what: str, ok: Any, timeout: float = 420
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        board = _board(client, namespace)
        status = board.get("status") or {}
        return board if ok(status) else None

    try:
        return wait_until(done, timeout, what)
    except TimeoutError as exc:
        status = json.dumps(_board(client, namespace).get("status"), indent=1)[:4000]
        raise AssertionError(f"{exc}\nboard: {status}\nevaluations: {_phases(client, namespace)}") from None


def _cli_board(kubeconfig: Path, namespace: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / f"cli-{secrets.token_hex(2)}.json"
    selector = ",".join(f"{k}={v}" for k, v in LABELS.items())
    args = ["leaderboard", "--cluster", "-n", namespace, "-l", selector, "--kubeconfig", str(kubeconfig)]
    options = ["--include-all", "--resamples", str(RESAMPLES), "--seed", "0", "--json", str(out)]
    assert main([*args, *options]) == 0
    return json.loads(out.read_text())


def _served(kubeconfig: Path, namespace: str, store: S3Server, page: bytes) -> None:
    """The read-only server (a local process here; tests/integration/test_leaderboard_server.py runs
    the chart's Deployment) lists the board and serves the very page the operator published."""
    import os
    import subprocess
    import sys
    import urllib.request

    from tests.cluster.controlplane import free_ports

    reader = store.add_user("page-reader")
    store.allow(BUCKET, reader, ["s3:GetObject"], prefix="boards/")
    (port,) = free_ports(1)
    env = {**os.environ, **store.env(reader), "KUBECONFIG": str(kubeconfig)}
    command = [
        sys.executable,
        "-m",
        "nejumi_eval.leaderboard.server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                return bytes(resp.read())
        except OSError:
            return None

    try:
        index = wait_until(lambda: get("/"), 60, "the leaderboard server")
        assert f"/{namespace}/neo/".encode() in index and b"model-e" in index  # the link, the leader
        assert get(f"/{namespace}/neo/") == page
    finally:
        server.terminate()
        server.wait(timeout=30)


def _same_ranking(status: dict[str, Any], cli: dict[str, Any]) -> None:
    """The status's rows say what the CLI's board says of the same evaluations."""
    ranked = [e for e in cli["entries"] if e["state"] == "ranked"]
    main_group = next(g["id"] for g in cli["groups"] if g["main"])
    ranked = sorted((e for e in ranked if e["group"] == main_group), key=lambda e: (e["rank"], e["model"]))
    assert [r["evaluation"] for r in status["top"]] == [e["id"] for e in ranked]
    for row, entry in zip(status["top"], ranked, strict=True):
        assert row["rank"] == entry["rank"] and row["model"] == entry["model"]
        assert row["overall"] == pytest.approx(entry["overall"], abs=1e-12)
        ci = entry["overall_ci"]
        assert ci is not None and row["interval"] == pytest.approx({"low": ci["low"], "high": ci["high"]})
        assert row.get("tiedWithAbove") == entry["tied_with_above"]
        ranks = entry["rank_interval"]
        assert row["rankInterval"] == {"low": ranks["low"], "high": ranks["high"]}


def test_a_leaderboard_ranks_its_evaluations_from_the_store_and_keeps_current(
    crd: None,
    leaderboard_crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    board_store: S3Server,
    questions: dict[int, str],
    tmp_path: Path,
) -> None:
    gates = [
        {"name": "coding-floor", "metric": "mtbench/coding", "min": 5.5, "statistic": "LowerBound"},
        {"name": "no-regression", "notWorseThan": "model-d"},
    ]
    with ExitStack() as stack:
        operator = stack.enter_context(operator_runner(namespace))
        for model, level in LEVELS.items():
            _evaluate(stack, k8s_client, namespace, questions, board_store, model, level)
        # An evaluation the selector does not match: never on the board.
        _evaluate(stack, k8s_client, namespace, questions, board_store, "model-x", 10, {"other": "board"})
        # A W&B key by reference (consented): the report is built by a Job, never by the operator.
        CoreV1Api(k8s_client).create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": "wandb", "labels": {"nejumi.wandb.ai/usable-by-evaluations": "true"}},
                "stringData": {"key": WANDB_KEY},
            },
        )
        _create_board(
            k8s_client,
            namespace,
            {
                "publish": {
                    "wandb": {"project": "team-a/neo", "apiKeySecretRef": {"name": "wandb", "key": "key"}}
                },
                "selector": {"matchLabels": LABELS},
                # Runs of one sample per dataset are capped (smoke tests): ranked here on purpose.
                "include": {"capped": True},
                "resamples": RESAMPLES,
                "gates": gates,
                "top": 10,
            },
        )
        # While they run, the board counts them as not finished.
        board = _wait_board(k8s_client, namespace, "a first computation", lambda s: s.get("computations"))
        assert board["status"]["counts"]["matched"] == 5, board["status"]["counts"]

        status = _wait_board(
            k8s_client, namespace, "five ranked", lambda s: (s.get("counts") or {}).get("ranked") == 5
        )["status"]
        assert status["counts"]["pending"] == 0 and status["counts"]["succeeded"] == 5
        assert [r["model"] for r in status["top"]] == [
            "model-e",
            "model-d",
            "model-b",
            "model-c",
            "model-a",
        ] or [r["model"] for r in status["top"]] == ["model-e", "model-d", "model-c", "model-b", "model-a"]
        assert status["leader"] == "model-e" and status["leaderOverall"] == status["top"][0]["display"]
        tied = [r for r in status["top"] if r.get("tiedWithAbove")]
        assert [r["model"] for r in tied] in (["model-c"], ["model-b"]), status["top"]  # b ≈ c, nothing else
        assert "≈" in tied[0]["display"] and tied[0]["rank"] == 3
        assert all(r["evaluation"].startswith(f"{namespace}/") for r in status["top"])
        _same_ranking(status, _cli_board(kubeconfig, namespace, tmp_path))

        # The gates: the category threshold fails the models rated below it, naming the category
        # and its interval; non-inferiority against model-d fails those rated below it.
        verdicts = {v["evaluation"].split("/")[1]: v for v in status["gates"]}
        assert {m for m, v in verdicts.items() if v["verdict"] == "Failed"} == {
            "model-a",
            "model-b",
            "model-c",
        }
        assert {m for m, v in verdicts.items() if v["verdict"] == "Passed"} == {"model-d", "model-e"}
        floor = next(f for f in verdicts["model-a"]["failures"] if f["gate"] == "coding-floor")
        assert floor["metric"] == "mtbench/coding" and floor["threshold"] == 5.5
        assert floor["interval"]["low"] < 5.5 and "mtbench/coding" in floor["message"]
        regressions = [f for f in verdicts["model-b"]["failures"] if f["gate"] == "no-regression"]
        assert regressions and all(f["interval"]["high"] < 0 for f in regressions)
        assert all(f["against"] == "model-d" for f in regressions)
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Ready"]["status"] == "True" and conditions["Stalled"]["status"] == "False"
        assert (
            conditions["GatesPassed"]["status"] == "False"
            and "model-a" in conditions["GatesPassed"]["message"]
        )

        # The page and the board's JSON, in the store under the chart's default prefix.
        page = status["page"]
        assert (
            page["uri"] == f"s3://{BUCKET}/boards/leaderboards/{namespace}/neo/index.html"
            and page["published"]
        )
        s3 = board_store.client()
        html = s3.get_object(Bucket=BUCKET, Key=f"boards/leaderboards/{namespace}/neo/index.html")[
            "Body"
        ].read()
        assert len(html) == page["bytes"] and b"model-e" in html
        stored = json.loads(
            s3.get_object(Bucket=BUCKET, Key=f"boards/leaderboards/{namespace}/neo/leaderboard.json")[
                "Body"
            ].read()
        )
        assert {e["id"] for e in stored["entries"]} == {f"{namespace}/{m}" for m in LEVELS}

        _served(kubeconfig, namespace, board_store, html)

        # The W&B report: one Job per ranking (one more if a board with four ranked was computed on
        # the way), the key by reference only.
        report = status["wandbReport"]
        assert report.startswith("Job neo-wandb-") and report.endswith(
            ("started for this board", "already exists for this board")
        )
        job = BatchV1Api(k8s_client).read_namespaced_job(report.split()[1], namespace)
        (container,) = job.spec.template.spec.containers
        assert container.command[1:] == ["leaderboard", "--wandb-report", "team-a/neo", "--publish"]
        key = next(e for e in container.env if e.name == "WANDB_API_KEY")
        assert key.value is None and key.value_from.secret_key_ref.name == "wandb"
        assert WANDB_KEY not in json.dumps(k8s_client.sanitize_for_serialization(job))
        assert job.metadata.owner_references[0].kind == "NejumiLeaderboard"

        printed = kubectl(kubeconfig, "get", "nejumilb", "-n", namespace)
        header, row = printed.splitlines()[:2]
        assert header.split()[:6] == ["NAME", "LEADER", "OVERALL", "RANKED", "PENDING", "UPDATED"]
        assert row.split()[:2] == ["neo", "model-e"] and " 5 " in row

        # A sixth evaluation: the board updates when it finishes.
        computed = status["computations"]
        _evaluate(stack, k8s_client, namespace, questions, board_store, *SIXTH)
        status = _wait_board(
            k8s_client, namespace, "six ranked", lambda s: (s.get("counts") or {}).get("ranked") == 6
        )["status"]
        assert status["computations"] > computed
        # The five known results came from the operator's copies, only the sixth from the store.
        assert status["bytesFromCache"] > 0 and status["bytesRead"] < status["bytesFromCache"]
        assert [r["model"] for r in status["top"][:2]] == ["model-e", "model-f"]
        _same_ranking(status, _cli_board(kubeconfig, namespace, tmp_path))

        # A deleted evaluation (a GitOps prune) stays on the board from its stored results.
        CustomObjectsApi(k8s_client).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "model-a"
        )
        status = _wait_board(
            k8s_client, namespace, "model-a deleted", lambda s: (s.get("counts") or {}).get("deleted") == 1
        )["status"]
        assert status["counts"]["ranked"] == 6
        (kept,) = [r for r in status["top"] if r["model"] == "model-a"]
        assert kept["deleted"] is True and kept["interval"] is not None
        member = next(m for m in status["members"] if m["evaluation"] == f"{namespace}/model-a")
        assert member["deleted"] is True and member["uri"].endswith(f"/{namespace}/model-a/1/")
    assert (operator.exit_code, operator.exception) == (0, None), operator.output


def test_the_operator_refuses_a_namespace_its_policy_does_not_name(
    crd: None,
    leaderboard_crd: None,
    k8s_client: ApiClient,
    namespace: str,
    operator_env: pytest.MonkeyPatch,
) -> None:
    other = f"{namespace[:40]}-other"
    CoreV1Api(k8s_client).create_namespace({"metadata": {"name": other}})
    try:
        with operator_runner(namespace) as operator:
            _create_board(k8s_client, namespace, {"namespaces": [other]})
            status = _wait_board(
                k8s_client, namespace, "the refusal", lambda s: s.get("observedGeneration") == 1
            )["status"]
        assert (operator.exit_code, operator.exception) == (0, None), operator.output
    finally:
        CoreV1Api(k8s_client).delete_namespace(other)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (
        conditions["Stalled"]["status"] == "True" and conditions["Stalled"]["reason"] == "NamespaceNotAllowed"
    )
    assert conditions["Ready"]["status"] == "False"
    message = status["message"]
    assert message.startswith(
        f"spec.namespaces: a leaderboard in namespace {namespace} may not read namespace {other}"
    )
    assert "policy.leaderboardNamespaces" in message and not status.get("computations")


def test_a_leaderboard_may_not_read_another_namespace_unless_allowed(
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    data_mirror: Path,
    tmp_path: Path,
    k8s_client: ApiClient,
) -> None:
    """The chart's ValidatingAdmissionPolicy refuses, at `kubectl apply`, a leaderboard naming a
    namespace `policy.leaderboardNamespaces` does not allow for it, naming the field and the policy."""
    from tests.integration.test_in_cluster import Release, chart_values

    release = Release(f"l{secrets.token_hex(3)}", namespace, kubeconfig, tmp_path / "helm-home")
    values = {**chart_values(data_mirror), "policy": {"leaderboardNamespaces": {namespace: ["team-shared"]}}}
    try:
        release.install(values)
        manifest = {"apiVersion": API_VERSION, "kind": LEADERBOARD_KIND, "metadata": {"name": "probe"}}
        custom = CustomObjectsApi(k8s_client)

        def refusal(spec: dict[str, Any]) -> str | None:
            try:
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, LEADERBOARD_PLURAL, {**manifest, "spec": spec}, dry_run="All"
                )
            except ApiException as exc:
                if exc.status in (403, 422):
                    return str(exc.body)
                if exc.status == 404:  # the CRD's REST mapping, a moment after install
                    return None
                raise
            return None

        refused = wait_until(lambda: refusal({"namespaces": ["team-private"]}), 30, "the admission policy")
        assert "spec.namespaces: a leaderboard in namespace" in refused and "team-private" in refused
        assert "policy.leaderboardNamespaces" in refused and "(allowed: team-shared)" in refused
        assert refusal({"namespaces": ["team-shared", namespace]}) is None
        assert refusal({}) is None
    finally:
        release.helm(
            "uninstall", release.name, "--ignore-not-found", "--wait", "--timeout", "60s", check=False
        )
