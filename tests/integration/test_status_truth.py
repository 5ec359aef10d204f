"""The status tells the truth on the real control plane: a pod waiting for GPUs, a missing Secret,
a suspended (queued) Job and a namespace that forbids the pod are each reported as what they are,
never as Running; the phase never steps back on the way to Succeeded; `kubectl get` prints the
phase; and every transition is a Kubernetes Event on the evaluation."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes import watch
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import GROUP, KIND, PLURAL, VERSION
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.openai_stub import Reply, StubServer
from tests.support.kube import HANDLERS, kubectl
from tests.support.kube import create_evaluation as create

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

RANK = {"Queued": 0, "Pending": 1, "Running": 2, "Succeeded": 3, "Failed": 3}


class Recorder:
    """Every status version of the namespace's evaluations, from a watch (nothing is missed
    between polls): name → [(phase, reason)], consecutive duplicates collapsed."""

    def __init__(self, client: ApiClient, namespace: str) -> None:
        self.custom = CustomObjectsApi(client)
        self.namespace = namespace
        self.seen: dict[str, list[tuple[str, str]]] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not getattr(self, "_stop", False):
            try:
                for event in self._watch.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    name, status = obj["metadata"]["name"], obj.get("status") or {}
                    self.latest[name] = status
                    step = (status.get("phase", ""), status.get("reason", ""))
                    if status.get("phase") and self.seen.setdefault(name, [])[-1:] != [step]:
                        self.seen[name].append(step)
            except ApiException as exc:
                if exc.status != 404:  # the CRD may not be served for a moment
                    raise
                time.sleep(0.2)
            except Exception:  # the connection closed (timeout, stop): watch again unless stopping
                if getattr(self, "_stop", False):
                    return

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._watch.stop()

    def wait_for(self, name: str, phase: str, reason: str | None, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.latest.get(name) or {}
            if status.get("phase") == phase and (reason is None or status.get("reason") == reason):
                return status
            return None

        return wait_until(reached, timeout, f"{name}: {phase}/{reason} (seen {self.seen.get(name)})")


def spec(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": {
            "name": "stub-model",
            "source": "openai-compatible",
            "endpoint": endpoint,
            **extra.pop("model", {}),
        },
        "benchmarks": {
            "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0},
            "mtbench": {"enabled": False},
        },
        "wandb": {"enabled": False},
        **extra,
    }


def events_of(client: ApiClient, namespace: str, name: str) -> list[tuple[str, str, str]]:
    listing = CoreV1Api(client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind={KIND},involvedObject.name={name}"
    )
    ordered = sorted(listing.items, key=lambda e: e.event_time)  # the operator's MicroTime
    return [(e.type, e.reason, e.message or "") for e in ordered]


def test_pending_and_queued_say_why_then_the_phase_only_moves_forward(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator: KopfRunner,
) -> None:
    core = CoreV1Api(k8s_client)
    # each model request takes 2 s, so the run is long enough to be seen Running
    with StubServer(delay_s=2.0) as stub, Recorder(k8s_client, namespace) as seen:
        # more GPUs than the node has (8): the scheduler's reason, never Running
        create(k8s_client, namespace, "gpu-wait", spec(stub.base_url, resources={"gpus": 16}))
        # a Secret that does not exist yet: the operator waits for it (no Job) and names it
        key_ref = {"apiKeySecretRef": {"name": "model-key", "key": "token"}}
        create(k8s_client, namespace, "no-secret", spec(stub.base_url, model=key_ref, resources={"gpus": 0}))
        # a queue: the Job is created suspended (Kueue would admit it; there is none here)
        create(
            k8s_client, namespace, "queued", spec(stub.base_url, queueName="gpu-queue", resources={"gpus": 0})
        )

        gpu = seen.wait_for("gpu-wait", "Pending", "Unschedulable")
        assert "Insufficient nvidia.com/gpu" in gpu["message"], gpu["message"]
        assert "16 nvidia.com/gpu" in gpu["message"] and "spec.resources.gpus" in gpu["message"]
        missing = seen.wait_for("no-secret", "Pending", "SecretNotFound")
        assert "Secret model-key (spec.model.apiKeySecretRef) not found" in missing["message"], missing
        assert 'nejumi.wandb.ai/usable-by-evaluations="true"' in missing["message"]
        jobs = BatchV1Api(k8s_client).list_namespaced_job(namespace).items
        assert "no-secret-g1" not in {j.metadata.name for j in jobs}  # no Job before its Secret
        queued = seen.wait_for("queued", "Queued", "Suspended")
        assert "LocalQueue gpu-queue" in queued["message"]

        lines = kubectl(kubeconfig, "get", "nejumi", "-n", namespace).splitlines()
        assert lines[0].split() == ["NAME", "MODEL", "PHASE", "REASON", "OVERALL", "PROGRESS", "AGE"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert rows["gpu-wait"][1:4] == ["stub-model", "Pending", "Unschedulable"]
        assert rows["no-secret"][2:4] == ["Pending", "SecretNotFound"]
        assert rows["queued"][2:4] == ["Queued", "Suspended"]
        wide = kubectl(kubeconfig, "get", "nejumi", "gpu-wait", "-n", namespace, "-o", "wide")
        assert "MESSAGE" in wide.splitlines()[0] and "Insufficient nvidia.com/gpu" in wide

        # the Secret appears, with its owner's consent: the evaluation runs to Succeeded, each
        # phase at or after the last
        consent = {"nejumi.wandb.ai/usable-by-evaluations": "true"}
        core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "model-key", "labels": consent}, "stringData": {"token": "sk-test"}},
        )
        done = seen.wait_for("no-secret", "Succeeded", "EvaluationCompleted", timeout=120)
        assert done["attempt"] == 1 and "overallDisplay" not in done  # jaster alone: no Overall
        # the GPU-starved one is still Pending with the same reason after several resyncs
        assert seen.latest["gpu-wait"]["reason"] == "Unschedulable"

    phases = [phase for phase, _ in seen.seen["no-secret"]]
    assert "Running" in phases, seen.seen["no-secret"]
    assert all(RANK[a] <= RANK[b] for a, b in itertools.pairwise(phases)), seen.seen["no-secret"]
    assert all(phase != "Running" for phase, _ in seen.seen["gpu-wait"]), seen.seen["gpu-wait"]
    assert all(phase == "Queued" for phase, _ in seen.seen["queued"]), seen.seen["queued"]

    succeeded = events_of(k8s_client, namespace, "no-secret")
    reasons = [reason for _, reason, _ in succeeded]
    assert reasons[0] == "SecretNotFound" and reasons[-1] == "Succeeded", succeeded
    assert {"JobCreated", "Started"} <= set(reasons), succeeded
    warning = next(e for e in succeeded if e[1] == "SecretNotFound")
    assert warning[0] == "Warning" and "model-key" in warning[2]
    assert [r for _, r, _ in events_of(k8s_client, namespace, "gpu-wait")] == ["JobCreated", "Unschedulable"]
    assert [r for _, r, _ in events_of(k8s_client, namespace, "queued")] == ["JobCreated", "Queued"]


def test_pod_creation_forbidden_is_pending_with_the_api_servers_message(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator: KopfRunner,
) -> None:
    core = CoreV1Api(k8s_client)
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )

    def quota_counted() -> bool:  # the resourcequota-controller has filled in the quota's status
        status = core.read_namespaced_resource_quota("no-pods", namespace).status
        return bool(status and status.hard)

    wait_until(quota_counted, 30, "the ResourceQuota's status")
    with Recorder(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "no-room", spec("http://127.0.0.1:9/v1", resources={"gpus": 0}))
        status = seen.wait_for("no-room", "Pending", "PodCreationFailed")
    assert "forbidden: exceeded quota: no-pods" in status["message"], status["message"]
    assert "ResourceQuota" in status["message"]
    events = events_of(k8s_client, namespace, "no-room")
    assert [(t, r) for t, r, _ in events] == [("Normal", "JobCreated"), ("Warning", "PodCreationFailed")]


class NoRatingJudge(StubServer):
    """A judge that is reachable (it lists its model) but never gives a rating."""

    def reply(self, path: str, body: dict[str, Any]) -> Reply:
        answer = super().reply(path, body)
        if answer.body and "choices" in answer.body and path.endswith("/chat/completions"):
            answer.body["choices"][0]["message"]["content"] = "I would rather not rate this answer."
        return answer


def test_a_judge_that_fails_every_judgment_is_no_score(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator: KopfRunner,
) -> None:
    """The evaluator completes (exit 0) with MT-bench null, every judgment invalid: not Succeeded."""
    with StubServer() as model, NoRatingJudge() as judge, Recorder(k8s_client, namespace) as seen:
        evaluation = spec(model.base_url, resources={"gpus": 0})
        evaluation["benchmarks"]["mtbench"] = {
            "questionsPerCategory": 1,
            "judge": {"endpoint": judge.base_url, "model": judge.model},
        }
        create(k8s_client, namespace, "dead-judge", evaluation)
        status = seen.wait_for("dead-judge", "Failed", None, timeout=150)
    assert status["reason"] == "NoScore", status
    assert "mtbench has no score: all 16 scored units were invalid" in status["message"]
    assert status["failures"]["judge"] == 16 and "jaster" in status["scores"]["benchmarks"]  # still reported
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Succeeded"]["status"] == "False" and conds["Degraded"]["status"] == "True"
    row = kubectl(kubeconfig, "get", "nejumi", "dead-judge", "-n", namespace).splitlines()[1].split()
    assert row[2:4] == ["Failed", "NoScore"]
    events = events_of(k8s_client, namespace, "dead-judge")
    assert events[-1][:2] == ("Warning", "Failed") and "NoScore" in events[-1][2]


@pytest.fixture
def slow_resync(operator_env: pytest.MonkeyPatch) -> None:
    """No resync within the test: whatever the status shows came from a watch event."""
    operator_env.setenv("NEJUMI_OPERATOR_RESYNC_SECONDS", "600")


def test_live_progress_comes_from_the_evaluators_own_configmap(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    slow_resync: None,
) -> None:
    """The evaluator (a real `nejumi-eval run` in a pod with its projected ServiceAccount token)
    reports its counts every ~10 s into ConfigMap `<evaluation>-progress`; the operator, woken by
    the ConfigMap's watch event (the resync is 10 minutes away), shows them in status.progress and
    the PROGRESS column — and so does a new operator after the first one stops mid-run. The
    evaluator's account may write that one ConfigMap and nothing else."""
    account = f"system:serviceaccount:{namespace}:counting-evaluator"
    with StubServer(delay_s=1.0) as stub, Recorder(k8s_client, namespace) as seen:
        evaluation = spec(stub.base_url, resources={"gpus": 0}, generation={"concurrency": 1})
        evaluation["benchmarks"]["jaster"] = {
            "datasets": ["jamp", "janli"],
            "testSamples": 25,
            "devSamples": 0,
        }
        args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
        first = KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60)
        first.__enter__()
        create(k8s_client, namespace, "counting", evaluation)
        shown: list[str] = []

        def progressed() -> bool:
            status = seen.latest.get("counting") or {}
            line = status.get("progress") or ""
            if line.startswith("jaster ") and line not in shown:
                shown.append(line)
                live = status["liveProgress"]
                assert live["counters"][0]["name"] == "jaster" and live["counters"][0]["total"] == 50
                assert live["step"] == "generate" and live["pod"].startswith("counting-g1-")
                if len(shown) == 1:
                    row = kubectl(kubeconfig, "get", "nejumi", "counting", "-n", namespace).splitlines()[1]
                    assert " jaster " in row and "/50" in row, row
            return len(shown) >= want

        want = 1
        try:
            wait_until(progressed, 90, "a progress update in status")
        finally:
            first.__exit__(None, None, None)
        assert (first.exit_code, first.exception) == (0, None), first.output
        # The operator is gone; the evaluator goes on reporting. A new operator shows the counts.
        with KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as second:
            want = 3
            wait_until(progressed, 90, "two more progress updates, from the second operator")
            done = [int(line.split()[1].split("/")[0]) for line in shown]
            assert done == sorted(done) and done[0] < done[-1] < 50, shown
            final = seen.wait_for("counting", "Succeeded", "EvaluationCompleted", timeout=120)
        assert (second.exit_code, second.exception) == (0, None), second.output
    assert "liveProgress" not in final and not final["progress"].startswith("jaster"), final

    def can(verb: str, what: str, *extra: str) -> bool:
        exe = shutil.which("kubectl") or "kubectl"
        args = [exe, "--kubeconfig", str(kubeconfig), "auth", "can-i", verb, what, "-n", namespace]
        out = subprocess.run([*args, f"--as={account}", *extra], capture_output=True, text=True, check=False)
        assert out.stdout.strip() in ("yes", "no"), out.stderr
        return out.stdout.strip() == "yes"

    assert can("patch", "configmaps/counting-progress") and can("get", "configmaps/counting-progress")
    assert not can("patch", "configmaps/other-progress")
    assert not can("create", "configmaps")
    assert not can("patch", f"{PLURAL}.{GROUP}/counting")
    assert not can("patch", f"{PLURAL}.{GROUP}/counting", "--subresource=status")
    assert not can("get", f"{PLURAL}.{GROUP}")
    assert not can("list", "pods") and not can("get", "secrets")


