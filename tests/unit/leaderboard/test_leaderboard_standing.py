"""A board as a NejumiLeaderboard's status: the rows, the one-line displays, the counts by phase
and placement, what is not comparable or excluded and why, gate verdicts, and the caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.leaderboard import Gate, LeaderboardSpec, LeaderboardStatus
from nejumi_eval.leaderboard import compare, standing
from nejumi_eval.leaderboard.cluster import evaluations_from_objects
from nejumi_eval.leaderboard.model import Entry, Interval, RankInterval
from tests.fixtures.leaderboard_results import (
    constant,
    copy_workspace,
    evaluation_object,
    noisy,
    noisy_ratings,
    operator_status,
    ratings,
    write_results,
)


def test_display_is_one_line_with_what_the_entry_has() -> None:
    entry = Entry(
        id="team-a/x",
        source="s",
        model="org/x",
        overall=0.61234,
        overall_ci=Interval(low=0.598, high=0.62714),
        rank_interval=RankInterval(low=1, high=3),
        tied_with_above=True,
    )
    assert standing.display(entry) == "0.6123 [0.5980, 0.6271] ≈ ranks 1–3"
    entry.tied_with_above = False
    entry.rank_interval = RankInterval(low=2, high=2)
    assert standing.display(entry) == "0.6123 [0.5980, 0.6271] ranks 2"
    entry.overall_ci = entry.rank_interval = None
    assert standing.display(entry) == "0.6123"


@pytest.fixture
def objects(tmp_path: Path) -> tuple[list[dict], Path]:
    """NejumiEvaluations as the operator sees them: three finished models with their results
    (copied where the board reads them), one under another prompt template, a capped smoke test,
    one running, one queued, one failed, and one just created."""
    pods, root = tmp_path / "pods", tmp_path / "copies"
    runs = {
        "strong": write_results(pods, "org/strong", jaster=noisy(0.8, "s"), mtbench=noisy_ratings(8, "m")),
        "mid": write_results(pods, "org/mid", jaster=noisy(0.55, "m"), mtbench=noisy_ratings(6, "m")),
        "weak": write_results(pods, "org/weak", jaster=noisy(0.2, "w"), mtbench=noisy_ratings(3, "m")),
        "other": write_results(
            pods, "org/other", jaster=constant(0.5), mtbench=ratings(5), template="alpaca-v1.1.x"
        ),
        "smoke": write_results(pods, "org/smoke", jaster=constant(1.0), mtbench=ratings(10), capped=True),
    }
    models = {name: f"org/{name}" for name in runs}
    out = []
    for name, folder in runs.items():
        copy_workspace(folder, root, "team-a", name)
        out.append(evaluation_object(name, models[name], operator_status(folder)))
    out += [
        evaluation_object("running", "org/next", operator_status(phase="Running")),
        evaluation_object("queued", "org/later", operator_status(phase="Running")),
        evaluation_object("broken", "org/broken", operator_status(phase="Failed")),
        evaluation_object("new", "org/new", None),
    ]
    return out, root


PHASES = {
    "team-a/strong": "Succeeded",
    "team-a/mid": "Succeeded",
    "team-a/weak": "Succeeded",
    "team-a/other": "Succeeded",
    "team-a/smoke": "Succeeded",
    "team-a/running": "Running",
    "team-a/queued": "Queued",  # Kueue holds it: the phase says so before the status does
    "team-a/broken": "Failed",
    # team-a/new: no phase yet; its entry's status (`not started`) counts it as pending
}


def test_standing_of_a_namespace(objects: tuple[list[dict], Path]) -> None:
    objs, root = objects
    spec = LeaderboardSpec(top=2, gates=[Gate(name="min-overall", min=0.5)])
    board = compare.build(evaluations_from_objects(objs, root), **standing.build_options(spec))
    status = standing.standing(board, spec, phases=PHASES, deleted={"team-a/mid"}, resolve=lambda r: r)
    assert LeaderboardStatus.model_validate(status.model_dump(by_alias=True)) == status

    lb = board.leaderboard
    ranked = lb.ranked()
    assert [e.id for e in ranked] == ["team-a/strong", "team-a/mid", "team-a/weak"]
    assert [r.evaluation for r in status.top] == ["team-a/strong", "team-a/mid"]  # spec.top
    first, second = status.top
    assert (first.rank, first.model, first.deleted, second.deleted) == (1, "org/strong", False, True)
    strong = ranked[0]
    assert strong.overall_ci is not None and strong.rank_interval is not None
    assert first.overall == strong.overall
    assert first.interval is not None and (first.interval.low, first.interval.high) == (
        strong.overall_ci.low,
        strong.overall_ci.high,
    )
    assert first.rank_interval is not None and first.rank_interval.low == 1
    assert first.display == standing.display(strong)
    assert first.display.startswith(f"{strong.overall:.4f} [{strong.overall_ci.low:.4f}, ")
    assert first.display.endswith(f"ranks {strong.rank_interval.text()}")
    assert status.leader == "org/strong" and status.leader_overall == first.display
    main = next(g for g in lb.groups if g.main)
    assert status.protocol == main.key

    (other,) = status.not_comparable
    assert (other.evaluation, other.model) == ("team-a/other", "org/other")
    assert other.group != main.id and other.differs == ["jaster.template", "jaster.template_sha256"]
    assert "measured differently" in other.note

    excluded = {x.evaluation: x.reasons for x in status.excluded}
    assert excluded == {
        "team-a/smoke": ["capped (a smoke test)"],
        "team-a/broken": ["status failed", "incomplete: no Overall"],
    }  # the running, queued and new ones are pending, not excluded

    c = status.counts
    assert c is not None
    assert (c.matched, c.succeeded, c.failed) == (9, 5, 1)
    assert (c.queued, c.running, c.pending) == (1, 1, 3)  # pending: queued + running + not started
    assert (c.ranked, c.excluded, c.superseded, c.not_comparable, c.deleted) == (3, 2, 0, 1, 1)

    gates = {v.evaluation: v.verdict for v in status.gates}
    assert gates["team-a/strong"] == "Passed" and gates["team-a/weak"] == "Failed"
    assert gates["team-a/broken"] == "Failed" and gates["team-a/running"] == "Unknown"
    assert set(gates) == {e.id for e in lb.entries}  # nothing superseded here
    assert status.warnings == lb.warnings


def test_options_carry_the_spec_to_the_board(objects: tuple[list[dict], Path]) -> None:
    spec = LeaderboardSpec.model_validate(
        {"include": {"capped": True}, "confidence": 0.9, "resamples": 50, "seed": 7, "protocol": "abcdef"}
    )
    assert standing.build_options(spec) == {
        "include": ["capped"],
        "main_key": "abcdef",
        "confidence": 0.9,
        "resamples": 50,
        "seed": 7,
    }
    assert standing.build_options(LeaderboardSpec())["include"] == []


def test_a_protocol_no_evaluation_has_ranks_nothing(objects: tuple[list[dict], Path]) -> None:
    objs, root = objects
    spec = LeaderboardSpec(protocol="0123456789", resamples=0)
    board = compare.build(evaluations_from_objects(objs, root), **standing.build_options(spec))
    assert not any(g.key.startswith("0123456789") for g in board.leaderboard.groups)
    status = standing.standing(board, spec, phases=PHASES)
    assert status.top == [] and status.leader is None and status.protocol is None
    assert status.counts is not None and status.counts.ranked == 0
    assert {x.evaluation for x in status.not_comparable} == {
        "team-a/strong",
        "team-a/mid",
        "team-a/weak",
        "team-a/other",
    }
    assert all(x.note for x in status.not_comparable)
    assert any("no evaluation's protocol key starts with it" in w for w in status.warnings)
    assert status.gates == []  # no gates asked


def test_lists_are_capped_and_say_so(
    objects: tuple[list[dict], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for 2: a list of 2 (excluded) is whole; the 9 gate verdicts are cut to 2, failures
    first so a cut never hides one, and a warning says so; the warnings (that one and the board's
    5) are cut to 2 too, the last saying how many more there are."""
    objs, root = objects
    monkeypatch.setattr(standing, "MAX_LISTED", 2)
    spec = LeaderboardSpec(gates=[Gate(name="min-overall", min=0.6)], resamples=0)
    board = compare.build(evaluations_from_objects(objs, root), **standing.build_options(spec))
    board.leaderboard.warnings = [f"w{i}" for i in range(5)]
    status = standing.standing(board, spec, phases=PHASES)
    assert len(status.excluded) == 2 and len(status.gates) == 2 and len(status.warnings) == 2
    assert [v.verdict for v in status.gates] == ["Failed", "Failed"]
    assert (
        status.warnings[0]
        == "gate verdicts (failed first): 9, the first 2 listed here (the page lists every one)"
    )
    assert status.warnings[1] == "… and 5 more warnings (the page lists every one)"
