"""The reducer tells the truth: phases from the Job, its pods and their container states, never
backwards across the exit → Complete gap; the no-score rule; termination order; Events."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.summary import SUMMARY_MAX_BYTES, BenchmarkSummary, Summary
from nejumi_operator import controller as sync
from nejumi_operator.status import (
    Observation,
    last_termination,
    needs_job_events,
    no_score_problems,
    reduce_status,
    transitions,
)

T0, T1, T2, T3 = (f"2025-01-01T00:{m:02d}:00Z" for m in (0, 10, 20, 30))
FAIL_FAST = {
    "rules": [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "evaluator", "operator": "In", "values": [1, 2]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
}


OWNED_BY_EVALUATION = {
    "apiVersion": "nejumi.wandb.ai/v1alpha1",
    "kind": "NejumiEvaluation",
    "name": "e",
    "uid": "u-1",
}


def job(
    *,
    active: int = 0,
    failed: int = 0,
    succeeded: int = 0,
    done: str | None = None,
    reason: str = "BackoffLimitExceeded",
    message: str = "",
    suspend: bool = False,
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": T0, "active": active, "failed": failed, "succeeded": succeeded}
    conds = list(extra or [])
    if done == "Complete":
        status["completionTime"] = T2
    if done:
        conds.append(
            {"type": done, "status": "True", "reason": reason, "message": message, "lastTransitionTime": T2}
        )
    if conds:
        status["conditions"] = conds
    spec = {"suspend": suspend, "backoffLimit": 2, "podFailurePolicy": FAIL_FAST}
    meta = {
        "name": "e-g1",
        "uid": "job-uid",
        "ownerReferences": [OWNED_BY_EVALUATION],
        "labels": {"nejumi.wandb.ai/evaluation": "e"},
        "annotations": {"nejumi.wandb.ai/generation": "1"},
    }
    return {"metadata": meta, "spec": spec, "status": status}


def pod(
    name: str = "e-g1-aaaaa",
    *,
    created: str = T0,
    state: dict[str, Any] | None = None,
    node: str | None = "gpu-0",
    scheduled: dict[str, Any] | None = None,
    phase: str = "Pending",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if state is not None:
        status["containerStatuses"] = [
            {"name": "evaluator", "image": "ghcr.io/nejumi/evaluator:1", "restartCount": 0, "state": state}
        ]
    if scheduled is not None:
        status["conditions"] = [{"type": "PodScheduled", **scheduled}]
    spec: dict[str, Any] = {"containers": [{"name": "evaluator", "image": "ghcr.io/nejumi/evaluator:1"}]}
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": created,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "e-g1", "uid": "job-uid"}],
        },
        "spec": spec,
        "status": status,
    }


def running(name: str = "e-g1-aaaaa", created: str = T0) -> dict[str, Any]:
    return pod(name, created=created, state={"running": {"startedAt": created}}, phase="Running")


def exited(
    name: str = "e-g1-aaaaa", code: int = 0, *, created: str = T0, at: str = T1, message: str = ""
) -> dict:
    term = {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": created,
        "finishedAt": at,
    }
    if message:
        term["message"] = message
    return pod(
        name, created=created, state={"terminated": term}, phase="Succeeded" if code == 0 else "Failed"
    )


def summary(**kw: Any) -> str:
    base: dict[str, Any] = {
        "status": "completed",
        "model": "m",
        "overall": 0.612345,
        "benchmarks": {
            "jaster": BenchmarkSummary(avg=0.6, categories={"NLI": 0.6}, samples=20),
            "mtbench": BenchmarkSummary(avg=6.2, categories={"coding": 6.2}, samples=160),
        },
    }
    return Summary(**(base | kw)).to_json()


def see(
    j: dict[str, Any] | None, pods: list[dict[str, Any]] = (), events: list[dict[str, Any]] = (), **kw: Any
) -> Observation:  # type: ignore[assignment]
    pods = list(pods)
    return Observation(
        generation=1,
        job_name="e-g1",
        job=j,
        pods=pods,
        job_events=list(events),
        termination=last_termination(pods, j),
        gpus=kw.pop("gpus", 1),
        **kw,
    )


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = c.find(status["conditions"], type_)
    assert found is not None
    return dict(found)


def walk(observations: list[Observation]) -> list[dict[str, Any]]:
    """Reduce a sequence of observations as sync would (each on top of the last status)."""
    out, status = [], {}
    for i, o in enumerate(observations):
        status = reduce_status(status, o, at=f"2025-01-01T01:00:{i:02d}Z")
        out.append(status)
    return out


RANK = {"Queued": 0, "Pending": 1, "Running": 2, "Succeeded": 3, "Failed": 3}


# ---- what is happening --------------------------------------------------------------------------


def test_a_pod_waiting_for_a_gpu_is_pending_with_the_schedulers_reason() -> None:
    why = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available."
    waiting = pod(node=None, scheduled={"status": "False", "reason": "Unschedulable", "message": why})
    st = reduce_status({}, see(job(active=1), [waiting], gpus=16), at=T0)  # active counts pending pods
    assert st["phase"] == "Pending" and st["reason"] == "Unschedulable"
    running_cond = cond(st, "Running")
    assert running_cond["status"] == "False" and "Insufficient nvidia.com/gpu" in running_cond["message"]
    assert "16 nvidia.com/gpu" in st["message"] and "spec.resources.gpus" in st["message"]


def test_a_missing_secret_is_pending_naming_the_secret() -> None:
    state = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "judge-key" not found'}}
    st = reduce_status({}, see(job(active=1), [pod(state=state)]), at=T0)
    assert (st["phase"], st["reason"]) == ("Pending", "CreateContainerConfigError")
    assert 'secret "judge-key" not found' in st["message"]
    assert "create Secret judge-key in namespace ns" in st["message"]
    key = {
        "waiting": {"reason": "CreateContainerConfigError", "message": "couldn't find key k in Secret ns/s"}
    }
    st = reduce_status({}, see(job(active=1), [pod(state=key)]), at=T0)
    assert "add key k to Secret s" in st["message"]


@pytest.mark.parametrize("kubelet", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_image_pull_errors_are_pending_with_the_image(kubelet: str) -> None:
    state = {"waiting": {"reason": kubelet, "message": "manifest unknown"}}
    st = reduce_status({}, see(job(active=1), [pod(state=state)]), at=T0)
    assert (st["phase"], st["reason"]) == ("Pending", "ImagePullError")
    assert "ghcr.io/nejumi/evaluator:1" in st["message"] and kubelet in st["message"]


def test_a_missing_pvc_is_pending_naming_it() -> None:
    why = '0/1 nodes are available: persistentvolumeclaim "ws" not found.'
    waiting = pod(node=None, scheduled={"status": "False", "reason": "Unschedulable", "message": why})
    st = reduce_status({}, see(job(active=1), [waiting]), at=T0)
    assert st["reason"] == "Unschedulable" and "create PersistentVolumeClaim ws" in st["message"]


def test_pod_creation_forbidden_is_read_from_the_jobs_events() -> None:
    forbidden = (
        'Error creating: pods "e-g1-x" is forbidden: violates PodSecurity "restricted:latest": '
        "allowPrivilegeEscalation != false"
    )
    events = [
        {"reason": "FailedCreate", "type": "Warning", "message": "old", "lastTimestamp": T0},
        {"reason": "FailedCreate", "type": "Warning", "message": forbidden, "lastTimestamp": T1},
    ]
    assert needs_job_events(job(), []) and not needs_job_events(job(), [running()])
    assert not needs_job_events(job(suspend=True), []) and not needs_job_events(job(done="Failed"), [])
    st = reduce_status({}, see(job(), [], events), at=T1)
    assert (st["phase"], st["reason"]) == ("Pending", "PodCreationFailed")
    assert forbidden in st["message"] and "PodSecurity level forbids" in st["message"]
    quota = [
        {"reason": "FailedCreate", "message": "exceeded quota: q, requested: pods=1", "lastTimestamp": T1}
    ]
    assert "ResourceQuota" in reduce_status({}, see(job(), [], quota), at=T1)["message"]


def test_queued_running_and_starting() -> None:
    queued = reduce_status({}, see(job(suspend=True), [], queue_name="gpu-q"), at=T0)
    assert (queued["phase"], queued["reason"]) == ("Queued", "Suspended")
    assert "LocalQueue gpu-q" in queued["message"]
    suspended = reduce_status({}, see(job(suspend=True)), at=T0)
    assert suspended["phase"] == "Queued" and "spec.suspend" in suspended["message"]
    creating = reduce_status(
        {}, see(job(active=1), [pod(state={"waiting": {"reason": "ContainerCreating"}})]), at=T0
    )
    assert (creating["phase"], creating["reason"]) == ("Pending", "PodStarting")
    assert "starting on node gpu-0" in creating["message"]
    unbound = reduce_status({}, see(job(active=1), [pod(node=None)]), at=T0)
    assert unbound["reason"] == "PodStarting" and "waiting to be scheduled" in unbound["message"]
    run = reduce_status({}, see(job(active=1), [running()]), at=T0)
    assert (run["phase"], run["reason"]) == ("Running", "JobRunning") and "e-g1-aaaaa" in run["message"]
    assert run["attempt"] == 1 and run["progress"] == "evaluating"
    nothing = reduce_status({}, see(job()), at=T0)
    assert (nothing["phase"], nothing["reason"]) == ("Pending", "JobPending")


# ---- never backwards ----------------------------------------------------------------------------


def test_the_exit_to_complete_gap_never_goes_back_to_pending() -> None:
    """Pod exits 0 → the Job is active=0 without Complete for a moment → Complete."""
    done = exited(message=summary())
    statuses = walk(
        [
            see(job(active=1), [pod(state={"waiting": {"reason": "ContainerCreating"}})]),
            see(job(active=1), [running()]),
            see(job(active=1), [done]),  # the Job controller has not seen the exit yet
            see(job(active=0, extra=[{"type": "SuccessCriteriaMet", "status": "True"}]), [done]),
            see(job(active=0), []),  # pods out of sight (e.g. a listing gap): still not backwards
            see(job(active=0, succeeded=1, done="Complete", reason="Completed"), [done]),
        ]
    )
    phases = [s["phase"] for s in statuses]
    assert phases == ["Pending", "Running", "Running", "Running", "Running", "Succeeded"]
    assert [s["reason"] for s in statuses[2:4]] == ["Finishing", "Finishing"]
    assert all(RANK[a] <= RANK[b] for a, b in itertools.pairwise(phases))
    assert statuses[-1]["reason"] == "EvaluationCompleted"


def test_a_failing_attempt_that_ends_the_job_stays_running_until_failed() -> None:
    bad_config = exited(code=2, message='{"status":"failed","model":"m","error":"spec: unknown model"}')
    statuses = walk(
        [
            see(job(active=1), [running()]),
            see(job(active=1), [bad_config]),  # FailJob rule for exit 2: no retry is coming
            see(job(done="Failed", reason="PodFailurePolicy", failed=1), [bad_config]),
        ]
    )
    assert [s["phase"] for s in statuses] == ["Running", "Running", "Failed"]
    assert statuses[1]["reason"] == "Finishing" and "spec: unknown model" in statuses[1]["message"]
    assert statuses[2]["reason"] == "InvalidSpec"
    exhausted = [
        exited("p1", 3, at=T0),
        exited("p2", 3, created=T1, at=T1),
        exited("p3", 3, created=T2, at=T2),
    ]
    last = reduce_status(statuses[0], see(job(active=1, failed=2), exhausted), at=T3)
    assert (last["phase"], last["reason"]) == ("Running", "Finishing")  # failures 3 > backoffLimit 2


def test_a_retry_is_pending_with_a_clean_sentence_then_running_again() -> None:
    tail = "Traceback (most recent call last):\njaster:  42%|████▏     | 8/19 [00:03<00:04,  2.6it/s]\r"
    tail += "RuntimeError: the model server died\njaster:  42%|████▏     | 8/19 [00:04<00:05,  2.1it/s]"
    tail += "\nprogress: jaster 8/19 · mtbench 0/16"
    first = exited("e-g1-first", 3, at=T1, message=tail)
    second = running("e-g1-second", created=T2)
    statuses = walk(
        [
            see(job(active=1), [running("e-g1-first")]),
            see(job(active=1), [first]),
            see(job(active=1, failed=1), [first]),
            see(job(active=1, failed=1), [first, pod("e-g1-second", created=T2, state={})]),
            see(job(active=1, failed=1), [first, second]),
        ]
    )
    assert [s["phase"] for s in statuses] == ["Running", "Pending", "Pending", "Pending", "Running"]
    retry = statuses[1]
    assert retry["reason"] == "Retrying" and retry["attempt"] == 2
    assert "the model server died" in retry["message"] and "it/s" not in retry["message"]
    assert "progress:" not in retry["message"]
    assert "attempt 1 of 3" in retry["message"] and "starts attempt 2" in retry["message"]
    assert statuses[3]["reason"] == "PodStarting" and "attempt 2 of 3" in statuses[3]["message"]
    assert "e-g1-second" in statuses[4]["message"] and statuses[4]["attempt"] == 2
    # Events: started, retrying (once, when the attempt changed), started again.
    posted = [
        t.reason for old, new in zip([{}, *statuses], statuses, strict=False) for t in transitions(old, new)
    ]
    assert posted == ["JobCreated", "Started", "Retrying", "Started"]


def test_a_disrupted_pod_is_retried_and_a_replacement_that_cannot_be_created_says_why() -> None:
    evicted = exited("e-g1-x", 137, at=T1)
    evicted["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True"}]
    st = reduce_status({}, see(job(active=0, failed=0), [evicted]), at=T1)
    assert st["reason"] == "Retrying"
    late = [{"reason": "FailedCreate", "message": "exceeded quota: q", "lastTimestamp": T2}]
    stale = [{"reason": "FailedCreate", "message": "exceeded quota: q", "lastTimestamp": T0}]
    assert reduce_status({}, see(job(), [evicted], late), at=T2)["reason"] == "PodCreationFailed"
    assert reduce_status({}, see(job(), [evicted], stale), at=T2)["reason"] == "Retrying"


def test_deadline_exceeded_is_its_own_reason() -> None:
    killed = exited(code=137, at=T2)
    j = job(done="Failed", reason="DeadlineExceeded", message="Job was active longer than specified deadline")
    j["spec"]["activeDeadlineSeconds"] = 3600
    st = reduce_status({}, see(j, [killed]), at=T3)
    assert (st["phase"], st["reason"]) == ("Failed", "DeadlineExceeded") and "(3600 s)" in st["message"]


def test_a_rejected_job_is_final() -> None:
    st = reduce_status({}, see(None, job_rejected='Job.batch "e-g1" is invalid: spec.template…'), at=T0)
    assert (st["phase"], st["reason"]) == ("Failed", "JobRejected")
    assert cond(st, "Accepted")["status"] == "False" and "is invalid" in st["message"]
    assert [t.reason for t in transitions({}, st)] == ["Rejected"]


# ---- no score is no success ---------------------------------------------------------------------


def mtbench(samples: int, invalid: int, **kw: Any) -> BenchmarkSummary:
    base: dict[str, Any] = {
        "avg": 6.0,
        "categories": {"coding": 6.0, "math": 5.0},
        "samples": samples,
        "invalid": invalid,
        "degraded": invalid / samples > 0.02 if samples else False,
    }
    return BenchmarkSummary(**(base | kw))


def finished(bench: BenchmarkSummary, **kw: Any) -> dict[str, Any]:
    text = summary(benchmarks={"jaster": BenchmarkSummary(avg=0.6, samples=20), "mtbench": bench}, **kw)
    return reduce_status({}, see(job(done="Complete", reason="Completed"), [exited(message=text)]), at=T3)


def test_few_invalid_judgments_succeed_clean_above_two_percent_degraded() -> None:
    clean = finished(mtbench(160, 3))  # 1.9%: within the protocol's 2%
    assert (clean["phase"], clean["reason"]) == ("Succeeded", "EvaluationCompleted")
    assert cond(clean, "Degraded")["status"] == "False"
    some = finished(mtbench(160, 4), degraded=True)  # 2.5% > 2%: degraded, still a score
    assert some["phase"] == "Succeeded" and cond(some, "Succeeded")["status"] == "True"
    assert (cond(some, "Degraded")["status"], some["reason"]) == ("True", "InvalidJudgments")
    assert "mtbench: 0 failed requests, 4 of 160 unscorable" in some["message"]
    assert some["overallDisplay"] == "0.6123 (degraded)"


def test_every_judgment_invalid_is_no_score() -> None:
    nothing = mtbench(160, 160, avg=None, categories=dict.fromkeys(["coding", "math"]), degraded=True)
    st = finished(nothing, overall=None, degraded=True)
    assert (st["phase"], st["reason"]) == ("Failed", "NoScore")
    assert cond(st, "Succeeded")["status"] == "False"
    assert "mtbench has no score: all 160 scored units were invalid" in st["message"]
    assert "judge" in st["message"]
    assert st["scores"]["benchmarks"]["jaster"]["avg"] == 0.6  # what was scored is still reported
    assert cond(st, "Degraded")["status"] == "True"
    was_running = reduce_status({}, see(job(active=1), [running()]), at=T0)
    assert [(t.type, t.reason) for t in transitions(was_running, st)] == [("Warning", "Failed")]
    assert transitions(was_running, st)[0].message.startswith("NoScore: mtbench has no score")


def test_a_category_without_a_valid_judgment_is_no_score_unless_capped() -> None:
    hole = {"coding": 6.0, "math": None}
    uncapped = finished(mtbench(160, 20, avg=None, categories=hole, degraded=True), overall=None)
    assert uncapped["reason"] == "NoScore" and "left a category without a valid one" in uncapped["message"]
    capped = finished(mtbench(4, 1, avg=None, categories=hole, capped=True, degraded=True), overall=None)
    assert capped["phase"] == "Succeeded"  # a smoke test may lack categories by design


def test_not_judged_by_design_is_not_a_failure() -> None:
    no_judge = BenchmarkSummary(scored=False)  # answers generated, no judge configured
    st = finished(no_judge, overall=None)
    assert st["phase"] == "Succeeded" and "mtbench: not scored (no judge configured)" in st["message"]
    assert "mtbench" not in st["scores"]["benchmarks"]
    assert no_score_problems(Summary(status="completed", model="m", benchmarks={"b": no_judge})) == []


def test_a_jaster_subset_with_a_null_average_still_succeeds() -> None:
    subset = BenchmarkSummary(avg=None, categories={"NLI": None}, scores={"jamp_exact_match": 0.5}, samples=2)
    text = summary(benchmarks={"jaster": subset}, overall=None)
    st = reduce_status({}, see(job(done="Complete"), [exited(message=text)]), at=T3)
    assert st["phase"] == "Succeeded" and "overallDisplay" not in st
    empty = BenchmarkSummary(avg=None, samples=0)
    assert no_score_problems(Summary(status="completed", model="m", benchmarks={"x": empty})) == [
        "x has no score: it reported no number"
    ]


def test_a_shortened_summary_is_read_and_flagged() -> None:
    datasets = {f"dataset_{i:03d}_exact_match": 0.5 for i in range(400)}
    big = Summary(
        status="completed",
        model="m",
        overall=0.5,
        benchmarks={"jaster": BenchmarkSummary(avg=0.5, scores=datasets, samples=400)},
        results_dir="/workspace/results/m-1",
    ).to_json()
    assert len(big.encode()) <= SUMMARY_MAX_BYTES
    st = reduce_status({}, see(job(done="Complete"), [exited(message=big)]), at=T3)
    assert st["phase"] == "Succeeded" and st["summaryTruncated"] is True
    assert "full results in /workspace/results/m-1" in st["message"]
    assert st["overallDisplay"] == "0.5000"


# ---- which termination ---------------------------------------------------------------------------


def test_latest_termination_is_decided_by_attempt_order_not_finished_at() -> None:
    # Both exits carry the same one-second finishedAt: the later attempt (created later) wins.
    a = exited("e-g1-zzzzz", 3, created=T0, at=T2, message="first")
    b = exited("e-g1-aaaaa", 3, created=T1, at=T2, message="second")
    assert last_termination([b, a]).message == "second"  # type: ignore[union-attr]
    assert last_termination([a, b]).message == "second"  # type: ignore[union-attr]
    # A Complete Job: the attempt that exited 0, whatever the order of the others.
    ok = exited("e-g1-ok", 0, created=T0, at=T1, message="ok")
    later_failure = exited("e-g1-later", 3, created=T1, at=T1, message="later")
    complete = job(done="Complete")
    assert last_termination([later_failure, ok], complete).message == "ok"  # type: ignore[union-attr]
    # A Job failed by its podFailurePolicy names the pod.
    named = job(done="Failed", message="Container evaluator for pod ns/e-g1-zzzzz failed with exit code 2")
    assert last_termination([a, b], named).pod == "e-g1-zzzzz"  # type: ignore[union-attr]
    # A container restart inside one pod: the current state is later than lastState.
    restarted = exited("e-g1-r", 3, at=T1, message="now")
    restarted["status"]["containerStatuses"][0]["restartCount"] = 1
    restarted["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 3, "finishedAt": T2, "message": "before"}
    }
    assert last_termination([restarted]).message == "now"  # type: ignore[union-attr]


def test_the_live_pod_is_current_even_within_the_same_creation_second() -> None:
    gone = exited("e-g1-zzzzz", 3, created=T1, at=T1)
    new = running("e-g1-aaaaa", created=T1)
    st = reduce_status({}, see(job(active=1, failed=1), [gone, new]), at=T2)
    assert st["phase"] == "Running" and "e-g1-aaaaa" in st["message"]


# ---- events and the writer ----------------------------------------------------------------------


def test_transitions_name_each_step() -> None:
    why = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    waiting = pod(node=None, scheduled={"status": "False", "reason": "Unschedulable", "message": why})
    statuses = walk(
        [
            see(job(suspend=True), [], queue_name="q"),
            see(job(active=1), [waiting]),
            see(job(active=1), [waiting]),  # unchanged: no second Event
            see(job(active=1), [running()]),
            see(job(done="Complete"), [exited(message=summary())]),
        ]
    )
    posted = [
        (t.type, t.reason)
        for old, new in zip([{}, *statuses], statuses, strict=False)
        for t in transitions(old, new)
    ]
    assert posted == [
        ("Normal", "JobCreated"),
        ("Normal", "Queued"),
        ("Warning", "Unschedulable"),
        ("Normal", "Started"),
        ("Normal", "Succeeded"),
    ]
    assert "Overall 0.6123" in transitions(statuses[3], statuses[4])[0].message


def test_sync_writes_then_posts_events_naming_the_resource(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    evaluation: dict[str, Any] = {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": "e", "namespace": "ns", "uid": "u-1", "generation": 1, "resourceVersion": "7"},
        "spec": {"model": {"name": "m"}, "resources": {"gpus": 16}},
        "status": {},
    }
    why = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    waiting = pod(node=None, scheduled={"status": "False", "reason": "Unschedulable", "message": why})
    posted: list[dict[str, Any]] = []
    patches: list[dict[str, Any]] = []
    monkeypatch.setattr(sync.calls, "read_evaluation", lambda api, ns, name: evaluation)
    monkeypatch.setattr(sync.calls, "labelled_jobs", lambda api, ns, selector: [job(active=1)])
    monkeypatch.setattr(sync.calls, "job_pods", lambda api, ns, name: [waiting])
    monkeypatch.setattr(sync.calls, "job_events", lambda *a: pytest.fail("a pod is live: no event listing"))
    monkeypatch.setattr(sync.calls, "patch_status", lambda api, ns, name, st, rv: patches.append(st))
    monkeypatch.setattr(sync.calls, "create_event", lambda api, ns, body: posted.append(body) or True)
    with caplog.at_level("INFO", logger="nejumi_operator.controller"):
        new = sync.sync_status(object(), "ns", "e")  # type: ignore[arg-type]
    assert new is not None and new["reason"] == "Unschedulable" and patches
    assert [(e["type"], e["reason"]) for e in posted] == [
        ("Normal", "JobCreated"),
        ("Warning", "Unschedulable"),
    ]
    event = posted[1]
    assert event["involvedObject"] == {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "name": "e",
        "namespace": "ns",
        "uid": "u-1",
    }
    assert "Insufficient nvidia.com/gpu" in event["message"] and event["source"] == {
        "component": "nejumi-operator"
    }
    assert any(r.getMessage().startswith("ns/e: new → Pending (Unschedulable") for r in caplog.records)


def _listed_evaluation() -> dict[str, Any]:
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": "e", "namespace": "ns", "uid": "u-1", "generation": 1, "resourceVersion": "7"},
        "spec": {"model": {"name": "m"}, "resources": {"gpus": 16}, "queueName": "gpu"},
        "status": {},
    }


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    for call in (
        "read_evaluation",
        "labelled_jobs",
        "labelled_pods",
        "job_pods",
        "job_workload",
        "job_workloads",
    ):
        monkeypatch.setattr(sync.calls, call, lambda *a, call=call: pytest.fail(f"{call}: it was listed"))


def test_a_sync_from_a_resync_listing_says_what_a_sync_that_reads_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same Job and pods, read by the sync or listed by a round (among a namesake's Job and
    another Job's pod, which never count): the same status; from the listing, no read at all."""
    why = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    waiting = pod(node=None, scheduled={"status": "False", "reason": "Unschedulable", "message": why})
    waiting["metadata"]["labels"] = {"batch.kubernetes.io/job-name": "e-g1"}
    stranger_job = {**job(active=1), "metadata": {**job()["metadata"], "ownerReferences": [], "uid": "x"}}
    stranger_pod = pod(name="x-1", state={"running": {"startedAt": T1}}, phase="Running")
    stranger_pod["metadata"]["labels"] = {"batch.kubernetes.io/job-name": "e-g0"}
    patches: list[dict[str, Any]] = []
    monkeypatch.setattr(sync.calls, "patch_status", lambda api, ns, name, st, rv: patches.append(st))
    monkeypatch.setattr(sync.calls, "create_event", lambda api, ns, body: True)
    monkeypatch.setattr(sync.calls, "job_events", lambda *a: pytest.fail("a pod is live: no event listing"))

    monkeypatch.setattr(sync.calls, "read_evaluation", lambda api, ns, name: _listed_evaluation())
    monkeypatch.setattr(sync.calls, "labelled_jobs", lambda api, ns, selector: [stranger_job, job(active=1)])
    monkeypatch.setattr(sync.calls, "job_pods", lambda api, ns, name: [waiting])
    read = sync.sync_status(object(), "ns", "e")  # type: ignore[arg-type]

    _no_reads(monkeypatch)
    listing = sync.Listing(jobs=(stranger_job, job(active=1)), pods=(stranger_pod, waiting))
    listed = sync.sync_status(object(), "ns", "e", evaluation=_listed_evaluation(), listing=listing)  # type: ignore[arg-type]
    assert read is not None and read["reason"] == "Unschedulable" and listed == read
    assert patches[0] == patches[1]

    # nothing changed since: no request at all
    unchanged = {**_listed_evaluation(), "status": listed}
    assert sync.sync_status(object(), "ns", "e", evaluation=unchanged, listing=listing) == listed  # type: ignore[arg-type]
    assert len(patches) == 2


