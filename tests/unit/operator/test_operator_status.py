"""The pure observations → status reducer."""

from __future__ import annotations

import json
from typing import Any

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, StoredResults, Summary, Usage
from nejumi_operator.status import (
    Observation,
    Termination,
    last_termination,
    reduce_status,
    status_patch,
    transitions,
)

T0, T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:10:00Z", "2025-01-01T00:20:00Z"


def job(
    *, active: int = 0, failed: int = 0, done: str | None = None, suspend: bool = False
) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": T0, "active": active, "failed": failed}
    if done == "Complete":
        status["completionTime"] = T1
    if done:
        status["conditions"] = [
            {"type": done, "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": T1}
        ]
    return {"metadata": {"name": "e-g1"}, "spec": {"suspend": suspend}, "status": status}


def summary(**kw: Any) -> str:
    base: dict[str, Any] = {
        "status": "completed",
        "model": "m",
        "overall": 0.55,
        "benchmarks": {
            "jaster": BenchmarkSummary(
                avg=0.6, categories={"NLI": 0.5, "QA": 0.7}, scores={"jamp": 0.5}, samples=2, capped=True
            ),
            "mtbench": BenchmarkSummary(
                scored=True, avg=5.0, categories={"coding": 5.0}, samples=16, invalid=1
            ),
        },
        "usage": Usage(prompt_tokens=10, completion_tokens=5, judge_tokens=7, requests_sent=3),
        "runtime_seconds": {"generate": 1.5, "serve_start": 0.5, "total": 3.0},
        "results_dir": "/workspace/results/m-1",
        "wandb_run_path": "ent/proj/abc123",
    }
    return Summary(**(base | kw)).to_json()


RUNNING_POD: dict[str, Any] = {  # the evaluator container has started: the only proof of Running
    "metadata": {"name": "e-g1-abcde", "creationTimestamp": T0},
    "spec": {"nodeName": "n"},
    "status": {"containerStatuses": [{"name": "evaluator", "state": {"running": {"startedAt": T0}}}]},
}


def obs(**kw: Any) -> Observation:
    return Observation(**({"generation": 1, "job_name": "e-g1", "gpus": 2} | kw))


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = c.find(status["conditions"], type_)
    assert found is not None, type_
    return dict(found)


def test_success_summary_gives_scores_and_succeeded() -> None:
    term = Termination(exit_code=0, message=summary(), reason="Completed", finished_at=T1)
    st = reduce_status({}, obs(job=job(done="Complete"), termination=term), at=T2)
    assert st["phase"] == "Succeeded" and st["observedGeneration"] == 1
    assert [x["type"] for x in st["conditions"]] == [
        "Accepted",
        "Running",
        "Succeeded",
        "Degraded",
        "Ready",
        "Reconciling",
        "Stalled",
    ]
    assert cond(st, "Succeeded") | {"message": ""} == {
        "type": "Succeeded",
        "status": "True",
        "reason": "EvaluationCompleted",
        "message": "",
        "lastTransitionTime": T2,
        "observedGeneration": 1,
    }
    assert cond(st, "Degraded")["status"] == "False"
    assert st["scores"] == {
        "overall": 0.55,
        "benchmarks": {
            "jaster": {"avg": 0.6, "categories": {"NLI": 0.5, "QA": 0.7}},
            "mtbench": {"avg": 5.0, "categories": {"coding": 5.0}},
        },
    }
    assert st["failures"] == {"generation": 0, "judge": 1, "truncatedAnswers": 0}
    assert st["usage"]["judgeTokens"] == 7 and st["usage"]["requestsSent"] == 3
    assert st["runtime"] == {
        "generateSeconds": 1.5,
        "serveStartSeconds": 0.5,
        "totalSeconds": 3.0,
        "gpuSeconds": 1200.0,  # 10 minutes × 2 GPUs
    }
    assert st["capped"] is True and st["degraded"] is False
    assert st["wandbRunUrl"] == "https://wandb.ai/ent/proj/runs/abc123"
    assert (st["jobName"], st["startTime"], st["completionTime"]) == ("e-g1", T0, T1)


