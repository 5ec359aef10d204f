"""The operator on the real control plane: the generated CRD as the API server enforces it, and the
whole kopf operator (KopfRunner) driving a NejumiEvaluation to Succeeded with a real evaluator
process (run by the node agent) against a stub model API."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.crd import build_crd
from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, LABEL_EVALUATION, PLURAL, VERSION
from nejumi_operator.reconcile.job import job_name
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.openai_stub import StubServer
from tests.support.kube import HANDLERS, apply_crd, delete_crd, job_finished, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def api_message(exc: ApiException) -> str:
    return str(json.loads(exc.body)["message"])


@pytest.fixture(scope="module")
def crd(k8s_client: ApiClient) -> Iterator[dict[str, Any]]:
    """The committed CRD file, applied to the API server (create, or replace a stale one)."""
    body = apply_crd(k8s_client)
    assert body == build_crd(), "crds/ is stale: run `make crd`"
    yield body
    delete_crd(k8s_client)


def manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


def creator(k8s_client: ApiClient, namespace: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    custom = CustomObjectsApi(k8s_client)

    def create(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(name, spec))

    return create


def wait_served(create: Callable[[str, dict[str, Any]], Any]) -> None:
    """The REST mapping can lag Established by a moment: retry a first good create."""

    def attempt() -> bool:
        try:
            create("first", {"model": {"name": "m"}})
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status != 409:
                raise
        return True

    wait_until(attempt, 15, "the NejumiEvaluation REST endpoint")


BAD_SPECS = [
    pytest.param(
        {"model": {"name": "m", "source": "openai-compatible"}},
        "spec.model.endpoint: Required value: "
        "model.endpoint is required when model.source is openai-compatible",
        id="endpoint-required",
    ),
    pytest.param(
        {"model": {"name": "m", "endpoint": "http://x/v1"}},
        "spec.model.endpoint: Forbidden: model.endpoint is only valid when model.source is openai-compatible",
        id="endpoint-forbidden",
    ),
    pytest.param(
        {"model": {"name": "m", "vllm": {"tensorParallelSize": 0}}},
        "spec.model.vllm.tensorParallelSize in body should be greater than or equal to 1",
        id="tensor-parallel-0",
    ),
    pytest.param(
        {"model": {"name": "m"}, "benchmarks": {"jaster": {"datasets": ["jamp", "nope"]}}},
        'spec.benchmarks.jaster.datasets[1]: Unsupported value: "nope"',
        id="unknown-dataset",
    ),
    pytest.param(
        {"model": {"name": "m", "vllm": {"tensorParallelSize": 4}}, "resources": {"gpus": 2}},
        'spec.resources.gpus: Invalid value: "object": resources.gpus must be at least '
        "model.vllm.tensorParallelSize * model.vllm.pipelineParallelSize for a vllm model on one node",
        id="gpus-below-tensor-parallel",
    ),
    pytest.param(
        {"model": {"name": ""}}, "spec.model.name in body should be at least 1 chars long", id="empty-name"
    ),
    pytest.param({}, "spec.model: Required value", id="model-required"),
    # CEL rules declared once beside their models (the evaluator evaluates the same expressions)
    pytest.param(
        {"model": {"name": "m", "vllm": {"extraArgs": ["--max-num-seqs", "8"]}}},
        "model.vllm.extraArgs: use model.vllm.maxNumSeqs, not --max-num-seqs",
        id="extra-args-max-num-seqs",
    ),
    pytest.param(
        {
            "model": {"name": "m"},
            "benchmarks": {"mtbench": {"judge": {"synthetic": True, "endpoint": "http://x/v1"}}},
        },
        "judge.synthetic runs in the evaluator: set no endpoint, apiKeyEnv or apiKeySecretRef",
        id="synthetic-judge-with-endpoint",
    ),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_spec_is_rejected_naming_the_field(
    crd: dict[str, Any], k8s_client: ApiClient, namespace: str, spec: dict[str, Any], message: str
) -> None:
    create = creator(k8s_client, namespace)
    wait_served(create)
    with pytest.raises(ApiException) as rejected:
        create("bad", spec)
    assert rejected.value.status == 422
    assert message in api_message(rejected.value)


def test_good_spec_is_accepted_editable_and_printed(
    crd: dict[str, Any], k8s_client: ApiClient, kubeconfig: Path, namespace: str
) -> None:
    create = creator(k8s_client, namespace)
    wait_served(create)
    good = {
        "model": {"name": "org/tiny", "vllm": {"tensorParallelSize": 2}},
        "benchmarks": {"jaster": {"datasets": ["jamp", "mawps"], "testSamples": 5}},
        "resources": {"gpus": 2, "tolerations": [{"key": "gpu", "operator": "Exists"}]},
    }
    created = create("good", good)
    assert created["spec"] == good  # stored as written: no server-side defaults, nothing pruned

    custom = CustomObjectsApi(k8s_client)

    def edit(patch: dict[str, Any]) -> dict[str, Any]:
        return custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "good",
            {"spec": patch},
            _content_type="application/merge-patch+json",
        )

    edited = edit({"model": {"name": "org/tiny-v2"}})  # an edit is a new generation
    assert edited["metadata"]["generation"] == 2 and edited["spec"]["model"]["name"] == "org/tiny-v2"
    with pytest.raises(ApiException) as immutable:
        edit({"workspace": {"size": "10Gi"}})
    assert immutable.value.status == 422
    assert "spec.workspace is immutable" in api_message(immutable.value)

    status = {
        "phase": "Succeeded",
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "EvaluationCompleted",
                "message": "",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": 1,
            },
        ],
        "reason": "EvaluationCompleted",
        "overallDisplay": "0.6125",
        "scores": {"overall": 0.6125, "benchmarks": {"jaster": {"avg": 0.6, "categories": {"NLI": None}}}},
    }
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "good",
        {"status": status},
        _content_type="application/merge-patch+json",
    )
    lines = kubectl(kubeconfig, "get", "nejumi", "-n", namespace).splitlines()
    assert lines[0].split() == ["NAME", "MODEL", "PHASE", "REASON", "OVERALL", "PROGRESS", "AGE"]
    row = next(line.split() for line in lines[1:] if line.startswith("good "))
    assert row[:5] == ["good", "org/tiny-v2", "Succeeded", "EvaluationCompleted", "0.6125"]


def tiny_spec(endpoint: str, model: str, **generation: Any) -> dict[str, Any]:
    return {
        "model": {"name": model, "source": "openai-compatible", "endpoint": endpoint},
        "benchmarks": {
            "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0},
            "mtbench": {"enabled": False},
        },
        "generation": generation,
        "wandb": {"enabled": False},
    }


def run_evaluation(
    k8s_client: ApiClient, namespace: str, name: str, spec: dict[str, Any]
) -> tuple[KopfRunner, str | None, dict[str, Any]]:
    """Run the operator (KopfRunner, standalone, this namespace) until the evaluation's Job has
    finished and its Succeeded condition has settled; returns (runner, Job outcome, status)."""
    batch, custom = BatchV1Api(k8s_client), CustomObjectsApi(k8s_client)
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as runner:
        create = creator(k8s_client, namespace)
        wait_until(lambda: create(name, spec), 15, "create the NejumiEvaluation")
        job = job_name(name, 1)

        def finished() -> str | None:
            assert runner._thread.is_alive(), f"the operator stopped:\n{runner.output}"
            return job_finished(batch, namespace, job)

        outcome = wait_until(finished, 120, f"Job {job} to finish")

        def final_status() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            status = obj.get("status") or {}
            succeeded = next((c for c in status.get("conditions", []) if c["type"] == "Succeeded"), None)
            return status if succeeded and succeeded["status"] != "Unknown" else None

        status = wait_until(final_status, 30, f"{name}'s Succeeded condition to settle")
    return runner, outcome, status


def test_operator_runs_an_evaluation_to_succeeded(
    crd: dict[str, Any],
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch, core, custom = BatchV1Api(k8s_client), CoreV1Api(k8s_client), CustomObjectsApi(k8s_client)
    name = "stub-eval"
    with StubServer() as stub:
        runner, outcome, status = run_evaluation(
            k8s_client, namespace, name, tiny_spec(stub.base_url, stub.model)
        )
        stub_calls = stub.calls
    job = job_name(name, 1)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{LABEL_EVALUATION}={name}").items

    logs = "".join(
        (node_agent.pod_dir(namespace, p.metadata.name) / "evaluator.log").read_text() for p in pods
    )
    assert outcome == "Complete", f"Job {outcome}; evaluator log:\n{logs}\nstatus: {status}"
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    conds = {c["type"]: c for c in status["conditions"]}
    terms = [s.state.terminated for p in pods for s in p.status.container_statuses or []]
    assert conds["Succeeded"]["status"] == "True", f"{conds['Succeeded']}\n{logs}\n{terms}"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"the operator logged errors: {errors}"
    assert conds["Succeeded"]["reason"] == "EvaluationCompleted"
    assert conds["Accepted"]["reason"] == "JobCreated"
    assert conds["Degraded"]["status"] == "False"
    assert status["phase"] == "Succeeded" and status["observedGeneration"] == 1
    jaster = status["scores"]["benchmarks"]["jaster"]
    assert "categories" in jaster
    assert status["usage"]["requestsSent"] == 2 == stub_calls
    assert status["capped"] is True and status["jobName"] == job
    assert status["runtime"]["totalSeconds"] > 0

    # The Job is owned by the evaluation (garbage collection) and carries our label.
    owned = batch.read_namespaced_job(job, namespace)
    (owner,) = owned.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == (KIND, name, True)
    assert owned.metadata.labels[LABEL_EVALUATION] == name
    # kopf's bookkeeping lives in our group's annotations, not in the schema-checked status.
    final = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    annotations = final["metadata"].get("annotations", {})
    assert f"{GROUP}/last-handled-configuration" in annotations
    assert not [k for k in annotations if k.startswith("kopf.zalando.org/")]
    assert "kopf" not in final["status"]


def test_unreachable_endpoint_is_an_infrastructure_failure(
    crd: dict[str, Any],
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Exit 3 (infrastructure) → Succeeded=False, reason InfrastructureFailure, the summary's error."""
    operator_env.setenv("NEJUMI_OPERATOR_BACKOFF_LIMIT", "0")  # one attempt: no Job backoff delay
    with StubServer() as stub:
        closed = stub.base_url
    spec = tiny_spec(closed, "stub-model", maxRetries=0, requestTimeoutSeconds=5)
    runner, outcome, status = run_evaluation(k8s_client, namespace, "dead-endpoint", spec)
    assert outcome == "Failed"
    assert (runner.exit_code, runner.exception) == (0, None)
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Succeeded"]["status"], conds["Succeeded"]["reason"]) == ("False", "InfrastructureFailure")
    assert f"cannot reach the OpenAI-compatible endpoint {closed}" in conds["Succeeded"]["message"]
    assert status["phase"] == "Failed" and "scores" not in status
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"the operator logged errors: {errors}"
