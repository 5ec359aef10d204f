"""The live-progress channel of one evaluation, as pure builders and one parser.

Why a ConfigMap, and why this shape (the constraints: no `pods/exec`, an evaluator may touch only
its own evaluation, nothing it writes can corrupt the status, and progress survives an operator
restart):

- The evaluator writes a small JSON report (`nejumi_eval.api.v1alpha1.progress`) into ConfigMap
  `<evaluation>-progress` every ~10 s. The operator creates that ConfigMap, a ServiceAccount
  `<evaluation>-evaluator` for the Job's pods, and a Role + RoleBinding allowing that account
  `get`/`patch` on that one ConfigMap by name — nothing else, not even its own evaluation.
- The operator watches those ConfigMaps (label `nejumi.wandb.ai/progress-of`), parses the report
  with a strict, bounded model and writes only derived fields into the status, and only while the
  pod that wrote it is the evaluation's running pod. A garbled or stale report is ignored.
- The report lives in the API server, so a restarted operator reads it again; nothing is in memory.

Everything is owned by the evaluation: deleting it deletes them all (garbage collection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from nejumi_eval.api.v1alpha1.contract import POD_NAME_ENV, POD_NAMESPACE_ENV, PROGRESS_CONFIGMAP_ENV
from nejumi_eval.api.v1alpha1.names import GROUP, LABEL_EVALUATION
from nejumi_eval.api.v1alpha1.progress import (
    MAX_OUTCOME_SUMMARY,
    OUTCOME_KEY,
    PROGRESS_KEY,
    ProgressReport,
    StageOutcome,
)
from nejumi_operator.reconcile.naming import MAX_NAME, labels, short

LABEL_PROGRESS_OF = f"{GROUP}/progress-of"
"""On each progress ConfigMap: the evaluation's name (as a label value). The operator watches these."""
PROGRESS_SUFFIX = "-progress"
ACCOUNT_SUFFIX = "-evaluator"
MAX_REPORT_BYTES = 16 * 1024
"""A report is a few hundred bytes; anything bigger is not one (and is not parsed)."""


def progress_configmap_name(name: str) -> str:
    return short(name, MAX_NAME - len(PROGRESS_SUFFIX)) + PROGRESS_SUFFIX


def evaluator_account_name(name: str) -> str:
    """The Job pods' ServiceAccount (also the name of its Role and RoleBinding)."""
    return short(name, MAX_NAME - len(ACCOUNT_SUFFIX)) + ACCOUNT_SUFFIX


def _meta(name: str, namespace: str | None, object_name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": object_name, "labels": labels(name)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def build_progress_objects(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding and the (empty) ConfigMap, in creation order. Owner
    references are the caller's."""
    meta = evaluation["metadata"]
    name, namespace = meta["name"], meta.get("namespace")
    account, configmap = evaluator_account_name(name), progress_configmap_name(name)
    cm_meta = _meta(name, namespace, configmap)
    cm_meta["labels"][LABEL_PROGRESS_OF] = cm_meta["labels"][LABEL_EVALUATION]
    rule = {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [configmap],
        "verbs": ["get", "patch"],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(name, namespace, account),
            "automountServiceAccountToken": False,  # only the Job's pod template asks for a token
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(name, namespace, account),
            "rules": [rule],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(name, namespace, account),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace or ""}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": cm_meta, "data": {}},
    ]


def progress_env(name: str) -> list[dict[str, Any]]:
    """The evaluator container's env for the channel (`report.progress.ProgressPublisher`)."""
    return [
        {"name": PROGRESS_CONFIGMAP_ENV, "value": progress_configmap_name(name)},
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": POD_NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def parse_report(configmap: Mapping[str, Any] | None) -> ProgressReport | None:
    """The report in the ConfigMap, or None: absent, oversized or not a valid report."""
    raw = ((configmap or {}).get("data") or {}).get(PROGRESS_KEY)
    if not raw or len(raw) > MAX_REPORT_BYTES:
        return None
    try:
        return ProgressReport.model_validate_json(raw)
    except ValidationError:
        return None


def parse_outcome(configmap: Mapping[str, Any] | None) -> StageOutcome | None:
    """A serving group leader's last outcome in the ConfigMap (`OUTCOME_KEY`), or None: absent,
    oversized or not valid (then the group is not released on its word: its deadline still holds)."""
    raw = ((configmap or {}).get("data") or {}).get(OUTCOME_KEY)
    if not raw or len(raw) > MAX_REPORT_BYTES + 2 * MAX_OUTCOME_SUMMARY:
        return None
    try:
        return StageOutcome.model_validate_json(raw)
    except ValidationError:
        return None