def test_a_refused_workspace_claim_is_job_rejected_naming_the_claim(
    crd: None, k8s_client: ApiClient, namespace: str, operator: KopfRunner
) -> None:
    """The PVC comes before the Job: when the API server refuses it (here a quota of no claims), the
    evaluation fails at once as JobRejected naming the claim and quoting the server."""
    core = CoreV1Api(k8s_client)
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-claims"}, "spec": {"hard": {"persistentvolumeclaims": "0"}}}
    )

    def quota_counted() -> bool:
        status = core.read_namespaced_resource_quota("no-claims", namespace).status
        return bool(status and status.hard)

    wait_until(quota_counted, 30, "the ResourceQuota's status")
    with Recorder(k8s_client, namespace) as seen:
        create(k8s_client, namespace, "no-disk", spec("http://127.0.0.1:9/v1", resources={"gpus": 0}))
        status = seen.wait_for("no-disk", "Failed", "JobRejected")
    assert status["message"].startswith("the API server refused PersistentVolumeClaim no-disk-workspace: ")
    assert "exceeded quota: no-claims" in status["message"], status["message"]
    assert status["progress"] == "rejected: PersistentVolumeClaim refused"
    events = events_of(k8s_client, namespace, "no-disk")
    assert [(t, r) for t, r, _ in events] == [("Warning", "Rejected")], events


def test_a_spec_outside_the_operators_policy_is_refused_before_any_pod(
    crd: None, k8s_client: ApiClient, namespace: str, operator: KopfRunner
) -> None:
    """Without the chart's admission policy (an operator run by hand), the operator applies the same
    allow-lists itself (defaults: the GPU toleration only): Failed, naming the field, and no Job."""
    with Recorder(k8s_client, namespace) as seen:
        wide = spec("http://127.0.0.1:9/v1", resources={"gpus": 0, "tolerations": [{"operator": "Exists"}]})
        create(k8s_client, namespace, "deputy", wide)
        status = seen.wait_for("deputy", "Failed", "InvalidSpec")
    assert (
        "spec.resources.tolerations[0]: * Exists is not in the operator's policy.tolerations"
        in status["message"]
    )
    assert BatchV1Api(k8s_client).list_namespaced_job(namespace).items == []
    assert CoreV1Api(k8s_client).list_namespaced_pod(namespace).items == []
