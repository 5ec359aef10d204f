"""Bootstrap confidence intervals, resampling questions the way each protocol averages them.

A leaderboard score is an average over a few hundred questions; another draw of questions of the
same kind would give another number. The percentile bootstrap estimates how far: resample the
questions with replacement, recompute the score exactly as the protocol builds it, repeat, and
report the 2.5th and 97.5th percentiles of the recomputed scores.

"Exactly as the protocol builds it" matters, because protocols do not take a flat mean: a dataset's
score may be the mean over its samples, a category the unweighted mean of its member datasets, the
benchmark the mean of its categories, so a sample of a category with one dataset weighs more than a
sample of one with five. Each benchmark declares that structure in the `Design` its reader returns
(`nejumi_eval.benchmarks.reading`, the reader beside each benchmark says how its protocol maps on
it): units (questions) in strata, strata in categories, score = mean over categories of the mean
over their strata of the pooled Σsum/Σcount (a question judged per turn is one unit whose sum and
count are its valid ratings). Resampling is stratified (each stratum keeps its size) and the
roll-up is recomputed on every resample. Overall is recomputed per resample from the benchmarks'
resampled scores with the leaderboard formula.

The draws are reproducible and shared: the indices for a stratum depend only on the seed, the
benchmark, the stratum and its size. So two evaluations of the same questions are resampled with
the same indices, and the paired bootstrap of their difference (`Bootstrap.compare`) is the
difference of the very distributions behind their own intervals: a difference whose interval
excludes 0 is distinguishable from question-sampling noise.

The same sharing gives rank intervals (`Bootstrap.rank_bounds`): on each resample the evaluations
of a group are ranked by their resampled Overall, as if that draw of questions had been the test
set, and an evaluation's rank interval is the central `confidence` of the ranks it takes. Because
every evaluation is resampled with the same questions, a question that is hard for all of them
moves them together and does not reorder them.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nejumi_eval.api.v1alpha1.formula import Formula
from nejumi_eval.benchmarks.reading import Design
from nejumi_eval.leaderboard.model import Comparison, Interval, RankInterval

__all__ = ["CONFIDENCE", "Bootstrap", "Design", "Distribution"]

CONFIDENCE = 0.95


@dataclass
class Distribution:
    """One evaluation's resampled scores: arrays of length `resamples` (NaN: undefined draw)."""

    avg: np.ndarray | None
    categories: dict[str, np.ndarray | None]
    questions: int


