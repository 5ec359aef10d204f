"""NejumiEvaluation resources → leaderboard evaluations, with statuses written by the operator's
own reducer (`reduce_status`), so the source reads what the operator really writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nejumi_eval.cli import main
from nejumi_eval.errors import InputError
from nejumi_eval.leaderboard import cluster, compare
from nejumi_eval.leaderboard.cluster import evaluations_from_objects, workspace_relative
from tests.fixtures.leaderboard_results import (
    copy_workspace,
    evaluation_object,
    operator_status,
    ratings,
    write_results,
)


def spread(period: int):
    return lambda dataset, i: float(i % period == 0)


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """Results folders as evaluators wrote them (in their pods' workspaces)."""
    ws = tmp_path / "pods"
    return {
        "strong": write_results(ws, "org/strong-7b", jaster=spread(2), mtbench=ratings(8), runtime=1800),
        "weak": write_results(ws, "org/weak-1b", jaster=spread(4), mtbench=ratings(3), runtime=300),
        "smoke": write_results(ws, "org/smoke", jaster=spread(1), mtbench=ratings(10), capped=True),
    }


@pytest.fixture
def objects(runs: dict[str, Path]) -> list[dict]:
    return [
        evaluation_object("strong", "org/strong-7b", operator_status(runs["strong"])),
        evaluation_object("weak", "org/weak-1b", operator_status(runs["weak"])),
        evaluation_object("smoke", "org/smoke", operator_status(runs["smoke"])),
        evaluation_object("running", "org/next-13b", operator_status(phase="Running")),
        evaluation_object("broken", "org/broken", operator_status(phase="Failed")),
        evaluation_object("new", "org/new", None),  # just created: the operator has not written yet
    ]


def test_status_scores_rank_finished_evaluations_and_list_the_rest(objects: list[dict]) -> None:
    board = compare.build(evaluations_from_objects(objects), resamples=200).leaderboard
    ranked = board.ranked()
    assert [e.id for e in ranked] == ["team-a/strong", "team-a/weak"]
    assert ranked[0].model == "org/strong-7b" and ranked[0].overall == pytest.approx((0.5 + 0.8) / 2)
    assert ranked[0].benchmarks["jaster"].categories["NLI"] == pytest.approx(0.5)
    assert ranked[0].runtime_seconds == pytest.approx(1800)
    # status only: no per-question data, so no interval at all (never a made-up one)
    assert all(e.overall_ci is None and e.benchmarks["jaster"].ci is None for e in ranked)
    assert any(
        "per-question data unavailable (the status names no stored results; no --workspace-root given)" in w
        for w in board.warnings
    )
    states = {e.id: (e.state, e.status, e.reasons) for e in board.entries}
    assert states["team-a/smoke"] == ("excluded", "completed", ["capped (a smoke test)"])
    assert states["team-a/running"][:2] == ("excluded", "running")
    assert "status running" in states["team-a/running"][2]
    assert states["team-a/broken"][:2] == ("excluded", "failed")
    assert states["team-a/new"][:2] == ("excluded", "not started")
    broken = board.entry("team-a/broken")
    assert broken.provenance.details["phase_reason"] == "InfrastructureFailure"
    assert broken.provenance.details["resource"] == "team-a/broken"


def test_a_workspace_copy_brings_questions_intervals_and_provenance(
    objects: list[dict], runs: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "copies"
    copy_workspace(runs["strong"], root, "team-a", "strong")
    board = compare.build(evaluations_from_objects(objects, root), resamples=200)
    strong = board.leaderboard.entry("team-a/strong")
    weak = board.leaderboard.entry("team-a/weak")
    assert strong.overall_ci is not None and strong.overall_ci.low < strong.overall < strong.overall_ci.high
    assert strong.benchmarks["jaster"].questions == 16 * 4
    assert strong.provenance.identity["jaster"]["template"] == "alpaca-ja-v1.3.0"  # run.json's
    assert "copies/team-a/strong/results" in strong.source
    assert board.evaluations["team-a/strong"].questions  # the drill-down has rows
    assert weak.overall_ci is None and not board.evaluations["team-a/weak"].questions
    warnings = board.leaderboard.warnings
    assert any(w.startswith("team-a/weak: per-question data unavailable") for w in warnings)
    assert not any(w.startswith("team-a/strong:") for w in warnings)
    # status-only and folder-backed entries are measured under different known provenance
    assert strong.group != weak.group


def test_a_status_without_its_folder_lacks_provenance_not_measured_differently(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 16: a status-only evaluation is ranked apart because its protocol is unknown, and the
    board says so; it never says it was measured differently."""
    root = tmp_path / "copies"
    objects = []
    for name, model in (("strong", "org/strong-7b"), ("weak", "org/weak-1b")):
        copy_workspace(runs[name], root, "team-a", name)
        objects.append(evaluation_object(name, model, operator_status(runs[name])))
    lone = write_results(tmp_path / "pods", "org/lone-3b", jaster=spread(3), mtbench=ratings(5))
    objects.append(evaluation_object("lone", "org/lone-3b", operator_status(lone)))  # not copied
    board = compare.build(evaluations_from_objects(objects, root), resamples=0).leaderboard
    lone_entry = board.entry("team-a/lone")
    assert lone_entry.state == "ranked" and lone_entry.provenance.missing == "status only"
    assert board.entry("team-a/strong").provenance.missing is None
    group = next(g for g in board.groups if g.id == lone_entry.group)
    assert not group.main and group.differs == [] and group.missing
    assert group.note == "has no provenance (no protocol record: status only)"
    (warning,) = [w for w in board.warnings if w.startswith("protocol group")]
    assert warning == (
        f"protocol group {group.id} (1 ranked evaluation(s)) has no provenance (no protocol record: "
        "status only); ranked separately, never against group A"
    )


def test_the_status_is_checked_against_the_copy(runs: dict[str, Path], tmp_path: Path) -> None:
    status = operator_status(runs["strong"])
    status["scores"]["overall"] = 0.1
    status["capped"] = True  # the operator saw a cap the copy does not record
    root = tmp_path / "copies"
    copy_workspace(runs["strong"], root, "team-a", "strong")
    (evaluation,) = evaluations_from_objects([evaluation_object("strong", "org/strong-7b", status)], root)
    assert evaluation.entry.capped
    assert any("status reports Overall 0.100000" in w for w in evaluation.entry.warnings)


def test_a_missing_copy_says_where_it_looked(objects: list[dict], tmp_path: Path) -> None:
    evaluations = evaluations_from_objects(objects[:1], tmp_path / "empty")
    (warning,) = evaluations[0].entry.warnings
    assert f"/workspace/results/{Path(objects[0]['status']['resultsDir']).name} not found under" in warning
    assert str(tmp_path / "empty" / "team-a" / "strong") in warning


def test_results_dir_is_relative_to_the_workspace() -> None:
    assert str(workspace_relative("/workspace/results/m-20261101T090000Z")) == "results/m-20261101T090000Z"
    assert str(workspace_relative("results/m-1")) == "results/m-1"
    assert str(workspace_relative("/mnt/ws/results/m-1")) == "results/m-1"


def test_a_malformed_resource_is_skipped_not_fatal(objects: list[dict]) -> None:
    bad = {"metadata": {"name": "x", "namespace": "team-a"}, "spec": {}}  # no model
    assert [e.entry.id for e in evaluations_from_objects([bad, objects[0]])] == ["team-a/strong"]


def test_cli_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--namespace", "x"]) == 2
    assert "only go with --cluster" in capsys.readouterr().err
    assert main(["leaderboard", "--cluster", "-n", "x", "--all-namespaces"]) == 2
    assert "not both" in capsys.readouterr().err


def test_without_the_kubernetes_package_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # import kubernetes → ImportError
    with pytest.raises(InputError, match=r"pip install 'nejumi\[operator\]'"):
        cluster.from_cluster(namespace="x")


def test_a_bad_kubeconfig_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.kubeconfig"
    with pytest.raises(InputError, match="cannot use kubeconfig"):
        cluster.from_cluster(kubeconfig=missing)
