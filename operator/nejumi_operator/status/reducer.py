"""Observations → status: a pure reducer.

What the operator sees (the Job, its pods with their container states, the Job's events, the
evaluator container's last termination with its message = the evaluator's `Summary` JSON, or a
spec it cannot run) becomes the whole `status`: four conditions (set from the first visit on),
the phase derived from them, the reason and message of the condition that decides the phase, the
conditions kstatus reads (Ready, Reconciling, Stalled: `conditions.kstatus_conditions`, derived from
the four), and scores, failures, usage, runtimes and cost from the summary (the cost's GPU-seconds
held are the operator's own observation: the Jobs that held GPUs). Every condition and
`observedGeneration` name the generation observed. `lastTransitionTime` changes only when a
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

A staged evaluation (`api.v1alpha1.stages`) is read through its current stage's Job, each message
naming the stage: a fetch or serve Job that completed is `StageCompleted` (Running: the next
stage's Job is being made), a later stage's pod on its way is `StageStarting` (Running, never back
to Pending between stages; a stage waiting for quota is Queued, a pod that cannot start says why),
a stage that failed fails the evaluation, and `status.stages` lists each stage reached with its Job,
phase, times and GPU-seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.progress import ProgressReport
from nejumi_eval.api.v1alpha1.status import MAX_HISTORY, EvaluationStatus
from nejumi_operator.status.blockers import (
    creation_failure_text,
    pod_blocker,
    pod_creation_failure,
    queued_reason,
)
from nejumi_operator.status.observation import (
    NOT_STARTED_REASONS,
    Observation,
    current_pod,
    evaluator_status,
    job_condition,
    job_finished,
    job_suspended,
    now,
    parse_time,
    pod_ended,
    pod_name,
    stamp,
    terminations,
)
from nejumi_operator.status.results import (
    cost_fields,
    degraded_reason,
    failure_cause,
    failure_message,
    no_score_problems,
    not_scored_notes,
    overall_display,
    parse_summary,
    results_not_stored,
    summary_data,
    summary_fields,
)
from nejumi_operator.status.retries import backoff_limit, counted_failures, failed_attempts, fails_the_job
from nejumi_operator.status.text import clip

Conds = dict[str, tuple[str, str, str]]


def _in_progress(obs: Observation, conds: Conds, fields: dict[str, Any]) -> None:
    """The Running condition and progress of an unfinished Job."""
    job = obs.job or {}
    pods = list(obs.pods)
    term = obs.termination
    summary = parse_summary(term.message) if term else None
    failures = failed_attempts(job, pods)
    attempt = failures + 1
    total = backoff_limit(job) + 1
    fields["attempt"] = attempt
    retry = (
        f" (attempt {attempt} of {total}; the last {failure_cause(term, summary)})"
        if failures and term
        else ""
    )
    pod = current_pod(pods)
    name = obs.job_name
    conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
    conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")

    def running(status: str, reason: str, message: str, progress: str) -> None:
        conds[c.RUNNING] = (status, reason, clip(message))
        fields["progress"] = progress

    if job_suspended(job):
        if obs.queue_name:
            reason, message = queued_reason(name, obs.queue_name, obs.workload)
        else:
            reason, message = (
                c.SUSPENDED,
                f"Job {name} is suspended (spec.suspend): it starts when it is resumed",
            )
        return running(c.FALSE, reason, message + retry, "preempted" if reason == c.PREEMPTED else "queued")

    if pod is not None and pod_ended(pod):
        ev = evaluator_status(pod)
        ended = (ev.get("state") or {}).get("terminated") or {}
        code = int(ended.get("exitCode", -1)) if ended else -1
        pod_phase = (pod.get("status") or {}).get("phase")
        succeeded = (ended and code == 0) or (not ended and pod_phase == "Succeeded")
        ran = bool(ended) and ended.get("reason") not in NOT_STARTED_REASONS
        pname = pod_name(pod)
        if succeeded or job_condition(job, "SuccessCriteriaMet"):
            return running(
                c.TRUE,
                c.FINISHING,
                f"the evaluator in pod {pname} exited 0; waiting for Job {name} to be marked complete",
                "finishing",
            )
        policy = fails_the_job(job, pod, code)
        final = (
            job_condition(job, "FailureTarget") is not None
            or policy is True
            or (policy is None and counted_failures(job, pods) > backoff_limit(job))
        )
        own = max(terminations(pod), key=lambda item: item[0], default=None)
        cause = failure_cause(own[1], parse_summary(own[1].message)) if own else f"ended ({pod_phase})"
        if final:
            return running(
                c.TRUE if ran else c.FALSE,
                c.FINISHING,
                f"the evaluator in pod {pname} {cause}; waiting for Job {name} to be marked failed",
                "finishing",
            )
        creation = pod_creation_failure(obs.job_events, parse_time(ended.get("finishedAt")))
        if creation is not None:
            return running(
                c.FALSE,
                c.POD_CREATION_FAILED,
                f"Job {name} cannot create the pod for attempt {attempt} of {total}: "
                + creation_failure_text(creation),
                "pending",
            )
        return running(
            c.FALSE,
            c.RETRYING,
            f"attempt {attempt - 1} of {total} (pod {pname}) {cause}; Job {name} starts attempt {attempt}",
            f"retrying (attempt {attempt})",
        )

    if pod is not None:
        pname = pod_name(pod)
        if "running" in (evaluator_status(pod).get("state") or {}):
            node = (pod.get("spec") or {}).get("nodeName")
            where = f" on node {node}" if node else ""
            on_attempt = f" (attempt {attempt} of {total})" if failures else ""
            report = obs.progress if obs.progress is not None and obs.progress.pod == pname else None
            if report is not None:  # only the running pod's own report: never a previous attempt's
                fields["liveProgress"] = live_progress(report)
            return running(
                c.TRUE,
                c.JOB_RUNNING,
                f"the evaluator is running in pod {pname}{where}{on_attempt}",
                _progress(report, attempt if failures else None),
            )
        blocked = pod_blocker(pod, obs.gpus)
        if blocked:
            return running(c.FALSE, blocked[0], blocked[1] + retry, "pending")
        node = (pod.get("spec") or {}).get("nodeName")
        message = (
            f"pod {pname} is starting on node {node}" if node else f"pod {pname} is waiting to be scheduled"
        )
        return running(c.FALSE, c.POD_STARTING, message + retry, "pending")

    creation = pod_creation_failure(obs.job_events, None)
    if creation is not None:
        return running(
            c.FALSE,
            c.POD_CREATION_FAILED,
            f"Job {name} cannot create its pod: {creation_failure_text(creation)}{retry}",
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


def _progress(report: ProgressReport | None, retried: int | None) -> str:
    """`status.progress` of a running evaluator: its report's line, and the attempt after a retry."""
    line = report.line() if report is not None else "evaluating"
    return line + (f" (attempt {retried})" if retried else "")


