"""Small kubectl/Job helpers shared by the integration tests (test code only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from kubernetes.client import BatchV1Api
from kubernetes.client.exceptions import ApiException


def kubectl(kubeconfig: Path, *args: str) -> str:
    exe = shutil.which("kubectl")
    assert exe, "kubectl is required (it ships on the CI machines)"
    proc = subprocess.run(
        [exe, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def job_finished(batch: BatchV1Api, namespace: str, name: str) -> str | None:
    try:
        job = batch.read_namespaced_job_status(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    for cond in job.status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None
