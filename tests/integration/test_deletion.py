"""Deletion on the real control plane: no finalizer, so deleting an evaluation deletes it at once and
the garbage collector (kube-controller-manager) deletes its Job and pods, even with the operator
down; evaluations that an older operator put kopf's finalizer on are released when the operator
runs; and the operator-level resync loop rewrites a status that no event would have refreshed.

The evaluator is a sleeping process here (the node agent runs `command + args`; `python -c` ignores
the args), so a pod stays Running for as long as a test needs it."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from nejumi_operator.handlers import FINALIZER
from nejumi_operator.reconcile.job import job_name
from tests.cluster import NodeAgent, wait_until
from tests.integration.test_operator import HANDLERS, tiny_spec
from tests.support.kube import apply_crd

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def served(k8s_client: ApiClient) -> None:
    """The committed CRD, applied and Established; left in place (like the e2e test), since deleting
    it would race the next module's create."""
    apply_crd(k8s_client)


@pytest.fixture
def sleeper_env(operator_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    operator_env.setenv("NEJUMI_OPERATOR_EVALUATOR_COMMAND", json.dumps(SLEEPER))
    return operator_env


@pytest.fixture
def evaluations(k8s_client: ApiClient, namespace: str, served: None) -> Iterator[Evaluations]:
    evals = Evaluations(k8s_client, namespace)
    yield evals
    evals.release_all()  # a failed test must not leave a finalizer that blocks the namespace/CRD


class Evaluations:
    def __init__(self, k8s_client: ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = CustomObjectsApi(k8s_client)
        self.batch = BatchV1Api(k8s_client)
        self.core = CoreV1Api(k8s_client)

    def create(self, name: str, finalizers: list[str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if finalizers:
            meta["finalizers"] = finalizers
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec()}

        def attempt() -> dict[str, Any]:  # the REST mapping can lag Established by a moment
            return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

        return wait_until(attempt, 15, f"create {self.ns}/{name}")

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def finalizers(self, name: str) -> list[str]:
        obj = self.get(name)
        assert obj is not None, f"{name} is gone"
        return list(obj["metadata"].get("finalizers") or [])

    def patch_status(self, name: str, status: dict[str, Any] | None) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.ns, PLURAL, name, {"status": status}, _content_type=MERGE
        )

    def job(self, name: str) -> Any:
        try:
            return self.batch.read_namespaced_job(job_name(name, 1), self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, name: str) -> list[Any]:
        selector = f"batch.kubernetes.io/job-name={job_name(name, 1)}"
        return list(self.core.list_namespaced_pod(self.ns, label_selector=selector).items)

    def running_pod(self, name: str) -> Any:
        return next((p for p in self.pods(name) if p.status.phase == "Running"), None)

    def release_all(self) -> None:
        for obj in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"]:
            if obj["metadata"].get("finalizers"):
                self.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.ns,
                    PLURAL,
                    obj["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                    _content_type=MERGE,
                )


def spec() -> dict[str, Any]:
    # Never contacted: the "evaluator" only sleeps.
    return tiny_spec("http://127.0.0.1:9/v1", "stub-model")


def run_operator(namespace: str) -> KopfRunner:
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    return KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60)


def alive(runner: KopfRunner) -> Callable[[], None]:
    def check() -> None:
        assert runner._thread.is_alive(), f"the operator stopped:\n{runner.output}"

    return check


def assert_collected(evals: Evaluations, name: str) -> None:
    """The evaluation is gone within seconds; its Job and pods follow (garbage collector)."""
    started = time.monotonic()
    wait_until(lambda: evals.get(name) is None, 10, f"{name} to be deleted")
    assert time.monotonic() - started < 10
    wait_until(lambda: evals.job(name) is None, 60, f"{name}'s Job to be garbage-collected")
    wait_until(lambda: not evals.pods(name), 60, f"{name}'s pods to be garbage-collected")


def no_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"the operator logged errors: {errors}"


def test_deleting_while_the_operator_is_down_collects_the_job(
    evaluations: Evaluations,
    namespace: str,
    node_agent: NodeAgent,
    sleeper_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "deleted-while-down"
    with run_operator(namespace) as runner:
        evaluations.create(name)
        check = alive(runner)

        def running() -> Any:
            check()
            return evaluations.running_pod(name)

        pod = wait_until(running, 60, f"{name}'s evaluator pod to run")
        wait_until(lambda: (evaluations.get(name) or {}).get("status"), 30, f"{name}'s status")
        # The operator has handled the evaluation (Job created, status written): no finalizer.
        assert evaluations.finalizers(name) == []
    assert (runner.exit_code, runner.exception) == (0, None), runner.output
    no_errors(caplog)

    # The operator is down; the pod still runs.
    assert evaluations.job(name) is not None
    assert evaluations.running_pod(name).metadata.uid == pod.metadata.uid
    evaluations.delete(name)
    assert_collected(evaluations, name)


def test_old_finalizers_are_removed_when_the_operator_runs(
    evaluations: Evaluations,
    namespace: str,
    node_agent: NodeAgent,
    sleeper_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What an older operator (with a resync timer) left behind: kopf's finalizer on an unfinished
    evaluation, on a finished one and on one whose deletion it blocks (Terminating)."""
    evaluations.create("unfinished", [FINALIZER])
    evaluations.create("finished", [FINALIZER])
    evaluations.patch_status(
        "finished",
        {
            "phase": "Succeeded",
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "EvaluationCompleted",
                    "message": "",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ],
        },
    )
    evaluations.create("terminating", [FINALIZER])
    evaluations.delete("terminating")
    time.sleep(1)
    stuck = evaluations.get("terminating")
    assert stuck is not None and stuck["metadata"].get("deletionTimestamp"), "not blocked by the finalizer"

    with run_operator(namespace) as runner:
        check = alive(runner)

        def released() -> bool:
            check()
            return (
                evaluations.get("terminating") is None
                and evaluations.finalizers("unfinished") == []
                and evaluations.finalizers("finished") == []
            )

        wait_until(released, 30, "the old finalizers to be removed")

        def running() -> Any:
            check()
            return evaluations.running_pod("unfinished")

        wait_until(running, 60, "the unfinished evaluation's pod to run (handled as usual)")
        assert evaluations.job("finished") is None  # a finished evaluation gets no new Job
        assert evaluations.finalizers("unfinished") == []
    assert (runner.exit_code, runner.exception) == (0, None), runner.output
    no_errors(caplog)

    for name in ("unfinished", "finished"):
        evaluations.delete(name)
        assert_collected(evaluations, name)


def test_the_resync_loop_rewrites_a_status_no_event_refreshes(
    evaluations: Evaluations,
    namespace: str,
    node_agent: NodeAgent,
    sleeper_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the Job quiet (its pod sleeps), the status is wiped: neither a Job event nor a kopf
    change handler (kopf ignores status changes) rewrites it; only the resync loop does, within
    NEJUMI_OPERATOR_RESYNC_SECONDS (5 s here)."""
    name = "resynced"
    with run_operator(namespace) as runner:
        evaluations.create(name)
        check = alive(runner)

        def running() -> Any:
            check()
            return evaluations.running_pod(name)

        wait_until(running, 60, f"{name}'s evaluator pod to run")

        def written() -> dict[str, Any] | None:
            status = (evaluations.get(name) or {}).get("status") or {}
            return status if status.get("jobName") == job_name(name, 1) else None

        before = wait_until(written, 30, f"{name}'s status")

        def quiet_job() -> str | None:  # the Job's own updates (pod started, ready) are over
            version = evaluations.job(name).metadata.resource_version
            time.sleep(2)
            return version if evaluations.job(name).metadata.resource_version == version else None

        job_version = wait_until(quiet_job, 30, f"{name}'s Job to settle")
        evaluations.patch_status(name, None)
        started = time.monotonic()
        after = wait_until(written, 20, "the resync loop to rewrite the status")
        assert time.monotonic() - started < 15
        # No Job event can have done it: the Job did not change.
        assert evaluations.job(name).metadata.resource_version == job_version
        assert after["observedGeneration"] == before["observedGeneration"] == 1
        assert {c["type"] for c in after["conditions"]} == {c["type"] for c in before["conditions"]}
    assert (runner.exit_code, runner.exception) == (0, None), runner.output
    no_errors(caplog)
    evaluations.delete(name)
    assert_collected(evaluations, name)
