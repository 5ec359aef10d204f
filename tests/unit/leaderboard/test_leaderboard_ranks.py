"""What the board ranks and how sure it is of the order: rank intervals from the paired resamples,
`include` (which kinds of non-leaderboard run are ranked), `main_key` (which protocol group is
ranked), `confidence`, and the ranks as the terminal table and the CSV show them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from nejumi_eval.leaderboard import compare, render, sources
from nejumi_eval.leaderboard.model import Entry, RankInterval
from tests.fixtures.leaderboard_results import (
    constant,
    noisy,
    noisy_ratings,
    ratings,
    write_results,
)


def board_of(root: Path, shares: dict[str, float], samples: int = 10, **kw) -> compare.Board:
    """One model per share, each answering that share of jaster's questions, each missing its own
    questions (independent noise), and rating alike on MT-bench (the same noise for all)."""
    for name, share in shares.items():
        write_results(
            root, f"org/{name}", jaster=noisy(share, name), mtbench=noisy_ratings(6, "mt"), samples=samples
        )
    return compare.build(sources.from_results_folders([root]), resamples=kw.pop("resamples", 500), **kw)


def widths(entries: list[Entry]) -> list[int]:
    return [e.rank_interval.high - e.rank_interval.low for e in entries if e.rank_interval]


def test_rank_intervals_hold_the_point_rank_and_widen_when_models_are_close(tmp_path: Path) -> None:
    close = board_of(tmp_path / "close", {"a": 0.56, "b": 0.54, "c": 0.52, "d": 0.50}).leaderboard.ranked()
    far = board_of(tmp_path / "far", {"a": 0.85, "b": 0.6, "c": 0.35, "d": 0.1}).leaderboard.ranked()
    for entry in close + far:
        assert entry.rank_interval is not None and entry.rank is not None
        assert entry.rank_interval.low <= entry.rank <= entry.rank_interval.high
    # far apart: every resample orders them the same way
    assert [(e.rank_interval.low, e.rank_interval.high) for e in far if e.rank_interval] == [
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
    ]
    # two points apart on 160 questions: the resamples reorder them
    assert sum(widths(close)) >= 4 and max(widths(close)) >= 2
    assert any(e.tied_with_above for e in close)


def test_paired_draws_order_models_their_separate_intervals_cannot(tmp_path: Path) -> None:
    """b answers exactly what a answers plus a few more questions: their Overall intervals overlap,
    but on every resample b is ahead, so b ranks 1 and a ranks 2 on all of them."""

    def nested(extra: int):
        return lambda dataset, i: float(i % 3 == 0 or i < extra)

    write_results(tmp_path, "org/a", jaster=nested(0), mtbench=ratings(6), samples=12)
    write_results(tmp_path, "org/b", jaster=nested(2), mtbench=ratings(6), samples=12)
    b, a = compare.build(sources.from_results_folders([tmp_path]), resamples=500).leaderboard.ranked()
    assert b.model == "org/b" and a.overall_ci is not None and b.overall_ci is not None
    assert b.overall_ci.low < a.overall_ci.high  # the separate intervals overlap
    assert b.rank_interval == RankInterval(low=1, high=1)
    assert a.rank_interval == RankInterval(low=2, high=2)


def test_an_entry_without_questions_has_no_rank_interval_but_counts_at_its_score(tmp_path: Path) -> None:
    """`bare` has no per-question tables: no draws, no interval; the others are ranked against its
    recorded Overall on every resample, so their rank intervals are board ranks (containing
    theirs), not ranks among the entries that happen to have draws."""
    write_results(tmp_path, "org/top", jaster=noisy(0.9, "top"), mtbench=ratings(9), samples=10)
    bare = write_results(tmp_path, "org/bare", jaster=constant(0.6), mtbench=ratings(6), samples=10)
    write_results(tmp_path, "org/low", jaster=noisy(0.3, "low"), mtbench=ratings(3), samples=10)
    for table in bare.glob("*_output_table.jsonl"):
        table.unlink()
    board = compare.build(sources.from_results_folders([tmp_path]), resamples=300).leaderboard
    ranks = {e.model: (e.rank, e.rank_interval) for e in board.ranked()}
    assert ranks["org/bare"] == (2, None)
    low = ranks["org/low"][1]
    assert low is not None and (low.low, low.high) == (3, 3)  # below `bare`, not second of two
    top = ranks["org/top"][1]
    assert top is not None and (top.low, top.high) == (1, 1)


def test_no_resamples_no_rank_intervals(tmp_path: Path) -> None:
    board = board_of(tmp_path, {"a": 0.6, "b": 0.4}, resamples=0).leaderboard
    assert all(e.rank_interval is None for e in board.entries)


def test_confidence_is_recorded_and_sets_every_interval(tmp_path: Path) -> None:
    shares = {"a": 0.56, "b": 0.54, "c": 0.52}
    wide = board_of(tmp_path / "w", shares, confidence=0.99).leaderboard
    narrow = board_of(tmp_path / "n", shares, confidence=0.6).leaderboard
    assert (wide.confidence, narrow.confidence) == (0.99, 0.6)
    for w, n in zip(wide.ranked(), narrow.ranked(), strict=True):
        assert w.overall_ci is not None and n.overall_ci is not None
        assert w.overall_ci.high - w.overall_ci.low > n.overall_ci.high - n.overall_ci.low
    assert sum(widths(wide.ranked())) > sum(widths(narrow.ranked()))
    assert "60% bootstrap CI" in render.terminal(narrow)
    with pytest.raises(ValueError, match="confidence"):
        board_of(tmp_path / "bad", {"x": 0.5}, confidence=1.0)


@pytest.fixture
def kinds(tmp_path: Path) -> Path:
    """A real run, and a capped, a synthetic-judge and a degraded one scoring higher."""
    write_results(tmp_path, "org/real", jaster=constant(0.5), mtbench=ratings(5))
    write_results(tmp_path, "org/capped", jaster=constant(0.9), mtbench=ratings(9), capped=True)
    write_results(tmp_path, "org/synthetic", jaster=constant(0.8), mtbench=ratings(8), synthetic_judge=True)
    write_results(tmp_path, "org/degraded", jaster=constant(0.7), mtbench=ratings(7), degraded=True)
    return tmp_path


def _states(board: compare.Board) -> dict[str, str]:
    return {e.model.removeprefix("org/"): e.state for e in board.leaderboard.entries}


def test_include_ranks_the_kinds_named_and_still_marks_them(kinds: Path) -> None:
    evaluations = sources.from_results_folders([kinds])
    board = compare.build(evaluations, include=["capped", "degraded"], resamples=0)
    assert _states(board) == {
        "capped": "ranked",
        "degraded": "ranked",
        "real": "ranked",
        "synthetic": "excluded",
    }
    assert board.leaderboard.include == ["capped", "degraded"] and board.leaderboard.include_all is False
    capped = next(e for e in board.leaderboard.ranked() if e.model == "org/capped")
    assert capped.capped and capped.rank == 1 and render.marks(capped) == "capped"
    synthetic = board.leaderboard.entry(
        next(e.id for e in board.leaderboard.entries if e.model == "org/synthetic")
    )
    assert synthetic.reasons == ["synthetic judge"]

    every = compare.build(evaluations, include=compare.INCLUDABLE, resamples=0).leaderboard
    assert every.include_all is True and every.include == list(compare.INCLUDABLE)
    legacy = compare.build(evaluations, include_all=True, resamples=0).leaderboard
    assert legacy.include == list(compare.INCLUDABLE)
    assert {e.id: e.state for e in every.entries} == {e.id: e.state for e in legacy.entries}
    with pytest.raises(ValueError, match="unknown kind"):
        compare.build(evaluations, include=["smoke"], resamples=0)


def test_main_key_picks_the_ranked_group_and_an_unmatched_one_ranks_none(tmp_path: Path) -> None:
    """Three models under the usual template, one under another: by default the larger group is
    ranked; a leaderboard pinned to the other one's key ranks that one, and one pinned to a key no
    evaluation has ranks nothing, and says so, rather than fall back to the largest group."""
    for name in ("a", "b", "c"):
        write_results(tmp_path, f"org/{name}", jaster=noisy(0.5, name), mtbench=ratings(5))
    write_results(tmp_path, "org/other", jaster=constant(0.5), mtbench=ratings(5), template="alpaca-v1.1.x")
    evaluations = sources.from_results_folders([tmp_path])
    default = compare.build(evaluations, resamples=0).leaderboard
    other_key = next(e.provenance.key for e in default.entries if e.model == "org/other")
    usual_key = next(e.provenance.key for e in default.entries if e.model == "org/a")
    assert len(default.ranked()) == 3 and default.main_key is None

    pinned = compare.build(evaluations, main_key=other_key[:8], resamples=0).leaderboard
    assert [e.model for e in pinned.ranked()] == ["org/other"] and pinned.main_key == other_key[:8]
    main, usual = pinned.groups
    assert main.main and main.key == other_key and main.id == "A"
    assert (
        not usual.main
        and usual.key == usual_key
        and usual.differs == ["jaster.template", "jaster.template_sha256"]
    )
    assert any(w.startswith(f"protocol group {usual.id} (3 ranked") for w in pinned.warnings)

    nowhere = next(
        p for p in ("000000", "111111", "222222") if not any(k.startswith(p) for k in (other_key, usual_key))
    )
    none = compare.build(evaluations, main_key=nowhere, resamples=0).leaderboard
    assert none.ranked() == [] and not any(g.main for g in none.groups)
    (warning,) = [w for w in none.warnings if w.startswith(f"protocol {nowhere}:")]
    assert "no evaluation's protocol key starts with it" in warning and usual_key in warning
    # still placed and ranked within their own groups: the page and the status list them
    assert sorted(e.rank for e in none.entries if e.state == "ranked") == [1, 1, 2, 3]


def test_terminal_and_csv_show_the_ranks(tmp_path: Path) -> None:
    board = board_of(tmp_path, {"a": 0.56, "b": 0.54, "c": 0.52, "d": 0.1}).leaderboard
    text = render.terminal(board)
    header = next(line for line in text.splitlines() if "model" in line and "#" in line)
    assert header.index("#") < header.index("ranks") < header.index("model")
    for entry in board.ranked():
        assert entry.rank_interval is not None
        line = next(line for line in text.splitlines() if entry.model in line)
        assert f" {entry.rank_interval.text()} " in line
    assert any("–" in e.rank_interval.text() for e in board.ranked() if e.rank_interval)
    assert "ranks: the ranks taken in the central 95% of resamples" in text

    buffer = io.StringIO()
    writer_rows = render.rows(board)
    fields = list(writer_rows[0])
    assert fields.index("rank") + 1 == fields.index("ranks")
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(writer_rows)
    read = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert [r["ranks"] for r in read] == [e.rank_interval.text() for e in board.ranked() if e.rank_interval]
