"""`nejumi-eval leaderboard --cluster` on the real control plane: NejumiEvaluations created through
the API, their status subresource patched with what the operator's reducer writes for finished,
running and failed evaluations, then read back by the leaderboard source and the CLI."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
from nejumi_eval.cli import main
from nejumi_eval.leaderboard import cluster, compare
from tests.fixtures.leaderboard_results import copy_workspace, operator_status, ratings, write_results
from tests.support.kube import create_evaluation

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def spread(period: int):
    return lambda dataset, i: float(i % period == 0)


def create(client: ApiClient, namespace: str, name: str, model: str, status: dict[str, Any] | None) -> None:
    """Create the resource as a user would, then write its status as the operator does (through
    the /status subresource: a create never sets status)."""
    spec = {
        "model": {"name": model, "source": "openai-compatible", "endpoint": "http://model:8000/v1"},
        "benchmarks": {"jaster": {"datasets": ["jamp"], "testSamples": 2}, "mtbench": {"enabled": False}},
        "wandb": {"enabled": False},
    }
    create_evaluation(client, namespace, name, spec)
    if status is not None:
        CustomObjectsApi(client).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )


@pytest.fixture
def evaluations(crd: None, k8s_client: ApiClient, namespace: str, tmp_path: Path) -> dict[str, Path]:
    pods = tmp_path / "pods"
    runs = {
        "strong": write_results(pods, "org/strong-7b", jaster=spread(2), mtbench=ratings(8), runtime=1800),
        "mid": write_results(pods, "org/mid-3b", jaster=spread(3), mtbench=ratings(6), runtime=900),
        "weak": write_results(pods, "org/weak-1b", jaster=spread(4), mtbench=ratings(3), runtime=300),
        "smoke": write_results(pods, "org/smoke", jaster=spread(1), mtbench=ratings(10), capped=True),
    }
    create(k8s_client, namespace, "strong", "org/strong-7b", operator_status(runs["strong"]))
    create(k8s_client, namespace, "mid", "org/mid-3b", operator_status(runs["mid"]))
    create(k8s_client, namespace, "weak", "org/weak-1b", operator_status(runs["weak"]))
    create(k8s_client, namespace, "smoke", "org/smoke", operator_status(runs["smoke"]))
    create(k8s_client, namespace, "running", "org/next-13b", operator_status(phase="Running"))
    create(k8s_client, namespace, "broken", "org/broken", operator_status(phase="Failed"))
    create(k8s_client, namespace, "fresh", "org/fresh", None)
    return runs


def test_the_cluster_source_ranks_succeeded_evaluations(
    evaluations: dict[str, Path], k8s_client: ApiClient, namespace: str, tmp_path: Path
) -> None:
    root = tmp_path / "copies"
    copy_workspace(evaluations["strong"], root, namespace, "strong")
    copy_workspace(evaluations["mid"], root, namespace, "mid")
    found = cluster.from_cluster(namespace=namespace, client=k8s_client, workspace_root=root)
    assert len(found) == 7
    board = compare.build(found, resamples=200).leaderboard
    main_group = board.ranked()
    assert [e.model for e in main_group] == ["org/strong-7b", "org/mid-3b"]
    assert [e.rank for e in main_group] == [1, 2]
    for entry in main_group:  # from the workspace copies: intervals around the status's Overall
        assert entry.overall_ci is not None and entry.overall_ci.low <= entry.overall <= entry.overall_ci.high
    assert main_group[0].overall == pytest.approx((0.5 + 0.8) / 2)
    # weak has no copy: ranked by its status alone, in its own (provenance-less) group, no interval
    weak = board.entry(f"{namespace}/weak")
    assert weak.state == "ranked" and weak.group != main_group[0].group and weak.overall_ci is None
    assert weak.overall == pytest.approx((0.25 + 0.3) / 2)
    assert any(w.startswith(f"{namespace}/weak: per-question data unavailable") for w in board.warnings)
    states = {e.id.split("/", 1)[1]: (e.state, e.status, e.reasons) for e in board.entries}
    assert states["smoke"] == ("excluded", "completed", ["capped (a smoke test)"])
    assert states["running"][:2] == ("excluded", "running")
    assert states["broken"][:2] == ("excluded", "failed")
    assert states["fresh"][:2] == ("excluded", "not started")
    assert board.entry(f"{namespace}/smoke").capped


def test_the_cli_reads_the_cluster_with_a_kubeconfig(
    evaluations: dict[str, Path],
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "copies"
    copy_workspace(evaluations["strong"], root, namespace, "strong")
    out = tmp_path / "board.json"
    args = ["leaderboard", "--cluster", "-n", namespace, "--kubeconfig", str(kubeconfig)]
    code = main([*args, "--workspace-root", str(root), "--json", str(out), "--resamples", "100"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "note: 3 of 7 evaluations have no per-question data" in printed  # mid, weak, smoke
    assert "org/next-13b" in printed and "status running" in printed
    doc = json.loads(out.read_text())
    ranked = [e for e in doc["entries"] if e["state"] == "ranked"]
    assert {e["model"] for e in ranked} == {"org/strong-7b", "org/mid-3b", "org/weak-1b"}
    strong = next(e for e in ranked if e["model"] == "org/strong-7b")
    assert strong["overall_ci"] is not None and strong["rank"] == 1
    assert all(e["overall_ci"] is None for e in ranked if e["model"] != "org/strong-7b")

    # another namespace: seen with --all-namespaces only
    core = CoreV1Api(k8s_client)
    other = f"lb-other-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": other}})
    try:
        run = write_results(tmp_path / "other", "org/other-2b", jaster=spread(2), mtbench=ratings(5))
        create(k8s_client, other, "other", "org/other-2b", operator_status(run))
        assert main([*args, "--json", str(out), "--resamples", "0"]) == 0
        assert "org/other-2b" not in {e["model"] for e in json.loads(out.read_text())["entries"]}
        every = ["leaderboard", "--cluster", "-A", "--kubeconfig", str(kubeconfig), "--json", str(out)]
        assert main([*every, "--resamples", "0"]) == 0
        ids = {e["id"] for e in json.loads(out.read_text())["entries"]}
        assert {f"{other}/other", f"{namespace}/strong"} <= ids
    finally:
        core.delete_namespace(other)