def test_exit_3_is_an_infrastructure_failure_with_the_summary_error() -> None:
    failed = Summary(status="failed", model="m", error="endpoint http://x/v1 unreachable").to_json()
    term = Termination(exit_code=3, message=failed, reason="Error", finished_at=T1)
    st = reduce_status({}, obs(job=job(done="Failed", failed=3), termination=term), at=T2)
    succeeded = cond(st, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "InfrastructureFailure")
    assert succeeded["message"] == "endpoint http://x/v1 unreachable"
    assert st["phase"] == "Failed"
    assert cond(st, "Running")["status"] == "False"
    assert "scores" not in st


def test_exit_codes_map_to_reasons() -> None:
    for code, reason in [
        (2, "InvalidSpec"),
        (3, "InfrastructureFailure"),
        (1, "EvaluatorError"),
        (137, "EvaluatorError"),
    ]:
        term = Termination(exit_code=code, message="Traceback ...\nKeyError: 'x'", finished_at=T1)
        st = reduce_status({}, obs(job=job(done="Failed"), termination=term), at=T2)
        assert cond(st, "Succeeded")["reason"] == reason, code
        assert "KeyError" in cond(st, "Succeeded")["message"]  # a log tail (FallbackToLogsOnError)


def test_failed_job_without_a_pod_says_why() -> None:
    st = reduce_status({}, obs(job=job(done="Failed")), at=T2)
    assert cond(st, "Succeeded")["reason"] == "JobFailed"
    assert "BackoffLimitExceeded" in cond(st, "Succeeded")["message"]


def test_answers_cut_to_the_size_cap_are_counted_in_status() -> None:
    cut = json.loads(summary())
    cut["truncatedAnswers"] = 4
    term = Termination(exit_code=0, message=json.dumps(cut), reason="Completed", finished_at=T1)
    st = reduce_status({}, obs(job=job(done="Complete"), termination=term), at=T2)
    assert st["failures"]["truncatedAnswers"] == 4 and st["phase"] == "Succeeded"


