"""Small kubectl/Job helpers shared by the integration tests (test code only)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.client import ApiClient, BatchV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


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


def wait_while_progressing(
    done: Callable[[], T | None],
    progress: Callable[[], object],
    stall_s: float,
    what: str,
    *,
    explain: Callable[[], str] = lambda: "",
    interval: float = 0.5,
) -> T:
    """Poll ``done`` until it returns something truthy; give up only after ``stall_s`` without any
    change in ``progress()`` (an evaluation's status: phase, progress line, conditions).

    Why not a fixed deadline: how long a run takes depends on what else the machine does (a
    second cluster on the same 2 cores), while a run that stopped moving is stuck however idle the
    machine is. The deadline moves with the evidence; the test's own timeout caps the whole.
    ``explain`` adds what to look at (an evaluator log's tail) to the error.
    """
    last_change, seen = time.monotonic(), None
    while True:
        error: Exception | None = None
        try:
            if result := done():
                return result
            now = progress()
        except AssertionError:  # the test's own check failed (e.g. the operator stopped): at once
            raise
        except Exception as exc:  # an API hiccup: no progress, not yet a failure
            now, error = seen, exc
        if now != seen:
            seen, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= stall_s:
            cause = f" (last error: {error!r})" if error else ""
            raise TimeoutError(
                f"{what}: no progress for {stall_s:.0f}s, stuck at {seen!r}{cause}\n{explain()}"
            )
        time.sleep(interval)


def apply_crd(api: Any, path: Path | None = None) -> dict[str, Any]:
    """The committed NejumiEvaluation CRD (or the one at `path`, e.g. the NejumiLeaderboard's;
    returned as in the file), created (or replacing a stale one) and Established.

    A CRD an earlier module deleted may still be terminating: wait for it to go first, or a create
    answers 409 and that deletion then removes what this one replaced."""
    import yaml
    from kubernetes.client import ApiextensionsV1Api

    from nejumi_eval.api.v1alpha1.crd import CRD_PATH
    from tests.cluster import wait_until

    ext = ApiextensionsV1Api(api)
    body = yaml.safe_load((path or CRD_PATH).read_text(encoding="utf-8"))
    crd_name = body["metadata"]["name"]

    def read() -> Any:
        try:
            return ext.read_custom_resource_definition(crd_name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    wait_until(lambda: (c := read()) is None or c.metadata.deletion_timestamp is None, 60, "an old CRD to go")
    if (current := read()) is None:
        ext.create_custom_resource_definition(body)
    else:
        sent = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version},
        }
        ext.replace_custom_resource_definition(crd_name, sent)

    def established() -> bool:
        conds = ext.read_custom_resource_definition_status(crd_name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_until(established, 30, f"CRD {crd_name} to be Established")
    return body


def delete_crd(api: Any, wait: bool = True, name: str | None = None) -> None:
    """Delete the CRD (its resources go with it) and wait until it is gone: the next module may
    apply it again (e.g. `kubectl apply` in the e2e test), and a terminating CRD would take that
    apply down with it."""
    from kubernetes.client import ApiextensionsV1Api

    from nejumi_eval.api.v1alpha1.names import CRD_NAME
    from tests.cluster import wait_until

    ext = ApiextensionsV1Api(api)
    crd_name = name or CRD_NAME
    ext.delete_custom_resource_definition(crd_name)
    if wait:

        def gone() -> bool:
            try:
                ext.read_custom_resource_definition(crd_name)
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_until(gone, 60, "the CRD to be deleted")


def create_object(
    client: ApiClient,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    *,
    plural: str | None = None,
    kind: str | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    """Create a resource of ours (a NejumiEvaluation unless `plural`/`kind` say otherwise) as a user
    would, retrying while its REST mapping lags the CRD's Established condition by a moment (404)."""
    from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
    from tests.cluster import wait_until

    metadata: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    body = {"apiVersion": API_VERSION, "kind": kind or KIND, "metadata": metadata, "spec": spec}
    custom = CustomObjectsApi(client)

    def attempt() -> bool:
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural or PLURAL, body)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_until(attempt, 15, f"create {name}")


def create_evaluation(client: ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Create a NejumiEvaluation as a user would (`create_object`)."""
    create_object(client, namespace, name, spec)


HANDLERS = Path(str(importlib.util.find_spec("nejumi_operator.handlers").origin))  # type: ignore[union-attr]
"""The operator's handlers file, as `kopf run` loads it (found, not imported: importing registers)."""


def operator_runner(namespace: str) -> Any:
    """The real operator (kopf's `KopfRunner`, a fresh registry) watching `namespace`; a context
    manager. Tests that stop and start it mid-test use this; others the `operator` fixture."""
    import kopf
    from kopf.testing import KopfRunner

    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    return KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60)


def judged_spec(
    model: str, judge: str, judge_model: str = "gpt-4-0613", *, samples: int = 1, **extra: Any
) -> dict[str, Any]:
    """A small evaluation of the stub model API at `model`: every jaster dataset with `samples`
    test samples, one MT-bench question per category rated by the judge at `judge`; no GPU, no
    W&B. `extra`: more top-level spec fields (results, workspace, queueName…)."""
    return {
        "model": {
            "name": "stub-model",
            "source": "openai-compatible",
            "endpoint": model,
            "mode": "completion",
        },
        "benchmarks": {
            "jaster": {"testSamples": samples, "devSamples": 0},
            "mtbench": {"questionsPerCategory": 1, "judge": {"endpoint": judge, "model": judge_model}},
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": 0},
        **extra,
    }
