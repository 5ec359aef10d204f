"""Aggregating evaluations from several results folders: what is ranked, what is kept aside and
why, which evaluations may be compared, and that the numbers come from the folders."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from nejumi_eval.leaderboard import compare, sources
from nejumi_eval.leaderboard.model import Entry
from tests.fixtures.leaderboard_results import T0, JasterScore, constant, ratings, write_results


def alternating(period: int) -> JasterScore:
    """1 on every `period`-th sample of each dataset, else 0: jaster AVG = 1/period, with spread."""
    return lambda dataset, i: float(i % period == 0)


def _by_id(board: compare.Board) -> dict[str, Entry]:
    return {e.id: e for e in board.leaderboard.entries}


@pytest.fixture
def two_workspaces(tmp_path: Path) -> tuple[Path, Path]:
    """Workspace 1: alpha (an older and a newer run), beta, a capped gamma, a synthetic-judge
    delta. Workspace 2: epsilon under another prompt template, zeta degraded, eta failed."""
    ws1, ws2 = tmp_path / "ws1", tmp_path / "ws2"
    write_results(ws1, "org/alpha", started=T0 - timedelta(days=7), jaster=constant(0.25), mtbench=ratings(4))
    write_results(ws1, "org/alpha", started=T0, jaster=alternating(2), mtbench=ratings(8))
    write_results(ws1, "org/beta", jaster=alternating(4), mtbench=ratings(6), samples=8)
    write_results(ws1, "org/gamma", jaster=constant(1.0), mtbench=ratings(10), capped=True)
    write_results(ws1, "org/delta", jaster=constant(0.75), mtbench=ratings(9), synthetic_judge=True)
    write_results(ws2, "org/epsilon", jaster=constant(0.5), mtbench=ratings(5), template="alpaca-v1.1.x")
    write_results(ws2, "org/zeta", jaster=constant(0.5), mtbench=ratings(7), degraded=True)
    write_results(ws2, "org/eta", jaster=constant(0.5), mtbench=None, status="failed")
    return ws1, ws2


def test_latest_wins_others_kept_and_smoke_tests_set_aside(two_workspaces: tuple[Path, Path]) -> None:
    board = compare.build(sources.from_results_folders(two_workspaces), resamples=200)
    entries = _by_id(board)
    lb = board.leaderboard
    assert len(entries) == 8  # nothing dropped

    main = lb.ranked()
    assert [e.model for e in main] == ["org/alpha", "org/beta"]
    assert [e.rank for e in main] == [1, 2]
    alpha_new, alpha_old = "alpha-20261101T090000Z", "alpha-20261025T090000Z"
    assert entries[alpha_new].state == "ranked"
    assert entries[alpha_old].state == "superseded"
    assert entries[alpha_old].superseded_by == alpha_new
    assert entries[alpha_old].overall == pytest.approx((0.25 + 0.4) / 2)  # kept with its own scores

    assert entries["gamma-20261101T090000Z"].state == "excluded"
    assert entries["gamma-20261101T090000Z"].reasons == ["capped (a smoke test)"]
    assert entries["delta-20261101T090000Z"].reasons == ["synthetic judge"]
    assert entries["zeta-20261101T090000Z"].reasons == ["degraded"]
    eta = entries["eta-20261101T090000Z"]
    assert (
        eta.state == "excluded" and "status failed" in eta.reasons and "incomplete: no Overall" in eta.reasons
    )
    assert all(e.rank is None for e in entries.values() if e.state != "ranked")
    # ranked entries come first in the board, in rank order
    assert [e.id for e in lb.entries[:2]] == [e.id for e in main]


def test_another_protocol_is_ranked_apart_and_flagged(two_workspaces: tuple[Path, Path]) -> None:
    board = compare.build(sources.from_results_folders(two_workspaces), resamples=200)
    lb = board.leaderboard
    epsilon = _by_id(board)["epsilon-20261101T090000Z"]
    main = next(g for g in lb.groups if g.main)
    assert epsilon.group != main.id and epsilon.state == "ranked" and epsilon.rank == 1
    other = next(g for g in lb.groups if g.id == epsilon.group)
    assert other.differs == ["jaster.template", "jaster.template_sha256"] and other.missing == []
    assert (
        other.note
        == f"was measured differently from group {main.id} (jaster.template, jaster.template_sha256)"
    )
    assert all(e.group == main.id for e in lb.ranked())
    assert any(f"protocol group {other.id}" in w and "measured differently" in w for w in lb.warnings)
    # evaluations of different groups are never compared
    assert not [c for c in lb.comparisons if epsilon.id in (c.a, c.b)]


def test_a_different_judge_is_a_different_protocol(tmp_path: Path) -> None:
    write_results(tmp_path, "org/a", jaster=constant(0.5), mtbench=ratings(5))
    write_results(tmp_path, "org/b", jaster=constant(0.5), mtbench=ratings(5), judge="gpt-4o-2024-05-13")
    lb = compare.build(sources.from_results_folders([tmp_path]), resamples=0).leaderboard
    assert len(lb.groups) == 2
    assert lb.groups[1].differs == ["mtbench.judge"]


def _edit_run_record(folder: Path, edit) -> None:
    path = folder / "run.json"
    run = json.loads(path.read_text())
    edit(run)
    path.write_text(json.dumps(run))


def test_missing_provenance_is_said_apart_from_different_provenance(tmp_path: Path) -> None:
    """Issue 16: an evaluation that lacks a protocol record (or a field of one) is not known to be
    measured differently; the board says what is missing, and what differs only where it differs."""
    for name in ("org/a", "org/b"):
        write_results(tmp_path, name, jaster=constant(0.5), mtbench=ratings(5))
    bare = write_results(tmp_path, "org/bare", jaster=constant(0.25), mtbench=ratings(4))
    (bare / "run.json").unlink()
    older = write_results(tmp_path, "org/older", jaster=constant(0.25), mtbench=ratings(4), judge="gpt-x")
    _edit_run_record(older, lambda run: run["mtbench"]["judge"].pop("temperature"))
    lb = compare.build(sources.from_results_folders([tmp_path]), resamples=0).leaderboard
    main = next(g for g in lb.groups if g.main)
    group = {lb.entry(e).model: g for g in lb.groups for e in g.entries}

    none = group["org/bare"]
    assert none.differs == [] and "jaster.template" in none.missing
    assert none.note == "has no provenance (no protocol record: no run record)"
    assert lb.entry(none.entries[0]).provenance.missing == "no run record"
    partly = group["org/older"]
    assert partly.differs == ["mtbench.judge"] and partly.missing == ["mtbench.judge_temperature"]
    assert partly.note == (
        f"was measured differently from group {main.id} (mtbench.judge); "
        f"lacks provenance group {main.id} records (mtbench.judge_temperature)"
    )
    warnings = [w for w in lb.warnings if w.startswith("protocol group")]
    assert len(warnings) == 2
    (bare_warning,) = [w for w in warnings if w.startswith(f"protocol group {none.id} ")]
    assert "no protocol record: no run record" in bare_warning and "measured differently" not in bare_warning
    assert f"ranked separately, never against group {main.id}" in bare_warning


def test_a_main_group_without_provenance_is_named_as_the_one_lacking(tmp_path: Path) -> None:
    for name in ("org/a", "org/b"):
        folder = write_results(tmp_path, name, jaster=constant(0.5), mtbench=ratings(5))
        (folder / "run.json").unlink()
    write_results(tmp_path, "org/c", jaster=constant(0.5), mtbench=ratings(5))
    lb = compare.build(sources.from_results_folders([tmp_path]), resamples=0).leaderboard
    main, other = lb.groups
    assert main.main and other.differs == [] and other.missing
    assert (
        other.note
        == f"has provenance group {main.id} lacks (group {main.id} has no protocol record: no run record)"
    )


def test_include_all_ranks_smoke_tests_still_marked(two_workspaces: tuple[Path, Path]) -> None:
    board = compare.build(sources.from_results_folders(two_workspaces), include_all=True, resamples=200)
    entries = _by_id(board)
    gamma, zeta = entries["gamma-20261101T090000Z"], entries["zeta-20261101T090000Z"]
    assert gamma.state == "ranked" and gamma.capped and gamma.rank == 1  # the best score here
    assert zeta.state == "ranked" and zeta.degraded
    # the synthetic judge names its own judge: another protocol group, ranked there
    delta = entries["delta-20261101T090000Z"]
    assert delta.state == "ranked" and delta.group != gamma.group
    assert entries["eta-20261101T090000Z"].state == "excluded"  # failed: never ranked


def test_a_newer_smoke_test_does_not_push_the_real_score_off(tmp_path: Path) -> None:
    write_results(tmp_path, "org/m", started=T0, jaster=constant(0.5), mtbench=ratings(5))
    write_results(
        tmp_path,
        "org/m",
        started=T0 + timedelta(days=1),
        jaster=constant(0.5),
        mtbench=ratings(5),
        capped=True,
    )
    entries = compare.build(sources.from_results_folders([tmp_path]), resamples=0).leaderboard.entries
    state = {e.started_at: e.state for e in entries}
    assert state == {T0: "ranked", T0 + timedelta(days=1): "excluded"}
    # …but with --include-all the newer run is the latest and wins
    entries = compare.build(
        sources.from_results_folders([tmp_path]), include_all=True, resamples=0
    ).leaderboard.entries
    assert {e.started_at: e.state for e in entries} == {T0: "superseded", T0 + timedelta(days=1): "ranked"}


def test_equal_overall_equal_rank_and_ties_marked(tmp_path: Path) -> None:
    for name in ("org/a", "org/b", "org/c"):
        write_results(tmp_path, name, jaster=alternating(2), mtbench=ratings(5))
    write_results(tmp_path, "org/d", jaster=constant(0.0), mtbench=ratings(1))
    lb = compare.build(sources.from_results_folders([tmp_path]), resamples=300).leaderboard
    assert [(e.model, e.rank) for e in lb.ranked()] == [
        ("org/a", 1),
        ("org/b", 1),
        ("org/c", 1),
        ("org/d", 4),
    ]
    ties = {e.model: e.tied_with_above for e in lb.ranked()}
    assert ties == {"org/a": None, "org/b": True, "org/c": True, "org/d": False}


def test_intervals_come_from_the_folders_rows(two_workspaces: tuple[Path, Path]) -> None:
    board = compare.build(sources.from_results_folders(two_workspaces), resamples=500)
    lb = board.leaderboard
    assert lb.warnings == [w for w in lb.warnings if w.startswith("protocol group")]  # rows match summaries
    alpha = lb.ranked()[0]
    jaster = alpha.benchmarks["jaster"]
    assert jaster.avg == pytest.approx(0.5) and jaster.questions == 16 * 4
    assert jaster.ci is not None and jaster.ci.low < 0.5 < jaster.ci.high
    assert set(jaster.category_ci) == {"NLI", "QA", "RC", "MC", "EL", "FA", "MR"}
    mt = alpha.benchmarks["mtbench"]
    assert mt.ci is not None and mt.ci.low == mt.ci.high == 8.0  # every rating 8: no spread
    assert alpha.overall_ci is not None and alpha.overall_ci.low < alpha.overall < alpha.overall_ci.high
    verdict = lb.comparison(alpha.id, lb.ranked()[1].id)
    assert verdict is not None and verdict.distinguishable is True and verdict.diff > 0
    flipped = lb.comparison(lb.ranked()[1].id, alpha.id)
    assert flipped is not None and flipped.diff == pytest.approx(-verdict.diff)


def test_a_row_that_disagrees_with_its_summary_is_reported(tmp_path: Path) -> None:
    folder = write_results(tmp_path, "org/m", jaster=constant(0.5), mtbench=ratings(5))
    table = folder / "jaster_output_table.jsonl"
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    rows[0]["score"] = 1.0
    table.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    lb = compare.build(sources.from_results_folders([tmp_path]), resamples=100).leaderboard
    assert any("recomputed from the per-question table" in w for w in lb.warnings)


def test_results_folders_are_found_from_any_level(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    one = write_results(ws, "org/a", jaster=constant(0.5), mtbench=ratings(5))
    write_results(ws, "org/b", jaster=constant(0.5), mtbench=ratings(5))
    (ws / "results" / "still-running").mkdir()  # no summary.json yet: not a result
    assert len(sources.find_results_folders([ws])) == 2
    assert len(sources.find_results_folders([ws / "results"])) == 2
    assert sources.find_results_folders([one]) == [one]
    assert len(sources.find_results_folders([ws, one, ws / "results"])) == 2  # each once


def test_unreadable_folder_is_skipped_and_same_names_kept_apart(tmp_path: Path) -> None:
    a = write_results(tmp_path / "ws1", "org/a", jaster=constant(0.5), mtbench=ratings(5))
    b = write_results(tmp_path / "ws2", "org/a", jaster=constant(0.25), mtbench=ratings(5))
    assert a.name == b.name
    broken = tmp_path / "ws1" / "results" / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json")
    evaluations = sources.from_results_folders([tmp_path / "ws1", tmp_path / "ws2"])
    assert sorted(e.entry.id for e in evaluations) == [a.name, f"{a.name}~2"]


def test_no_results_names_the_paths_searched(tmp_path: Path) -> None:
    with pytest.raises(sources.NoResultsError) as err:
        sources.from_results_folders([tmp_path / "nowhere", tmp_path])
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "results/*/summary.json" in message
