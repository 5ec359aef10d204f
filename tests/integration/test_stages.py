"""A served model's evaluation in stages (`api.v1alpha1.stages`), on the real control plane and Kueue.

Each evaluation is three Jobs, each its own Kueue Workload: fetch (CPU), serve (GPU), judge (CPU).
The model is the stub `vllm serve` (tests/fixtures/served_model.py: real HTTP, its own record of
each reply, one record per model folder) run by the node agent inside the serve stage's pod; the
judge is a scripted one, slow on purpose so that the judge stage lasts.

- The stages run in order, only the serve stage's pod asks for a GPU, and the GPU quota (one GPU)
  is free while an evaluation judges: a second evaluation's serve stage is admitted and runs
  during the first one's judge stage. The status never goes back to Pending between stages and
  lists each stage with its Job, phase and GPU-seconds.
- A serve stage preempted by a more urgent evaluation goes back to Queued (Preempted), is
  readmitted, and resumes from the response cache: the stub counts what was sent again.
- Deleting an evaluation in its serve stage leaves no Job, pod or Workload of any stage.
- The cost in the status is the whole evaluation's: the serve stage's model tokens and serving span
  (from its record in the workspace), the judge's tokens priced with the operator's table, and the
  GPU-seconds the serve stage's Job held (passed to the judge stage's Job, and observed).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from nejumi_eval.api.v1alpha1.names import GROUP as NEJUMI
from nejumi_eval.api.v1alpha1.names import LABEL_STAGE, PLURAL, VERSION
from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_operator.settings import ENV_PRICING
from tests.cluster import NodeAgent, wait_until
from tests.cluster.kueue import Kueue
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.integration.test_kueue import Kueues
from tests.integration.test_status_truth import HANDLERS, Recorder
from tests.support.kube import create_evaluation as create
from tests.support.served import model_folder, stub_vllm

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


@pytest.fixture
def gpu_queue(kueue: Kueue, k8s_client: ApiClient, namespace: str) -> Iterator[tuple[Kueues, str]]:
    """One GPU of quota: one serve stage at a time."""
    objects = Kueues(k8s_client, namespace)
    try:
        flavor = objects.flavor()
        cq = objects.cluster_queue(flavor, gpus=1, preemption={"withinClusterQueue": "LowerPriority"})
        yield objects, objects.local_queue(cq)
    finally:
        objects.delete_all()


@pytest.fixture
def served(operator_env: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The stub `vllm` on the evaluator pods' PATH, recording each model's replies in a folder."""
    bin_dir = stub_vllm(tmp_path / "bin").parent
    records = tmp_path / "records"
    records.mkdir()
    env = json.loads(os.environ["NEJUMI_OPERATOR_EVALUATOR_ENV"])
    env |= {
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]),
        "NEJUMI_STUB_RECORD": str(records),
        "NEJUMI_STUB_CAPACITY": "1",
        "NEJUMI_STUB_LATENCY_S": "0.2",
    }
    operator_env.setenv("NEJUMI_OPERATOR_EVALUATOR_ENV", json.dumps(env))
    return {"root": tmp_path, "records": records}


def shared_model_cache_from(hub: Any, operator_env: pytest.MonkeyPatch) -> None:
    """The evaluator pods download from the Hub double (online), into the namespace's shared model
    cache (the chart's `evaluator.modelCache.pvcName`)."""
    env = json.loads(os.environ["NEJUMI_OPERATOR_EVALUATOR_ENV"])
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0"}
    operator_env.setenv("NEJUMI_OPERATOR_EVALUATOR_ENV", json.dumps(env))
    operator_env.setenv("NEJUMI_OPERATOR_MODEL_CACHE_PVC", "nejumi-model-cache")


def replies(served: dict[str, Any], model: str) -> int:
    path = served["records"] / f"{model}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return sum(1 for line in lines if "reply" in json.loads(line))