@dataclass
class Bootstrap:
    """Percentile bootstrap with `resamples` draws from `seed`; see the module docstring."""

    seed: int = 0
    resamples: int = 1000
    confidence: float = CONFIDENCE
    _indices: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict, repr=False)
    _means: dict[tuple[int, str, tuple[str, ...]], tuple[Design, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    def indices(self, benchmark: str, stratum: str, n: int) -> np.ndarray:
        """`resamples × n` indices into a stratum's `n` units (sorted by id), drawn with replacement.

        Seeded by (seed, benchmark, stratum, n) alone, so every evaluation with the same questions
        in a stratum is resampled identically (what makes comparisons paired)."""
        key = (benchmark, stratum, n)
        if key not in self._indices:
            tag = zlib.crc32(f"{benchmark}\0{stratum}".encode())
            rng = np.random.default_rng([self.seed, tag, n])
            self._indices[key] = rng.integers(0, n, size=(self.resamples, n))
        return self._indices[key]

    def distribution(self, design: Design, keep: Mapping[str, Sequence[str]] | None = None) -> Distribution:
        """The resampled score and category scores (units restricted to `keep` when given)."""
        means: dict[str, np.ndarray | None] = {}
        questions = 0
        for stratum, units in design.units.items():
            ids = sorted(keep.get(stratum, ()) if keep is not None else units)
            questions += len(ids)
            if not ids:
                means[stratum] = None
                continue
            means[stratum] = self._stratum_means(design, stratum, tuple(ids))
        categories: dict[str, np.ndarray | None] = {}
        for category, members in design.categories.items():
            arrays = [means.get(m) for m in members]
            if not arrays or any(a is None for a in arrays):
                categories[category] = None
            else:
                categories[category] = np.mean(np.stack(arrays), axis=0)  # type: ignore[arg-type]
        values = list(categories.values())
        avg = None if not values or any(v is None for v in values) else np.mean(np.stack(values), axis=0)  # type: ignore[arg-type]
        return Distribution(avg=avg, categories=categories, questions=questions)

    def _stratum_means(self, design: Design, stratum: str, ids: tuple[str, ...]) -> np.ndarray:
        """Σsum/Σcount of a stratum per resample, cached: every pair an evaluation is compared in
        reuses it (the design is kept in the cache so its id is not reused)."""
        key = (id(design), stratum, ids)
        if key not in self._means:
            units = design.units[stratum]
            sums = np.array([units[i][0] for i in ids], dtype=float)
            counts = np.array([units[i][1] for i in ids], dtype=float)
            idx = self.indices(design.benchmark, stratum, len(ids))
            with np.errstate(invalid="ignore", divide="ignore"):
                self._means[key] = (design, sums[idx].sum(axis=1) / counts[idx].sum(axis=1))  # 0/0: NaN
        return self._means[key][1]

    def interval(self, draws: np.ndarray | None) -> Interval | None:
        """The percentile interval; null without draws or when most draws are undefined (a category
        whose resampled questions all lack a valid rating)."""
        if draws is None or self.resamples == 0:
            return None
        finite = draws[np.isfinite(draws)]
        if finite.size == 0 or finite.size < 0.5 * draws.size:
            return None
        tail = (1 - self.confidence) / 2 * 100
        low, high = np.percentile(finite, [tail, 100 - tail])
        return Interval(low=float(low), high=float(high))

    def rank_bounds(
        self, draws: Mapping[str, np.ndarray], fixed: Mapping[str, float] | None = None
    ) -> dict[str, RankInterval]:
        """Per entry of `draws` (id → its resampled Overall), the ranks it takes across resamples.

        On each resample an entry's rank is the competition rank of its draw (1 + the number of
        entries, drawn or `fixed`, with a strictly higher value: equal draws share a rank, as equal
        scores do on the board). `fixed` entries (no per-question data, so no draws) count at their
        recorded score on every resample and get no interval themselves: the ranks stay the board's
        ranks rather than ranks among a subset. Only resamples on which every entry's draw is
        defined are used (ranking against an undefined draw means nothing); with fewer than half
        of them left there are no intervals, as `interval` gives none then.

        The bounds are the (1 − confidence)/2 and 1 − (1 − confidence)/2 percentiles of an entry's
        ranks with numpy's `lower` and `higher` methods: both are ranks it actually took, and the
        interval is never narrower than the interpolated one would be (a rank between two ranks
        does not exist, so rounding goes outward).
        """
        ids = list(draws)
        if not ids or self.resamples == 0:
            return {}
        rows = [np.asarray(draws[i], dtype=float) for i in ids]
        consts = list((fixed or {}).values())
        matrix = np.stack(rows + [np.full(rows[0].shape, v, dtype=float) for v in consts])
        defined = np.isfinite(matrix).all(axis=0)
        if defined.sum() == 0 or defined.sum() < 0.5 * matrix.shape[1]:
            return {}
        ranks = competition_ranks(matrix[:, defined])[: len(ids)]
        tail = (1 - self.confidence) / 2 * 100
        low = np.percentile(ranks, tail, axis=1, method="lower")
        high = np.percentile(ranks, 100 - tail, axis=1, method="higher")
        return {i: RankInterval(low=int(lo), high=int(hi)) for i, lo, hi in zip(ids, low, high, strict=True)}

    @staticmethod
    def overall(formula: Formula, parts: Mapping[str, np.ndarray | None]) -> np.ndarray | None:
        """Overall per resample: the formula's mean of scaled terms, null when a term has no draws."""
        scaled = []
        for term in formula.terms:
            draws = parts.get(term.benchmark)
            if draws is None:
                return None
            scaled.append(draws / term.divide_by)
        return np.mean(np.stack(scaled), axis=0)

    def compare(
        self,
        a_id: str,
        b_id: str,
        a: Mapping[str, Design],
        b: Mapping[str, Design],
        formula: Formula,
        categories: bool = False,
    ) -> list[Comparison]:
        """Paired bootstrap of a − b for every shared benchmark and for Overall; with `categories`
        also for every category both benchmarks' designs have (metric `benchmark/category`), from
        the same shared questions and the same draws as the benchmark's row.

        Only questions both answered count (per stratum, by unit id), and both sides are resampled
        with the same indices, so what the two share (question difficulty) cancels in the
        difference. Distinguishable: the interval of the difference excludes 0. Categories are on
        demand: a board compares every pair of its evaluations, and ~15 more rows per pair would
        grow the page for what only a release gate asks (`gates`).
        """
        out: list[Comparison] = []
        parts_a: dict[str, np.ndarray | None] = {}
        parts_b: dict[str, np.ndarray | None] = {}
        points_a: dict[str, float | None] = {}
        points_b: dict[str, float | None] = {}
        shared_total = 0
        for name in [n for n in a if n in b]:
            da, db = a[name], b[name]
            keep = {s: sorted(set(da.units.get(s, {})) & set(db.units.get(s, {}))) for s in da.units}
            shared = sum(len(v) for v in keep.values())
            shared_total += shared
            dist_a, dist_b = self.distribution(da, keep), self.distribution(db, keep)
            points_a[name], cats_a = da.point(keep)
            points_b[name], cats_b = db.point(keep)
            parts_a[name], parts_b[name] = dist_a.avg, dist_b.avg
            out.append(
                self._comparison(
                    a_id, b_id, name, points_a[name], points_b[name], dist_a.avg, dist_b.avg, shared
                )
            )
            if not categories:
                continue
            for category, members in da.categories.items():
                if category not in db.categories:
                    continue
                out.append(
                    self._comparison(
                        a_id,
                        b_id,
                        f"{name}/{category}",
                        cats_a.get(category),
                        cats_b.get(category),
                        dist_a.categories.get(category),
                        dist_b.categories.get(category),
                        sum(len(keep.get(m, ())) for m in members),
                    )
                )
        if all(t.benchmark in parts_a for t in formula.terms):
            pa, pb = formula.value(points_a), formula.value(points_b)
            out.append(
                self._comparison(
                    a_id,
                    b_id,
                    formula.name,
                    pa,
                    pb,
                    self.overall(formula, parts_a),
                    self.overall(formula, parts_b),
                    shared_total,
                )
            )
        return out

    def _comparison(
        self,
        a_id: str,
        b_id: str,
        metric: str,
        point_a: float | None,
        point_b: float | None,
        draws_a: np.ndarray | None,
        draws_b: np.ndarray | None,
        shared: int,
    ) -> Comparison:
        diff = None if point_a is None or point_b is None else point_a - point_b
        if draws_a is None or draws_b is None or diff is None:
            return Comparison(a=a_id, b=b_id, metric=metric, diff=diff, shared_questions=shared)
        delta = draws_a - draws_b
        ci = self.interval(delta)
        finite = delta[np.isfinite(delta)]
        return Comparison(
            a=a_id,
            b=b_id,
            metric=metric,
            diff=diff,
            ci=ci,
            distinguishable=None if ci is None else bool(ci.low > 0 or ci.high < 0),
            a_better=float(np.mean(finite > 0)) if finite.size else None,
            b_better=float(np.mean(finite < 0)) if finite.size else None,
            shared_questions=shared,
        )


def competition_ranks(values: np.ndarray) -> np.ndarray:
    """Per column of `values` (entries × resamples), each entry's competition rank: 1 + the number
    of entries with a strictly higher value (1, 2, 2, 4). Vectorised: sort each column descending;
    a position's rank is 1 + the position where its run of equal values starts."""
    n = values.shape[0]
    order = np.argsort(-values, axis=0, kind="stable")
    ordered = np.take_along_axis(values, order, axis=0)
    positions = np.arange(n)[:, None]
    starts = np.ones_like(ordered, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=0)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, first + 1, axis=0)
    return ranks
