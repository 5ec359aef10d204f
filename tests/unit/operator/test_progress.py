"""Live progress: the evaluator's report is strict and bounded, the operator shows only the running
pod's own report, and the access it gets is one ConfigMap, by name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.progress import PROGRESS_KEY, ProgressReport
from nejumi_eval.report.progress import ProgressPublisher
from nejumi_operator.reconcile.progress import (
    LABEL_PROGRESS_OF,
    build_progress_objects,
    evaluator_account_name,
    parse_report,
    progress_configmap_name,
)
from nejumi_operator.status import reduce_status
from tests.unit.operator.test_status_phases import T0, job, running, see

REPORT = {
    "version": 1,
    "pod": "e-g1-aaaaa",
    "step": "generate",
    "counters": [
        {"name": "jaster", "done": 812, "total": 1920},
        {"name": "mtbench", "done": 40, "total": 160},
        {"name": "judged", "done": 31, "total": 160},
    ],
    "updatedAt": "2025-01-01T00:05:00Z",
}


def configmap(report: Any) -> dict[str, Any]:
    raw = report if isinstance(report, str) else json.dumps(report)
    return {"metadata": {"name": "e-progress"}, "data": {PROGRESS_KEY: raw}}


def test_a_valid_report_reads_as_one_line() -> None:
    report = parse_report(configmap(REPORT))
    assert report is not None
    assert report.line() == "jaster 812/1920 · mtbench 40/160 · judged 31/160"
    assert ProgressReport(pod="p", step="prepare", updated_at=report.updated_at).line() == "preparing data"


@pytest.mark.parametrize(
    "change",
    [
        {"counters": [{"name": "jaster", "done": 5, "total": 4}]},  # done > total
        {"counters": [{"name": "Jaster!", "done": 1, "total": 4}]},  # not a counter name
        {"counters": [{"name": f"c{i}", "done": 0, "total": 1} for i in range(17)]},  # too many
        {"counters": [{"name": "jaster", "done": 0, "total": 10**9}]},  # out of bounds
        {"step": "deleting"},
        {"phase": "Succeeded"},  # an unknown field: a report cannot carry status fields
        {"pod": "x" * 300},
        {"version": 2},
    ],
)
def test_a_report_out_of_contract_is_ignored(change: dict[str, Any]) -> None:
    assert parse_report(configmap({**REPORT, **change})) is None


def test_garbage_and_oversized_reports_are_ignored() -> None:
    assert parse_report(configmap("not json")) is None
    assert parse_report(configmap("{" * 20000)) is None
    assert parse_report(None) is None and parse_report({"data": {}}) is None


def test_status_shows_the_running_pods_own_report_only() -> None:
    report = parse_report(configmap(REPORT))
    status = reduce_status({}, see(job(active=1), [running()], progress=report), at=T0)
    assert (status["phase"], status["reason"]) == ("Running", "JobRunning")
    assert status["progress"] == "jaster 812/1920 · mtbench 40/160 · judged 31/160"
    assert status["liveProgress"]["pod"] == "e-g1-aaaaa" and status["liveProgress"]["step"] == "generate"
    assert status["liveProgress"]["counters"][0] == {"name": "jaster", "done": 812, "total": 1920}
    # The message stays a clean sentence: progress lives in its own fields.
    assert "812" not in status["message"]

    # A report left by an earlier attempt's pod is not this attempt's progress.
    stale = parse_report(configmap({**REPORT, "pod": "e-g1-zzzzz"}))
    other = reduce_status({}, see(job(active=1), [running()], progress=stale), at=T0)
    assert other["progress"] == "evaluating" and "liveProgress" not in other
    # Finished: the live fields go.
    queued = reduce_status(status, see(job(suspend=True), [], progress=report), at=T0)
    assert "liveProgress" not in queued and queued["progress"] == "queued"


def test_the_evaluator_may_write_one_configmap_by_name() -> None:
    evaluation = {"metadata": {"name": "llama", "namespace": "team", "uid": "u"}}
    account, role, binding, cm = build_progress_objects(evaluation)
    assert [o["kind"] for o in (account, role, binding, cm)] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
    ]
    assert account["metadata"]["name"] == role["metadata"]["name"] == "llama-evaluator"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["llama-progress"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["roleRef"]["name"] == "llama-evaluator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "llama-evaluator", "namespace": "team"}]
    assert (
        cm["metadata"]["name"] == "llama-progress" and cm["metadata"]["labels"][LABEL_PROGRESS_OF] == "llama"
    )
    assert account["automountServiceAccountToken"] is False  # only the Job's pod template asks


def test_long_names_stay_valid_and_distinct() -> None:
    a, b = "x" * 200 + "a", "x" * 200 + "b"
    for fn in (progress_configmap_name, evaluator_account_name):
        assert len(fn(a)) <= 63 and fn(a) != fn(b)


def test_the_publisher_exists_only_in_a_pod_the_operator_made(tmp_path: Any) -> None:
    assert ProgressPublisher.from_env({}) is None
    assert ProgressPublisher.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) is None  # no ConfigMap named