def _what(obs: Observation) -> str:
    """What runs the stage, as a message names it: `Job x`, or `LeaderWorkerSet x` (a group)."""
    return f"{'LeaderWorkerSet' if obs.group else 'Job'} {obs.job_name}"


def live_progress(report: ProgressReport) -> dict[str, Any]:
    """`status.liveProgress`: the evaluator's report as validated, its time to the second."""
    return {
        "pod": report.pod,
        "step": report.step,
        "counters": [ctr.model_dump(by_alias=True) for ctr in report.counters],
        "updatedAt": stamp(report.updated_at),
    }


def _group_in_progress(obs: Observation, conds: Conds, fields: dict[str, Any]) -> None:
    """The Running condition of a serve stage that is a group of nodes (`reconcile.group`), not yet
    released: queued whole, its pods on their way or blocked, a pod lost (the group restarts), the
    leader's evaluator running, or its final outcome reported (the operator releases the group)."""
    group = obs.group
    assert group is not None
    job = obs.job or {}
    what = _what(obs)
    outcome, term = group.outcome, obs.termination
    failures = outcome.attempt if outcome is not None and not outcome.final else 0
    attempt, total = failures + 1, backoff_limit(job) + 1
    fields["attempt"] = attempt
    summary = parse_summary(term.message) if term else None
    retry = (
        f" (attempt {attempt} of {total}; the last {failure_cause(term, summary)})"
        if failures and term
        else ""
    )
    conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
    conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")

    def running(status: str, reason: str, message: str, progress: str) -> None:
        conds[c.RUNNING] = (status, reason, clip(message))
        fields["progress"] = progress

    pods = sorted(group.pods, key=pod_name)
    # Not admitted as far as its Workload says; but a pod bound to a node is past Kueue's gate (a
    # Workload the operator cannot read): never shown as waiting while it runs.
    if job_suspended(job) and not any((p.get("spec") or {}).get("nodeName") for p in pods):
        reason, message = queued_reason(obs.job_name, obs.queue_name or "", obs.workload, nodes=group.size)
        return running(c.FALSE, reason, message + retry, "preempted" if reason == c.PREEMPTED else "queued")
    if outcome is not None and outcome.final:
        return running(
            c.TRUE,
            c.FINISHING,
            f"the evaluator in pod {group.leader} ended (exit {outcome.exit_code}, attempt "
            f"{outcome.attempt}); the operator releases {what}",
            "finishing",
        )
    lost = next((p for p in pods if _pod_lost(p)), None)
    if lost is not None:
        return running(
            c.FALSE,
            c.GROUP_RESTARTING,
            f"pod {pod_name(lost)} of {what} stopped ({_how_it_stopped(lost)}): LeaderWorkerSet restarts the "
            f"whole group on {group.size} nodes, and the evaluation resumes from the response cache{retry}",
            f"group restarting (attempt {attempt})",
        )
    for pod in pods:
        if blocked := pod_blocker(pod, obs.gpus):
            return running(c.FALSE, blocked[0], f"{what}: {blocked[1]}{retry}", "pending")  # names the pod
    up = [p for p in pods if "running" in (evaluator_status(p).get("state") or {})]
    leader = next((p for p in up if pod_name(p) == group.leader), None)
    if len(up) < group.size or leader is None:
        return running(
            c.FALSE,
            c.POD_STARTING,
            f"{what}: {len(up)} of {group.size} pods running (one per node; the model is served once all "
            f"have joined){retry}",
            "pending",
        )
    node = (leader.get("spec") or {}).get("nodeName")
    where = f" on node {node}" if node else ""
    report = obs.progress if obs.progress is not None and obs.progress.pod == group.leader else None
    started = parse_time(
        ((evaluator_status(leader).get("state") or {}).get("running") or {}).get("startedAt")
    )
    if report is not None and started is not None and report.updated_at < started:
        report = None  # the previous attempt's (a recreated leader pod keeps its name)
    if report is not None:
        fields["liveProgress"] = live_progress(report)
    on_attempt = f" (attempt {attempt} of {total})" if failures else ""
    # Until its report says it generates, the server may still be loading or waiting for a node.
    doing = (
        f"serving the model across the {group.size} nodes of {what}"
        if report is not None and report.step != "prepare"
        else f"starting the model server across the {group.size} nodes of {what} (ready once every node "
        "joined it)"
    )
    return running(
        c.TRUE,
        c.JOB_RUNNING,
        f"the evaluator is running in pod {group.leader}{where}, {doing}{on_attempt}",
        _progress(report, attempt if failures else None),
    )