def test_degraded_summary_sets_degraded() -> None:
    jaster = BenchmarkSummary(avg=0.4, categories={}, scores={}, samples=2, failures=3, degraded=True)
    term = Termination(
        exit_code=0, message=summary(degraded=True, benchmarks={"jaster": jaster}), finished_at=T1
    )
    st = reduce_status({}, obs(job=job(done="Complete"), termination=term), at=T2)
    degraded = cond(st, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RequestFailures")
    assert "jaster: 3 failed requests" in degraded["message"]
    assert cond(st, "Succeeded")["status"] == "True"
    assert st["degraded"] is True and st["failures"]["generation"] == 3


def test_in_progress_states() -> None:
    running = reduce_status({}, obs(job=job(active=1), pods=[RUNNING_POD]), at=T0)
    assert running["phase"] == "Running"
    assert cond(running, "Accepted")["reason"] == "JobCreated"
    assert cond(running, "Running")["status"] == "True"
    assert cond(running, "Succeeded")["status"] == "Unknown"
    pending = reduce_status({}, obs(job=job()), at=T0)
    assert pending["phase"] == "Pending" and cond(pending, "Running")["reason"] == "JobPending"
    queued = reduce_status({}, obs(job=job(suspend=True), queue_name="q"), at=T0)
    assert (
        cond(queued, "Running")["reason"] == "Suspended"
        and "LocalQueue q" in cond(queued, "Running")["message"]
    )
    retry = Termination(
        exit_code=3, message='{"status":"failed","model":"m","error":"server died"}', finished_at=T0
    )
    again = reduce_status({}, obs(job=job(active=1, failed=1), termination=retry), at=T0)
    assert (
        "attempt 2" in cond(again, "Running")["message"]
        and "server died" in cond(again, "Running")["message"]
    )


def test_invalid_spec() -> None:
    st = reduce_status({}, obs(spec_error="spec: model.endpoint is required"), at=T0)
    assert cond(st, "Accepted")["reason"] == "InvalidSpec"
    assert (cond(st, "Succeeded")["status"], cond(st, "Succeeded")["reason"]) == ("False", "InvalidSpec")
    assert st["phase"] == "Failed" and "jobName" not in st


def test_transition_time_changes_only_with_status() -> None:
    first = reduce_status({}, obs(job=job(active=1), pods=[RUNNING_POD]), at=T0)
    same = reduce_status(first, obs(job=job(active=1), pods=[RUNNING_POD]), at=T1)
    assert same == first  # idempotent: nothing to write
    done = reduce_status(
        first, obs(job=job(done="Complete"), termination=Termination(0, summary(), finished_at=T1)), at=T2
    )
    assert cond(done, "Accepted")["lastTransitionTime"] == T0  # still True
    assert cond(done, "Running")["lastTransitionTime"] == T2  # True → False
    assert cond(done, "Succeeded")["lastTransitionTime"] == T2


def test_last_termination_picks_the_latest_evaluator_exit() -> None:
    def pod(code: int, at: str) -> dict[str, Any]:
        state = {"terminated": {"exitCode": code, "finishedAt": at, "message": str(code)}}
        return {"status": {"containerStatuses": [{"name": "evaluator", "state": state}]}}

    running = {"status": {"containerStatuses": [{"name": "evaluator", "state": {"running": {}}}]}}
    assert last_termination([pod(3, T0), pod(0, T1), running]) == Termination(0, "0", None, T1)
    assert last_termination([running]) is None


def test_status_patch_nulls_removed_fields() -> None:
    assert status_patch({"a": 1, "b": 2}, {"a": 3}) == {"b": None, "a": 3}


def test_summary_with_a_null_average_parses() -> None:
    """`Summary.to_json` drops nulls: a jaster subset (avg null) must still be read."""
    jaster = BenchmarkSummary(avg=None, categories={"NLI": None}, scores={"jamp_exact_match": 0.0}, samples=2)
    term = Termination(
        exit_code=0, message=summary(benchmarks={"jaster": jaster}, overall=None), finished_at=T1
    )
    st = reduce_status({}, obs(job=job(done="Complete"), termination=term), at=T2)
    assert cond(st, "Succeeded")["status"] == "True"
    assert st["scores"]["benchmarks"]["jaster"] == {"categories": {"NLI": None}}
    assert "overall" not in st["scores"]


# ---- the results of record (issue 18) --------------------------------------------------------------

URI = "s3://nejumi-results/team-a/team-a/e/1/"
SHA = "sha256:" + "ab" * 32


def completed(**kw: Any) -> dict[str, Any]:
    term = Termination(exit_code=0, message=summary(**kw), reason="Completed", finished_at=T1)
    return reduce_status({}, obs(job=job(done="Complete"), termination=term), at=T2)


def test_stored_results_are_named_in_status() -> None:
    stored = StoredResults(uri=URI, stored=True, manifest_sha256=SHA, objects=5, bytes=12345, uploaded=5)
    st = completed(results=stored)
    assert st["results"] == {"uri": URI, "stored": True, "manifestSha256": SHA, "objects": 5, "bytes": 12345}
    assert (st["phase"], st["reason"]) == ("Succeeded", "EvaluationCompleted")
    assert (
        cond(st, "Degraded")["status"] == "False"
        and st["progress"] == "completed (capped: a smoke test, not a leaderboard score)"
    )
    assert "results" not in completed()  # no store, nothing said


def test_results_not_stored_degrade_a_success_that_stands() -> None:
    lost = StoredResults(
        uri=URI, stored=False, error="s3://nejumi-results/team-a: the store is unreachable (timed out)."
    )
    st = completed(results=lost, benchmarks={"jaster": BenchmarkSummary(avg=0.6, samples=2)})
    assert st["results"] == {"uri": URI, "stored": False}  # no manifest, no counts
    assert st["phase"] == "Succeeded" and cond(st, "Succeeded")["status"] == "True"  # the scores stand
    assert st["scores"]["overall"] == 0.55
    degraded = cond(st, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ResultsNotStored")
    assert (st["reason"], st["message"]) == ("ResultsNotStored", degraded["message"])
    assert degraded["message"] == (
        f"the results were not stored in {URI}: s3://nejumi-results/team-a: the store is unreachable "
        "(timed out). The scores stand, and the results are in the workspace at /workspace/results/m-1; "
        "to store them, run the evaluation again on the same workspace (workspace.retain: true keeps the "
        "operator's PVC when the evaluation is deleted; workspace.pvcName names an existing one): every "
        "answer and judgment comes from the response cache, so no model or judge request is sent"
    )
    assert st["progress"] == "completed (results not stored)"
    assert st["degraded"] is False and st["overallDisplay"] == "0.5500"  # the scores' flag, still clean
    was_running = reduce_status({}, obs(job=job(active=1), pods=[RUNNING_POD]), at=T0)
    (event,) = transitions(was_running, st)
    assert (event.type, event.reason) == ("Normal", "Succeeded")
    assert event.message.startswith(
        "ResultsNotStored (Overall 0.5500, jaster 0.6000): the results were not stored"
    )


def test_results_not_stored_win_over_degraded_scores_and_the_message_says_both() -> None:
    jaster = BenchmarkSummary(avg=0.4, categories={}, scores={}, samples=2, failures=3, degraded=True)
    lost = StoredResults(uri=URI, stored=False, error="AccessDenied")
    st = completed(degraded=True, benchmarks={"jaster": jaster}, results=lost, results_dir=None)
    degraded = cond(st, "Degraded")
    assert (degraded["status"], degraded["reason"], st["reason"]) == (
        "True",
        "ResultsNotStored",
        "ResultsNotStored",
    )
    assert degraded["message"].startswith(f"the results were not stored in {URI}: AccessDenied. ")
    assert "the results are in the workspace;" in degraded["message"]  # no resultsDir to name
    assert degraded["message"].endswith(
        "The scores are also degraded: jaster: 3 failed requests, 0 of 2 unscorable"
    )
    assert st["degraded"] is True and st["overallDisplay"] == "0.5500 (degraded)"


def test_an_edit_moves_the_earlier_generation_to_history_and_its_scores_out_of_sight() -> None:
    """A spec edit (generation 2): generation 1's outcome (scores, stored results, reason) moves to
    `history`; the top level describes generation 2 only, never with generation 1's scores."""
    stored = StoredResults(uri=URI, stored=True, manifest_sha256=SHA, objects=5, bytes=12345, uploaded=5)
    first = completed(results=stored)
    assert "history" not in first
    pending = reduce_status(first, obs(generation=2, job_name="e-g2", job=job()), at=T2)
    assert (pending["phase"], pending["observedGeneration"]) == ("Pending", 2)
    assert "scores" not in pending and "results" not in pending and "overallDisplay" not in pending
    assert all(cnd["observedGeneration"] == 2 for cnd in pending["conditions"])
    (entry,) = pending["history"]
    assert entry == {
        "generation": 1,
        "phase": "Succeeded",
        "reason": "EvaluationCompleted",
        "overall": 0.55,
        "overallDisplay": first["overallDisplay"],
        "results": first["results"],
        "jobName": "e-g1",
        "completionTime": first["completionTime"],
        "replacedAt": T2,
    }
    assert status_patch(first, pending)["scores"] is None  # the write removes them
    again = reduce_status(pending, obs(generation=2, job_name="e-g2", job=job()), at=T2)
    assert again == pending  # idempotent: the same history, nothing to write


def test_an_edit_while_running_records_the_stopped_generation_and_history_is_bounded() -> None:
    from nejumi_eval.api.v1alpha1.status import MAX_HISTORY

    status = reduce_status({}, obs(job=job(active=1), pods=[RUNNING_POD]), at=T0)
    for generation in range(2, MAX_HISTORY + 4):
        running = obs(
            generation=generation, job_name=f"e-g{generation}", job=job(active=1), pods=[RUNNING_POD]
        )
        status = reduce_status(status, running, at=T1)
    assert len(status["history"]) == MAX_HISTORY
    assert [h["generation"] for h in status["history"]] == list(range(MAX_HISTORY + 2, 2, -1))
    newest = status["history"][0]
    assert (newest["phase"], newest["reason"]) == ("Running", c.REPLACED)
    assert (
        newest["message"] == f"stopped while Running (JobRunning): generation {MAX_HISTORY + 3} replaced it"
    )
