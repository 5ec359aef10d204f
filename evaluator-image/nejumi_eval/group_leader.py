"""The leader of a serving group: its serve stage's attempts, their outcome, and the hold (issue 22).

A model larger than one node is served by a LeaderWorkerSet group (`nejumi_operator.reconcile.group`)
whose leader pod runs the serve stage as a one-node serve pod does. A Job would count that pod's
attempts and end; a group does neither: its pods restart `Always` and LeaderWorkerSet recreates the
whole group when any of its containers restarts (`RecreateGroupOnPodRestart`), so an evaluator that
just ended would start again, forever, and nobody would read its exit code. So the leader keeps the
account itself (`contract.GROUP_ATTEMPTS_ENV`):

- It counts its attempts on the workspace, where they outlive the group's pods:
  `<workspace>/stages/serve.attempts.json` (`ATTEMPTS_RECORD`, beside the stage records, written
  atomically), kept per evaluation and per group (the leader's address names the LeaderWorkerSet,
  one per generation), so another evaluation's or generation's record starts the count anew. An
  attempt is recorded as started before it runs. SIGTERM or SIGINT (the group deleted or recreated
  because a worker was lost, a preemption, the operator releasing it) records it interrupted: it is
  not counted, as a Job does not count a disrupted pod. A hard kill (SIGKILL, the OOM killer) leaves
  it started, so counted, as a Job counts a failed pod.
- It runs the serve stage once (the caller's `attempt`: `pipeline.run`) and reads its exit code as
  `cli.main` would (0 completed, else 3; an exception's own class; a bug is 1 and its traceback is
  printed), and its summary as `--summary` received it (`pipeline.failed_summary` for an exception).
- It reports how the attempt ended, a `StageOutcome`, in the evaluation's progress ConfigMap under
  `progress.OUTCOME_KEY` (`ProgressPublisher.publish_outcome`). The outcome is final on success, on a
  non-retryable exit code (`NON_RETRYABLE_EXIT_CODES`) and on the last attempt allowed.
- Final: it holds (sleeps until SIGTERM or SIGINT, then exits 0) until the operator, having read
  the outcome, deletes the group. Not final: it exits with its code; LeaderWorkerSet recreates the
  group and the next attempt resumes from the response cache.

A final outcome is kept in the record too: a group recreated after it (a worker's server ending
with the leader's, a node lost while holding) serves nothing again; its leader reports the same
outcome and holds. Attempts that all started and never reported (each hard-killed) use the budget up
too: the next leader reports a final infrastructure failure (exit 3) without serving.

An outcome the API server keeps refusing (after `publish_outcome`'s retries, each failure logged):
a final one is held all the same and tried again every `HOLD_RETRY_S`. Exiting would only recreate
the group, every node loading the model again, for a new leader to find the same final record and
try the same write, with no backoff between recreations (each group's pods are new), while the
operator's deadline for the group ends it either way. A non-final one exits with its code as
planned: the next attempt is counted by the record, not by the report.

Outside Kubernetes (no progress ConfigMap: a group started by hand) nobody reads an outcome and
nothing restarts the group: the leader says so and exits with its code, final or not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.contract import GROUP_ATTEMPTS_ENV, GROUP_ID_ENV, NON_RETRYABLE_EXIT_CODES
from nejumi_eval.api.v1alpha1.progress import MAX_OUTCOME_SUMMARY, StageOutcome
from nejumi_eval.api.v1alpha1.spec import ConfigError, EvaluationSpec
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_eval.errors import EXIT_BUG, EXIT_INFRA, EXIT_OK, classify, unwrap
from nejumi_eval.pipeline import STAGE_RECORDS, evaluation_id, failed_summary
from nejumi_eval.report.progress import ProgressPublisher
from nejumi_eval.runtime.files import atomic_write_text
from nejumi_eval.runtime.serve.commands import NodeGroup, node_group

log = logging.getLogger(__name__)

ATTEMPTS_RECORD = "serve.attempts.json"
"""`<workspace>/stages/serve.attempts.json`: the group leader's attempts at the serve stage."""
DEFAULT_ATTEMPTS = 1
"""Attempts allowed when `NEJUMI_GROUP_ATTEMPTS` is unset: a group the operator did not make (one
started by hand) gets no retry nobody asked for; the operator always sets it."""
MAX_ATTEMPTS = 1000
"""The most attempts a `StageOutcome` can say."""
HOLD_RETRY_S = 30.0
"""While holding an outcome not yet written, how long between two rounds of tries."""
LOCAL_POD = "local"
"""The `pod` of an outcome outside Kubernetes: only the workspace's record holds it."""


# ---- who leads, how many attempts --------------------------------------------------------------


def leading(stage: Stage, environ: Mapping[str, str]) -> NodeGroup | None:
    """The serving group this process leads, or None: another stage, one node, a worker (it joins
    with `--join-group`), or a group environment that does not parse (the stage's own check refuses
    it, as before)."""
    if stage != Stage.SERVE:
        return None
    try:
        group = node_group(environ)
    except ValueError:
        return None
    return group if group is not None and group.leader else None


def allowed_attempts(environ: Mapping[str, str]) -> int:
    """`NEJUMI_GROUP_ATTEMPTS` (unset: `DEFAULT_ATTEMPTS`); anything but a whole number from 1 to
    `MAX_ATTEMPTS` is a configuration error."""
    raw = environ.get(GROUP_ATTEMPTS_ENV)
    if raw is None:
        return DEFAULT_ATTEMPTS
    try:
        attempts = int(raw.strip())
    except ValueError:
        attempts = 0
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise ConfigError(
            f"${GROUP_ATTEMPTS_ENV}: expected a whole number from 1 to {MAX_ATTEMPTS}, got {raw!r}"
        )
    return attempts


# ---- the record on the workspace ---------------------------------------------------------------


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Attempt(_Camel):
    """One attempt: `started` until it ends (`ended`) or a signal stops it (`interrupted`)."""

    pod: str
    started_at: datetime
    state: Literal["started", "interrupted", "ended"] = "started"
    exit_code: int | None = None


class AttemptRecord(_Camel):
    """The leader's attempts at one group's serve stage, and its final outcome once there is one."""

    evaluation_id: str
    group: str
    attempts: list[Attempt] = Field(default_factory=list)
    final: StageOutcome | None = None

    def counted(self) -> int:
        """The attempts that count against the budget: every one not interrupted."""
        return sum(a.state != "interrupted" for a in self.attempts)

    def start(self, pod: str, path: Path) -> int:
        """Record a new attempt as started (so a hard kill leaves it counted); its number."""
        self.attempts.append(Attempt(pod=pod, started_at=datetime.now(UTC)))
        self.save(path)
        return self.counted()

    def interrupt(self, path: Path) -> None:
        """A signal stops this process: an attempt still running is not counted. Written whatever
        the state, so that a write the signal cut short is made whole."""
        if self.attempts and self.attempts[-1].state == "started":
            self.attempts[-1].state = "interrupted"
        self.save(path)

    def end(self, outcome: StageOutcome, path: Path) -> StageOutcome:
        """The running attempt ended as `outcome` (kept when final)."""
        if self.attempts and self.attempts[-1].state == "started":
            self.attempts[-1].state, self.attempts[-1].exit_code = "ended", outcome.exit_code
        if outcome.final:
            self.final = outcome
        self.save(path)
        return outcome

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.model_dump_json(by_alias=True, indent=2) + "\n")


def group_key(group: NodeGroup, environ: Mapping[str, str]) -> str:
    """Which group a record is of: the leader's address (one LeaderWorkerSet per generation) and,
    set by the operator, the evaluation's UID and generation (`GROUP_ID_ENV`: a namesake made again
    on a kept workspace starts anew)."""
    made = environ.get(GROUP_ID_ENV)
    return f"{group.leader_address} {made}" if made else group.leader_address


def load_record(path: Path, evaluation: str, group: str) -> AttemptRecord:
    """The record at `path` if it is this evaluation's and this group's, else a new one (none yet,
    an earlier generation's or another evaluation's on a shared workspace, or unreadable)."""
    fresh = AttemptRecord(evaluation_id=evaluation, group=group)
    try:
        record = AttemptRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return fresh
    except (OSError, ValidationError) as exc:
        log.warning("%s: unreadable (%s); counting the serve stage's attempts from 0", path, exc)
        return fresh
    return record if (record.evaluation_id, record.group) == (evaluation, group) else fresh


# ---- signals ----------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGINT reached the leader. A KeyboardInterrupt, so it leaves asyncio's loop at
    once from whichever task it lands in, and the run unwinds as after Ctrl-C (the model server
    stopped, the failed summary written)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stopped_by_signals(on_signal: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call `on_signal`, then raise `Terminated`; only the first does (the
    unwinding it starts is not cut short). Without this, the evaluator, PID 1 of its container,
    would not see SIGTERM at all (the kernel drops a signal PID 1 has no handler for), and would
    die by the kubelet's SIGKILL with its attempt counted."""
    fired = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        try:
            on_signal()
        except OSError as exc:  # the workspace: the attempt stays counted, the signal still stops it
            log.error("could not record the attempt as interrupted: %s", exc)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---- the leader -------------------------------------------------------------------------------


def lead_group(
    spec: EvaluationSpec,
    group: NodeGroup,
    attempt: Callable[[], Summary],
    publisher: ProgressPublisher | None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Lead `group`'s serve stage (the module's docstring): one attempt (`attempt`, unless the
    record holds a final outcome), its outcome reported, then hold or exit. The process's exit code:
    0 after a hold, the attempt's code when not final or with no `publisher`, 128 + the signal's
    number for an attempt a signal interrupted."""
    path = Path(spec.workspace.path).expanduser().resolve() / STAGE_RECORDS / ATTEMPTS_RECORD
    record = load_record(path, evaluation_id(spec), group_key(group, environ))
    outcome: StageOutcome | None = None
    with _stopped_by_signals(lambda: record.interrupt(path)):
        try:
            if record.final is not None:
                outcome = record.final
                _say(f"{_ended(outcome)}, before this group was recreated: serving nothing again")
            else:
                outcome = _attempt_once(spec, record, path, attempt, publisher, environ)
            return _conclude(outcome, publisher)
        except Terminated as stop:
            if outcome is None:
                _say(f"{stop}: this attempt at the serve stage is recorded as interrupted, not counted")
                return 128 + stop.signum
            return EXIT_OK if outcome.final else outcome.exit_code


def _attempt_once(
    spec: EvaluationSpec,
    record: AttemptRecord,
    path: Path,
    attempt: Callable[[], Summary],
    publisher: ProgressPublisher | None,
    environ: Mapping[str, str],
) -> StageOutcome:
    """Run one attempt (or none, when the budget is used up) and record how it ended."""
    pod = publisher.pod if publisher is not None else LOCAL_POD
    try:
        allowed = allowed_attempts(environ)
    except ConfigError as exc:  # the attempt is this error: final (non-retryable), nothing served
        allowed, attempt = 1, _raising(exc)
    if record.counted() >= allowed:  # every attempt allowed started and none reported: hard kills
        error = (
            f"all {allowed} attempts allowed at the serve stage started and none ended by itself "
            "(killed: out of memory, SIGKILL?); the leader's previous logs say more"
        )
        summary = Summary(status="failed", model=spec.model.name, stage=Stage.SERVE.value, error=error)
        return record.end(_outcome(pod, record.counted(), allowed, EXIT_INFRA, True, summary), path)
    number = record.start(pod, path)
    code, summary = _run(spec, attempt)
    final = code == EXIT_OK or code in NON_RETRYABLE_EXIT_CODES or number >= allowed
    return record.end(_outcome(pod, number, allowed, code, final, summary), path)


def _raising(exc: Exception) -> Callable[[], Summary]:
    def attempt() -> Summary:
        raise exc

    return attempt


def _run(spec: EvaluationSpec, attempt: Callable[[], Summary]) -> tuple[int, Summary]:
    """The attempt's exit code and summary, as `cli.main` and `--summary` would have them."""
    try:
        summary = attempt()
    except Exception as exc:
        code = classify(exc)
        if code == EXIT_BUG:
            traceback.print_exception(exc)
        else:
            print(f"nejumi-eval: {unwrap(exc)}", file=sys.stderr, flush=True)
        return code, failed_summary(spec, Stage.SERVE, exc)
    return (EXIT_OK if summary.status == "completed" else EXIT_INFRA), summary


def _outcome(pod: str, attempt: int, allowed: int, code: int, final: bool, summary: Summary) -> StageOutcome:
    return StageOutcome(
        pod=pod,
        attempt=attempt,
        attempts=allowed,
        exit_code=code,
        final=final,
        summary=summary.to_json()[-MAX_OUTCOME_SUMMARY:],
        finished_at=datetime.now(UTC),
    )


def _conclude(outcome: StageOutcome, publisher: ProgressPublisher | None) -> int:
    """Report `outcome`, then hold (final) or return its exit code."""
    if publisher is None:
        _say(f"{_ended(outcome)}; not in a pod the operator made: the outcome is not reported")
        return outcome.exit_code
    published = publisher.publish_outcome(outcome)
    if not outcome.final:
        if not published:
            log.error("the serve stage's outcome was not reported; the next attempt goes on")
        _say(f"{_ended(outcome)}: the group restarts for the next attempt")
        return outcome.exit_code
    _say(f"{_ended(outcome)}: holding the group until the operator releases it")
    while not published:  # ended by SIGTERM (`Terminated`), as the hold itself
        log.error("the serve stage's final outcome is not reported yet; trying again in %g s", HOLD_RETRY_S)
        time.sleep(HOLD_RETRY_S)
        published = publisher.publish_outcome(outcome)
    while True:
        time.sleep(3600)


def _ended(outcome: StageOutcome) -> str:
    """`serve stage finished (exit 0, attempt 1 of 3)`."""
    return f"serve stage finished (exit {outcome.exit_code}, attempt {outcome.attempt} of {outcome.attempts})"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
