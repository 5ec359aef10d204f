"""jaster as a runnable benchmark: prepared records → requests → scored rows and a leaderboard row.

The pieces are the protocol modules (data, prompts, metrics); this module only decides *which*
samples run (protocol §8), builds each request (§4, §5) and turns results into the tables of §9.
Everything is pure apart from reading prepared data, so a run can be rebuilt from its tables.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from nejumi_eval.runtime.client.client import InferenceClient

from nejumi_eval.api.v1alpha1.spec import JasterSpec
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary
from nejumi_eval.benchmarks.base import BenchmarkOutput, RunContext
from nejumi_eval.benchmarks.jaster.datasets import DATASETS, task_table
from nejumi_eval.benchmarks.jaster.prepare import SplitUnavailable, load
from nejumi_eval.benchmarks.jaster.prompts import PromptTemplate, get_template, render
from nejumi_eval.benchmarks.jaster.reading import (
    LEADERBOARD_TABLE,
    OUTPUT_TABLE,
    OUTPUT_TABLE_DEV,
    RADAR_TABLE,
    READING,
    JasterReading,
)
from nejumi_eval.benchmarks.jaster.scoring import rollup, score_sample, select
from nejumi_eval.benchmarks.jaster.sources import load_manifest
from nejumi_eval.benchmarks.registry import register
from nejumi_eval.runtime.client.models import ChatMessage, ChatRequest, CompletionRequest, InferenceResult

Mode = Literal["completion", "chat"]


@dataclass(frozen=True)
class Item:
    """One sample to generate: where it comes from, the exact prompt and the request sent."""

    dataset: str
    split: str
    index: int
    id: str
    input: str
    gold: str
    prompt: str
    request: CompletionRequest | ChatRequest


@dataclass
class Plan:
    """What a jaster run will send, decided before any server starts."""

    items: list[Item]
    template: PromptTemplate
    mode: Mode
    datasets: list[str]
    dev_unavailable: list[str] = field(default_factory=list)
    capped: bool = False


def _request(prompt: str, max_tokens: int, mode: Mode) -> CompletionRequest | ChatRequest:
    """Greedy decoding, max new tokens = output_length, no stop strings (protocol §5)."""
    if mode == "completion":
        return CompletionRequest(prompt=prompt, max_tokens=max_tokens, temperature=0.0)
    return ChatRequest(
        messages=[ChatMessage(role="user", content=prompt)], max_tokens=max_tokens, temperature=0.0
    )


def plan(spec: JasterSpec, mode: Mode, max_new_tokens_cap: int | None = None) -> Plan:
    """Select the samples (first 100 test / 20 wiki, first N dev) and build their requests.

    `max_new_tokens_cap` (smoke tests) lowers output_length where it is larger and marks the plan
    capped, like a sample cap: such a run is never a leaderboard score.
    """
    names = list(spec.datasets or DATASETS)
    template = get_template(spec.prompt_template)
    items: list[Item] = []
    dev_unavailable: list[str] = []
    capped = False
    for name in names:
        ds = DATASETS[name]
        max_tokens = ds.output_length
        if max_new_tokens_cap is not None and max_new_tokens_cap < max_tokens:
            max_tokens, capped = max_new_tokens_cap, True
        test = select(name, "test", load(name, "test"))
        if spec.test_samples is not None and spec.test_samples < len(test):
            test, capped = test[: spec.test_samples], True
        splits: list[tuple[str, list[dict[str, str]]]] = [("test", test)]
        if spec.dev_samples:
            try:
                splits.append(("dev", select(name, "dev", load(name, "dev"))[: spec.dev_samples]))
            except SplitUnavailable:
                dev_unavailable.append(name)
        for split, records in splits:
            for index, rec in enumerate(records):
                prompt = render(template, ds.instruction, rec["input"])
                items.append(
                    Item(
                        dataset=name,
                        split=split,
                        index=index,
                        id=rec["id"],
                        input=rec["input"],
                        gold=rec["output"],
                        prompt=prompt,
                        request=_request(prompt, max_tokens, mode),
                    )
                )
    return Plan(items, template, mode, names, dev_unavailable, capped)


def _row(item: Item, result: InferenceResult) -> dict[str, Any]:
    """One per-question row: Nejumi Neo's column names plus the protocol §9 fields."""
    scored = score_sample(item.dataset, result.text, item.gold)
    return {
        "target_dataset": item.dataset,
        "split": item.split,
        "index": item.index,
        "id": item.id,
        "input": item.input,
        "prompt": item.prompt,
        "raw_output": result.text,
        "pred": scored.pred,
        "true": scored.gold,
        "metric": DATASETS[item.dataset].metric,
        "exact": scored.exact,
        "char_f1": scored.char_f1,
        "set_f1": scored.set_f1,
        "score": scored.score,
        "error": result.error,
        "truncated": result.truncated,  # raw_output is the first part of a longer answer (answer cap)
        "latency": result.latency_s,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "cached": result.cached,
    }


