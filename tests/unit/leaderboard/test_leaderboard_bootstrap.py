"""The bootstrap: intervals built the way the protocols average questions, checked on cases small
enough to work out by hand, and the paired comparison of two evaluations."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from nejumi_eval.api.v1alpha1.formula import OVERALL
from nejumi_eval.benchmarks.jaster.scoring import rollup
from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES
from nejumi_eval.benchmarks.mtbench.scoring import aggregate
from nejumi_eval.leaderboard.bootstrap import Bootstrap, Design, competition_ranks
from nejumi_eval.leaderboard.model import RankInterval

DATASETS = list(task_table().tasks)
JASTER_CATEGORIES = {c: tuple(m) for c, m in task_table().categories.items()}
MT_CATEGORIES = {c: (c,) for c in CATEGORIES}


def jaster_design(values: dict[str, list[float]]) -> Design:
    return Design(
        "jaster",
        JASTER_CATEGORIES,
        {d: {f"{d}-{i}": (v, 1) for i, v in enumerate(vs)} for d, vs in values.items()},
    )


def mtbench_design(questions: dict[str, list[list[int]]]) -> Design:
    """category → questions → their turn ratings (−1: invalid)."""
    units = {}
    for category, qs in questions.items():
        units[category] = {}
        for q, turns in enumerate(qs):
            valid = [r for r in turns if r != -1]
            units[category][str(q)] = (float(sum(valid)), len(valid))
    return Design("mtbench", MT_CATEGORIES, units)


def all_datasets(value: float, n: int = 2, **override: list[float]) -> dict[str, list[float]]:
    return {d: override.get(d, [value] * n) for d in DATASETS}


def test_point_estimate_is_the_protocols_rollup() -> None:
    values = {d: [(i * 7 + len(d)) % 5 / 4 for i in range(6)] for d in DATASETS}
    keys = {d: t.score_key for d, t in task_table().tasks.items()}
    expected = rollup({keys[d]: statistics.mean(v) for d, v in values.items()})
    avg, categories = jaster_design(values).point()
    assert avg == pytest.approx(expected["AVG"], abs=1e-12)
    assert categories == pytest.approx({k: v for k, v in expected.items() if k != "AVG"}, abs=1e-12)


@pytest.mark.parametrize(
    ("dataset", "weight"),
    [
        ("jsquad", 1 / 7),  # RC has one dataset: it is 1/7 of AVG
        ("jamp", 1 / 35),  # NLI has five: each is 1/35 of AVG
        ("mawps", 1 / 7),
        ("wiki_ner", 1 / 35),
    ],
)
def test_interval_by_hand_follows_the_category_weights(dataset: str, weight: float) -> None:
    """Every dataset scores 0.5 on each of its two samples except `dataset`, which has 0 and 1.
    Resampling two samples gives that dataset's mean 0, 0.5 or 1 (probabilities 1/4, 1/2, 1/4),
    so AVG is 0.5 − weight/2, 0.5 or 0.5 + weight/2; with 1/4 of the mass at each end, the 2.5th
    and 97.5th percentiles are those ends exactly."""
    design = jaster_design(all_datasets(0.5, **{dataset: [0.0, 1.0]}))
    boot = Bootstrap(seed=7, resamples=2000)
    dist = boot.distribution(design)
    assert set(np.round(dist.avg, 12)) == {round(0.5 - weight / 2, 12), 0.5, round(0.5 + weight / 2, 12)}
    ci = boot.interval(dist.avg)
    assert ci is not None
    assert ci.low == pytest.approx(0.5 - weight / 2, abs=1e-12)
    assert ci.high == pytest.approx(0.5 + weight / 2, abs=1e-12)
    # a flat mean over all 32 samples would weigh every sample 1/32: a different interval
    assert weight != pytest.approx(1 / 32)


def test_mtbench_pools_valid_ratings_over_turns_and_resamples_questions() -> None:
    """coding: question A rated (2, invalid), question B (10, 10); every other category 5 on
    everything. The category mean is Σvalid/count = 22/3 (not the mean of question means, 6), as
    in protocol-mtbench §6. A resample holds AA (2), AB/BA (22/3) or BB (10), so the MT-bench
    score's interval is [(2 + 35)/8, (10 + 35)/8]."""
    questions = {c: [[5, 5], [5, 5]] for c in CATEGORIES}
    questions["coding"] = [[2, -1], [10, 10]]
    design = mtbench_design(questions)
    avg, categories = design.point()
    rows = [
        {"category": c, "turn": t + 1, "score": r, "invalid_reason": "no_rating" if r == -1 else None}
        for c, qs in questions.items()
        for turns in qs
        for t, r in enumerate(turns)
    ]
    expected = aggregate(rows)
    assert categories["coding"] == pytest.approx(22 / 3) == expected["coding"]
    assert avg == pytest.approx(expected["AVG"])
    boot = Bootstrap(seed=0, resamples=2000)
    ci = boot.interval(boot.distribution(design).avg)
    assert ci is not None
    assert (ci.low, ci.high) == pytest.approx(((2 + 35) / 8, (10 + 35) / 8))


