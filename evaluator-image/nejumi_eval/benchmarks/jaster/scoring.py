"""jaster scoring: per-sample rows, dataset scores, sample selection and the category roll-up.

Which metric a dataset uses, its score key, its category and how many test samples are scored
all come from ``jaster_tasks.json`` (loaded once), so this module holds no second copy of the task
table. The rules are protocol-jaster.md §6-§8.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel

from nejumi_eval.benchmarks.jaster.metrics import METRICS, char_f1, exact_match, set_f1
from nejumi_eval.benchmarks.jaster.postprocess import normalize_gold, postprocess_output
from nejumi_eval.benchmarks.jaster.tasks import JasterTask, task_table

# §8: the dev output table holds the first 20 dev samples of every dataset. jaster_tasks.json has no
# field for it (it records only what is scored).
DEV_TABLE_SAMPLES = 20

T = TypeVar("T")


class SampleScore(BaseModel):
    """One scored sample: the compared strings and every metric the results table carries (§9)."""

    pred: str
    gold: str
    exact: int
    char_f1: float
    set_f1: float | None
    score: float


def _task(dataset: str) -> JasterTask:
    tasks = task_table().tasks
    if dataset not in tasks:
        raise ValueError(f"unknown jaster dataset {dataset!r}; known: {', '.join(tasks)}")
    return tasks[dataset]


def dataset_metric(dataset: str) -> str:
    """The metric that scores a dataset: ``metrics[0]`` of its tasks.json entry."""
    return _task(dataset).metrics[0]


def score_sample(dataset: str, raw_output: str, gold: str) -> SampleScore:
    """Post-process one raw model output and score it against the dataset's gold output."""
    metric = dataset_metric(dataset)
    pred, gold = postprocess_output(raw_output), normalize_gold(gold)
    measured = {"exact_match": exact_match(pred, gold), "char_f1": char_f1(pred, gold)}
    if metric == "set_f1":
        measured["set_f1"] = set_f1(pred, gold)
    return SampleScore(
        pred=pred,
        gold=gold,
        exact=int(measured["exact_match"]),
        char_f1=measured["char_f1"],
        set_f1=measured.get("set_f1"),
        score=measured[metric],
    )


def score(
    dataset: str, metric: str, golds: list[str], raw_preds: list[str], max_num_samples: int = 100
) -> float:
    """The dataset score: the mean of ``metric`` over the first ``max_num_samples`` pairs.

    Takes raw model outputs and dataset outputs; post-processing happens here. ``metric`` must be
    one the dataset is scored with, so the result always belongs under ``<dataset>_<metric>``.
    """
    allowed = _task(dataset).metrics
    if metric not in allowed:
        raise ValueError(f"{dataset} is scored with {', '.join(allowed)}, not {metric!r}")
    if len(golds) != len(raw_preds):
        raise ValueError(f"{dataset}: {len(golds)} golds but {len(raw_preds)} predictions")
    if max_num_samples < 1:
        raise ValueError(f"max_num_samples must be at least 1, got {max_num_samples}")
    if not golds:
        raise ValueError(f"{dataset}: no samples to score")
    measure = METRICS[metric]
    pairs = zip(golds[:max_num_samples], raw_preds[:max_num_samples], strict=True)
    # statistics.mean (exact, then rounded once) is what upstream v1.3.0 averages with.
    return statistics.mean(measure(postprocess_output(raw), normalize_gold(gold)) for gold, raw in pairs)


def select(dataset: str, split: str, records: Sequence[T]) -> list[T]:
    """The samples a run evaluates, in split order (§8).

    ``test``: the scored samples, the first ``neo_test_samples_scored`` of the dataset (100; 20
    for each wiki_* task). ``dev``: the first 20, for the dev output table only. A split shorter
    than that is returned whole; the build-time size check (§3.1) is the data side's job.
    """
    task = _task(dataset)
    counts = {"test": task.neo_test_samples_scored, "dev": DEV_TABLE_SAMPLES}
    if split not in counts:
        raise ValueError(f"unknown split {split!r}; expected 'test' or 'dev'")
    return list(records[: counts[split]])


def rollup(scores: dict[str, float]) -> dict[str, float | None]:
    """Category scores and AVG from the per-dataset scores keyed ``<dataset>_<metric>``.

    A category is the unweighted mean of its members and ``None`` unless every member is present;
    AVG is the unweighted mean of the 7 categories and ``None`` unless all 16 datasets are present
    (so a partial run is never shown with a misleading AVG). Values are not rounded.
    """
    table = task_table()
    known = {spec.score_key for spec in table.tasks.values()}
    unknown = sorted(set(scores) - known)
    if unknown:
        raise ValueError(f"unknown jaster score keys {unknown}; known: {', '.join(sorted(known))}")
    result: dict[str, float | None] = {}
    for category, members in table.categories.items():
        keys = [table.tasks[member].score_key for member in members]
        complete = all(key in scores for key in keys)
        result[category] = statistics.mean(scores[key] for key in keys) if complete else None
    category_scores = [value for value in result.values() if value is not None]
    complete = len(category_scores) == len(table.categories)
    result["AVG"] = statistics.mean(category_scores) if complete else None
    return result