@dataclass
class JasterResult:
    test_rows: list[dict[str, Any]]
    dev_rows: list[dict[str, Any]]
    scores: dict[str, float]
    dev_scores: dict[str, float]
    categories: dict[str, float | None]
    failures: dict[str, int]
    plan: Plan

    @property
    def avg(self) -> float | None:
        return self.categories.get("AVG")

    @property
    def n_failures(self) -> int:
        return sum(self.failures.values())

    @property
    def n_truncated(self) -> int:
        """Answers cut to the answer cap (test and dev rows, like the failures)."""
        return sum(1 for row in (*self.test_rows, *self.dev_rows) if row["truncated"])

    @property
    def degraded(self) -> bool:
        """A score built on failed requests is never presented as clean (protocol §5)."""
        return self.n_failures > 0


def _means(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    by_key: dict[str, list[float]] = {}
    for row in rows:
        by_key.setdefault(f"{row['target_dataset']}_{row['metric']}", []).append(row["score"])
    return {key: statistics.mean(values) for key, values in by_key.items()}


def score(p: Plan, results: Sequence[InferenceResult]) -> JasterResult:
    """Score every generated sample; failed requests count as `""`, flagged and counted."""
    rows = [_row(item, result) for item, result in zip(p.items, results, strict=True)]
    test_rows = [r for r in rows if r["split"] == "test"]
    dev_rows = [r for r in rows if r["split"] == "dev"]
    failures = {name: 0 for name in p.datasets}
    for row in rows:
        if row["error"]:
            failures[row["target_dataset"]] += 1
    scores = _means(test_rows)
    return JasterResult(
        test_rows=test_rows,
        dev_rows=dev_rows,
        scores=scores,
        dev_scores=_means(dev_rows),
        categories=rollup(scores),
        failures=failures,
        plan=p,
    )


def leaderboard_row(model: str, result: JasterResult) -> dict[str, Any]:
    """`jaster_leaderboard_table`: AVG, the 7 categories, then the 16 dataset scores."""
    return {"model_name": model, **result.categories, **result.scores}


def radar_rows(result: JasterResult) -> list[dict[str, Any]]:
    """`jaster_radar_table`: one row per category, for W&B's radar chart."""
    return [{"category": c, "score": v} for c, v in result.categories.items() if c != "AVG"]


def provenance(result: JasterResult) -> dict[str, Any]:
    """Run fields of protocol §9 that are not scores: template, mode, data hashes, counts."""
    sources = sorted({DATASETS[name].source for name in result.plan.datasets})
    data_sha = {
        s: hashlib.sha256(
            json.dumps(load_manifest(s).fingerprint_items(), sort_keys=True).encode()
        ).hexdigest()
        for s in sources
    }
    counts: dict[str, int] = {}
    for row in result.test_rows:
        counts[row["target_dataset"]] = counts.get(row["target_dataset"], 0) + 1
    return {
        "benchmark": "jaster",
        "protocol": "neo",
        "mode": result.plan.mode,
        "template": {"name": result.plan.template.name, "sha256": result.plan.template.sha256},
        "decoding": {"temperature": 0.0, "max_tokens": "output_length", "stop": None},
        "datasets_sha256": data_sha,
        "dev_unavailable": result.plan.dev_unavailable,
        "samples": counts,
        "capped": result.plan.capped,
        "errors": result.n_failures,
        "truncated_answers": result.n_truncated,
        "output_length": {n: task_table().tasks[n].output_length for n in result.plan.datasets},
    }


@dataclass
class JasterRun:
    """One model's jaster: every request sent at once; scored when all are back."""

    plan: Plan
    progress: bool
    results: list[InferenceResult] | None = None
    done: int = 0

    async def generate(self, client: InferenceClient) -> None:
        requests = [item.request for item in self.plan.items]
        labels = [f"jaster {i.dataset} {i.split} #{i.index}" for i in self.plan.items]

        def count(_index: int, _result: InferenceResult) -> None:
            self.done += 1

        self.results = await client.run_all(
            requests, desc="jaster", progress=self.progress, on_result=count, labels=labels
        )

    def describe_plan(self) -> str:
        return f"{len(self.plan.datasets)} datasets, {len(self.plan.items)} requests"

    def counts(self) -> dict[str, tuple[int, int]]:
        return {"jaster": (self.done, len(self.plan.items))}

    async def finish(self) -> None:
        return None

    def output(self, model: str, failure: BaseException | None = None) -> BenchmarkOutput:
        assert self.results is not None, "generate() first"
        result = score(self.plan, self.results)
        categories = {k: v for k, v in result.categories.items() if k != "AVG"}
        return BenchmarkOutput(
            summary=BenchmarkSummary(
                avg=result.avg,
                categories=categories,
                scores=result.scores,
                samples=len(result.test_rows),
                failures=result.n_failures,
                degraded=result.degraded,
                capped=result.plan.capped,
                truncated_answers=result.n_truncated,
            ),
            tables={
                OUTPUT_TABLE: result.test_rows,
                OUTPUT_TABLE_DEV: result.dev_rows,
                LEADERBOARD_TABLE: [leaderboard_row(model, result)],
                RADAR_TABLE: radar_rows(result),
            },
            record={
                **provenance(result),
                "scores": result.scores,
                "dev_scores": result.dev_scores,
                "categories": result.categories,
                "failures": result.failures,
                "degraded": result.degraded,
            },
            scalars={**result.categories, **result.scores, "failures": result.n_failures},
            leaderboard={"AVG": result.avg, "degraded": result.degraded, **categories},
        )


@register
class Jaster:
    name: ClassVar[str] = "jaster"
    chats: ClassVar[bool] = False
    title: ClassVar[str] = "jaster AVG"
    spec_model: ClassVar[type[JasterSpec]] = JasterSpec
    reading: ClassVar[JasterReading] = READING

    def describe(self) -> dict[str, Any]:
        from nejumi_eval.benchmarks.jaster.catalog import describe

        return describe()

    def format_description(self, doc: dict[str, Any]) -> str:
        from nejumi_eval.benchmarks.jaster.catalog import format_text

        return format_text(doc)

    def add_run_options(self, parser: Any) -> None:
        parser.add_argument(
            "--datasets", metavar="A,B", help="jaster: only these datasets (comma-separated; see `list`)"
        )

    def apply_run_options(self, section: JasterSpec, args: Any) -> bool:
        if not getattr(args, "datasets", None):
            return False
        section.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        return True

    def add_commands(self, sub: Any) -> None:
        from nejumi_eval.benchmarks.jaster.cli import add_commands

        add_commands(sub)

    def plan(self, section: JasterSpec, ctx: RunContext) -> JasterRun:
        return JasterRun(plan(section, ctx.request_mode, ctx.max_new_tokens_cap), ctx.progress)  # type: ignore[arg-type]