def test_overall_is_recomputed_per_resample_with_the_formula() -> None:
    jaster = jaster_design(all_datasets(0.5, jsquad=[0.0, 1.0]))
    mtbench = mtbench_design({c: [[6, 6], [6, 6]] for c in CATEGORIES})
    boot = Bootstrap(seed=3, resamples=2000)
    parts = {"jaster": boot.distribution(jaster).avg, "mtbench": boot.distribution(mtbench).avg}
    overall = boot.overall(OVERALL, parts)
    assert overall is not None
    assert np.allclose(overall, (parts["jaster"] + parts["mtbench"] / 10) / 2)
    ci = boot.interval(overall)
    assert ci is not None
    assert (ci.low, ci.high) == pytest.approx(((0.5 - 1 / 14 + 0.6) / 2, (0.5 + 1 / 14 + 0.6) / 2))
    assert boot.overall(OVERALL, {"jaster": parts["jaster"]}) is None  # a term missing: no Overall


def test_a_missing_dataset_leaves_its_category_and_avg_without_interval() -> None:
    values = all_datasets(0.5)
    del values["jsquad"]
    boot = Bootstrap(resamples=200)
    dist = boot.distribution(jaster_design(values))
    assert dist.avg is None and dist.categories["RC"] is None
    assert boot.interval(dist.categories["NLI"]) is not None


def test_fixed_seed_reproduces_and_another_seed_differs() -> None:
    rng = np.random.default_rng(1)
    values = {d: list(rng.random(20)) for d in DATASETS}
    design = jaster_design(values)
    first = Bootstrap(seed=11, resamples=500).distribution(design).avg
    again = Bootstrap(seed=11, resamples=500).distribution(design).avg
    other = Bootstrap(seed=12, resamples=500).distribution(design).avg
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    point, _ = design.point()
    ci = Bootstrap(seed=11, resamples=500).interval(first)
    assert ci is not None and ci.low < point < ci.high


def test_no_resamples_no_interval() -> None:
    boot = Bootstrap(resamples=0)
    assert boot.interval(boot.distribution(jaster_design(all_datasets(0.5))).avg) is None


def test_identical_evaluations_are_not_distinguishable() -> None:
    rng = np.random.default_rng(5)
    values = {d: list(rng.integers(0, 2, 30).astype(float)) for d in DATASETS}
    ratings = {c: [list(rng.integers(1, 11, 2)) for _ in range(5)] for c in CATEGORIES}
    a = {"jaster": jaster_design(values), "mtbench": mtbench_design(ratings)}
    b = {"jaster": jaster_design(values), "mtbench": mtbench_design(ratings)}
    results = {c.metric: c for c in Bootstrap(seed=0, resamples=500).compare("a", "b", a, b, OVERALL)}
    assert set(results) == {"jaster", "mtbench", "Overall"}
    for c in results.values():
        assert c.diff == 0
        assert c.ci is not None and c.ci.low == c.ci.high == 0
        assert c.distinguishable is False
        assert c.a_better == 0 and c.b_better == 0
    assert results["Overall"].shared_questions == 16 * 30 + 8 * 5


def test_paired_comparison_sees_what_separate_intervals_cannot() -> None:
    """B answers exactly what A answers, plus 2 more of 20 questions right in every dataset: a
    small, consistent gain. The two evaluations' own intervals overlap (question difficulty
    dominates both), but paired over the same questions the difference excludes 0."""
    a_values = {d: [float(i % 2) for i in range(20)] for d in DATASETS}
    b_values = {d: [1.0 if i in (0, 2) else v for i, v in enumerate(vs)] for d, vs in a_values.items()}
    a, b = jaster_design(a_values), jaster_design(b_values)
    boot = Bootstrap(seed=0, resamples=2000)
    ci_a, ci_b = boot.interval(boot.distribution(a).avg), boot.interval(boot.distribution(b).avg)
    assert ci_a is not None and ci_b is not None
    assert ci_b.low < ci_a.high  # separately: overlapping, no verdict possible
    (paired,) = boot.compare("a", "b", {"jaster": a}, {"jaster": b}, OVERALL)
    assert paired.diff == pytest.approx(-0.1)
    assert paired.ci is not None and paired.ci.high < 0
    assert paired.distinguishable is True
    assert paired.b_better is not None and paired.b_better > 0.97


