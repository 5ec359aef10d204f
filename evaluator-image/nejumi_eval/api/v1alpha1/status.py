"""The NejumiEvaluation `status`: what the operator observed. Its CRD schema is generated from here.

Only the operator writes it (through the `/status` subresource); the reducer in
`nejumi_operator.status` produces it as camelCase JSON (`model_dump(by_alias=True)`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.cost import Cost  # the evaluator's figures + the GPU-seconds held
from nejumi_eval.api.v1alpha1.formula import OVERALL
from nejumi_eval.api.v1alpha1.summary import Usage  # the evaluator's counters, reported as they are


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(_Status):
    """One observed state, keyed by `type` (see nejumi_eval.api.v1alpha1.conditions)."""

    type: str = Field(
        min_length=1,
        description="Accepted, Running, Succeeded, Degraded (observed); Ready, Reconciling, Stalled "
        "(derived from them, in the kstatus convention that Flux and Helm --wait read).",
    )
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(min_length=1, description="CamelCase reason.")
    message: str = ""
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"}, description="When status last changed."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation this condition describes."
    )


class BenchmarkScores(_Status):
    avg: float | None = Field(None, description="The benchmark's average (null when incomplete).")
    categories: dict[str, float | None] = Field(default_factory=dict, description="Category → score.")


class Scores(_Status):
    overall: float | None = Field(None, description=f"{OVERALL.name} = {OVERALL.description}.")
    benchmarks: dict[str, BenchmarkScores] = Field(
        default_factory=dict, description="By benchmark name; only benchmarks that were scored."
    )


class Failures(_Status):
    generation: int = Field(0, ge=0, description="Model requests that failed after retries.")
    judge: int = Field(0, ge=0, description="Units a scorer could not score (e.g. invalid judgments).")
    truncated_answers: int = Field(
        0,
        ge=0,
        description="Answers over the answer-size cap (a server ignoring max_tokens), cut to it before "
        "anything stored, judged or scored them.",
    )


class ProgressCounter(_Status):
    name: str = Field(description="A benchmark (or one of its stages, e.g. judged).")
    done: int = Field(ge=0)
    total: int = Field(ge=0)


class LiveProgress(_Status):
    """The running evaluator's last report (validated by the operator; see
    nejumi_operator.reconcile.progress)."""

    pod: str = Field(description="The pod that reported it: the evaluation's running pod.")
    step: str = Field(description="prepare, generate, judge, score or report.")
    counters: list[ProgressCounter] = Field(default_factory=list)
    updated_at: str = Field(json_schema_extra={"format": "date-time"}, description="When it was reported.")


class ResultsStatus(_Status):
    """The results of record (`spec.results`): the evaluation's prefix and its manifest."""

    uri: str = Field(description="s3://bucket/prefix/<namespace>/<name>/<generation>/.")
    stored: bool = Field(description="The manifest was written: the results are complete there.")
    manifest_sha256: str | None = Field(None, description="sha256:<hex> of the stored manifest.")
    objects: int | None = Field(None, ge=0, description="Objects the manifest lists.")
    bytes: int | None = Field(None, ge=0, description="Their total size.")


class StageStatus(_Status):
    """One stage of the evaluation (`api.v1alpha1.stages`): its Job and what it held."""

    name: Literal["fetch", "serve", "judge"] = Field(
        description="fetch (CPU: weights, data, checks), serve (GPU: serve and generate), judge (CPU: "
        "judge, score, report)."
    )
    job_name: str = Field(description="The stage's Job.")
    phase: Literal["Queued", "Pending", "Running", "Succeeded", "Failed"] = Field(
        description="Succeeded for an earlier stage; the evaluation's phase for the current one."
    )
    gpus: int = Field(0, ge=0, description="GPUs its pod asks for (only the serve stage's has any).")
    start_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    completion_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    gpu_seconds: float | None = Field(
        None, ge=0, description="Its Job's wall time × its GPUs, once it ended (none for a CPU stage)."
    )


MAX_HISTORY = 10
"""Previous generations kept in `status.history` (newest first); older ones are dropped."""


