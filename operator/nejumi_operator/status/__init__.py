"""Observations → status, as pure functions, one concern a file (jobset's controller beside its
failure and success policies):

- `observation`: what the controller observed (`Observation`), and how pods and terminations read;
- `blockers`: why an evaluation is not running (queued, unschedulable, a container or pod that
  cannot be created), in words that name what to fix;
- `retries`: attempts, and whether the Job controller starts another;
- `results`: the evaluator's summary read into scores, failures, `NoScore`, `Degraded`;
- `reducer`: the status that follows (`reduce_status`), conditions first, the phase derived;
- `events`: which Event each transition deserves;
- `text`: messages clipped and cleaned for people.

The controller (`nejumi_operator.controller`) gathers observations and writes what these compute.
"""

from nejumi_operator.status.events import RANK, Transition, transitions
from nejumi_operator.status.observation import (
    GroupState,
    Observation,
    Termination,
    last_termination,
    needs_job_events,
)
from nejumi_operator.status.reducer import reduce_status, status_patch
from nejumi_operator.status.results import no_score_problems, parse_summary
from nejumi_operator.status.text import MESSAGE_LIMIT

__all__ = [
    "MESSAGE_LIMIT",
    "RANK",
    "GroupState",
    "Observation",
    "Termination",
    "Transition",
    "last_termination",
    "needs_job_events",
    "no_score_problems",
    "parse_summary",
    "reduce_status",
    "status_patch",
    "transitions",
]
