"""Bootstrap confidence intervals, resampling questions the way each protocol averages them.

A leaderboard score is an average over a few hundred questions; another draw of questions of the
same kind would give another number. The percentile bootstrap estimates how far: resample the
questions with replacement, recompute the score exactly as the protocol builds it, repeat, and
report the 2.5th and 97.5th percentiles of the recomputed scores.

"Exactly as the protocol builds it" matters, because the protocols do not take a flat mean:

- jaster (protocol-jaster.md §8): dataset score = mean over its samples; category = unweighted
  mean of its member datasets; AVG = unweighted mean of the 7 categories. So a sample of jsquad
  (RC has one dataset) weighs five times a sample of jamp (NLI has five). Resampling is stratified
  by dataset (each dataset keeps its sample count) and the roll-up is recomputed on every resample.
- MT-bench (protocol-mtbench.md §6): category mean = mean of the valid ratings of its questions
  over both turns (invalid ones excluded); score = mean of the 8 category means. The unit is the
  question (its two turns share a conversation, so they are not independent), stratified by
  category; a category mean is the pooled ratio Σ valid ratings / Σ valid judgments.

Both fit one shape, a `Design`: units (questions) in strata (datasets, categories), strata in
categories, score = mean over categories of mean over their strata of Σsum/Σcount. Overall is
recomputed per resample from the benchmarks' resampled scores with the leaderboard formula.

The draws are reproducible and shared: the indices for a stratum depend only on the seed, the
benchmark, the stratum and its size. So two evaluations of the same questions are resampled with
the same indices, and the paired bootstrap of their difference (`Bootstrap.compare`) is the
difference of the very distributions behind their own intervals: a difference whose interval
excludes 0 is distinguishable from question-sampling noise.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

import numpy as np

from nejumi_eval.api.v1alpha1.formula import Formula
from nejumi_eval.leaderboard.model import Comparison, Interval

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Design:
    """A benchmark's questions as its protocol averages them.

    `units[stratum][unit_id] = (sum, count)`: a jaster sample is `(score, 1)`; an MT-bench question
    is `(sum of its valid ratings, number of valid ratings)`. `categories` is the protocol's whole
    structure (category → member strata), not only what the run has: a category with a missing or
    empty member has no score, and then neither has the benchmark (as in the protocol's roll-up).
    """

    benchmark: str
    categories: Mapping[str, Sequence[str]]
    units: Mapping[str, Mapping[str, tuple[float, int]]]

    @property
    def questions(self) -> int:
        return sum(len(u) for u in self.units.values())

    def point(
        self, keep: Mapping[str, Sequence[str]] | None = None
    ) -> tuple[float | None, dict[str, float | None]]:
        """The score and category scores recomputed from the units (optionally only `keep`)."""
        means: dict[str, float | None] = {}
        for stratum, units in self.units.items():
            ids = keep.get(stratum, ()) if keep is not None else units.keys()
            total = sum(units[i][0] for i in ids)
            count = sum(units[i][1] for i in ids)
            means[stratum] = total / count if count else None
        categories: dict[str, float | None] = {}
        for category, members in self.categories.items():
            values = [means.get(m) for m in members]
            categories[category] = None if not values or None in values else fmean(values)  # type: ignore[arg-type]
        scores = list(categories.values())
        avg = None if not scores or None in scores else fmean(scores)  # type: ignore[arg-type]
        return avg, categories


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
        """The percentile interval; null without draws or when most draws are undefined (an MT-bench
        category whose resampled questions were all invalid)."""
        if draws is None or self.resamples == 0:
            return None
        finite = draws[np.isfinite(draws)]
        if finite.size == 0 or finite.size < 0.5 * draws.size:
            return None
        tail = (1 - self.confidence) / 2 * 100
        low, high = np.percentile(finite, [tail, 100 - tail])
        return Interval(low=float(low), high=float(high))

    @staticmethod
    def overall(formula: Formula, parts: Mapping[str, np.ndarray | None]) -> np.ndarray | None:
        """Overall per resample: the formula's mean of scaled terms, null when a term has no draws."""
        arrays = [parts.get(t.benchmark) for t in formula.terms]
        if any(a is None for a in arrays):
            return None
        return np.mean(
            np.stack([a / t.divide_by for a, t in zip(arrays, formula.terms, strict=True)]), axis=0
        )  # type: ignore[operator]

    def compare(
        self,
        a_id: str,
        b_id: str,
        a: Mapping[str, Design],
        b: Mapping[str, Design],
        formula: Formula,
    ) -> list[Comparison]:
        """Paired bootstrap of a − b for every shared benchmark and for Overall.

        Only questions both answered count (per stratum, by unit id), and both sides are resampled
        with the same indices, so what the two share (question difficulty) cancels in the
        difference. Distinguishable: the interval of the difference excludes 0.
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
            points_a[name], _ = da.point(keep)
            points_b[name], _ = db.point(keep)
            parts_a[name], parts_b[name] = dist_a.avg, dist_b.avg
            out.append(
                self._comparison(
                    a_id, b_id, name, points_a[name], points_b[name], dist_a.avg, dist_b.avg, shared
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
