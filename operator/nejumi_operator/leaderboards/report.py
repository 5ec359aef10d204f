"""The W&B report of a leaderboard (`spec.publish.wandb`): a Job, not the operator itself.

The report is built and saved by `nejumi-eval leaderboard --wandb-report ENTITY/PROJECT --publish`
(wandb-workspaces, as on a laptop), which needs the W&B API key. The operator never holds a
Secret's value, so the key goes where every key goes: into a pod by `secretKeyRef`, from a Secret
that consented (label `nejumi.wandb.ai/usable-by-evaluations`, checked before the Job exists).
One Job per board content (its name carries the board's digest): a board that did not change makes
no new report, and a second computation of the same board finds its Job already there (409).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from nejumi_eval.api.v1alpha1.contract import WANDB_API_KEY_ENV
from nejumi_eval.api.v1alpha1.leaderboard import LeaderboardSpec
from nejumi_eval.api.v1alpha1.names import GROUP
from nejumi_operator.reconcile.job import CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT
from nejumi_operator.reconcile.naming import label_value
from nejumi_operator.settings import OperatorConfig

LABEL_LEADERBOARD = f"{GROUP}/leaderboard"
"""On the report Jobs: the leaderboard's name."""
TTL_SECONDS = 86400
"""A finished report Job (and its pod's log) is kept a day, then collected."""


def report_job_name(name: str, digest: str) -> str:
    return f"{name[:40].rstrip('-')}-wandb-{digest.removeprefix('sha256:')[:10]}"


def build_report_job(
    board: Mapping[str, Any], spec: LeaderboardSpec, digest: str, config: OperatorConfig
) -> dict[str, Any]:
    """The report Job for the board at `digest` (pure; the caller adds the owner reference)."""
    wandb = spec.publish.wandb if spec.publish else None
    if wandb is None:
        raise ValueError("spec.publish.wandb is not set")
    meta = board["metadata"]
    command = [config.command[0], "leaderboard", "--wandb-report", wandb.project, "--publish"]
    if spec.title:
        command += ["--title", spec.title]
    container = {
        "name": "report",
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [
            {
                "name": WANDB_API_KEY_ENV,
                "valueFrom": {
                    "secretKeyRef": {
                        "name": wandb.api_key_secret_ref.name,
                        "key": wandb.api_key_secret_ref.key,
                    }
                },
            },
            # A read-only root filesystem: wandb's files go to the scratch volume.
            {"name": "HOME", "value": "/tmp"},
            {"name": "WANDB_DIR", "value": "/tmp"},
        ],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    }
    pod_security = {k: v for k, v in POD_SECURITY_CONTEXT.items() if not k.startswith("fsGroup")}
    labels = {LABEL_LEADERBOARD: label_value(meta["name"])}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": report_job_name(meta["name"], digest),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {f"{GROUP}/board-digest": digest},
        },
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 1800,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }
