"""Observations → status: a pure reducer.

What the operator sees (the Job, its pods with their container states, the Job's events, the
evaluator container's last termination with its message = the evaluator's `Summary` JSON, or a
spec it cannot run) becomes the whole `status`: four conditions (set from the first visit on),
the phase derived from them, the reason and message of the condition that decides the phase, and
scores, failures, usage and runtimes from the summary. `lastTransitionTime` changes only when a
condition's status does, so writing the same observation twice is a no-op.

In progress, the Running condition says what the evaluator is doing, from the most specific
evidence there is (a condition message names what to fix):

- the Job is suspended → Queued (`Suspended`: waiting for admission, e.g. Kueue);
- the current pod's evaluator container has started (`state.running`) → Running (`JobRunning`);
- it exited, the Job is not marked yet → still Running (`Finishing`), or Pending (`Retrying`) when
  the Job controller will start another attempt;
- the pod cannot start: the scheduler's reason (`Unschedulable`, e.g. `0/1 nodes are available: 1
  Insufficient nvidia.com/gpu`), the kubelet's (`CreateContainerConfigError` for a missing
  Secret, `ImagePullError`, `ContainerWaiting`), or the Job controller's `FailedCreate` event when
  no pod can be created at all (`PodCreationFailed`: PodSecurity, quota, a webhook);
- otherwise `PodStarting` or `JobPending` (a pod is on its way).

The Job's `active` count is not evidence of running: it counts pending pods too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.progress import ProgressReport
from nejumi_eval.api.v1alpha1.status import EvaluationStatus
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, Summary
from nejumi_operator.reconcile.job import CONTAINER, GPU_RESOURCE

MESSAGE_LIMIT = 1024
SENTENCE_LIMIT = 300
DEFAULT_BACKOFF_LIMIT = 6  # batch/v1 Job's default
IMAGE_PULL_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
NOT_STARTED_REASONS = frozenset({"StartError", "ContainerCannotRun"})
"""Terminated reasons of a container that never ran (its process did not start)."""
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Termination:
    """How the evaluator container of one pod ended."""

    exit_code: int
    message: str = ""
    reason: str | None = None
    finished_at: str | None = None
    pod: str | None = None
    started_at: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything the reducer needs, gathered by the caller."""

    generation: int
    job_name: str
    job: Mapping[str, Any] | None = None
    """The batch/v1 Job (camelCase, as the API returns it), or None when it does not exist."""
    termination: Termination | None = None
    """The evaluator container's latest termination over the Job's pods (`last_termination`)."""
    spec_error: str | None = None
    """Set when the operator rejected the spec: no Job is created."""
    gpus: int = 0
    queue_name: str | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    """The Job's pods (camelCase pod dicts)."""
    job_events: Sequence[Mapping[str, Any]] = ()
    """The Job's core/v1 Events (read only when no pod is live: `needs_job_events`)."""
    job_rejected: str | None = None
    """The API server's message when it refused to create the Job or what it needs (final:
    `JobRejected`)."""
    refused: str | None = None
    """What was refused when not the Job itself: `PersistentVolumeClaim x`, `ServiceAccount y`, …"""
    refusal: tuple[str, str] | None = None
    """(reason, message): the operator refused to make the Job (`NameConflict`, `SecretNotUsable`):
    final, like `spec_error`."""
    waiting: tuple[str, str] | None = None
    """(reason, message): the create handler waits before making the Job (`BEFORE_JOB_WAITS`)."""
    workload: Mapping[str, Any] | None = None
    """Kueue's Workload for a suspended Job in a queue (why it waits, or that it was preempted)."""
    progress: ProgressReport | None = None
    """The evaluator's last live-progress report (`reconcile.progress.parse_report`), if any."""


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- pods, their order and their terminations -------------------------------------------------


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _time(value: str | None) -> dt.datetime:
    return _parse_time(value) or _EPOCH


def _evaluator(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == CONTAINER), {})


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name") or "")


def _pod_ended(pod: Mapping[str, Any]) -> bool:
    """The pod's evaluator attempt is over: container terminated or pod phase final."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return True
    return "terminated" in (_evaluator(pod).get("state") or {})


def pod_order(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key: a later attempt sorts after an earlier one.

    The evaluation Job runs one pod at a time (parallelism 1, completions 1) and, having a
    podFailurePolicy, replaces a pod only once it has *failed* (podReplacementPolicy Failed), after
    the Job controller's backoff (10 s, doubling). So attempts are strictly sequential: a later
    attempt's pod is created after the earlier one ended, and counted attempts are ≥10 s apart, so
    `creationTimestamp` orders them even at its one-second resolution. Ties (a disrupted pod,
    replaced without backoff, in the same second) go to the pod still live, then to the later
    container restart (`restartCount`), exit and start, and finally the name (deterministic).
    `finishedAt` alone does not decide: two attempts can end within the same second."""
    meta = pod.get("metadata") or {}
    ev = _evaluator(pod)
    state = ev.get("state") or {}
    term = state.get("terminated") or {}
    live = not _pod_ended(pod) and not meta.get("deletionTimestamp")
    return (
        _time(meta.get("creationTimestamp")),
        live,
        int(ev.get("restartCount") or 0),
        _time(term.get("finishedAt")),
        _time(term.get("startedAt") or (state.get("running") or {}).get("startedAt")),
        _pod_name(pod),
    )


def _terminations(pod: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], Termination]]:
    """The evaluator's terminations in this pod (the current one, and the previous restart's),
    each with its sort key."""
    ev = _evaluator(pod)
    out = []
    for which, restart_offset in (("lastState", -1), ("state", 0)):
        term = (ev.get(which) or {}).get("terminated")
        if not term:
            continue
        key = list(pod_order(pod))
        key[2] += restart_offset
        key[3] = _time(term.get("finishedAt"))
        out.append(
            (
                tuple(key),
                Termination(
                    exit_code=int(term.get("exitCode", -1)),
                    message=term.get("message") or "",
                    reason=term.get("reason"),
                    finished_at=term.get("finishedAt"),
                    pod=_pod_name(pod) or None,
                    started_at=term.get("startedAt"),
                ),
            )
        )
    return out


_FAILED_POD = re.compile(r"\bfor pod (?:[\w.-]+/)?([\w.-]+)")


def last_termination(
    pods: Iterable[Mapping[str, Any]], job: Mapping[str, Any] | None = None
) -> Termination | None:
    """The evaluator termination that tells how the Job went (camelCase pod dicts).

    When the Job is marked, its own word decides: Complete → the attempt that exited 0 (after a
    success no further pod is created); Failed by the podFailurePolicy → the pod its condition
    message names (`… for pod ns/name failed with exit code 2 …`). Otherwise, and as a fallback,
    the latest attempt by `pod_order` (not by the one-second `finishedAt` strings alone)."""
    found = [item for pod in pods for item in _terminations(pod)]
    if not found:
        return None
    if job is not None:
        if _job_condition(job, "Complete") or _job_condition(job, "SuccessCriteriaMet"):
            ok = [item for item in found if item[1].exit_code == 0]
            if ok:
                return max(ok, key=lambda item: item[0])[1]
        failed = _job_condition(job, "Failed") or _job_condition(job, "FailureTarget")
        named = _FAILED_POD.search(str((failed or {}).get("message") or ""))
        if named:
            match = [item for item in found if item[1].pod == named.group(1)]
            if match:
                return max(match, key=lambda item: item[0])[1]
    return max(found, key=lambda item: item[0])[1]