def test_paired_comparison_uses_only_shared_questions() -> None:
    """A capped run answered the first 2 samples of each dataset; the full run answered 6. The
    comparison is over those 2, on which the two agree: no difference."""
    full = jaster_design({d: [1.0, 0.0, 1.0, 1.0, 1.0, 1.0] for d in DATASETS})
    capped = jaster_design({d: [1.0, 0.0] for d in DATASETS})
    (c,) = Bootstrap(resamples=300).compare("full", "capped", {"jaster": full}, {"jaster": capped}, OVERALL)
    assert c.shared_questions == 2 * len(DATASETS)
    assert c.diff == 0 and c.distinguishable is False


def test_category_comparisons_come_on_demand_from_the_same_draws() -> None:
    """B answers as A does except on jamp (an NLI dataset), where it misses everything A got right.
    Per category, only NLI differs: its paired interval lies below 0 (b − a), every other category's
    is exactly [0, 0]; the benchmark's row is unchanged by asking for categories."""
    rng = np.random.default_rng(8)
    a_values = {d: list(rng.integers(0, 2, 12).astype(float)) for d in DATASETS}
    a_values["jamp"][:6] = [1.0] * 6
    b_values = {**a_values, "jamp": [0.0] * 12}
    a, b = {"jaster": jaster_design(a_values)}, {"jaster": jaster_design(b_values)}
    boot = Bootstrap(seed=0, resamples=1000)
    plain = boot.compare("b", "a", b, a, OVERALL)
    rows = {c.metric: c for c in boot.compare("b", "a", b, a, OVERALL, categories=True)}
    assert [c.metric for c in plain] == ["jaster"]
    assert set(rows) == {"jaster"} | {f"jaster/{c}" for c in JASTER_CATEGORIES}
    assert rows["jaster"] == plain[0]
    _, cats_a = a["jaster"].point()
    _, cats_b = b["jaster"].point()
    nli = rows["jaster/NLI"]
    assert nli.diff == pytest.approx(cats_b["NLI"] - cats_a["NLI"]) and nli.diff < 0
    assert nli.ci is not None and nli.ci.high < 0 and nli.distinguishable is True
    assert nli.shared_questions == 5 * 12  # the category's five datasets
    for category in set(JASTER_CATEGORIES) - {"NLI"}:
        c = rows[f"jaster/{category}"]
        assert c.diff == 0 and c.ci is not None and c.ci.low == c.ci.high == 0


def test_competition_ranks_share_a_rank_on_equal_values() -> None:
    values = np.array([[0.5, 0.1], [0.7, 0.1], [0.5, 0.3], [0.1, 0.2]])
    assert competition_ranks(values).tolist() == [[2, 3], [1, 3], [2, 1], [4, 2]]


def test_rank_bounds_by_hand() -> None:
    """A is 0.5 on every resample; B is 0.4 on 97% of them and 0.6 on the rest (3%); C is 0.45 on
    every resample, as D would be without draws (`fixed`). A ranks 1 on 97%, 2 on 3%: the 97.5th
    percentile falls on a 2 (`higher`), so A takes 1–2; with B above it on only 2% of resamples
    the upper end stays 1. Ranks count D: B below both A and D is third."""
    n = 1000
    a = np.full(n, 0.5)
    b = np.where(np.arange(n) < 30, 0.6, 0.4)
    boot = Bootstrap(resamples=n)
    bounds = boot.rank_bounds({"a": a, "b": b}, fixed={"d": 0.45})
    assert (bounds["a"].low, bounds["a"].high) == (1, 2)
    assert (bounds["b"].low, bounds["b"].high) == (1, 3)
    assert "d" not in bounds
    rarely = np.where(np.arange(n) < 20, 0.6, 0.4)
    assert boot.rank_bounds({"a": a, "b": rarely})["a"].high == 1
    # equal draws: equal ranks on every resample
    assert boot.rank_bounds({"a": a, "same": a.copy()})["same"] == RankInterval(low=1, high=1)


def test_rank_bounds_skip_undefined_draws_and_give_none_when_most_are() -> None:
    n = 400
    a, b = np.full(n, 0.5), np.full(n, 0.4)
    b[:100] = np.nan  # a quarter undefined: those resamples are left out, not ranked as last
    boot = Bootstrap(resamples=n)
    assert boot.rank_bounds({"a": a, "b": b})["b"] == RankInterval(low=2, high=2)
    b[:300] = np.nan
    assert boot.rank_bounds({"a": a, "b": b}) == {}
    assert Bootstrap(resamples=0).rank_bounds({"a": np.array([])}) == {}
