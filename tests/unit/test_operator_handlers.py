"""A spec the CRD admitted but the evaluator rejects: the message the builder gives, and the status a
refusal becomes (the handler writes it through the guarded `sync_status`; on the real control plane:
tests/integration/test_status_truth.py and test_reliability.py)."""

from __future__ import annotations

import pytest

from nejumi_operator.reconcile.job import InvalidEvaluation, build_job, job_name
from nejumi_operator.reconcile.status import Observation, reduce_status
from nejumi_operator.settings import OperatorConfig


def test_invalid_spec_is_refused_and_becomes_a_failed_status() -> None:
    raw = {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": "e", "namespace": "ns", "generation": 1, "uid": "u"},
        # gpus < tensorParallelSize: also a CEL rule, but the CRD may be older than the operator
        "spec": {"model": {"name": "m", "vllm": {"tensorParallelSize": 4}}, "resources": {"gpus": 1}},
    }
    with pytest.raises(InvalidEvaluation, match=r"resources.gpus \(1\) must be at least") as refused:
        build_job(raw, OperatorConfig())
    status = reduce_status(
        {}, Observation(generation=1, job_name=job_name("e", 1), spec_error=str(refused.value))
    )
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", "InvalidSpec")
    assert conds["Succeeded"]["reason"] == "InvalidSpec" and status["phase"] == "Failed"
    assert "must be at least model.vllm.tensorParallelSize" in conds["Accepted"]["message"]
