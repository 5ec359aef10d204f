"""The stages of an evaluation in the cluster: which pods run it, and which of them hold GPUs.

A GPU is the scarce thing on a shared cluster, and a pod holds its GPUs from the moment it is
scheduled to its end, whatever it does meanwhile. So a served model's evaluation runs in three
Jobs, one after the other, each its own Kueue workload, on one workspace (the response cache is
the hand-over):

- `fetch` (CPU): the model's weights downloaded, the data prepared, the judges, W&B and the results
  store checked: everything that can fail before a GPU is asked for;
- `serve` (GPU): the model served and every model request answered into the response cache; the
  pod ends when generation ends;
- `judge` (CPU): every answer read back from the cache (none sent again), judged, scored, reported
  and stored; its summary is the evaluation's.

An API model has nothing to serve: it runs in one CPU pod (`run`), as does every evaluation when the
operator's `evaluator.stages` is off (one pod for everything, the design before stages). The
evaluator is told its stage by `STAGE_FLAG`; without it, it runs everything (`run`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module at start: the spec's models only when used
    from nejumi_eval.api.v1alpha1.spec import EvaluationSpec

STAGE_FLAG = "--stage"
"""`nejumi-eval run --stage <stage>`: the part of the evaluation this pod runs."""


class Stage(StrEnum):
    RUN = "run"
    FETCH = "fetch"
    SERVE = "serve"
    JUDGE = "judge"


STAGED = (Stage.FETCH, Stage.SERVE, Stage.JUDGE)
SINGLE = (Stage.RUN,)
GPU_STAGES = frozenset({Stage.RUN, Stage.SERVE})
"""The stages whose pods ask for `resources.gpus` (a `run` pod of an API model asks for none)."""
REPORTING_STAGES = frozenset({Stage.RUN, Stage.JUDGE})
"""The stages whose summary is the evaluation's: they score, report, store and price it."""


def after(stage: Stage) -> Stage | None:
    """The stage that follows `stage` (None: it is the last, its summary is the evaluation's)."""
    if stage not in STAGED[:-1]:
        return None
    return STAGED[STAGED.index(stage) + 1]


def stages_for(spec: EvaluationSpec, staged: bool = True) -> tuple[Stage, ...]:
    """The stages of `spec`, in order: a served model on GPUs gets fetch, serve and judge when
    `staged` (the operator's setting); anything else runs in one pod."""
    from nejumi_eval.api.v1alpha1.spec import ModelSource

    served = spec.model.source != ModelSource.OPENAI_COMPATIBLE
    if staged and served and spec.resources.gpus > 0:
        return STAGED
    return SINGLE
