"""Two evaluations of one model, question by question (`leaderboard.diff`, `--diff`), and the token
counts the board carries (`Entry.usage`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES, PROTOCOL
from nejumi_eval.cli import main
from nejumi_eval.errors import InputError
from nejumi_eval.leaderboard import diff, sources
from nejumi_eval.leaderboard.diff import EvaluationDiff
from tests.fixtures.leaderboard_results import (
    DATASETS,
    RERUN_FLIPS,
    RERUN_MODEL,
    RERUN_USAGE,
    T0,
    constant,
    ratings,
    write_rerun,
    write_results,
)

A_ID, B_ID = "rerun-7b-20261031T090000Z", "rerun-7b-20261101T090000Z"
SAMPLES, QUESTIONS = 4, 2


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    write_rerun(tmp_path, samples=SAMPLES, questions=QUESTIONS)
    write_results(tmp_path, "org/other", jaster=constant(0.5), mtbench=ratings(6))
    return tmp_path


@pytest.fixture
def evaluations(workspace: Path) -> list[sources.Evaluation]:
    return sources.from_results_folders([workspace])


def _pair(evaluations: list[sources.Evaluation]) -> tuple[sources.Evaluation, sources.Evaluation]:
    by_id = {e.entry.id: e for e in evaluations}
    return by_id[A_ID], by_id[B_ID]


def test_counts_per_dataset_and_category(evaluations: list[sources.Evaluation]) -> None:
    a, b = _pair(evaluations)
    d = diff.compute(a, b, resamples=200)
    assert (d.a.id, d.b.id) == (A_ID, B_ID) and d.same_protocol and d.warnings == []
    jaster, mtbench = d.benchmark("jaster"), d.benchmark("mtbench")
    assert [s.stratum for s in jaster.strata] == [
        m for members in task_table().categories.values() for m in members
    ]  # protocol order
    assert sorted(s.stratum for s in jaster.strata) == sorted(DATASETS)
    assert [s.stratum for s in mtbench.strata] == list(CATEGORIES)
    for bench in (jaster, mtbench):
        for s in bench.strata:
            expected = RERUN_FLIPS.get((bench.name, s.stratum), {"improved": [], "regressed": []})
            assert [f.id for f in s.flipped if f.b > f.a] == expected["improved"], s.stratum
            assert [f.id for f in s.flipped if f.b < f.a] == expected["regressed"], s.stratum
            assert (s.improved, s.regressed) == (len(expected["improved"]), len(expected["regressed"]))
            assert s.improved + s.regressed + s.unchanged == s.shared
    jamp = next(s for s in jaster.strata if s.stratum == "jamp")
    assert (jamp.shared, jamp.unchanged, jamp.category) == (SAMPLES, SAMPLES - 1, "NLI")
    assert (jamp.a_score, jamp.b_score) == (0.5, 0.75)
    assert [(f.a, f.b) for f in jamp.flipped] == [(0.0, 1.0)]
    assert (jaster.total.shared, jaster.total.improved, jaster.total.regressed) == (16 * SAMPLES, 2, 2)

    by_category = {s.stratum: s for s in mtbench.strata}
    math = by_category["math"]
    (flip,) = math.flipped
    assert (flip.a, flip.b, flip.a_turns, flip.b_turns) == (5.0, 6.0, [5.0, 5.0], [7.0, 5.0])
    assert by_category["roleplay"].flipped[0].b == 3.0
    coding = by_category["coding"]  # turn 2 invalid in B: its question's mean is turn 1's
    assert (coding.shared, coding.unchanged, coding.b_score) == (2, 2, 5.0)
    writing = by_category["writing"]  # no valid rating in B: not compared
    assert (writing.shared, writing.only_a, writing.only_b, writing.flipped) == (1, 1, 0, [])
    assert (mtbench.total.shared, mtbench.total.improved, mtbench.total.regressed) == (15, 1, 1)
    assert mtbench.total.only_a == 1


def test_benchmark_deltas_are_b_minus_a_with_paired_intervals(evaluations: list[sources.Evaluation]) -> None:
    a, b = _pair(evaluations)
    d = diff.compute(a, b, resamples=200, seed=1)
    jaster = d.benchmark("jaster")
    assert jaster.total.a_score == pytest.approx(0.5)
    # B: jamp 0.75 (NLI = mean of 5), jsquad 0.25 (RC alone), mawps unchanged in mean
    expected_b = (0.5 * 4 + 0.75) / 5 / 7 + 0.25 / 7 + 0.5 * 5 / 7
    assert jaster.total.b_score == pytest.approx(expected_b)
    assert jaster.delta == pytest.approx(expected_b - 0.5)
    assert jaster.ci is not None and jaster.ci.low <= jaster.delta <= jaster.ci.high
    mt = d.benchmark("mtbench")
    assert mt.delta == pytest.approx(mt.total.b_score - mt.total.a_score)
    assert d.overall is not None and d.overall.delta is not None
    assert d.overall.total.shared == jaster.total.shared + mt.total.shared
    # the other way round: every count and delta mirrored
    r = diff.compute(b, a, resamples=200, seed=1)
    assert r.benchmark("jaster").total.improved == jaster.total.regressed
    assert r.benchmark("mtbench").delta == pytest.approx(-mt.delta)
    # no resamples: the same counts, no intervals
    plain = diff.compute(a, b, resamples=0)
    assert plain.benchmark("jaster").ci is None and plain.benchmark("jaster").total == jaster.total


def test_tolerance_and_a_changed_protocol(tmp_path: Path) -> None:
    write_results(tmp_path, "org/m", jaster=constant(0.5), mtbench=ratings(5), folder="a")
    write_results(
        tmp_path,
        "org/m",
        started=T0.replace(hour=10),
        jaster=lambda dataset, i: 0.5 + 1e-12,  # float noise: unchanged
        mtbench=ratings(5),
        template="alpaca-v1.1.x",
        folder="b",
    )
    evaluations = sources.from_results_folders([tmp_path])
    d = diff.compute(*(diff.resolve(ref, evaluations) for ref in ("a", "b")), resamples=0)
    assert d.benchmark("jaster").total.improved == 0
    assert d.benchmark("jaster").total.unchanged == 16 * 4
    assert not d.same_protocol and any("different protocols" in w for w in d.warnings)


def test_resolve(evaluations: list[sources.Evaluation]) -> None:
    def rid(ref: str) -> str:
        return diff.resolve(ref, evaluations).entry.id

    assert rid(A_ID) == A_ID
    assert rid("org/other") == "other-20261101T090000Z"  # one evaluation: the model alone
    assert rid(f"{RERUN_MODEL}@latest") == B_ID
    assert rid(f"{RERUN_MODEL}@previous") == A_ID
    assert rid(f"{RERUN_MODEL}@2026-10-31") == A_ID
    assert rid(f"{RERUN_MODEL}@20261101T09") == B_ID
    assert rid(f"{RERUN_MODEL}@2026-11-01T09:00Z") == B_ID  # the label the diff prints
    assert rid(f"{RERUN_MODEL}@a1b2") == A_ID  # revision prefix
    assert rid(f"{RERUN_MODEL}@{B_ID}") == B_ID
    assert diff.label(diff.resolve(A_ID, evaluations).entry) == f"{RERUN_MODEL}@2026-10-31T09:00Z"

    with pytest.raises(InputError, match="has 2 evaluations") as ambiguous:
        rid(RERUN_MODEL)
    assert f"{RERUN_MODEL}@2026-10-31T09:00Z" in str(ambiguous.value)
    assert f"{RERUN_MODEL}@2026-11-01T09:00Z" in str(ambiguous.value) and A_ID in str(ambiguous.value)
    with pytest.raises(InputError, match="ambiguous: 2 evaluations match"):
        rid(f"{RERUN_MODEL}@2026")
    with pytest.raises(InputError, match="no evaluation of org/rerun-7b matches '1999'"):
        rid(f"{RERUN_MODEL}@1999")
    with pytest.raises(InputError, match="unknown evaluation 'org/nope'") as unknown:
        rid("org/nope")
    assert "org/other@2026-11-01T09:00Z" in str(unknown.value)  # lists what there is
    with pytest.raises(InputError, match="only one evaluation"):
        rid("org/other@previous")
    with pytest.raises(InputError, match="same evaluation"):
        diff.compute(*(diff.resolve(A_ID, evaluations) for _ in range(2)))


def test_cli_prints_the_tables_and_writes_the_json(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "diff.json"
    code = main(
        [
            "leaderboard",
            str(workspace),
            "--diff",
            f"{RERUN_MODEL}@previous",
            f"{RERUN_MODEL}@latest",
            "--resamples",
            "100",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"A = {RERUN_MODEL}@2026-10-31T09:00Z (id {A_ID}, revision a1b2c3d4e5f60708)")
    lines = printed.splitlines()

    def cells(name: str) -> list[str]:
        line = next(line for line in lines if line.strip().startswith(name))
        return [c.strip() for c in line.replace("┃", "│").split("│")]

    assert cells("jamp (NLI)")[1:5] == [str(SAMPLES), "1", "0", str(SAMPLES - 1)]
    assert cells("mawps (MR)")[1:5] == [str(SAMPLES), "1", "1", str(SAMPLES - 2)]
    assert cells("roleplay")[1:5] == [str(QUESTIONS), "0", "1", "1"]
    assert cells("jaster AVG (all)")[1:5] == [str(16 * SAMPLES), "2", "2", str(16 * SAMPLES - 4)]
    assert "  jamp: ↑ jamp-test-2 0→1" in lines
    assert "  mawps: ↓ mawps-test-1 1→0, ↑ mawps-test-2 0→1" in lines
    assert any(line.startswith("Overall B − A:") for line in lines)
    assert "writing: A 1, B 0" in printed
    d = EvaluationDiff.model_validate_json(out.read_text(encoding="utf-8"))
    assert d.benchmark("mtbench").total.improved == 1 and d.resamples == 100
    assert json.loads(out.read_text())["benchmarks"][0]["name"] == "jaster"

    assert main(["leaderboard", str(workspace), "--diff", A_ID, B_ID, "--flipped", "0"]) == 0
    assert "jamp-test-2" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--diff", RERUN_MODEL, "org/other"], "org/rerun-7b has 2 evaluations"),
        (["--diff", "org/nope", "org/other"], "unknown evaluation 'org/nope'"),
        (["--diff", A_ID, A_ID], "same evaluation"),
        (["--diff", A_ID, B_ID, "--html", "x.html"], "--html write the board"),
        (["--flipped", "3"], "--flipped only goes with --diff"),
        (["--diff", A_ID, B_ID, "--flipped", "-1"], "--flipped must be 0 or more"),
    ],
)
def test_cli_errors(
    workspace: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leaderboard", str(workspace), *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_without_per_question_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for folder in write_rerun(tmp_path):
        for table in folder.glob("*_output_table.jsonl"):
            table.unlink()
    assert main(["leaderboard", str(tmp_path), "--diff", A_ID, B_ID]) == 2
    assert "nothing to compare" in capsys.readouterr().err


# ---- tokens ----------------------------------------------------------------------------------


def test_usage_is_carried_from_the_summary(workspace: Path, tmp_path: Path) -> None:
    by_id = {e.entry.id: e.entry for e in sources.from_results_folders([workspace])}
    usage = by_id[A_ID].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.judge_tokens) == (120_000, 30_000, 90_000)
    assert by_id[B_ID].usage.judge_tokens == RERUN_USAGE[1]["judge_tokens"]  # type: ignore[union-attr]
    assert by_id["other-20261101T090000Z"].usage.judge_tokens == 0  # type: ignore[union-attr]

    # a source without a summary usage: the run record's (a W&B run's config), else none
    bare = Summary(status="completed", model="m")
    entry = sources.entry_from_summary(bare, {}, entry_id="x", source="s")
    assert entry.usage is None
    run = {"usage": {"promptTokens": 7, "completionTokens": 3, "judgeTokens": 11}}
    entry = sources.entry_from_summary(bare, run, entry_id="x", source="s")
    assert entry.usage is not None and (entry.usage.prompt_tokens, entry.usage.judge_tokens) == (7, 11)

    out = tmp_path / "board.csv"
    assert main(["leaderboard", str(workspace), "--resamples", "0", "--csv", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    assert rows[A_ID]["judge_tokens"] == "90000" and rows[B_ID]["completion_tokens"] == "41000"


def test_fixture_scores_are_what_its_rows_say(evaluations: list[sources.Evaluation]) -> None:
    """The rerun's B is recorded as its rows score it (no recomputation warning on the board)."""
    from nejumi_eval.leaderboard import compare

    board = compare.build(evaluations, resamples=50)
    assert board.leaderboard.warnings == []
    assert board.leaderboard.entry(A_ID).state == "superseded"
    mt = board.leaderboard.entry(B_ID).benchmarks["mtbench"]
    assert mt.categories["math"] == pytest.approx((7 + 5 * 3) / 4)
    assert PROTOCOL.categories["math"].first_id > 0


def test_a_side_without_a_protocol_record_is_said_to_lack_it(tmp_path: Path) -> None:
    write_results(tmp_path, "org/m", jaster=constant(0.5), mtbench=ratings(5), folder="a")
    write_results(
        tmp_path, "org/m", started=T0.replace(hour=10), jaster=constant(0.5), mtbench=ratings(5), folder="b"
    )
    evaluations = sources.from_results_folders([tmp_path])
    a, b = (diff.resolve(ref, evaluations) for ref in ("a", "b"))
    b.entry.provenance.missing = "status only"
    b.entry.provenance.key = ""
    d = diff.compute(a, b, resamples=0)
    assert any(w.startswith("B (status only) has no protocol record") for w in d.warnings), d.warnings
    assert not any("different protocols" in w for w in d.warnings), d.warnings
