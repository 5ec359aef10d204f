"""Release gates on a board: thresholds on a score or its interval's low end, and non-inferiority
to a reference evaluation on every category, judged from the board's own intervals and draws."""

from __future__ import annotations

import pytest

from nejumi_eval.api.v1alpha1.leaderboard import Gate, GateVerdict
from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.leaderboard import compare, gates, sources
from nejumi_eval.leaderboard.cluster import evaluations_from_objects
from tests.fixtures.leaderboard_results import (
    evaluation_object,
    noisy,
    noisy_ratings,
    operator_status,
    write_results,
)

NLI = set(task_table().categories["NLI"])
BASE = noisy(0.7, "base")


def lost_nli(dataset: str, i: int) -> float:
    """The base model's answers, except that it now misses every NLI question."""
    return 0.0 if dataset in NLI else BASE(dataset, i)


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> compare.Board:
    """ref: the released model. same: answers exactly as ref. lost-nli: ref minus every NLI
    question. weak: a much weaker model. On the cluster: one running, one failed, and a finished
    one known only from its status (no per-question data)."""
    ws = tmp_path_factory.mktemp("gates")
    kw = {"samples": 10, "questions": 3, "mtbench": noisy_ratings(7, "base")}
    folders = {
        "ref": write_results(ws, "org/ref", jaster=BASE, **kw),
        "same": write_results(ws, "org/same", jaster=BASE, **kw),
        "lost-nli": write_results(ws, "org/lost-nli", jaster=lost_nli, **kw),
        "weak": write_results(ws, "org/weak", jaster=noisy(0.3, "weak"), **kw),
    }
    bare = write_results(ws / "pod", "org/bare", jaster=BASE, **kw)
    objects = [
        evaluation_object("running", "org/next", operator_status(phase="Running")),
        evaluation_object("broken", "org/broken", operator_status(phase="Failed")),
        evaluation_object("bare", "org/bare", operator_status(bare)),
    ]
    evaluations = sources.from_sources(
        [sources.from_results_folders(list(folders.values())), evaluations_from_objects(objects)]
    )
    return compare.build(evaluations, resamples=500)


def ids(board: compare.Board) -> dict[str, str]:
    return {e.model.removeprefix("org/"): e.id for e in board.leaderboard.entries}


def verdicts(board: compare.Board, *gate_list: Gate, **kw) -> dict[str, GateVerdict]:
    found = ids(board)
    resolve = kw.pop("resolve", lambda ref: found.get(ref))
    by_id = {v.evaluation: v for v in gates.judge(board, gate_list, resolve=resolve, **kw)}
    return {name: by_id[i] for name, i in found.items() if i in by_id}


def test_a_min_gate_on_a_category_names_the_category_value_and_interval(board: compare.Board) -> None:
    v = verdicts(board, Gate(name="nli", metric="jaster/NLI", min=0.5))
    weak = board.leaderboard.entry(ids(board)["weak"]).benchmarks["jaster"]
    value, ci = weak.categories["NLI"], weak.category_ci["NLI"]
    assert value is not None and value < 0.5
    assert v["weak"].verdict == "Failed"
    (failure,) = v["weak"].failures
    assert (failure.gate, failure.metric, failure.value, failure.threshold) == (
        "nli",
        "jaster/NLI",
        value,
        0.5,
    )
    assert failure.interval is not None and (failure.interval.low, failure.interval.high) == (ci.low, ci.high)
    assert failure.message == f"jaster/NLI {value:.4f} [{ci.low:.4f}, {ci.high:.4f}] < 0.5"
    assert v["weak"].message == f"failed nli: {failure.message}"
    assert v["lost-nli"].verdict == "Failed" and v["lost-nli"].failures[0].value == 0
    assert v["ref"].verdict == v["same"].verdict == "Passed"
    assert v["ref"].message == "passed: nli"


def test_lower_bound_asks_more_than_the_score(board: compare.Board) -> None:
    """A threshold between ref's Overall interval's low end and its score: the score passes it,
    the low end does not."""
    ref = board.leaderboard.entry(ids(board)["ref"])
    assert ref.overall is not None and ref.overall_ci is not None
    threshold = round((ref.overall + ref.overall_ci.low) / 2, 4)
    score = verdicts(board, Gate(name="floor", min=threshold))
    bound = verdicts(board, Gate(name="floor", min=threshold, statistic="LowerBound"))
    assert score["ref"].verdict == "Passed"
    assert bound["ref"].verdict == "Failed"
    (failure,) = bound["ref"].failures
    assert failure.metric == "Overall" and failure.value == ref.overall
    assert f"lower bound {ref.overall_ci.low:.4f} < {threshold:g}" in failure.message
    # no per-question data: no interval, so a LowerBound gate cannot be judged (a Score gate can)
    assert bound["bare"].verdict == "Unknown"
    assert "no interval (no per-question data for jaster, mtbench)" in bound["bare"].message
    assert score["bare"].verdict == "Passed"


