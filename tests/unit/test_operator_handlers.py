"""The create handler's one cluster-free path: a spec the CRD admitted but the evaluator rejects."""

from __future__ import annotations

import logging

import kopf
import pytest

from nejumi_operator import handlers
from nejumi_operator.settings import OperatorConfig


def test_invalid_spec_is_permanent_and_written_to_status() -> None:
    raw = {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": "e", "namespace": "ns", "generation": 1, "uid": "u"},
        # gpus < tensorParallelSize: also a CEL rule, but the CRD may be older than the operator
        "spec": {"model": {"name": "m", "vllm": {"tensorParallelSize": 4}}, "resources": {"gpus": 1}},
    }
    patch = kopf.Patch()
    memo = kopf.Memo(config=OperatorConfig(), api=None)  # no API call may happen on this path
    with pytest.raises(kopf.PermanentError, match=r"resources.gpus \(1\) must be at least"):
        handlers.ensure_job(
            body=kopf.Body(raw),
            name="e",
            namespace="ns",
            status=kopf.Status({}),
            patch=patch,
            memo=memo,
            logger=logging.getLogger("test"),
        )
    status = patch["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", "InvalidSpec")
    assert conds["Succeeded"]["reason"] == "InvalidSpec" and status["phase"] == "Failed"