def evaluation(folder: Path, queue: str, samples: int, judge: str | None, **extra: Any) -> dict[str, Any]:
    mtbench: dict[str, Any] = {"enabled": False}
    if judge:
        mtbench = {
            "questionsPerCategory": 1,
            "judge": {"endpoint": judge, "model": "gpt-4-0613", "concurrency": 2},
        }
    return {
        "model": {"name": str(folder), "source": "vllm"},
        "benchmarks": {
            "jaster": {"datasets": ["jamp"], "testSamples": samples, "devSamples": 0},
            "mtbench": mtbench,
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": 1},
        "queueName": queue,
        **extra,
    }


def stage_jobs(k8s_client: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    jobs = BatchV1Api(k8s_client).list_namespaced_job(
        namespace, label_selector=f"nejumi.wandb.ai/evaluation={name}"
    )
    return {(j.metadata.labels or {}).get(LABEL_STAGE, "run"): j for j in jobs.items}


def gpus_asked(job: Any) -> int:
    (container,) = job.spec.template.spec.containers
    return int(((container.resources and container.resources.limits) or {}).get("nvidia.com/gpu", 0))


def running_since(k8s_client: ApiClient, namespace: str, job: str) -> Any:
    """When the evaluator container of the Job's (last) pod started."""
    pods = CoreV1Api(k8s_client).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    started = []
    for pod in pods:
        for status in pod.status.container_statuses or []:
            state = status.state
            at = (state.running and state.running.started_at) or (
                state.terminated and state.terminated.started_at
            )
            if at:
                started.append(at)
    return max(started) if started else None


def test_stages_run_in_order_and_the_gpu_quota_is_free_while_judging(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    served: dict[str, Any],
    gpu_queue: tuple[Kueues, str],
    operator_env: pytest.MonkeyPatch,
) -> None:
    queues, queue = gpu_queue
    prices = {"models": {"gpt-4-0613": {"promptPerMillionTokens": 30, "completionPerMillionTokens": 60}}}
    operator_env.setenv(ENV_PRICING, json.dumps(prices | {"gpuHour": 3.6}))
    first, second = model_folder(served["root"], "model-a"), model_folder(served["root"], "model-b")
    questions = {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with (
        ScriptedJudge(questions, delay_s=2.5) as judge,
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
    ):
        create(k8s_client, namespace, "first", evaluation(first, queue, samples=4, judge=judge.base_url))
        running = wait_until(
            lambda: (
                seen.latest.get("first")
                if (seen.latest.get("first") or {}).get("stage") == "serve"
                and seen.latest["first"].get("phase") == "Running"
                and seen.latest["first"]["reason"] == "JobRunning"
                else None
            ),
            180,
            f"the first evaluation's serve stage running (seen {seen.seen.get('first')})",
        )
        assert [s["name"] for s in running["stages"]] == ["fetch", "serve"]
        assert running["stages"][0]["phase"] == "Succeeded" and "the serve stage" in running["message"]
        create(k8s_client, namespace, "second", evaluation(second, queue, samples=4, judge=judge.base_url))
        done = seen.wait_for("first", "Succeeded", "EvaluationCompleted", timeout=240)
        second_done = seen.wait_for("second", "Succeeded", "EvaluationCompleted", timeout=240)
    assert (operator.exit_code, operator.exception) == (0, None), operator.output

    # In order, each its own Job and Workload; only the serve stage's pod asks for a GPU.
    jobs = stage_jobs(k8s_client, namespace, "first")
    assert set(jobs) == {"fetch", "serve", "judge"}
    assert {stage: gpus_asked(job) for stage, job in jobs.items()} == {"fetch": 0, "serve": 1, "judge": 0}
    assert jobs["fetch"].status.completion_time <= jobs["serve"].status.start_time
    assert jobs["serve"].status.completion_time <= jobs["judge"].status.start_time
    for job in jobs.values():
        assert queues.workload(job.metadata.name) is not None, job.metadata.name
    assert done["stage"] == "judge" and [s["name"] for s in done["stages"]] == ["fetch", "serve", "judge"]
    assert all(s["phase"] == "Succeeded" for s in done["stages"])
    held = [s.get("gpuSeconds") for s in done["stages"]]
    assert held[0] is None and held[2] is None and held[1] is not None
    assert done["runtime"]["gpuSeconds"] == held[1]
    assert "overall" not in done["scores"] and done["scores"]["benchmarks"]["mtbench"]["avg"] == 5.0
    # The model answered every question once, in the serve stage; the judge stage asked it nothing.
    assert replies(served, "model-a") == 4 + 16
    # the evaluation's usage: the serve stage's model requests (none answered from a cache), judgments
    assert done["usage"]["requestsSent"] == 4 + 16 + 16 and done["usage"]["cacheHits"] == 0
    assert done["usage"]["completionTokens"] > 0

    # What it cost: the serve stage's model tokens and busy span, the judge's tokens at the table's
    # prices, and the GPU-seconds the serve stage's Job held (told to the judge stage's Job).
    (judge_container,) = jobs["judge"].spec.template.spec.containers
    judge_env = {e.name: e.value for e in judge_container.env}
    assert float(judge_env["NEJUMI_GPU_SECONDS_HELD"]) == held[1] and "NEJUMI_PRICING" in judge_env
    (serve_container,) = jobs["serve"].spec.template.spec.containers
    assert {"NEJUMI_PRICING", "NEJUMI_GPU_SECONDS_HELD"}.isdisjoint(e.name for e in serve_container.env)
    cost = done["cost"]
    assert cost["gpuSecondsHeld"] == held[1] and 0 < cost["gpuSecondsBusy"] <= held[1]
    assert (cost["modelPromptTokens"], cost["modelCompletionTokens"]) == (10 * (4 + 16), 4 + 16)  # the stub's
    prompt, completion = cost["judgePromptTokens"], cost["judgeCompletionTokens"]
    assert (prompt, completion) == (
        done["usage"]["judgePromptTokens"],
        done["usage"]["judgeCompletionTokens"],
    )
    assert prompt == 100 * 16 and completion == 10 * 16  # the scripted judge's usage, 16 judgments
    assert cost["judgeCost"] == round((prompt * 30 + completion * 60) / 1e6, 6)
    assert cost["gpuCost"] == round(held[1] / 3600 * 3.6, 6) and cost["currency"] == "USD"
    assert done["costDisplay"].endswith(f"judge {cost['judgeCost']:.2f} USD")

    # The GPU quota was free during the first's judge stage: the second's serve stage ran then.
    others = stage_jobs(k8s_client, namespace, "second")
    second_serving = running_since(k8s_client, namespace, others["serve"].metadata.name)
    assert jobs["serve"].status.completion_time <= second_serving < jobs["judge"].status.completion_time, (
        jobs["serve"].status.completion_time,
        second_serving,
        jobs["judge"].status.completion_time,
    )
    assert second_done["stages"][1]["name"] == "serve"

    # Never back to Pending once running, across the stages (between them: Running, or Queued while
    # the next stage's Job waits for Kueue).
    phases = [phase for phase, _ in seen.seen["first"]]
    after = phases[phases.index("Running") :]
    assert "Pending" not in after, seen.seen["first"]


def test_a_preempted_serve_stage_requeues_and_resumes_from_the_cache(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    served: dict[str, Any],
    operator_env: pytest.MonkeyPatch,
    gpu_queue: tuple[Kueues, str],
    urgent: str,
) -> None:
    _, queue = gpu_queue
    operator_env.setenv(
        "NEJUMI_OPERATOR_POLICY",
        json.dumps({"workloadPriorityClassNames": [urgent], "keyHosts": ["127.0.0.1"]}),
    )
    background = model_folder(served["root"], "background")
    samples = 90  # 18 s at the stub's 0.2 s a request, one at a time: preempted well before its end
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with (
        StubServer() as api_model,
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
    ):
        create(
            k8s_client, namespace, "background", evaluation(background, queue, samples=samples, judge=None)
        )
        wait_until(lambda: replies(served, "background") >= 8, 180, "the background serve stage to answer 8")
        # The urgent one: an API model on the GPU (one Job, no fetch stage to wait for): admitted at
        # once by preempting the background evaluation's serve stage.
        rush = evaluation(served["root"], queue, samples=2, judge=None, workloadPriorityClassName=urgent)
        rush["model"] = {"name": "stub-model", "source": "openai-compatible", "endpoint": api_model.base_url}
        create(k8s_client, namespace, "urgent", rush)
        preempted = seen.wait_for("background", "Queued", "Preempted", timeout=120)
        assert preempted["stage"] == "serve" and "the serve stage: Kueue evicted Job" in preempted["message"]
        before = replies(served, "background")
        seen.wait_for("urgent", "Succeeded", "EvaluationCompleted", timeout=180)
        done = seen.wait_for("background", "Succeeded", "EvaluationCompleted", timeout=240)
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    assert "Failed" not in [p for p, _ in seen.seen["background"]]
    # Every question answered once, plus at most the one in service when the pod was stopped
    # (capacity 1): the readmitted serve stage resumed from the workspace's response cache.
    assert before < samples and samples <= replies(served, "background") <= samples + 1
    assert [s["name"] for s in done["stages"]] == ["fetch", "serve", "judge"]


def test_deleting_an_evaluation_mid_stage_leaves_nothing(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    served: dict[str, Any],
    gpu_queue: tuple[Kueues, str],
) -> None:
    queues, queue = gpu_queue
    core, batch, custom = CoreV1Api(k8s_client), BatchV1Api(k8s_client), CustomObjectsApi(k8s_client)
    folder = model_folder(served["root"], "doomed")
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with (
        Recorder(k8s_client, namespace) as seen,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
    ):
        create(k8s_client, namespace, "doomed", evaluation(folder, queue, samples=60, judge=None))
        wait_until(
            lambda: replies(served, "doomed") >= 3, 180, f"the serve stage answering (seen {seen.seen})"
        )
        names = [j.metadata.name for j in stage_jobs(k8s_client, namespace, "doomed").values()]
        assert sorted(names) == ["doomed-g1-fetch", "doomed-g1-serve"]
        custom.delete_namespaced_custom_object(NEJUMI, VERSION, namespace, PLURAL, "doomed")

        def leftovers() -> list[str]:
            left = [f"Job/{j.metadata.name}" for j in batch.list_namespaced_job(namespace).items]
            left += [f"Pod/{p.metadata.name}" for p in core.list_namespaced_pod(namespace).items]
            left += [f"Workload/{n}" for n in names if queues.workload(n)]
            return left

        wait_until(lambda: not leftovers(), 90, "every stage's Job, pod and Workload to be collected")
        count = replies(served, "doomed")
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    assert count < 60  # stopped mid-generation, not run to its end


def test_two_evaluations_of_one_model_started_together_fill_the_model_cache_once(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    served: dict[str, Any],
    operator_env: pytest.MonkeyPatch,
    gpu_queue: tuple[Kueues, str],
) -> None:
    """The chart's `evaluator.modelCache`: the namespace's shared cache (a ReadWriteMany PVC the
    operator makes, owned by no evaluation), filled by the first fetch stage to take its lock while
    the other waits; both serve stages mount it read-only and serve the same folder."""
    from tests.fixtures.hub_server import HubServer
    from tests.fixtures.hub_server import model_folder as hub_folder

    _, queue = gpu_queue
    size = 4 * 2**20
    core = CoreV1Api(k8s_client)
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with HubServer(rate_bytes_per_s=1_000_000) as hub:  # a 4 s download: the second fetch waits on it
        # content of its own: a new commit, so no cache entry of an earlier run can answer for it
        weights = hub_folder(served["root"] / "repo", weights_bytes=size, seed=secrets.randbits(32))
        hub.add_repo("org/shared", weights)
        shared_model_cache_from(hub, operator_env)
        with (
            Recorder(k8s_client, namespace) as seen,
            KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
        ):
            for name in ("one", "two"):
                spec = evaluation(served["root"], queue, samples=2, judge=None)
                spec["model"] = {"name": "org/shared", "source": "vllm"}
                create(k8s_client, namespace, name, spec)
            for name in ("one", "two"):
                seen.wait_for(name, "Succeeded", "EvaluationCompleted", timeout=300)
        assert (operator.exit_code, operator.exception) == (0, None), operator.output
        stats = hub.stats()
    assert stats["served"].get("org/shared/model.safetensors") == 1, stats  # downloaded once
    assert size <= stats["bytesServed"] < 2 * size, stats
    cache = core.read_namespaced_persistent_volume_claim("nejumi-model-cache", namespace)
    assert cache.spec.access_modes == ["ReadWriteMany"] and not cache.metadata.owner_references
    for name in ("one", "two"):
        jobs = stage_jobs(k8s_client, namespace, name)
        mounts = {
            stage: {m.name: m.read_only for m in job.spec.template.spec.containers[0].volume_mounts}
            for stage, job in jobs.items()
        }
        assert mounts["fetch"]["model-cache"] in (None, False) and mounts["serve"]["model-cache"] is True
        assert "model-cache" not in mounts["judge"]
    # both serve stages served the cached folder (`<cache>/<key>/weights`)
    assert replies(served, "weights") == 2 * 2


def test_weights_that_cannot_be_fetched_fail_the_fetch_stage_saying_which_and_why(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    served: dict[str, Any],
    operator_env: pytest.MonkeyPatch,
    gpu_queue: tuple[Kueues, str],
) -> None:
    """A gated model without a token: the fetch stage fails (no retry can fix it), the status says
    which model, which source and why, and no serve stage (no GPU) is ever asked for."""
    from tests.fixtures.hub_server import HubServer
    from tests.fixtures.hub_server import model_folder as hub_folder

    _, queue = gpu_queue
    args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
    with HubServer() as hub:
        hub.add_repo("org/gated", hub_folder(served["root"] / "gated"), gated_token="hf_secret")
        shared_model_cache_from(hub, operator_env)
        with (
            Recorder(k8s_client, namespace) as seen,
            KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
        ):
            spec = evaluation(served["root"], queue, samples=2, judge=None)
            spec["model"] = {"name": "org/gated", "source": "vllm"}
            create(k8s_client, namespace, "gated", spec)
            failed = seen.wait_for("gated", "Failed", None, timeout=180)
        assert (operator.exit_code, operator.exception) == (0, None), operator.output
    assert failed["reason"] == "InvalidSpec" and failed["stage"] == "fetch", failed
    message = failed["message"]
    assert message.startswith("the fetch stage: ") and "org/gated" in message, message
    assert "hfTokenSecretRef" in message and "hf_secret" not in message
    assert set(stage_jobs(k8s_client, namespace, "gated")) == {"fetch"}
    assert [(s["name"], s["phase"]) for s in failed["stages"]] == [("fetch", "Failed")]
