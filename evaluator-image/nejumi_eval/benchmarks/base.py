"""The seam between the pipeline and a benchmark.

A benchmark turns its spec section into a *run*: everything it will send, decided before any
server starts (`Benchmark.plan`, in a worker thread: data preparation is CPU and disk work). The
pipeline then serves the model and calls `generate` on every run at once, all through one cached
client, so the server batches requests from every benchmark together; stops the server; awaits
`finish` (work that needs no GPU, e.g. judgments still in flight); and writes each run's `output`.

Nothing in the pipeline, the report writer, the CLI summary or the operator's status names a
benchmark: they loop over the registry (`nejumi_eval.benchmarks.registry`) and over these outputs.
Nor does the leaderboard: the tables a benchmark writes are read back through its `reading`
(`nejumi_eval.benchmarks.reading`), declared beside the code that writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from nejumi_eval.api.v1alpha1.spec import BenchmarkSpec, EvaluationSpec, JudgeSpec
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary

if TYPE_CHECKING:
    from nejumi_eval.benchmarks.reading import Reading
    from nejumi_eval.runtime.client.client import InferenceClient


@dataclass
class RunContext:
    """What the pipeline lends a benchmark's run."""

    spec: EvaluationSpec
    progress: bool
    open_judge: Callable[[JudgeSpec, str], InferenceClient | None]
    """A client for a judge (an LLM scorer) on the run's shared response cache; the pipeline
    closes it and counts its usage, and serves the synthetic judge when `judge.synthetic`. The
    second argument names the spec field, for errors. None in a stage that does not judge (fetch,
    serve: `api.v1alpha1.stages`): the benchmark then generates without judging."""

    @property
    def request_mode(self) -> str:
        return self.spec.model.request_mode

    @property
    def max_new_tokens_cap(self) -> int | None:
        return self.spec.generation.max_new_tokens_cap


@dataclass
class BenchmarkOutput:
    """A finished run, as the report writer needs it."""

    summary: BenchmarkSummary
    """Scores and counts: the operator's status and the CLI read these (`Summary.benchmarks[name]`)."""
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per-question and per-category tables, named as Nejumi names them (results folder and W&B)."""
    record: dict[str, Any] = field(default_factory=dict)
    """Provenance and full scores for `run.json` (template, data hashes, judge, sampling…)."""
    scalars: dict[str, Any] = field(default_factory=dict)
    """W&B summary values; the report prefixes each with `<name>/`."""
    leaderboard: dict[str, Any] = field(default_factory=dict)
    """Columns of `leaderboard_table`; the report prefixes each with `<name>_`."""


class BenchmarkRun(Protocol):
    async def generate(self, client: InferenceClient) -> None:
        """Send every request to the model under test (the client bounds concurrency)."""

    async def finish(self) -> None:
        """Work after the model server is down (e.g. awaiting judgments); may be a no-op."""

    def output(self, model: str, failure: BaseException | None = None) -> BenchmarkOutput:
        """Score what was generated (pure). `failure`: `finish` raised it (e.g. a judge was lost);
        keep what was made and score nothing, so no partial number reads as a score."""


class Benchmark(Protocol):
    """A benchmark: a name, a spec section, and a factory for runs."""

    name: ClassVar[str]
    """The registry key, the spec section (`benchmarks.<name>`), the prefix of its tables."""
    title: ClassVar[str]
    """How people call its score (terminal lines, messages)."""
    spec_model: ClassVar[type[BenchmarkSpec]]
    chats: ClassVar[bool]
    """Whether it sends chat requests to the model under test whatever `model.mode` says (then a
    served model needs a chat template)."""
    reading: ClassVar[Reading | None]
    """How its tables are read back: per-question data (bootstrap design, drill-down), the
    comparability identity, labels. None: the leaderboard ranks it by its recorded score alone,
    without an interval, drill-down or diff. Required (the registry refuses a class without it)."""

    def plan(self, section: Any, ctx: RunContext) -> BenchmarkRun:
        """Everything the run will send, from its spec section (called in a worker thread)."""


# ---- optional capabilities: a benchmark (or its run) has one by defining its methods; callers ask
# with isinstance (runtime-checkable Protocols), so each is declared here, typed, in one place.


@runtime_checkable
class HasCommands(Protocol):
    """Its own subcommands, `nejumi-eval <name> …` (e.g. `jaster prepare`)."""

    def add_commands(self, subparsers: Any) -> None: ...


@runtime_checkable
class Describes(Protocol):
    """What it can run, for `nejumi-eval list` (`--json`: `describe()`; text: `format_description`)."""

    def describe(self) -> dict[str, Any]: ...

    def format_description(self, doc: dict[str, Any]) -> str: ...


@runtime_checkable
class HasRunOptions(Protocol):
    """Its own `nejumi-eval run` flags (e.g. jaster's `--datasets`), applied to its spec section
    (`apply_run_options` says whether it changed anything, so the spec is validated again)."""

    def add_run_options(self, parser: Any) -> None: ...

    def apply_run_options(self, section: Any, args: Any) -> bool: ...


@runtime_checkable
class CountsProgress(Protocol):
    """A run that reports progress: counter name → (done, total), e.g. `jaster` or `judged`."""

    def counts(self) -> dict[str, tuple[int, int]]: ...


@runtime_checkable
class DescribesPlan(Protocol):
    """A run that says in one line what it will send (the `plan:` step line)."""

    def describe_plan(self) -> str: ...