def current_pod(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The latest attempt's pod (`pod_order`), preferring one that is not being deleted."""
    pods = list(pods)
    kept = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")] or pods
    return max(kept, key=pod_order, default=None)


def needs_job_events(job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the Job's events can tell more than its pods: an unfinished, unsuspended Job with
    no live pod may be failing to create one (FailedCreate); then the caller lists its events."""
    if job is None or _finished(job) or _suspended(job):
        return False
    pods = list(pods)
    if not pods and not (job.get("status") or {}).get("startTime"):
        return False  # the Job controller has not looked at it yet: it cannot have failed to create
    if any((p.get("status") or {}).get("phase") == "Succeeded" for p in pods):
        return False  # done: the Job is about to be marked complete, no pod is to be created
    return all(_pod_ended(p) for p in pods)


# ---- summary and message helpers ---------------------------------------------------------------


def parse_summary(message: str) -> Summary | None:
    """The evaluator's summary, or None when the message is not one (e.g. a log tail)."""
    data = _summary_data(message)
    if data is None:
        return None
    try:
        return Summary.model_validate(data)
    except ValidationError:
        return None


def _summary_data(message: str) -> dict[str, Any] | None:
    if not message.strip().startswith("{"):
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_LIMIT else "…" + text[-(MESSAGE_LIMIT - 1) :]


_PROGRESS_BAR = re.compile(
    r"\d+%\|[^|]*\||\|\s*\d+/\d+\s*\[|\bit/s\b|\d+(?:\.\d+)?s/it\b"  # tqdm bars
    r"|^progress: "  # the evaluator's plain progress lines (nejumi_eval.pipeline.Steps)
)


def _readable(text: str) -> str:
    """A log tail as a terminal shows it: carriage-return overwrites resolved, progress lines (tqdm
    bars, `progress: jaster 812/1920 · …`) and blank lines dropped."""
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.split("\r")[-1].strip()
        if line and not _PROGRESS_BAR.search(line):
            lines.append(line)
    return "\n".join(lines)


def _sentence(text: str) -> str:
    """One clean line for a message in progress (a retry's cause): the last readable line."""
    lines = _readable(text).splitlines()
    line = lines[-1] if lines else ""
    return line if len(line) <= SENTENCE_LIMIT else line[: SENTENCE_LIMIT - 1] + "…"


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    cond = c.find((job.get("status") or {}).get("conditions"), type_)
    return cond if cond and cond.get("status") == c.TRUE else None


def _finished(job: Mapping[str, Any]) -> bool:
    return bool(_job_condition(job, "Complete") or _job_condition(job, "Failed"))


def _queued(name: str, queue: str, workload: Mapping[str, Any] | None) -> tuple[str, str]:
    """Reason and message of a Job waiting in a Kueue LocalQueue, in Kueue's own words when its
    Workload says more: evicted (preempted) and requeued, or not fitting the quota (and why)."""
    waiting = f"Job {name} is suspended, waiting for admission in LocalQueue {queue}"
    conds = ((workload or {}).get("status") or {}).get("conditions") or []
    evicted = c.find(conds, "Evicted")
    if evicted and evicted.get("status") == c.TRUE:
        why = (
            f"{evicted.get('reason')}: {evicted.get('message')}"
            if evicted.get("message")
            else evicted.get("reason")
        )
        return c.PREEMPTED, (
            f"Kueue evicted Job {name} ({why}); it waits for readmission in LocalQueue {queue}, and "
            "its next pod resumes from the workspace's response cache"
        )
    reserved = c.find(conds, "QuotaReserved")
    if reserved and reserved.get("status") == c.FALSE and reserved.get("message"):
        return c.SUSPENDED, f"{waiting}; Kueue: {reserved.get('reason')}: {reserved.get('message')}"
    return c.SUSPENDED, waiting


def _suspended(job: Mapping[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend") or _job_condition(job, "Suspended"))


def _wandb_url(path: str | None) -> str | None:
    parts = (path or "").split("/")
    if len(parts) == 3 and all(parts) and not (path or "").startswith("/"):
        entity, project, run_id = parts
        return f"https://wandb.ai/{entity}/{project}/runs/{run_id}"
    return None


def _summary_fields(summary: Summary) -> dict[str, Any]:
    benchmarks = summary.benchmarks.values()
    return {
        "scores": {
            "overall": summary.overall,
            "benchmarks": {
                name: {"avg": b.avg, "categories": b.categories}
                for name, b in summary.benchmarks.items()
                if b.scored
            },
        },
        "failures": {
            "generation": sum(b.failures for b in benchmarks),
            "judge": sum(b.invalid for b in benchmarks),
            "truncatedAnswers": summary.truncated_answers,
        },
        "usage": summary.usage.model_dump(by_alias=True),
        "runtime": {f"{to_camel(k)}Seconds": v for k, v in summary.runtime_seconds.items()},
        "degraded": summary.degraded,
        "capped": summary.capped or any(b.capped for b in benchmarks),
        "syntheticJudge": summary.synthetic_judge or any(b.synthetic_judge for b in benchmarks),
        "resultsDir": summary.results_dir,
        "wandbRunPath": summary.wandb_run_path,
        "wandbRunUrl": _wandb_url(summary.wandb_run_path),
    }


def _has_number(b: BenchmarkSummary) -> bool:
    return any(v is not None for v in (b.avg, *b.categories.values(), *b.scores.values()))


def no_score_problems(summary: Summary) -> list[str]:
    """Why a *completed* summary is no evaluation result: one line per enabled benchmark that was
    meant to be scored and produced no score. Empty: the evaluation succeeded.

    The rule (protocol-mtbench.md §6 counts invalid judgments; more than 2% = degraded):
    - `scored: false` with no scored unit (`samples` 0, `invalid` 0) is a benchmark *not scored by
      design* (MT-bench without a judge: answers only). It is not a failure.
    - A scored benchmark with units but no valid one (`invalid >= samples > 0`: a judge that is
      reachable but fails every judgment) has no score → NoScore.
    - A scored benchmark without any number (avg, categories and per-dataset scores all null) has
      no score → NoScore.
    - A scored, uncapped benchmark whose average is null because of invalid units (a category
      with no valid judgment: §6 makes the MT-bench score null) has no score → NoScore. A capped
      run (a smoke test) may lack categories by design, and a jaster dataset subset has a null
      average with no invalid unit: both still succeed.
    - Otherwise invalid units only degrade the run (the evaluator's `degraded`, above 2%)."""
    problems = []
    for name, b in summary.benchmarks.items():
        if not b.scored:
            if b.samples or b.invalid:
                problems.append(f"{name} was not scored ({b.invalid} of {b.samples} units invalid)")
            continue
        if b.samples > 0 and b.invalid >= b.samples:
            problems.append(f"{name} has no score: all {b.samples} scored units were invalid")
        elif not _has_number(b):
            problems.append(f"{name} has no score: it reported no number")
        elif b.avg is None and b.invalid > 0 and not b.capped:
            problems.append(
                f"{name} has no score: {b.invalid} of {b.samples} scored units were invalid and "
                "left a category without a valid one"
            )
    return problems


def _not_scored_notes(summary: Summary) -> list[str]:
    return [
        f"{name}: not scored (no judge configured)"
        for name, b in summary.benchmarks.items()
        if not b.scored and not b.samples and not b.invalid
    ]


def _degraded(summary: Summary) -> tuple[str, str]:
    parts = []
    for name, b in summary.benchmarks.items():
        if b.failures or b.invalid:
            of = f" of {b.samples}" if b.samples else ""
            parts.append(f"{name}: {b.failures} failed requests, {b.invalid}{of} unscorable")
    failures = sum(b.failures for b in summary.benchmarks.values())
    invalid = sum(b.invalid for b in summary.benchmarks.values())
    reason = c.INVALID_JUDGMENTS if invalid and not failures else c.REQUEST_FAILURES
    return reason, "; ".join(parts) or "the evaluator marked the run degraded"


def _failure_message(term: Termination | None, summary: Summary | None) -> str:
    if summary and summary.error:
        return _clip(summary.error)
    if term and term.message:
        return _clip(_readable(term.message) or term.message)
    if term:
        return f"the evaluator exited with code {term.exit_code} ({term.reason or 'no reason'})"
    return ""


def _cause(term: Termination, summary: Summary | None) -> str:
    """One sentence: why an attempt ended (for in-progress messages)."""
    if summary and summary.error:
        text = _sentence(summary.error)
    elif term.message:
        text = _sentence(term.message)
    else:
        text = ""
    return f"exited {term.exit_code}" + (f": {text}" if text else f" ({term.reason or 'no reason'})")


def _display(overall: float | None, fields: Mapping[str, Any]) -> str | None:
    if overall is None:
        return None
    marks = [
        label
        for label, key in (
            ("capped", "capped"),
            ("synthetic judge", "syntheticJudge"),
            ("degraded", "degraded"),
        )
        if fields.get(key)
    ]
    return f"{overall:.4f}" + (f" ({', '.join(marks)})" if marks else "")


# ---- why a pod is not running -----------------------------------------------------------------


def _scheduling_hints(message: str, gpus: int) -> list[str]:
    hints = []
    if f"Insufficient {GPU_RESOURCE}" in message:
        asked = f"{gpus} {GPU_RESOURCE}" if gpus else GPU_RESOURCE
        hints.append(
            f"the pod asks for {asked} and no node has that many free: lower spec.resources.gpus, "
            "wait for GPUs to be freed, or add GPU nodes"
        )
    for resource in ("memory", "cpu"):
        if f"Insufficient {resource}" in message:
            hints.append(f"no node has the {resource} free: lower spec.resources.{resource}")
    if m := re.search(r'persistentvolumeclaim "([^"]+)" not found', message):
        hints.append(
            f"create PersistentVolumeClaim {m.group(1)} in this namespace or fix spec.workspace.pvcName"
        )
    if "unbound immediate PersistentVolumeClaims" in message:
        hints.append("the workspace PVC is not bound: check its StorageClass and provisioner")
    if "untolerated taint" in message:
        # Only some nodes may be tainted, and the others may lack something else: not a sure fix.
        hints.append(
            "some nodes have taints the pod does not tolerate (if it should run there, add the "
            "toleration to spec.resources.tolerations, as the operator's policy allows)"
        )
    if "node affinity/selector" in message:
        hints.append("no node matches spec.resources.nodeSelector")
    return hints


def _config_hint(message: str, namespace: str) -> str:
    where = f" in namespace {namespace}" if namespace else ""
    if m := re.search(r'secret "([^"]+)" not found', message):
        return f"create Secret {m.group(1)}{where}, or fix the apiKeySecretRef in the spec that names it"
    if m := re.search(r"couldn't find key (\S+) in [Ss]ecret (?:[\w.-]+/)?([\w.-]+)", message):
        return f"add key {m.group(1)} to Secret {m.group(2)}, or fix the key in the spec's apiKeySecretRef"
    if m := re.search(r'configmap "([^"]+)" not found', message, re.IGNORECASE):
        return f"create ConfigMap {m.group(1)}{where}"
    return "fix the reference the kubelet names"


def _pod_blocker(pod: Mapping[str, Any], gpus: int) -> tuple[str, str] | None:
    """(reason, message) when the pod cannot start its evaluator, from the kubelet's container
    state or the scheduler's PodScheduled condition; None when it is merely on its way."""
    name = _pod_name(pod)
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    ev = _evaluator(pod)
    waiting = (ev.get("state") or {}).get("waiting") or {}
    reason, detail = waiting.get("reason") or "", (waiting.get("message") or "").strip()
    if reason == "CreateContainerConfigError":
        what = detail or "a Secret or ConfigMap it references is missing"
        return (
            c.CREATE_CONTAINER_CONFIG_ERROR,
            f"pod {name} cannot start the evaluator: {what}: {_config_hint(detail, namespace)}",
        )
    if reason in IMAGE_PULL_REASONS:
        image = ev.get("image") or next(
            (
                x.get("image")
                for x in (pod.get("spec") or {}).get("containers") or []
                if x.get("name") == CONTAINER
            ),
            "",
        )
        return (
            c.IMAGE_PULL_ERROR,
            f"pod {name} cannot pull the evaluator image {image} ({reason}"
            + (f": {detail}" if detail else "")
            + "): check the operator's evaluator image setting, the registry and imagePullSecrets",
        )
    if reason and reason not in STARTING_REASONS:
        return (
            c.CONTAINER_WAITING,
            f"pod {name}: the evaluator container is waiting ({reason}"
            + (f": {detail}" if detail else "")
            + ")",
        )
    scheduled = c.find((pod.get("status") or {}).get("conditions"), "PodScheduled")
    if (
        scheduled
        and scheduled.get("status") == c.FALSE
        and scheduled.get("reason")
        in (
            "Unschedulable",
            "SchedulingGated",
        )
    ):
        why = (scheduled.get("message") or scheduled.get("reason") or "").strip()
        hints = _scheduling_hints(why, gpus)
        gate = "is gated" if scheduled.get("reason") == "SchedulingGated" else "cannot be scheduled"
        return (
            c.UNSCHEDULABLE,
            f"pod {name} {gate}: {why}" + (f" ({'; '.join(hints)})" if hints else ""),
        )
    return None


def _event_time(event: Mapping[str, Any]) -> dt.datetime:
    series = event.get("series") or {}
    return max(
        _time(series.get("lastObservedTime")),
        _time(event.get("lastTimestamp")),
        _time(event.get("eventTime")),
        _time(event.get("firstTimestamp")),
        _time((event.get("metadata") or {}).get("creationTimestamp")),
    )


def _pod_creation_failure(
    events: Iterable[Mapping[str, Any]], after: dt.datetime | None
) -> Mapping[str, Any] | None:
    """The latest FailedCreate event of the Job that is newer than `after` (the last pod's end)."""
    failed = [
        e for e in events if e.get("reason") == "FailedCreate" and (after is None or _event_time(e) >= after)
    ]
    return max(failed, key=_event_time, default=None)


def _creation_failure_text(event: Mapping[str, Any]) -> str:
    """The API server's words on why the Job's pod could not be created, and what they mean."""
    detail = str(event.get("message") or "").strip()
    hint = _creation_hint(detail)
    return detail + (f" ({hint})" if hint else "")


def _creation_hint(message: str) -> str:
    if "violates PodSecurity" in message:
        return "the namespace's PodSecurity level forbids the pod"
    if "exceeded quota" in message:
        return "the namespace's ResourceQuota has no room for the pod"
    if "admission webhook" in message:
        return "an admission webhook denied the pod"
    if "forbidden" in message:
        return "the API server forbids the pod"
    return ""


# ---- retries ------------------------------------------------------------------------------------


def _failed_attempts(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> int:
    """Failed attempts so far: the Job's count (with pods not yet counted), or the failed pods
    seen, whichever is larger (a pod the Job ignores, e.g. a disrupted one, is still an attempt)."""
    jstatus = job.get("status") or {}
    uncounted = len((jstatus.get("uncountedTerminatedPods") or {}).get("failed") or [])
    seen = 0
    for pod in pods:
        term = (_evaluator(pod).get("state") or {}).get("terminated")
        if (pod.get("status") or {}).get("phase") == "Failed" or (term and term.get("exitCode") != 0):
            seen += 1
    return max(int(jstatus.get("failed") or 0) + uncounted, seen)


def _counted_failures(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> int:
    """Failures the Job counts against backoffLimit: its own count, or the failed pods seen that no
    Ignore rule of its podFailurePolicy exempts (the Job may not have counted the latest yet)."""
    jstatus = job.get("status") or {}
    uncounted = len((jstatus.get("uncountedTerminatedPods") or {}).get("failed") or [])
    seen = 0
    for pod in pods:
        term = (_evaluator(pod).get("state") or {}).get("terminated")
        failed = (pod.get("status") or {}).get("phase") == "Failed" or (term and term.get("exitCode") != 0)
        if failed and _fails_the_job(job, pod, int((term or {}).get("exitCode", -1))) is not False:
            seen += 1
    return max(int(jstatus.get("failed") or 0) + uncounted, seen)


def _backoff_limit(job: Mapping[str, Any]) -> int:
    value = (job.get("spec") or {}).get("backoffLimit")
    return DEFAULT_BACKOFF_LIMIT if value is None else int(value)


def _fails_the_job(job: Mapping[str, Any], pod: Mapping[str, Any], exit_code: int) -> bool | None:
    """What the Job's podFailurePolicy does with this pod: True FailJob, False Ignore (retry,
    uncounted), None no rule matched (count it against backoffLimit)."""
    pod_conds = (pod.get("status") or {}).get("conditions") or []
    for rule in ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []:
        on_codes = rule.get("onExitCodes")
        matched = False
        if on_codes and on_codes.get("containerName") in (None, CONTAINER):
            values = set(on_codes.get("values") or [])
            inside = exit_code in values
            matched = inside if on_codes.get("operator") == "In" else (not inside and exit_code != 0)
        for pattern in rule.get("onPodConditions") or []:
            cond = c.find(pod_conds, pattern.get("type", ""))
            if cond and cond.get("status") == pattern.get("status", c.TRUE):
                matched = True
        if matched:
            action = rule.get("action")
            if action == "FailJob":
                return True
            if action == "Ignore":
                return False
            return None
    return None


# ---- the reducer ---------------------------------------------------------------------------------

Conds = dict[str, tuple[str, str, str]]


def _in_progress(obs: Observation, conds: Conds, fields: dict[str, Any]) -> None:
    """The Running condition and progress of an unfinished Job."""
    job = obs.job or {}
    pods = list(obs.pods)
    term = obs.termination
    summary = parse_summary(term.message) if term else None
    failures = _failed_attempts(job, pods)
    attempt = failures + 1
    total = _backoff_limit(job) + 1
    fields["attempt"] = attempt
    retry = f" (attempt {attempt} of {total}; the last {_cause(term, summary)})" if failures and term else ""
    pod = current_pod(pods)
    name = obs.job_name
    conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
    conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")

    def running(status: str, reason: str, message: str, progress: str) -> None:
        conds[c.RUNNING] = (status, reason, _clip(message))
        fields["progress"] = progress

    if _suspended(job):
        if obs.queue_name:
            reason, message = _queued(name, obs.queue_name, obs.workload)
        else:
            reason, message = (
                c.SUSPENDED,
                f"Job {name} is suspended (spec.suspend): it starts when it is resumed",
            )
        return running(c.FALSE, reason, message + retry, "preempted" if reason == c.PREEMPTED else "queued")

    if pod is not None and _pod_ended(pod):
        ev = _evaluator(pod)
        ended = (ev.get("state") or {}).get("terminated") or {}
        code = int(ended.get("exitCode", -1)) if ended else -1
        pod_phase = (pod.get("status") or {}).get("phase")
        succeeded = (ended and code == 0) or (not ended and pod_phase == "Succeeded")
        ran = bool(ended) and ended.get("reason") not in NOT_STARTED_REASONS
        pname = _pod_name(pod)
        if succeeded or _job_condition(job, "SuccessCriteriaMet"):
            return running(
                c.TRUE,
                c.FINISHING,
                f"the evaluator in pod {pname} exited 0; waiting for Job {name} to be marked complete",
                "finishing",
            )
        policy = _fails_the_job(job, pod, code)
        final = (
            _job_condition(job, "FailureTarget") is not None
            or policy is True
            or (policy is None and _counted_failures(job, pods) > _backoff_limit(job))
        )
        own = max(_terminations(pod), key=lambda item: item[0], default=None)
        cause = _cause(own[1], parse_summary(own[1].message)) if own else f"ended ({pod_phase})"
        if final:
            return running(
                c.TRUE if ran else c.FALSE,
                c.FINISHING,
                f"the evaluator in pod {pname} {cause}; waiting for Job {name} to be marked failed",
                "finishing",
            )
        creation = _pod_creation_failure(obs.job_events, _parse_time(ended.get("finishedAt")))
        if creation is not None:
            return running(
                c.FALSE,
                c.POD_CREATION_FAILED,
                f"Job {name} cannot create the pod for attempt {attempt} of {total}: "
                + _creation_failure_text(creation),
                "pending",
            )
        return running(
            c.FALSE,
            c.RETRYING,
            f"attempt {attempt - 1} of {total} (pod {pname}) {cause}; Job {name} starts attempt {attempt}",
            f"retrying (attempt {attempt})",
        )

    if pod is not None:
        pname = _pod_name(pod)
        if "running" in (_evaluator(pod).get("state") or {}):
            node = (pod.get("spec") or {}).get("nodeName")
            where = f" on node {node}" if node else ""
            on_attempt = f" (attempt {attempt} of {total})" if failures else ""
            report = obs.progress if obs.progress is not None and obs.progress.pod == pname else None
            if report is not None:  # only the running pod's own report: never a previous attempt's
                fields["liveProgress"] = {
                    "pod": report.pod,
                    "step": report.step,
                    "counters": [ctr.model_dump(by_alias=True) for ctr in report.counters],
                    "updatedAt": report.updated_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            return running(
                c.TRUE,
                c.JOB_RUNNING,
                f"the evaluator is running in pod {pname}{where}{on_attempt}",
                (report.line() if report is not None else "evaluating")
                + (f" (attempt {attempt})" if failures else ""),
            )
        blocked = _pod_blocker(pod, obs.gpus)
        if blocked:
            return running(c.FALSE, blocked[0], blocked[1] + retry, "pending")
        node = (pod.get("spec") or {}).get("nodeName")
        message = (
            f"pod {pname} is starting on node {node}" if node else f"pod {pname} is waiting to be scheduled"
        )
        return running(c.FALSE, c.POD_STARTING, message + retry, "pending")

    creation = _pod_creation_failure(obs.job_events, None)
    if creation is not None:
        return running(
            c.FALSE,
            c.POD_CREATION_FAILED,
            f"Job {name} cannot create its pod: {_creation_failure_text(creation)}{retry}",
            "pending",
        )
    jstatus = job.get("status") or {}
    if int(jstatus.get("succeeded") or 0) or (jstatus.get("uncountedTerminatedPods") or {}).get("succeeded"):
        return running(
            c.TRUE,
            c.FINISHING,
            f"the evaluator exited 0; waiting for Job {name} to be marked complete",
            "finishing",
        )
    running(c.FALSE, c.JOB_PENDING, f"Job {name}: waiting for a pod{retry}", "pending")


def _finished_job(obs: Observation, conds: Conds, fields: dict[str, Any]) -> None:
    job = obs.job or {}
    jstatus = job.get("status") or {}
    term = obs.termination
    data = _summary_data(term.message) if term else None
    summary = parse_summary(term.message) if term else None
    complete, failed = _job_condition(job, "Complete"), _job_condition(job, "Failed")
    name = obs.job_name

    end = jstatus.get("completionTime") or (failed or complete or {}).get("lastTransitionTime")
    fields["completionTime"] = end
    fields["attempt"] = max(1, _failed_attempts(job, list(obs.pods)) + (1 if complete else 0))
    start, stop = _parse_time(jstatus.get("startTime")), _parse_time(end)
    if summary and summary.status == "completed":
        fields.update(_summary_fields(summary))
        if data and data.get("truncated"):
            fields["summaryTruncated"] = True
    if start and stop and obs.gpus:
        fields.setdefault("runtime", {})["gpuSeconds"] = round((stop - start).total_seconds() * obs.gpus, 3)

    if complete and summary and summary.status == "completed":
        conds[c.RUNNING] = (c.FALSE, c.COMPLETED, f"Job {name} completed")
        if summary.degraded:
            conds[c.DEGRADED] = (c.TRUE, *_degraded(summary))
        else:
            conds[c.DEGRADED] = (c.FALSE, c.NO_FAILURES, "")
        notes = [summary.error or "", *_not_scored_notes(summary)]
        if fields.get("summaryTruncated"):
            where = f" in {summary.results_dir}" if summary.results_dir else ""
            notes.append(f"the summary was shortened to fit the termination message: full results{where}")
        problems = no_score_problems(summary)
        if problems:
            conds[c.SUCCEEDED] = (
                c.FALSE,
                c.NO_SCORE,
                _clip(
                    "; ".join(problems)
                    + ": the evaluation has no result for it. If it is judged, check its judge "
                    "(benchmarks.<name>.judge: endpoint, model, API key) in the evaluator log; "
                    "a rerun on the same workspace reuses the cached answers"
                ),
            )
            fields["progress"] = "failed: no score"
            return
        conds[c.SUCCEEDED] = (c.TRUE, c.EVALUATION_COMPLETED, _clip("; ".join(n for n in notes if n)))
        marks = [
            m for m, key in (("capped", "capped"), ("synthetic judge", "syntheticJudge")) if fields.get(key)
        ]
        fields["progress"] = "completed" + (
            f" ({', '.join(marks)}: a smoke test, not a leaderboard score)" if marks else ""
        )
        return

    if complete:  # exit 0 without a readable summary: the evaluator broke its contract
        reason, message = c.EVALUATOR_ERROR, "the evaluator exited 0 without a readable summary"
    elif failed and failed.get("reason") == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        limit = f" ({deadline} s)" if deadline else ""
        reason = c.DEADLINE_EXCEEDED
        message = (
            f"Job {name} ran longer than its activeDeadlineSeconds{limit} and was stopped"
            + (f"; the evaluator: {_failure_message(term, summary)}" if term else "")
            + ": find out why it hangs (the evaluator log), or allow more time"
        )
    elif term:
        reason, message = c.failure_reason(term.exit_code), _failure_message(term, summary)
    else:
        reason = c.JOB_FAILED
        message = f"Job {name} failed: {(failed or {}).get('reason', '')} {(failed or {}).get('message', '')}"
    conds[c.RUNNING] = (c.FALSE, c.FAILED, f"Job {name} failed")
    conds[c.SUCCEEDED] = (c.FALSE, reason, _clip(message))
    conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
    fields["progress"] = "failed"


def _observe(obs: Observation) -> tuple[Conds, dict[str, Any]]:
    """Condition type → (status, reason, message), and the other status fields."""
    conds: Conds = {}
    fields: dict[str, Any] = {}

    if obs.spec_error:
        msg = _clip(obs.spec_error)
        conds[c.ACCEPTED] = (c.FALSE, c.INVALID_SPEC, msg)
        conds[c.RUNNING] = (c.FALSE, c.INVALID_SPEC, "no Job is created for an invalid spec")
        conds[c.SUCCEEDED] = (c.FALSE, c.INVALID_SPEC, msg)
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = "rejected: invalid spec"
        return conds, fields

    if obs.refusal and obs.job is None:
        reason, msg = obs.refusal[0], _clip(obs.refusal[1])
        conds[c.ACCEPTED] = (c.FALSE, reason, msg)
        conds[c.RUNNING] = (c.FALSE, reason, "no Job is created")
        conds[c.SUCCEEDED] = (c.FALSE, reason, msg)
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = f"rejected: {reason}"
        return conds, fields

    if obs.waiting and obs.job is None:
        reason, msg = obs.waiting[0], _clip(obs.waiting[1])
        conds[c.ACCEPTED] = (c.UNKNOWN, reason, msg)
        conds[c.RUNNING] = (c.FALSE, reason, msg)
        conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        fields["progress"] = "waiting before the Job"
        return conds, fields

    if obs.job_rejected and obs.job is None:
        what = obs.refused or f"Job {obs.job_name}"
        msg = _clip(f"the API server refused {what}: {obs.job_rejected}")
        conds[c.ACCEPTED] = (c.FALSE, c.JOB_REJECTED, msg)
        conds[c.RUNNING] = (c.FALSE, c.JOB_REJECTED, "no Job could be created")
        conds[c.SUCCEEDED] = (c.FALSE, c.JOB_REJECTED, msg)
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = f"rejected: {what.split()[0]} refused"
        return conds, fields

    if obs.job is None:
        conds[c.ACCEPTED] = (c.UNKNOWN, c.JOB_NOT_FOUND, f"Job {obs.job_name} does not exist (yet)")
        conds[c.RUNNING] = (c.FALSE, c.JOB_NOT_FOUND, "")
        conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        fields["progress"] = "waiting for the Job"
        return conds, fields

    jstatus = obs.job.get("status") or {}
    fields["jobName"] = obs.job_name
    fields["startTime"] = jstatus.get("startTime")
    conds[c.ACCEPTED] = (c.TRUE, c.JOB_CREATED, f"Job {obs.job_name} created")
    if _finished(obs.job):
        _finished_job(obs, conds, fields)
    else:
        _in_progress(obs, conds, fields)
    return conds, fields


_NOT_STARTED = (c.JOB_PENDING, c.POD_STARTING)


def _never_backwards(old: Mapping[str, Any], conds: Conds, fields: Mapping[str, Any]) -> None:
    """Keep Running while the same attempt shows no evidence of stopping: an attempt whose
    evaluator has started does not go back to "waiting for a pod" (e.g. in the gap between the
    pod's exit and the Job's Complete, should the pod be out of sight). A new attempt (Retrying),
    a suspension (Queued) or a pod that cannot run are evidence, and do change the phase."""
    if old.get("phase") != c.PHASE_RUNNING or conds[c.SUCCEEDED][0] != c.UNKNOWN:
        return
    status, reason, _ = conds[c.RUNNING]
    if status == c.TRUE or reason not in _NOT_STARTED:
        return
    if (old.get("attempt") or 1) != fields.get("attempt", 1):
        return
    previous = c.find(old.get("conditions"), c.RUNNING)
    if previous and previous.get("status") == c.TRUE:
        conds[c.RUNNING] = (c.TRUE, str(previous.get("reason")), str(previous.get("message") or ""))


def _deciding(conditions: Sequence[Mapping[str, Any]], phase: str) -> Mapping[str, Any] | None:
    """The condition whose reason and message explain `phase`."""
    if phase == c.PHASE_SUCCEEDED:
        degraded = c.find(conditions, c.DEGRADED)
        if degraded and degraded.get("status") == c.TRUE:
            return degraded
        return c.find(conditions, c.SUCCEEDED)
    if phase == c.PHASE_FAILED:
        return c.find(conditions, c.SUCCEEDED)
    if phase == c.PHASE_PENDING:
        accepted = c.find(conditions, c.ACCEPTED)
        if accepted and accepted.get("status") != c.TRUE:
            return accepted
    return c.find(conditions, c.RUNNING)


def reduce_status(old: Mapping[str, Any] | None, obs: Observation, at: str | None = None) -> dict[str, Any]:
    """The new `status` (camelCase JSON, no nulls) for observation `obs`, given the current one."""
    old = old or {}
    old_conds = {cond.get("type"): cond for cond in old.get("conditions") or []}
    stamp = at or now()
    observed, fields = _observe(obs)
    _never_backwards(old, observed, fields)
    conditions = []
    for type_ in c.CONDITION_TYPES:
        status, reason, message = observed[type_]
        previous = old_conds.get(type_)
        same = (
            previous is not None and previous.get("status") == status and previous.get("lastTransitionTime")
        )
        conditions.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": previous["lastTransitionTime"] if same else stamp,  # type: ignore[index]
                "observedGeneration": obs.generation,
            }
        )
    phase = c.phase_of(conditions)
    deciding = _deciding(conditions, phase) or {}
    overall = (fields.get("scores") or {}).get("overall")
    doc = {
        **fields,
        "phase": phase,
        "reason": deciding.get("reason"),
        "message": deciding.get("message") or None,
        "overallDisplay": _display(overall, fields),
        "conditions": conditions,
        "observedGeneration": obs.generation,
    }
    # Validate against the status model (= the CRD schema) and drop nulls.
    return EvaluationStatus.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_none=True)


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` (removed top-level fields become null)."""
    patch: dict[str, Any] = {k: None for k in (old or {}) if k not in new}
    patch.update(new)
    return patch


# ---- Events for transitions ------------------------------------------------------------------


RANK = {c.PHASE_QUEUED: 0, c.PHASE_PENDING: 1, c.PHASE_RUNNING: 2, c.PHASE_SUCCEEDED: 3, c.PHASE_FAILED: 3}
"""Phases in the order an evaluation goes through them (a retry or a requeue may go back)."""


@dataclass(frozen=True)
class Transition:
    """One Kubernetes Event to post on the evaluation."""

    type: str  # Normal or Warning
    reason: str
    message: str


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Transition]:
    """The Events that going from status `old` to `new` deserves: Job created, queued, a pod that
    cannot run (the Pending reason), started, retrying, succeeded, failed, rejected. Nothing for a
    status that changed within the same phase, reason and attempt (a new message alone)."""
    old = old or {}
    out: list[Transition] = []
    o_conds, n_conds = old.get("conditions") or [], new.get("conditions") or []
    o_accepted, n_accepted = c.find(o_conds, c.ACCEPTED) or {}, c.find(n_conds, c.ACCEPTED) or {}
    if n_accepted.get("status") == c.TRUE and o_accepted.get("status") != c.TRUE:
        out.append(Transition("Normal", "JobCreated", str(n_accepted.get("message") or "")))
    phase, reason, message = new.get("phase"), new.get("reason"), str(new.get("message") or "")
    o_attempt, n_attempt = old.get("attempt"), new.get("attempt")
    if (old.get("phase"), old.get("reason"), o_attempt) == (phase, reason, n_attempt):
        return out
    if o_attempt and n_attempt and n_attempt > o_attempt and phase not in (c.PHASE_SUCCEEDED, c.PHASE_FAILED):
        out.append(
            Transition("Warning", "Retrying", message if reason == c.RETRYING else f"attempt {n_attempt}")
        )
        if reason == c.RETRYING:
            return out
    if phase == c.PHASE_QUEUED and reason == c.PREEMPTED and old.get("reason") != c.PREEMPTED:
        out.append(Transition("Warning", c.PREEMPTED, message))
    elif phase == c.PHASE_QUEUED and old.get("phase") != c.PHASE_QUEUED:
        out.append(Transition("Normal", "Queued", message))
    elif phase == c.PHASE_PENDING and reason in c.PENDING_PROBLEMS:
        out.append(Transition("Warning", str(reason), message))
    elif phase == c.PHASE_PENDING and reason == c.RETRYING and not out:
        out.append(Transition("Warning", "Retrying", message))
    elif phase == c.PHASE_RUNNING:
        if old.get("phase") != c.PHASE_RUNNING or o_attempt != n_attempt:
            out.append(Transition("Normal", "Started", message))
    elif phase == c.PHASE_SUCCEEDED:
        if RANK.get(str(old.get("phase")), -1) < RANK[c.PHASE_RUNNING]:  # it ran between two looks
            out.append(Transition("Normal", "Started", "the evaluator started"))
        scores = new.get("scores") or {}
        parts = [f"Overall {new['overallDisplay']}"] if new.get("overallDisplay") else []
        parts += [
            f"{name} {b['avg']:.4f}"
            for name, b in (scores.get("benchmarks") or {}).items()
            if b.get("avg") is not None
        ]
        text = (
            str(new.get("reason"))
            + (f" ({', '.join(parts)})" if parts else "")
            + (f": {message}" if message else "")
        )
        out.append(Transition("Normal", "Succeeded", text))
    elif phase == c.PHASE_FAILED:
        accepted_ok = n_accepted.get("status") == c.TRUE
        kind = "Failed" if accepted_ok else "Rejected"
        out.append(Transition("Warning", kind, f"{reason}: {message}" if message else str(reason)))
    return out
