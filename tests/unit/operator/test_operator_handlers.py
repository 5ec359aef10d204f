"""A spec the CRD admitted but the evaluator rejects: the message the builder gives, and the status a
refusal becomes (the handler writes it through the guarded `sync_status`; on the real control plane:
tests/integration/test_status_truth.py and test_reliability.py)."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from nejumi_eval.api.v1alpha1.conditions import (
    NAME_CONFLICT,
    SECRET_NOT_FOUND,
    SECRET_NOT_USABLE,
    WAITING_FOR_CLEANUP,
)
from nejumi_operator import handlers
from nejumi_operator.policy import LABEL_USABLE_BY_EVALUATIONS, Policy
from nejumi_operator.reconcile.job import InvalidEvaluation, build_job, job_name
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status import Observation, reduce_status


def test_invalid_spec_is_refused_and_becomes_a_failed_status() -> None:
    raw = {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": "e", "namespace": "ns", "generation": 1, "uid": "u"},
        # gpus < tensorParallelSize: also a CEL rule, but the CRD may be older than the operator
        "spec": {"model": {"name": "m", "vllm": {"tensorParallelSize": 4}}, "resources": {"gpus": 1}},
    }
    with pytest.raises(
        InvalidEvaluation, match=r"resources.gpus must be at least .*resources.gpus 1,"
    ) as refused:
        build_job(raw, OperatorConfig())
    status = reduce_status(
        {}, Observation(generation=1, job_name=job_name("e", 1), spec_error=str(refused.value))
    )
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", "InvalidSpec")
    assert conds["Succeeded"]["reason"] == "InvalidSpec" and status["phase"] == "Failed"
    assert "must be at least model.vllm.tensorParallelSize" in conds["Accepted"]["message"]


def test_a_multi_node_evaluation_without_stages_becomes_a_failed_status_saying_why() -> None:
    """Valid for the API, but an operator that runs every evaluation in one pod cannot serve a model
    across nodes: refused as InvalidSpec, with the reason, never run on one node."""
    raw = {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": "e", "namespace": "ns", "generation": 1, "uid": "u"},
        "spec": {
            "model": {"name": "m", "vllm": {"tensorParallelSize": 8}},
            "resources": {"gpus": 4, "nodes": 2},
        },
    }
    with pytest.raises(InvalidEvaluation) as refused:
        build_job(raw, OperatorConfig())  # the one pod of an operator without stages
    status = reduce_status(
        {}, Observation(generation=1, job_name=job_name("e", 1), spec_error=str(refused.value))
    )
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", "InvalidSpec")
    assert status["phase"] == "Failed"
    assert "a model served across nodes runs in stages" in conds["Accepted"]["message"]


# ---- the create handler's trust checks (tests/integration/test_trust.py on the real cluster) ----


def evaluation(
    spec: dict[str, Any], uid: str = "u-now", generation: int = 1, status: dict[str, Any] | None = None
) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "nejumi.wandb.ai/v1alpha1",
            "kind": "NejumiEvaluation",
            "metadata": {"name": "e", "namespace": "ns", "generation": generation, "uid": uid},
            "spec": spec,
            "status": status or {},
        }
    )


API_MODEL = {"name": "m", "source": "openai-compatible", "endpoint": "http://m.ns.svc/v1"}
SPOT = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}


class Cluster:
    """The calls the create handler makes, answered from a dict of existing objects."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, existing: dict[str, dict[str, Any]], secrets=None
    ) -> None:
        self.existing, self.secrets = existing, secrets or {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.statuses: list[dict[str, Any] | None] = []
        self.completed: list[str] = []
        monkeypatch.setattr(
            handlers, "complete_finished_status", lambda api, ns, name: self.completed.append(name)
        )
        monkeypatch.setattr(handlers.calls, "labelled_jobs", self.labelled_jobs)
        monkeypatch.setattr(handlers.calls, "delete_job", self.delete_job)
        monkeypatch.setattr(handlers.calls, "labelled_groups", self.labelled_groups)
        monkeypatch.setattr(handlers.calls, "delete_group", self.delete_job)
        monkeypatch.setattr(handlers.calls, "read_job", lambda api, ns, name: self.existing.get(name))
        monkeypatch.setattr(handlers.calls, "create_or_get", self.create_or_get)
        monkeypatch.setattr(handlers.calls, "secret_labels", lambda api, ns, name: self.secrets.get(name))
        monkeypatch.setattr(
            handlers,
            "sync_status",
            lambda api, ns, name, rejected=None, config=None: self.statuses.append(rejected),
        )

    def labelled_jobs(self, api: Any, namespace: str, selector: str) -> list[dict[str, Any]]:
        key, value = selector.split("=")
        return [o for o in self.existing.values() if (o["metadata"].get("labels") or {}).get(key) == value]

    def labelled_groups(self, api: Any, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [o for o in self.labelled_jobs(api, namespace, selector) if o.get("kind") == "LeaderWorkerSet"]

    def delete_job(self, api: Any, namespace: str, name: str, uid: str) -> bool:
        self.deleted.append(f"{name} {uid}")
        return self.existing.pop(name, None) is not None

    def create_or_get(self, api: Any, namespace: str, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = obj["metadata"]["name"]
        if name in self.existing:
            return self.existing[name], False
        self.created.append(f"{obj['kind']} {name}")
        return obj, True

    def run(self, body: kopf.Body, policy: Policy | None = None) -> None:
        memo = kopf.Memo(api=object(), config=OperatorConfig(policy=policy or Policy()))
        handlers.ensure_job(
            body=body,
            name="e",
            namespace="ns",
            status=body.status,
            reason=kopf.Reason.RESUME,
            memo=memo,
            logger=logging.getLogger("test"),
        )


def owned(uid: str, obj: str, owner: str = "e") -> dict[str, Any]:
    ref = {"apiVersion": "nejumi.wandb.ai/v1alpha1", "kind": "NejumiEvaluation", "name": owner, "uid": uid}
    return {"metadata": {"name": obj, "ownerReferences": [ref]}}


def job_of(generation: int, owner_uid: str) -> dict[str, Any]:
    job = owned(owner_uid, f"e-g{generation}")
    job["metadata"].update(
        {
            "uid": f"job-{generation}-{owner_uid}",
            "labels": {"nejumi.wandb.ai/evaluation": "e"},
            "annotations": {"nejumi.wandb.ai/generation": str(generation)},
        }
    )
    return job


def test_an_edit_stops_the_earlier_generations_job_and_starts_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A spec edit (generation 2): generation 1's Job (ours) is deleted by its UID, a namesake
    evaluation's Job is left alone, and generation 2's Job is made on the same workspace."""
    finished = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "conditions": [{"type": "Succeeded", "status": "True"}],
    }
    done_job = job_of(0, "u-now") | {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    existing = {"e-g1": job_of(1, "u-now"), "e-g0": done_job, "x-g1": job_of(1, "u-before")}
    cluster = Cluster(monkeypatch, existing)
    cluster.run(evaluation({"model": API_MODEL}, generation=2, status=finished))
    assert cluster.deleted == ["e-g1 job-1-u-now"]  # the finished one stays, with its pod's log
    assert "Job e-g2" in cluster.created and "PersistentVolumeClaim e-workspace" in cluster.created
    assert "x-g1" in cluster.existing  # not ours: never touched

    again = Cluster(monkeypatch, {"e-g2": job_of(2, "u-now")})
    done = {**finished, "observedGeneration": 2}
    again.run(evaluation({"model": API_MODEL}, generation=2, status=done))  # settled: nothing to do
    assert again.deleted == [] and again.created == [] and again.statuses == []
    assert again.completed == ["e"]  # at resume, a finished status is only completed (kstatus conditions)


def test_a_job_that_exists_is_never_rejudged_by_a_later_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(monkeypatch, {"e-g1": job_of(1, "u-now")})
    body = evaluation({"model": API_MODEL, "resources": {"tolerations": [SPOT]}})
    cluster.run(body)  # today's default policy refuses the toleration: the Job runs on
    assert cluster.statuses == [None] and cluster.created == []
    with pytest.raises(kopf.PermanentError, match="spot Exists NoSchedule is not in"):
        Cluster(monkeypatch, {}).run(body)  # a new one is refused


def test_a_foreign_object_of_the_expected_name_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(monkeypatch, {"e-evaluator": {"metadata": {"name": "e-evaluator"}}})
    with pytest.raises(kopf.PermanentError, match="ServiceAccount e-evaluator already exists"):
        cluster.run(evaluation({"model": API_MODEL}))
    (refusal,) = cluster.statuses
    assert refusal is not None and refusal["refusal"][0] == NAME_CONFLICT
    assert "(no owner)" in refusal["refusal"][1]
    assert cluster.created == ["PersistentVolumeClaim e-workspace"]  # and nothing after it


def test_a_deleted_namesakes_objects_are_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(
        monkeypatch, {"e-g1": owned("u-old", "e-g1"), "e-workspace": owned("u-old", "e-workspace")}
    )
    with pytest.raises(kopf.TemporaryError, match="belongs to a deleted NejumiEvaluation e"):
        cluster.run(evaluation({"model": API_MODEL}))
    (waiting,) = cluster.statuses
    assert waiting is not None and waiting["waiting"][0] == WAITING_FOR_CLEANUP


def test_secrets_are_checked_before_anything_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    keyed = {"model": {**API_MODEL, "apiKeySecretRef": {"name": "k", "key": "v"}}}
    cluster = Cluster(monkeypatch, {})
    with pytest.raises(kopf.TemporaryError, match=r"Secret k \(spec.model.apiKeySecretRef\) not found"):
        cluster.run(evaluation(keyed))
    assert cluster.statuses[0] is not None and cluster.statuses[0]["waiting"][0] == SECRET_NOT_FOUND
    cluster = Cluster(monkeypatch, {}, secrets={"k": {"team": "a"}})
    with pytest.raises(kopf.PermanentError, match="Secret k is not usable by evaluations"):
        cluster.run(evaluation(keyed))
    assert cluster.statuses[0] is not None and cluster.statuses[0]["refusal"][0] == SECRET_NOT_USABLE
    assert cluster.created == []
    cluster = Cluster(monkeypatch, {}, secrets={"k": {LABEL_USABLE_BY_EVALUATIONS: "true"}})
    cluster.run(evaluation(keyed))
    assert cluster.created[-1] == "Job e-g1" and cluster.statuses == [None]
