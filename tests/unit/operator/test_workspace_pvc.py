"""The workspace PVC the operator creates per evaluation (issue 10: the workspace survives a pod)."""

from __future__ import annotations

from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec
from nejumi_operator.reconcile.job import (
    InvalidEvaluation,
    build_job,
    build_workspace_pvc,
    retain_workspace,
    workspace_claim_name,
)
from nejumi_operator.settings import (
    DEFAULT_WORKSPACE_SIZE,
    ENV_WORKSPACE_SIZE,
    ENV_WORKSPACE_STORAGE_CLASS,
    OperatorConfig,
)

CONFIG = OperatorConfig(image="registry.test/evaluator:1")


def evaluation(workspace: dict[str, Any] | None = None, name: str = "llama-eval") -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"name": "m"}}
    if workspace is not None:
        spec["workspace"] = workspace
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": name, "namespace": "team-a", "generation": 2, "uid": "u-1"},
        "spec": spec,
    }


def claim_of(job: dict[str, Any]) -> str:
    (ws,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "workspace"]
    return str(ws["persistentVolumeClaim"]["claimName"])


def test_default_pvc_size_class_and_name() -> None:
    pvc = build_workspace_pvc(evaluation(), CONFIG)
    assert pvc is not None
    assert pvc["apiVersion"] == "v1" and pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"] == "llama-eval-workspace" and pvc["metadata"]["namespace"] == "team-a"
    assert pvc["metadata"]["labels"]["nejumi.wandb.ai/evaluation"] == "llama-eval"
    assert "ownerReferences" not in pvc["metadata"]  # the handler adds it (unless retain)
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": DEFAULT_WORKSPACE_SIZE}},
    }  # no storageClassName: the cluster's default class
    assert DEFAULT_WORKSPACE_SIZE == "50Gi"
    # the Job mounts exactly that claim
    assert claim_of(build_job(evaluation(), CONFIG)) == pvc["metadata"]["name"]


def test_spec_size_and_class_win_over_the_operators_settings() -> None:
    config = OperatorConfig(workspace_size="20Gi", workspace_storage_class="fast")
    pvc = build_workspace_pvc(evaluation(), config)
    assert pvc is not None
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    pvc = build_workspace_pvc(evaluation({"size": "100Gi", "storageClassName": "ssd"}), config)
    assert pvc is not None
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert pvc["spec"]["storageClassName"] == "ssd"


def test_an_existing_pvc_is_mounted_never_created() -> None:
    ev = evaluation({"pvcName": "shared-ws"})
    assert build_workspace_pvc(ev, CONFIG) is None
    assert claim_of(build_job(ev, CONFIG)) == "shared-ws"


def test_retain() -> None:
    assert retain_workspace(evaluation()) is False
    assert retain_workspace(evaluation({"retain": False})) is False
    assert retain_workspace(evaluation({"retain": True})) is True
    # a retained PVC is the same claim, just without an owner
    retained = build_workspace_pvc(evaluation({"retain": True}), CONFIG)
    assert retained == build_workspace_pvc(evaluation(), CONFIG)


def test_claim_name_is_stable_and_fits() -> None:
    long = "x" * 63
    name = workspace_claim_name(long)
    assert len(name) <= 63 and name.endswith("-workspace")
    assert name == workspace_claim_name(long) != workspace_claim_name("y" * 63)


@pytest.mark.parametrize(
    "workspace",
    [{"pvcName": "ws", "storageClassName": "fast"}, {"pvcName": "ws", "retain": True}],
)
def test_class_and_retain_are_only_for_the_operators_pvc(workspace: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="workspace"):
        parse_spec({"model": {"name": "m"}, "workspace": workspace})
    with pytest.raises(InvalidEvaluation):
        build_workspace_pvc(evaluation(workspace), CONFIG)


def test_settings_from_env() -> None:
    assert OperatorConfig.from_env({}).workspace_size == "50Gi"
    assert OperatorConfig.from_env({}).workspace_storage_class == ""
    config = OperatorConfig.from_env({ENV_WORKSPACE_SIZE: "10Gi", ENV_WORKSPACE_STORAGE_CLASS: "local"})
    assert (config.workspace_size, config.workspace_storage_class) == ("10Gi", "local")