def _pod_lost(pod: Mapping[str, Any]) -> bool:
    """A group pod on its way out (LWS deletes the group's pods to recreate them), or whose
    container stopped (a worker crashed, the leader's attempt ended: its restart restarts the group)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return True
    ev = evaluator_status(pod)
    return int(ev.get("restartCount") or 0) > 0 or "terminated" in (ev.get("state") or {}) or pod_ended(pod)


def _how_it_stopped(pod: Mapping[str, Any]) -> str:
    ev = evaluator_status(pod)
    ended = (ev.get("state") or {}).get("terminated") or (ev.get("lastState") or {}).get("terminated") or {}
    if ended:
        return f"exit {ended.get('exitCode')}" + (f", {ended['reason']}" if ended.get("reason") else "")
    return "being deleted" if (pod.get("metadata") or {}).get("deletionTimestamp") else "ended"


def _finished_job(obs: Observation, conds: Conds, fields: dict[str, Any]) -> None:
    job = obs.job or {}
    jstatus = job.get("status") or {}
    term = obs.termination
    data = summary_data(term.message) if term else None
    summary = parse_summary(term.message) if term else None
    complete, failed = job_condition(job, "Complete"), job_condition(job, "Failed")
    what = _what(obs)

    end = jstatus.get("completionTime") or (failed or complete or {}).get("lastTransitionTime")
    fields["completionTime"] = end
    fields["attempt"] = max(1, failed_attempts(job, list(obs.pods)) + (1 if complete else 0))
    start, stop = parse_time(jstatus.get("startTime")), parse_time(end)
    if summary and summary.status == "completed":
        fields.update(summary_fields(summary))
        if data and data.get("truncated"):
            fields["summaryTruncated"] = True
    if start and stop and obs.gpus:
        fields.setdefault("runtime", {})["gpuSeconds"] = round((stop - start).total_seconds() * obs.gpus, 3)

    if complete and summary and summary.status == "completed":
        conds[c.RUNNING] = (c.FALSE, c.COMPLETED, f"{what} completed")
        # Degraded: the scores' own reason, unless the results were not stored — the one a person
        # must act on for the evaluation to count (the message then says both). `degraded` in
        # status stays the scores' flag.
        unstored = results_not_stored(summary)
        if unstored and summary.degraded:
            scores = degraded_reason(summary)[1]
            conds[c.DEGRADED] = (
                c.TRUE,
                c.RESULTS_NOT_STORED,
                clip(f"{unstored}. The scores are also degraded: {scores}"),
            )
        elif unstored:
            conds[c.DEGRADED] = (c.TRUE, c.RESULTS_NOT_STORED, clip(unstored))
        elif summary.degraded:
            conds[c.DEGRADED] = (c.TRUE, *degraded_reason(summary))
        else:
            conds[c.DEGRADED] = (c.FALSE, c.NO_FAILURES, "")
        notes = [summary.error or "", *not_scored_notes(summary)]
        if fields.get("summaryTruncated"):
            where = f" in {summary.results_dir}" if summary.results_dir else ""
            notes.append(f"the summary was shortened to fit the termination message: full results{where}")
        problems = no_score_problems(summary)
        if problems:
            conds[c.SUCCEEDED] = (
                c.FALSE,
                c.NO_SCORE,
                clip(
                    "; ".join(problems)
                    + ": the evaluation has no result for it. If it is judged, check its judge "
                    "(benchmarks.<name>.judge: endpoint, model, API key) in the evaluator log; "
                    "a rerun on the same workspace reuses the cached answers"
                ),
            )
            fields["progress"] = "failed: no score"
            return
        conds[c.SUCCEEDED] = (c.TRUE, c.EVALUATION_COMPLETED, clip("; ".join(n for n in notes if n)))
        marks = [
            m for m, key in (("capped", "capped"), ("synthetic judge", "syntheticJudge")) if fields.get(key)
        ]
        notes = [f"{', '.join(marks)}: a smoke test, not a leaderboard score"] if marks else []
        if unstored:
            notes.append("results not stored")
        fields["progress"] = "completed" + (f" ({'; '.join(notes)})" if notes else "")
        return

    if complete:  # exit 0 without a readable summary: the evaluator broke its contract
        reason, message = c.EVALUATOR_ERROR, "the evaluator exited 0 without a readable summary"
    elif failed and failed.get("reason") == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        limit = f" ({deadline} s)" if deadline else ""
        reason = c.DEADLINE_EXCEEDED
        message = (
            f"{what} ran longer than its activeDeadlineSeconds{limit} and was stopped"
            + (f"; the evaluator: {failure_message(term, summary)}" if term else "")
            + ": find out why it hangs (the evaluator log), or allow more time"
        )
    elif term:
        reason, message = c.failure_reason(term.exit_code), failure_message(term, summary)
    else:
        reason = c.JOB_FAILED
        message = f"{what} failed: {(failed or {}).get('reason', '')} {(failed or {}).get('message', '')}"
    conds[c.RUNNING] = (c.FALSE, c.FAILED, f"{what} failed")
    conds[c.SUCCEEDED] = (c.FALSE, reason, clip(message))
    conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
    fields["progress"] = "failed"


def _stage_completed(obs: Observation, conds: Conds, fields: dict[str, Any]) -> None:
    """A fetch or serve Job completed: the evaluation goes on with the next stage."""
    what = f"{_what(obs)}, released" if obs.group else _what(obs)
    conds[c.RUNNING] = (
        c.TRUE,
        c.STAGE_COMPLETED,
        f"the {obs.stage} stage ({what}) completed; the {obs.next_stage} stage starts",
    )
    conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
    conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")
    fields["attempt"] = 1
    fields["progress"] = f"{obs.stage} done; {obs.next_stage} next"


def _name_the_stage(obs: Observation, conds: Conds, fields: dict[str, Any]) -> None:
    """Every message of a staged evaluation says which stage it is about; a later stage's pod on
    its way keeps the evaluation Running (`StageStarting`)."""
    stage = obs.stage
    status, reason, message = conds[c.RUNNING]
    later = len(obs.stages) > 1
    if reason in (c.JOB_PENDING, c.POD_STARTING) and later:
        conds[c.RUNNING] = (c.TRUE, c.STAGE_STARTING, f"the {stage} stage: {message}")
        fields["progress"] = f"{stage} starting"
        return
    if reason != c.STAGE_COMPLETED and message:
        conds[c.RUNNING] = (status, reason, clip(f"the {stage} stage: {message}"))
    succeeded = conds[c.SUCCEEDED]
    if succeeded[0] == c.FALSE and succeeded[2]:
        conds[c.SUCCEEDED] = (succeeded[0], succeeded[1], clip(f"the {stage} stage: {succeeded[2]}"))
    if fields.get("progress") and reason != c.STAGE_COMPLETED and conds[c.SUCCEEDED][0] == c.UNKNOWN:
        fields["progress"] = f"{stage}: {fields['progress']}"


def _observe(obs: Observation) -> tuple[Conds, dict[str, Any]]:
    """Condition type → (status, reason, message), and the other status fields."""
    conds: Conds = {}
    fields: dict[str, Any] = {}

    if obs.spec_error:
        msg = clip(obs.spec_error)
        conds[c.ACCEPTED] = (c.FALSE, c.INVALID_SPEC, msg)
        conds[c.RUNNING] = (c.FALSE, c.INVALID_SPEC, "no Job is created for an invalid spec")
        conds[c.SUCCEEDED] = (c.FALSE, c.INVALID_SPEC, msg)
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = "rejected: invalid spec"
        return conds, fields

    if obs.refusal and obs.job is None:
        reason, msg = obs.refusal[0], clip(obs.refusal[1])
        conds[c.ACCEPTED] = (c.FALSE, reason, msg)
        conds[c.RUNNING] = (c.FALSE, reason, "no Job is created")
        conds[c.SUCCEEDED] = (c.FALSE, reason, msg)
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = f"rejected: {reason}"
        return conds, fields

    if obs.waiting and obs.job is None:
        reason, msg = obs.waiting[0], clip(obs.waiting[1])
        conds[c.ACCEPTED] = (c.UNKNOWN, reason, msg)
        conds[c.RUNNING] = (c.FALSE, reason, msg)
        conds[c.SUCCEEDED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        conds[c.DEGRADED] = (c.UNKNOWN, c.IN_PROGRESS, "")
        fields["progress"] = "waiting before the Job"
        return conds, fields

    if obs.job_rejected and obs.job is None:
        what = obs.refused or f"Job {obs.job_name}"
        msg = clip(f"the API server refused {what}: {obs.job_rejected}")
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
    first = obs.stages[0].get("startTime") if obs.stages else None  # the evaluation's start
    fields["startTime"] = first or jstatus.get("startTime")
    conds[c.ACCEPTED] = (c.TRUE, c.JOB_CREATED, f"{_what(obs)} created")
    if obs.stage_refusal:
        reason, message = obs.stage_refusal
        conds[c.RUNNING] = (c.FALSE, reason, f"no Job for the {obs.next_stage} stage")
        conds[c.SUCCEEDED] = (c.FALSE, reason, clip(message))
        conds[c.DEGRADED] = (c.UNKNOWN, c.NOT_EVALUATED, "")
        fields["progress"] = "failed"
    elif job_finished(obs.job) and obs.next_stage and job_condition(obs.job, "Complete"):
        _stage_completed(obs, conds, fields)
    elif job_finished(obs.job):
        _finished_job(obs, conds, fields)
    elif obs.group is not None:
        _group_in_progress(obs, conds, fields)
    else:
        _in_progress(obs, conds, fields)
    if obs.stage:
        fields["stage"] = obs.stage
        fields["stages"] = [dict(record) for record in obs.stages]
        _name_the_stage(obs, conds, fields)
        held = [r["gpuSeconds"] for r in obs.stages if r.get("gpuSeconds") is not None]
        if held:  # the serve stage's Job (the one that held GPUs) ended
            fields.setdefault("runtime", {})["gpuSeconds"] = round(sum(held), 3)
    gpu_seconds = (fields.get("runtime") or {}).get("gpuSeconds")  # the Jobs that held GPUs
    fields.update(cost_fields(fields.get("cost"), gpu_seconds, obs.pricing))
    return conds, fields


_NOT_STARTED = (c.JOB_PENDING, c.POD_STARTING)


def _never_backwards(
    old: Mapping[str, Any], conds: Conds, fields: Mapping[str, Any], generation: int
) -> None:
    """Keep Running while the same attempt shows no evidence of stopping: an attempt whose
    evaluator has started does not go back to "waiting for a pod" (e.g. in the gap between the
    pod's exit and the Job's Complete, should the pod be out of sight). A new attempt (Retrying),
    a suspension (Queued) or a pod that cannot run are evidence, and do change the phase."""
    if old.get("phase") != c.PHASE_RUNNING or conds[c.SUCCEEDED][0] != c.UNKNOWN:
        return
    if old.get("observedGeneration") not in (None, generation):
        return  # a new generation's Job: the previous one's attempt is no evidence about it
    status, reason, _ = conds[c.RUNNING]
    if status == c.TRUE or reason not in _NOT_STARTED:
        return
    if (old.get("attempt") or 1) != fields.get("attempt", 1):
        return
    previous = c.find(old.get("conditions"), c.RUNNING)
    if previous and previous.get("status") == c.TRUE:
        conds[c.RUNNING] = (c.TRUE, str(previous.get("reason")), str(previous.get("message") or ""))


def reduce_status(old: Mapping[str, Any] | None, obs: Observation, at: str | None = None) -> dict[str, Any]:
    """The new `status` (camelCase JSON, no nulls) for observation `obs`, given the current one."""
    old = old or {}
    old_conds = {cond.get("type"): cond for cond in old.get("conditions") or []}
    stamp = at or now()
    observed, fields = _observe(obs)
    _never_backwards(old, observed, fields, obs.generation)

    def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        previous = old_conds.get(type_)
        same = (
            previous is not None and previous.get("status") == status and previous.get("lastTransitionTime")
        )
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": previous["lastTransitionTime"] if same else stamp,  # type: ignore[index]
            "observedGeneration": obs.generation,
        }

    conditions = [condition(type_, *observed[type_]) for type_ in c.OBSERVED_TYPES]
    derived = c.kstatus_conditions(
        {"conditions": conditions, "observedGeneration": obs.generation}, obs.generation
    )
    conditions += [condition(type_, *derived[type_]) for type_ in c.KSTATUS_TYPES]
    phase = c.phase_of(conditions)
    deciding = c.deciding(conditions, phase) or {}
    for record in fields.get("stages") or []:
        if record.get("phase") == c.PHASE_RUNNING:  # the current stage's Job, unfinished
            record["phase"] = phase
    overall = (fields.get("scores") or {}).get("overall")
    doc = {
        **fields,
        "phase": phase,
        "reason": deciding.get("reason"),
        "message": deciding.get("message") or None,
        "overallDisplay": overall_display(overall, fields),
        "conditions": conditions,
        "observedGeneration": obs.generation,
    }
    if history := _history(old, obs.generation, stamp):
        doc["history"] = history
    # Validate against the status model (= the CRD schema) and drop nulls.
    out = EvaluationStatus.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_none=True)
    for empty in ("history", "stages"):
        if not out.get(empty):
            out.pop(empty, None)
    return out


def _history(old: Mapping[str, Any], generation: int, stamp: str) -> list[dict[str, Any]]:
    """`status.history`: what each earlier generation came to, newest first. A status describing
    another generation than the one observed now is an edit's predecessor: its outcome (scores,
    stored results, why it ended or that it was stopped) moves there, and the top-level fields
    describe the new generation only, so no score of the old spec reads as the new one's."""
    history = [dict(h) for h in old.get("history") or []]
    previous = old.get("observedGeneration")
    if previous is None or previous == generation or not old.get("phase"):
        return history[:MAX_HISTORY]
    if c.is_finished(old):
        reason, message = old.get("reason"), clip(str(old.get("message") or "")) or None
    else:  # it was still going: the edit stopped it (its Job is deleted)
        reason = c.REPLACED
        was = f"{old.get('phase')} ({old.get('reason')})"
        message = f"stopped while {was}: generation {generation} replaced it"
    entry = {
        "generation": previous,
        "phase": old.get("phase"),
        "reason": reason,
        "message": message,
        "overall": (old.get("scores") or {}).get("overall"),
        "overallDisplay": old.get("overallDisplay"),
        "results": old.get("results"),
        "jobName": old.get("jobName"),
        "completionTime": old.get("completionTime"),
        "replacedAt": stamp,
    }
    return [{k: v for k, v in entry.items() if v is not None}, *history][:MAX_HISTORY]


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` (removed top-level fields become null)."""
    patch: dict[str, Any] = {k: None for k in (old or {}) if k not in new}
    patch.update(new)
    return patch