def test_not_worse_than_fails_a_category_regression_and_passes_an_equal_model(board: compare.Board) -> None:
    v = verdicts(board, Gate(name="no-regression", not_worse_than="ref"))
    assert v["ref"].verdict == "Passed" and v["ref"].message == "passed: no-regression (the reference)"
    assert v["same"].verdict == "Passed" and v["same"].failures == []

    lost = v["lost-nli"]
    assert lost.verdict == "Failed"
    failed = {f.metric: f for f in lost.failures}
    assert "jaster/NLI" in failed
    assert set(failed) <= {"jaster/NLI", "jaster", "Overall"}  # never a category it answers as ref does
    nli = failed["jaster/NLI"]
    assert nli.value is not None and nli.value < 0 and nli.against == "ref"  # as the gate names it
    assert nli.interval is not None and nli.interval.high < 0 and nli.threshold is None
    assert nli.message.startswith(
        f"jaster/NLI worse than ref: {nli.value:+.4f} [{nli.interval.low:+.4f}, {nli.interval.high:+.4f}]"
    )
    assert "95% paired interval" in nli.message and "50 shared questions" in nli.message

    weak = v["weak"]
    assert weak.verdict == "Failed" and {"Overall", "jaster"} <= {f.metric for f in weak.failures}
    # status only: no questions to pair
    assert v["bare"].verdict == "Unknown" and "no per-question data in the evaluation" in v["bare"].message


def test_unfinished_failed_and_unknowable(board: compare.Board) -> None:
    gate_list = (
        Gate(name="min-overall", min=0.55),
        Gate(name="odd", metric="jaster/XYZ", min=0.1),
        Gate(name="vs-missing", not_worse_than="nobody"),
    )
    v = verdicts(board, *gate_list)
    assert v["next"].verdict == "Unknown" and v["next"].message == "not finished: running"
    assert v["broken"].verdict == "Failed" and v["broken"].message == "the evaluation failed"
    assert [(f.gate, f.message) for f in v["broken"].failures] == [
        (g.name, "the evaluation failed") for g in gate_list
    ]
    ref = v["ref"]
    assert ref.verdict == "Unknown"  # passes min-overall, but two gates cannot be judged
    assert "unknown odd: jaster/XYZ: jaster has no category XYZ" in ref.message
    assert "unknown vs-missing: reference nobody is not on the board" in ref.message
    # a failure outweighs what cannot be judged
    weak = v["weak"]
    assert weak.verdict == "Failed" and [f.gate for f in weak.failures] == ["min-overall"]
    assert weak.message.startswith("failed min-overall: Overall ") and "< 0.55" in weak.message
    # a reference that has not finished is not a reference yet
    running = verdicts(board, Gate(name="vs-next", not_worse_than="next"))
    assert "reference next has not finished (running)" in running["ref"].message


def test_evaluations_are_judged_in_the_order_asked(board: compare.Board) -> None:
    found = ids(board)
    asked = [found["weak"], "team-a/gone", found["ref"]]
    out = gates.judge(board, [Gate(name="min-overall", min=0.1)], evaluations=asked)
    assert [v.evaluation for v in out] == asked
    assert out[1].verdict == "Unknown" and out[1].message == "not on the board"
    every = gates.judge(board, [Gate(name="min-overall", min=0.1)])
    assert [v.evaluation for v in every] == [
        e.id for e in board.leaderboard.entries if e.state != "superseded"
    ]


def test_a_threshold_just_above_the_value_is_printed_below_it() -> None:
    assert gates._num(0.54996, 0.55) == "0.54996"
    assert gates._num(0.5, 0.55) == "0.5000"


def test_holm_keeps_twenty_borderline_metrics_from_failing_an_equal_model() -> None:
    """Twenty metrics each just under the one-sided 2.5% tail would each fail alone; as a family,
    only a clear drop does (Holm's step-down)."""
    from nejumi_eval.leaderboard.gates import holm_worse
    from nejumi_eval.leaderboard.model import Comparison, Interval

    def comparison(metric: str, b_better: float) -> Comparison:
        return Comparison(
            a="a", b="b", metric=metric, diff=-0.01, ci=Interval(low=-0.02, high=-0.001), b_better=b_better
        )

    clear = comparison("jaster/NLI", 1.0)
    borderline = [comparison(f"jaster/c{i}", 0.98) for i in range(19)]
    assert holm_worse([clear, *borderline], 0.025) == {id(clear)}
    # Alone, a borderline one is below the tail: the correction is what spares it.
    assert holm_worse(borderline[:1], 0.025) == {id(borderline[0])}
    assert holm_worse([comparison("x", 0.0)], 0.025) == set()