def test_a_queued_jobs_workload_comes_with_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    queued = job(suspend=True)
    queued["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "gpu"
    workload = {
        "metadata": {"name": "job-e-g1", "labels": {"kueue.x-k8s.io/job-uid": "job-uid"}},
        "status": {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "False",
                    "reason": "Pending",
                    "message": "couldn't assign flavors",
                }
            ]
        },
    }
    monkeypatch.setattr(sync.calls, "patch_status", lambda *a: None)
    monkeypatch.setattr(sync.calls, "create_event", lambda api, ns, body: True)
    monkeypatch.setattr(sync.calls, "job_events", lambda *a: [])
    _no_reads(monkeypatch)
    listing = sync.Listing(jobs=(queued,), workloads={"job-uid": workload})
    new = sync.sync_status(object(), "ns", "e", evaluation=_listed_evaluation(), listing=listing)  # type: ignore[arg-type]
    assert new is not None and new["phase"] == "Queued" and "couldn't assign flavors" in new["message"]


def test_a_stale_listing_is_read_again_with_the_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The write from a stale evaluation is refused (409): the next attempt reads everything."""
    attempts: list[str] = []

    def patch(api: Any, ns: str, name: str, status: Any, rv: str) -> None:
        attempts.append(rv)
        if rv == "7":
            raise sync.calls.Conflict("stale")

    monkeypatch.setattr(sync.calls, "patch_status", patch)
    monkeypatch.setattr(sync.calls, "create_event", lambda api, ns, body: True)
    fresh = {**_listed_evaluation(), "metadata": {**_listed_evaluation()["metadata"], "resourceVersion": "8"}}
    monkeypatch.setattr(sync.calls, "read_evaluation", lambda api, ns, name: fresh)
    monkeypatch.setattr(
        sync.calls, "labelled_jobs", lambda api, ns, selector: [job(done="Complete", succeeded=1)]
    )
    monkeypatch.setattr(sync.calls, "job_pods", lambda api, ns, name: [])
    monkeypatch.setattr(sync.calls, "job_events", lambda *a: [])
    stale = sync.Listing(jobs=(job(active=1),), pods=(pod(),))
    new = sync.sync_status(object(), "ns", "e", evaluation=_listed_evaluation(), listing=stale)  # type: ignore[arg-type]
    assert attempts == ["7", "8"] and new is not None and new["phase"] != "Pending"


def test_list_children_lists_a_batch_in_three_calls_and_sorts_what_it_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    selectors: list[tuple[str, str]] = []
    queued = job(suspend=True)
    other = {
        **job(active=1),
        "metadata": {
            **job()["metadata"],
            "name": "f-g1",
            "uid": "f-job",
            "labels": {"nejumi.wandb.ai/evaluation": "f"},
        },
    }
    stray = {**job(), "metadata": {**job()["metadata"], "labels": {"nejumi.wandb.ai/evaluation": "zzz"}}}
    running = pod(name="f-g1-x")
    running["metadata"]["labels"] = {"nejumi.wandb.ai/evaluation": "f"}

    def jobs(api: Any, ns: str, selector: str) -> list[dict[str, Any]]:
        selectors.append(("jobs", selector))
        return [queued, other, stray]

    def pods(api: Any, ns: str, selector: str) -> list[dict[str, Any]]:
        selectors.append(("pods", selector))
        return [running]

    def workloads(api: Any, ns: str, uids: Any) -> dict[str, Any]:
        selectors.append(("workloads", ",".join(uids)))
        return {"job-uid": {"kind": "Workload"}}

    monkeypatch.setattr(sync.calls, "labelled_jobs", jobs)
    monkeypatch.setattr(sync.calls, "labelled_pods", pods)
    monkeypatch.setattr(sync.calls, "job_workloads", workloads)
    listed = sync.list_children(object(), "ns", ["e", "f", "g"])  # type: ignore[arg-type]
    assert selectors == [
        ("jobs", "nejumi.wandb.ai/evaluation in (e,f,g)"),
        ("pods", "nejumi.wandb.ai/evaluation in (e,f,g)"),
        ("workloads", "job-uid"),  # the suspended Job's only
    ]
    assert listed == {
        "e": sync.Listing(jobs=(queued,), workloads={"job-uid": {"kind": "Workload"}}),
        "f": sync.Listing(jobs=(other,), pods=(running,)),
        "g": sync.Listing(),
    }


@pytest.mark.parametrize("status_changed", [False, True])
def test_a_write_refused_for_another_change_observes_again_only_if_the_status_changed(
    monkeypatch: pytest.MonkeyPatch, status_changed: bool
) -> None:
    """kopf's own annotation patch makes the evaluation newer without a new status: the children
    observed a moment ago still hold, so only the evaluation is read again. Another writer's
    status may come from newer observations: then everything is read again."""
    lists: list[str] = []
    versions = iter(["7", "8"])

    def read(api: Any, ns: str, name: str) -> dict[str, Any]:
        evaluation = _listed_evaluation()
        evaluation["metadata"]["resourceVersion"] = next(versions)
        if status_changed and evaluation["metadata"]["resourceVersion"] == "8":
            evaluation["status"] = {"phase": "Pending", "reason": "JobCreated"}
        return evaluation

    def patch(api: Any, ns: str, name: str, status: Any, rv: str) -> None:
        if rv == "7":
            raise sync.calls.Conflict("stale")

    def jobs(api: Any, ns: str, selector: str) -> list[dict[str, Any]]:
        lists.append("jobs")
        return [job(active=1)]

    monkeypatch.setattr(sync.calls, "read_evaluation", read)
    monkeypatch.setattr(sync.calls, "patch_status", patch)
    monkeypatch.setattr(sync.calls, "create_event", lambda api, ns, body: True)
    monkeypatch.setattr(sync.calls, "labelled_jobs", jobs)
    monkeypatch.setattr(
        sync.calls, "job_pods", lambda api, ns, name: [pod(state={"running": {"startedAt": T1}})]
    )
    monkeypatch.setattr(sync.calls, "read_configmap", lambda api, ns, name: None)  # no progress yet
    new = sync.sync_status(object(), "ns", "e")  # type: ignore[arg-type]
    assert new is not None and new["phase"] == "Running"
    assert lists == (["jobs", "jobs"] if status_changed else ["jobs"])


def test_an_events_message_fits_the_api_servers_byte_limit_keeping_its_end() -> None:
    """The API server refuses an Event whose message is over 1024 bytes (a status condition counts
    characters): a long message with Japanese in it, or the status's own clip mark, is cut by bytes."""
    from nejumi_operator.controller import event_body
    from nejumi_operator.status import Transition
    from nejumi_operator.status.text import clip

    evaluation = {"metadata": {"name": "e", "namespace": "ns", "uid": "u"}}
    for text in ("回答" * 700 + " the cause", clip("x" * 2000 + " the cause"), "short"):
        body = event_body(evaluation, Transition("Warning", "Failed", text))
        assert len(body["message"].encode("utf-8")) <= 1024
        assert body["message"].endswith("the cause" if "cause" in text else "short")