class HistoryEntry(_Status):
    """What an earlier generation of the evaluation came to, when a spec edit replaced it."""

    generation: int = Field(ge=1, description="The metadata.generation it evaluated.")
    phase: str | None = Field(
        None, description="Its last phase (Succeeded, Failed, or where an edit stopped it)."
    )
    reason: str | None = None
    message: str | None = None
    overall: float | None = Field(None, description="Its scores.overall, when it had one.")
    overall_display: str | None = None
    results: ResultsStatus | None = None
    job_name: str | None = None
    completion_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    replaced_at: str = Field(json_schema_extra={"format": "date-time"}, description="When the edit was seen.")


class EvaluationStatus(_Status):
    """Observed state of one evaluation."""

    phase: Literal["Queued", "Pending", "Running", "Succeeded", "Failed"] | None = Field(
        None,
        description="Derived from the conditions (for kubectl get): Queued (the Job is suspended, "
        "waiting for admission), Pending (no evaluator container has started yet: `reason` says why), "
        "Running (the evaluator container has started), Succeeded, Failed.",
    )
    reason: str | None = Field(
        None,
        description="Why the evaluation is in its phase: the reason of the condition that decides it "
        "(Running while in progress, Succeeded when finished, Degraded's for a degraded success).",
    )
    message: str | None = Field(None, description="That condition's message: what happens, what to fix.")
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = Field(None, ge=0, description="The metadata.generation described.")
    attempt: int | None = Field(
        None,
        ge=1,
        description="The Job's attempt (pod) in progress or next: failed attempts + 1; once finished, "
        "the attempts made.",
    )
    job_name: str | None = Field(None, description="The evaluation Job (the current stage's).")
    stage: Literal["fetch", "serve", "judge"] | None = Field(
        None,
        description="The stage in progress, or the last one reached (a served model's evaluation runs as "
        "fetch → serve → judge, only serve holding GPUs); absent: one Job does everything.",
    )
    stages: list[StageStatus] = Field(
        default_factory=list, max_length=3, description="Each stage reached so far, in order."
    )
    start_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    completion_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    progress: str | None = Field(
        None,
        description="One line: while the evaluator runs, its counts per benchmark (`jaster 812/1920 · "
        "mtbench 40/160 · judged 31/160`, renewed every ~10 s); else queued, pending, finishing, "
        "completed, failed, ….",
    )
    live_progress: LiveProgress | None = Field(
        None, description="While running: the evaluator's last progress report, per counter."
    )
    scores: Scores | None = None
    overall_display: str | None = Field(
        None,
        description="scores.overall rounded to 4 decimals for kubectl get (a number column would print "
        "every digit), with (capped), (synthetic judge) or (degraded) when it is not a clean score.",
    )
    summary_truncated: bool | None = Field(
        None,
        description="The evaluator shortened its summary to fit the 4096-byte termination message "
        "(errors, then per-dataset scores): the full results are in resultsDir.",
    )
    failures: Failures | None = None
    runtime: dict[str, float] | None = Field(
        None,
        description="Seconds per evaluator phase (prepareSeconds, generateSeconds, …, totalSeconds: the "
        "last stage's) and gpuSeconds (the wall time of the Job that held GPUs × its GPUs).",
    )
    usage: Usage | None = None
    cost: Cost | None = Field(
        None,
        description="What the evaluation spent: the evaluator's tokens, busy GPU-seconds and judge cost, "
        "with gpuSecondsHeld (and gpuCost) from the operator's own observation: the wall time of the Jobs "
        "that held GPUs × their GPUs (runtime.gpuSeconds).",
    )
    cost_display: str | None = Field(
        None,
        description="cost in one line for kubectl get -o wide: GPU-hours held and the judge cost "
        "(`0.42 GPU-h · judge 1.23 USD`); a part that is unknown is left out.",
    )
    degraded: bool | None = Field(None, description="Some requests failed: scores are not clean.")
    capped: bool | None = Field(None, description="Sample caps were in effect: a smoke test, not a score.")
    synthetic_judge: bool | None = Field(
        None, description="A score comes from the synthetic judge (a fixed rule): a smoke test, not a score."
    )
    results_dir: str | None = Field(None, description="Results folder inside the workspace.")
    results: ResultsStatus | None = Field(
        None, description="The results of record in object storage (spec.results or the operator's default)."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description=f"Earlier generations replaced by spec edits, newest first (at most {MAX_HISTORY}).",
    )
    wandb_run_url: str | None = Field(None, description="The W&B run (online mode).")
    wandb_run_path: str | None = Field(None, description="The W&B run path or offline run folder.")
