"""Queued in Kueue's words: the Workload of a suspended Job says why it waits or that Kueue
preempted it; the status quotes it (phase Queued either way, never Failed or Pending)."""

from __future__ import annotations

from typing import Any

from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile.job import build_job
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status import reduce_status, transitions
from tests.unit.operator.test_status_phases import T0, job, running, see

NO_QUOTA = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
    "default, 4 more needed"
)


def workload(*conds: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "job-e-g1-abcde"}, "status": {"conditions": list(conds)}}


def test_waiting_for_quota_quotes_kueue() -> None:
    wl = workload({"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": NO_QUOTA})
    status = reduce_status({}, see(job(suspend=True), [], queue_name="gpu", workload=wl), at=T0)
    assert (status["phase"], status["reason"]) == ("Queued", "Suspended")
    assert (
        status["message"]
        == f"Job e-g1 is suspended, waiting for admission in LocalQueue gpu; Kueue: Pending: {NO_QUOTA}"
    )


def test_preempted_goes_back_to_queued_with_kueues_message() -> None:
    was_running = reduce_status({}, see(job(active=1), [running()], queue_name="gpu"), at=T0)
    evicted = workload(
        {
            "type": "Evicted",
            "status": "True",
            "reason": "Preempted",
            "message": "Preempted to accommodate a workload",
        },
        {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": NO_QUOTA},
    )
    status = reduce_status(was_running, see(job(suspend=True), [], queue_name="gpu", workload=evicted), at=T0)
    assert (status["phase"], status["reason"], status["progress"]) == ("Queued", "Preempted", "preempted")
    assert "Kueue evicted Job e-g1 (Preempted: Preempted to accommodate a workload)" in status["message"]
    assert "resumes from the workspace's response cache" in status["message"]
    assert [(t.type, t.reason) for t in transitions(was_running, status)] == [("Warning", "Preempted")]


def test_the_workload_priority_class_is_a_label_under_the_policy() -> None:
    spec = {
        "model": {"name": "m", "source": "openai-compatible", "endpoint": "https://x/v1"},
        "queueName": "gpu",
    }
    ev = {
        "metadata": {"name": "e", "namespace": "ns"},
        "spec": {**spec, "workloadPriorityClassName": "urgent"},
    }
    allowed = OperatorConfig(policy=Policy(workloadPriorityClassNames=["urgent"]))
    assert build_job(ev, allowed)["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "urgent"
    problems = Policy().violations(parse_spec(ev["spec"]))
    assert problems == [
        "spec.workloadPriorityClassName: 'urgent' is not in the operator's policy.workloadPriorityClassNames "
        "(allowed: none)"
    ]
