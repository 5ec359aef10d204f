"""A served model's evaluation in stages: the plan, each stage's Job, where an evaluation is among
its Jobs, the next stage's Job, and the status across stages (`api.v1alpha1.stages`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.contract import GPU_SECONDS_HELD_ENV, PRICING_ENV
from nejumi_eval.api.v1alpha1.cost import Cost, Pricing
from nejumi_eval.api.v1alpha1.names import LABEL_QUEUE, LABEL_STAGE
from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.api.v1alpha1.stages import SINGLE, STAGED, Stage, after, stages_for
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_operator import controller
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile.job import build_job, job_name
from nejumi_operator.reconcile.stages import StageJobs, stage_jobs
from nejumi_operator.settings import ENV_PRICING, ENV_STAGES, OperatorConfig, SettingsError
from nejumi_operator.status import Observation, last_termination, reduce_status

CONFIG = OperatorConfig(image="registry.test/evaluator:1", policy=Policy(enabled=False))
T0, T1, T2, T3 = (
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:01:00Z",
    "2026-01-01T00:03:00Z",
    "2026-01-01T00:04:00Z",
)
SERVED = {
    "model": {"name": "org/model", "source": "vllm"},
    "resources": {
        "gpus": 2,
        "memory": "64Gi",
        "nodeSelector": {"gpu": "h100"},
        "runtimeClassName": "nvidia",
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "queueName": "gpu",
}


def evaluation(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": "e", "namespace": "ns", "generation": 1, "uid": "u-1"},
        "spec": spec or SERVED,
    }


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job["spec"]["template"]["spec"])


def container(job: dict[str, Any]) -> dict[str, Any]:
    (one,) = pod_spec(job)["containers"]
    return dict(one)


# ---- the plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "staged", "expected"),
    [
        (SERVED, True, STAGED),
        (SERVED, False, SINGLE),
        ({"model": {"name": "org/model", "source": "vllm"}, "resources": {"gpus": 0}}, True, SINGLE),
        ({"model": {"name": "m", "source": "openai-compatible", "endpoint": "https://x/v1"}}, True, SINGLE),
    ],
)
def test_only_a_served_model_on_gpus_is_staged(spec: dict[str, Any], staged: bool, expected: Any) -> None:
    assert stages_for(parse_spec(spec), staged) == expected


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorConfig.from_env({}).staged is True
    assert OperatorConfig.from_env({ENV_STAGES: "false"}).staged is False
    with pytest.raises(SettingsError, match=ENV_STAGES):
        OperatorConfig.from_env({ENV_STAGES: "sometimes"})


# ---- each stage's Job ---------------------------------------------------------------------------


def test_only_the_serve_stage_asks_for_gpus_and_gpu_nodes() -> None:
    jobs = {stage: build_job(evaluation(), CONFIG, stage) for stage in STAGED}
    for stage, job in jobs.items():
        assert job["metadata"]["name"] == f"e-g1-{stage.value}" == job_name("e", 1, stage)
        assert job["metadata"]["labels"][LABEL_STAGE] == stage.value
        assert job["spec"]["template"]["metadata"]["labels"][LABEL_STAGE] == stage.value
        assert job["metadata"]["labels"][LABEL_QUEUE] == "gpu" and job["spec"]["suspend"] is True
        assert container(job)["args"][-2:] == ["--stage", stage.value]
        assert container(job)["resources"]["requests"]["memory"] == "64Gi"
        assert pod_spec(job)["tolerations"]  # harmless off GPU nodes; the priority class stays too
    serve, fetch, judge = jobs[Stage.SERVE], jobs[Stage.FETCH], jobs[Stage.JUDGE]
    assert container(serve)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert (
        pod_spec(serve)["nodeSelector"] == {"gpu": "h100"} and pod_spec(serve)["runtimeClassName"] == "nvidia"
    )
    env = {e["name"]: e.get("value") for e in container(serve)["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"  # the weights were fetched: the server never downloads on GPU time
    for cpu in (fetch, judge):
        assert "nvidia.com/gpu" not in container(cpu)["resources"].get("limits", {})
        assert "nodeSelector" not in pod_spec(cpu) and "runtimeClassName" not in pod_spec(cpu)
        shm = next(v for v in pod_spec(cpu)["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["sizeLimit"] == "1Gi"
        assert "HF_HUB_OFFLINE" not in {e["name"] for e in container(cpu)["env"]}


def test_one_job_for_everything_is_as_before() -> None:
    job = build_job(evaluation(), CONFIG)
    assert job["metadata"]["name"] == "e-g1" and LABEL_STAGE not in job["metadata"]["labels"]
    assert "--stage" not in container(job)["args"]
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "2"


# ---- where an evaluation is ---------------------------------------------------------------------


def job(
    stage: Stage, done: str | None = None, uid: str = "u-1", generation: int = 1, gpus: int = 0
) -> dict[str, Any]:
    built = build_job(evaluation(), CONFIG, stage)
    built["metadata"]["ownerReferences"] = [{"kind": "NejumiEvaluation", "uid": uid, "name": "e"}]
    built["metadata"]["annotations"]["nejumi.wandb.ai/generation"] = str(generation)
    built["metadata"]["uid"] = f"{stage.value}-uid"
    built["spec"]["suspend"] = False
    start = {Stage.FETCH: T0, Stage.SERVE: T1, Stage.JUDGE: T2}.get(stage, T0)
    end = {Stage.FETCH: T1, Stage.SERVE: T2, Stage.JUDGE: T3}.get(stage, T3)
    status: dict[str, Any] = {"startTime": start}
    if done:
        status["conditions"] = [{"type": done, "status": "True", "lastTransitionTime": end}]
        if done == "Complete":
            status["completionTime"] = end
    built["status"] = status
    return built


def test_the_current_stage_and_the_next() -> None:
    assert StageJobs().current is None and StageJobs().next_stage() is None
    fetching = stage_jobs([job(Stage.FETCH)], "u-1", 1)
    assert fetching.current is not None and fetching.current[0] == Stage.FETCH
    assert fetching.next_stage() is None  # not complete yet
    fetched = stage_jobs([job(Stage.FETCH, "Complete")], "u-1", 1)
    assert fetched.next_stage() == Stage.SERVE
    failed = stage_jobs([job(Stage.FETCH, "Failed")], "u-1", 1)
    assert failed.next_stage() is None  # a failed stage ends the evaluation
    served = stage_jobs([job(Stage.FETCH, "Complete"), job(Stage.SERVE, "Complete")], "u-1", 1)
    assert served.current is not None and served.current[0] == Stage.SERVE
    assert served.next_stage() == Stage.JUDGE
    judged = stage_jobs([job(s, "Complete") for s in STAGED], "u-1", 1)
    assert judged.next_stage() is None
    # a namesake's Jobs, and another generation's, never count
    assert stage_jobs([job(Stage.FETCH, "Complete", uid="other")], "u-1", 1).current is None
    assert stage_jobs([job(Stage.FETCH, "Complete", generation=2)], "u-1", 1).current is None


def test_records_say_what_each_stage_held() -> None:
    records = stage_jobs([job(s, "Complete") for s in STAGED], "u-1", 1).records()
    assert [(r["name"], r["phase"], r["gpus"]) for r in records] == [
        ("fetch", "Succeeded", 0),
        ("serve", "Succeeded", 2),
        ("judge", "Succeeded", 0),
    ]
    assert [r.get("gpuSeconds") for r in records] == [None, 240.0, None]  # 2 minutes × 2 GPUs


# ---- the next stage's Job -----------------------------------------------------------------------


class Calls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, existing: dict[str, dict[str, Any]]) -> None:
        self.existing, self.created = existing, []
        monkeypatch.setattr(controller.calls, "create_or_get", self.create_or_get)

    def create_or_get(self, api: Any, namespace: str, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = obj["metadata"]["name"]
        if name in self.existing:
            return self.existing[name], False
        self.created.append(obj)
        return obj, True


def test_a_completed_stage_gets_its_successor_owned_by_the_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = Calls(monkeypatch, {})
    found = stage_jobs([job(Stage.FETCH, "Complete")], "u-1", 1)
    after = controller.advance(object(), CONFIG, evaluation(), found)  # type: ignore[arg-type]
    (made,) = calls.created
    assert made["metadata"]["name"] == "e-g1-serve"
    (ref,) = made["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("NejumiEvaluation", "e", "u-1", True)
    assert after.current is not None and after.current[0] == Stage.SERVE
    running = stage_jobs([job(Stage.FETCH, "Complete"), job(Stage.SERVE)], "u-1", 1)
    controller.advance(object(), CONFIG, evaluation(), running)  # type: ignore[arg-type]
    assert len(calls.created) == 1  # nothing to make while the serve stage runs


def test_a_later_stage_is_never_refused_by_a_later_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(monkeypatch, {})
    strict = OperatorConfig(policy=Policy())  # the default policy refuses the spot toleration below
    spec = dict(SERVED, resources={"gpus": 1, "tolerations": [{"key": "spot", "operator": "Exists"}]})
    found = stage_jobs([job(Stage.FETCH, "Complete")], "u-1", 1)
    controller.advance(object(), strict, evaluation(spec), found)  # type: ignore[arg-type]
    assert [j["metadata"]["name"] for j in calls.created] == ["e-g1-serve"]


def test_a_foreign_namesake_of_the_next_stage_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    Calls(monkeypatch, {"e-g1-serve": {"metadata": {"name": "e-g1-serve", "ownerReferences": []}}})
    found = stage_jobs([job(Stage.FETCH, "Complete")], "u-1", 1)
    with pytest.raises(controller.StageRefused) as refused:
        controller.advance(object(), CONFIG, evaluation(), found)  # type: ignore[arg-type]
    assert refused.value.refusal[0] == c.NAME_CONFLICT and "e-g1-serve" in refused.value.refusal[1]


# ---- the status across stages -------------------------------------------------------------------


def exited(of: dict[str, Any], message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{of['metadata']['name']}-x", "creationTimestamp": T0, "ownerReferences": []},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "evaluator",
                    "state": {"terminated": {"exitCode": 0, "message": message, "finishedAt": T1}},
                }
            ],
        },
    }


def observed(jobs: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None, **kw: Any) -> Observation:
    found = stage_jobs(jobs, "u-1", 1)
    assert found.current is not None
    stage, current = found.current
    following = after(stage).value if after(stage) is not None else None
    pods = pods or []
    return Observation(
        generation=1,
        job_name=current["metadata"]["name"],
        job=current,
        stage=stage.value,
        next_stage=following,
        stages=tuple(found.records()),
        pods=tuple(pods),
        termination=last_termination(pods, current),
        gpus=2 if stage == Stage.SERVE else 0,
        **kw,
    )


def test_a_completed_fetch_stage_is_running_not_done() -> None:
    fetch = job(Stage.FETCH, "Complete")
    summary = Summary(status="completed", model="org/model", stage="fetch").to_json()
    st = reduce_status({}, observed([fetch], [exited(fetch, summary)]), at=T1)
    assert (st["phase"], st["reason"], st["stage"]) == ("Running", c.STAGE_COMPLETED, "fetch")
    assert "the serve stage starts" in st["message"] and "scores" not in st
    assert st["stages"] == [
        {
            "name": "fetch",
            "jobName": "e-g1-fetch",
            "phase": "Succeeded",
            "gpus": 0,
            "startTime": T0,
            "completionTime": T1,
        }
    ]


def test_the_next_stage_on_its_way_is_running_and_waiting_for_quota_is_queued() -> None:
    starting = observed([job(Stage.FETCH, "Complete"), job(Stage.SERVE)])
    st = reduce_status({}, starting, at=T1)
    assert (st["phase"], st["reason"]) == ("Running", c.STAGE_STARTING)
    assert st["message"].startswith("the serve stage: ") and st["progress"] == "serve starting"
    assert [(s["name"], s["phase"]) for s in st["stages"]] == [("fetch", "Succeeded"), ("serve", "Running")]
    queued_job = job(Stage.SERVE)
    queued_job["spec"]["suspend"] = True
    queued = observed([job(Stage.FETCH, "Complete"), queued_job], queue_name="gpu")
    st = reduce_status({}, queued, at=T1)
    assert (st["phase"], st["reason"]) == ("Queued", c.SUSPENDED)
    assert st["message"].startswith("the serve stage: ") and st["stages"][-1]["phase"] == "Queued"


def test_a_failed_stage_fails_the_evaluation_naming_the_stage() -> None:
    serve = job(Stage.SERVE, "Failed")
    serve["status"]["conditions"][0]["reason"] = "BackoffLimitExceeded"
    failed = Summary(status="failed", model="org/model", stage="serve", error="vllm: CUDA out of memory")
    pod = exited(serve, failed.to_json())
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 3
    pod["status"]["phase"] = "Failed"
    st = reduce_status({}, observed([job(Stage.FETCH, "Complete"), serve], [pod]), at=T2)
    assert (st["phase"], st["reason"]) == ("Failed", c.INFRASTRUCTURE_FAILURE)
    assert st["message"].startswith("the serve stage: ") and "CUDA out of memory" in st["message"]
    assert [(s["name"], s["phase"]) for s in st["stages"]] == [("fetch", "Succeeded"), ("serve", "Failed")]


def test_the_judge_stage_ends_the_evaluation_with_the_gpu_seconds_of_the_serve_stage() -> None:
    jobs = [job(s, "Complete") for s in STAGED]
    summary = Summary(status="completed", model="org/model", overall=0.5, runtime_seconds={"total": 60.0})
    st = reduce_status({}, observed(jobs, [exited(jobs[-1], summary.to_json())]), at=T3)
    assert (st["phase"], st["reason"], st["stage"]) == ("Succeeded", c.EVALUATION_COMPLETED, "judge")
    assert st["scores"]["overall"] == 0.5 and st["runtime"]["gpuSeconds"] == 240.0
    assert st["startTime"] == T0 and all(s["phase"] == "Succeeded" for s in st["stages"])


def test_a_refused_next_stage_fails_the_evaluation() -> None:
    fetch = job(Stage.FETCH, "Complete")
    obs = observed([fetch], stage_refusal=(c.NAME_CONFLICT, "Job e-g1-serve is not this evaluation's"))
    st = reduce_status({}, obs, at=T1)
    assert (st["phase"], st["reason"]) == ("Failed", c.NAME_CONFLICT)
    assert "e-g1-serve" in st["message"]


# ---- the shared model cache ---------------------------------------------------------------------


def test_the_model_cache_is_mounted_where_weights_are_fetched_and_served() -> None:
    from nejumi_operator.reconcile.job import build_model_cache_pvc, uses_model_cache

    cached = OperatorConfig(image="x", policy=Policy(enabled=False), model_cache_pvc="models")
    jobs = {stage: build_job(evaluation(), cached, stage) for stage in STAGED}

    def mounts(job: dict[str, Any]) -> dict[str, Any]:
        return {m["name"]: m for m in container(job)["volumeMounts"]}

    def env(job: dict[str, Any]) -> dict[str, Any]:
        return {e["name"]: e.get("value") for e in container(job)["env"]}

    fetch, serve, judge = jobs[Stage.FETCH], jobs[Stage.SERVE], jobs[Stage.JUDGE]
    assert mounts(fetch)["model-cache"] == {
        "name": "model-cache",
        "mountPath": "/mnt/nejumi/models",
        "readOnly": False,
    }
    assert mounts(serve)["model-cache"]["readOnly"] is True
    assert "model-cache" not in mounts(judge) and "NEJUMI_MODEL_CACHE_DIR" not in env(judge)
    assert (
        env(fetch)["NEJUMI_MODEL_CACHE_DIR"] == env(serve)["NEJUMI_MODEL_CACHE_DIR"] == "/mnt/nejumi/models"
    )
    volume = next(v for v in pod_spec(serve)["volumes"] if v["name"] == "model-cache")
    assert volume["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    # a local folder has nothing to fetch; an API model nothing to serve; no setting, no cache
    local = parse_spec(dict(SERVED, model={"name": "/models/m", "source": "vllm"}))
    assert not uses_model_cache(local, cached, Stage.FETCH)
    assert not uses_model_cache(parse_spec(SERVED), CONFIG, Stage.FETCH)
    pvc = build_model_cache_pvc("ns", cached)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and "ownerReferences" not in pvc["metadata"]
    assert pvc["metadata"]["name"] == "models" and pvc["spec"]["resources"]["requests"]["storage"] == "1Ti"


def test_a_pvc_storage_uri_is_mounted_read_only_where_the_weights_are_read() -> None:
    spec = dict(SERVED, model={"name": "my-model", "source": "vllm", "storageUri": "pvc://weights/llama/70b"})
    jobs = {stage: build_job(evaluation(spec), CONFIG, stage) for stage in STAGED}
    for stage in (Stage.FETCH, Stage.SERVE):
        (mount,) = [m for m in container(jobs[stage])["volumeMounts"] if m["name"] == "weights-pvc"]
        assert mount == {"name": "weights-pvc", "mountPath": "/mnt/nejumi/pvc/weights", "readOnly": True}
    assert all(m["name"] != "weights-pvc" for m in container(jobs[Stage.JUDGE])["volumeMounts"])


# ---- the cost: the price table to the Job that reports, the GPU-seconds held ----------------------

PRICED = OperatorConfig(
    image="registry.test/evaluator:1",
    policy=Policy(enabled=False),
    pricing=Pricing.model_validate(
        {
            "currency": "USD",
            "models": {"gpt-4-0613": {"promptPerMillionTokens": 30, "completionPerMillionTokens": 60}},
            "gpuHour": 3.0,
        }
    ),
)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


def test_the_operator_reads_its_price_table_at_startup() -> None:
    assert OperatorConfig.from_env({}).pricing is None
    config = OperatorConfig.from_env({ENV_PRICING: json.dumps({"models": {}, "gpuHour": 2})})
    assert config.pricing == Pricing(gpu_hour=2)
    with pytest.raises(SettingsError, match=f"{ENV_PRICING}: gpuHour: Input should be greater"):
        OperatorConfig.from_env({ENV_PRICING: '{"gpuHour": -2}'})
    with pytest.raises(SettingsError, match=f"{ENV_PRICING}: not valid JSON"):
        OperatorConfig.from_env({ENV_PRICING: "{"})


def test_the_price_table_reaches_the_job_that_reports_and_the_held_seconds_the_judge_stage() -> None:
    table = PRICED.pricing.model_dump_json(by_alias=True) if PRICED.pricing else ""
    fetch, serve = (build_job(evaluation(), PRICED, s) for s in (Stage.FETCH, Stage.SERVE))
    for quiet in (fetch, serve):  # they report no cost: they are not told prices
        assert PRICING_ENV not in env_of(quiet) and GPU_SECONDS_HELD_ENV not in env_of(quiet)
    judge = build_job(evaluation(), PRICED, Stage.JUDGE, gpu_seconds_held=240.0)
    assert env_of(judge)[PRICING_ENV] == table and env_of(judge)[GPU_SECONDS_HELD_ENV] == "240.0"
    assert Pricing.model_validate_json(env_of(judge)[PRICING_ENV]) == PRICED.pricing
    one = build_job(evaluation(), PRICED)  # one Job: it holds its GPUs itself, the operator adds them
    assert env_of(one)[PRICING_ENV] == table and GPU_SECONDS_HELD_ENV not in env_of(one)
    api = build_job(
        evaluation({"model": {"name": "m", "source": "openai-compatible", "endpoint": "https://x/v1"}}),
        PRICED,
    )
    assert env_of(api)[PRICING_ENV] == table
    # a plain value (configuration), never a secret; no table, no variable
    (entry,) = [e for e in container(judge)["env"] if e["name"] == PRICING_ENV]
    assert set(entry) == {"name", "value"}
    assert PRICING_ENV not in env_of(build_job(evaluation(), CONFIG, Stage.JUDGE, gpu_seconds_held=1.0))
    # the operator's evaluator env cannot stand in for them
    forged = dataclasses.replace(PRICED, evaluator_env={PRICING_ENV: "{}", GPU_SECONDS_HELD_ENV: "0"})
    judged = build_job(evaluation(), forged, Stage.JUDGE, gpu_seconds_held=240.0)
    assert env_of(judged)[PRICING_ENV] == table and env_of(judged)[GPU_SECONDS_HELD_ENV] == "240.0"
    assert [e["name"] for e in container(judged)["env"]].count(PRICING_ENV) == 1


def test_the_judge_stage_is_told_what_the_serve_stage_held(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(monkeypatch, {})
    served = stage_jobs([job(Stage.FETCH, "Complete"), job(Stage.SERVE, "Complete")], "u-1", 1)
    assert served.gpu_seconds_held() == 240.0  # 2 minutes × 2 GPUs
    controller.advance(object(), PRICED, evaluation(), served)  # type: ignore[arg-type]
    (made,) = calls.created
    assert made["metadata"]["name"] == "e-g1-judge" and env_of(made)[GPU_SECONDS_HELD_ENV] == "240.0"
    assert StageJobs().gpu_seconds_held() is None
    fetched = stage_jobs([job(Stage.FETCH, "Complete")], "u-1", 1)
    controller.advance(object(), PRICED, evaluation(), fetched)  # type: ignore[arg-type]
    assert GPU_SECONDS_HELD_ENV not in env_of(calls.created[-1])  # the serve stage: nothing held before


def _summary_cost(**kw: Any) -> Cost:
    base = Cost(
        gpu_seconds_busy=90.0,
        model_prompt_tokens=1000,
        model_completion_tokens=200,
        judge_prompt_tokens=1_000_000,
        judge_completion_tokens=100_000,
    )
    return base.model_copy(update=kw)


def test_the_status_cost_is_the_summarys_with_the_gpu_seconds_the_operator_saw_held() -> None:
    jobs = [job(s, "Complete") for s in STAGED]
    cost = _summary_cost(gpu_seconds_held=240.0).priced(PRICED.pricing, {"gpt-4-0613": (1_000_000, 100_000)})
    summary = Summary(status="completed", model="org/model", overall=0.5, cost=cost)
    obs = observed(jobs, [exited(jobs[-1], summary.to_json())], pricing=PRICED.pricing)
    st = reduce_status({}, obs, at=T3)
    assert st["cost"] == {
        "gpuSecondsHeld": 240.0,
        "gpuSecondsBusy": 90.0,
        "modelPromptTokens": 1000,
        "modelCompletionTokens": 200,
        "judgePromptTokens": 1_000_000,
        "judgeCompletionTokens": 100_000,
        "currency": "USD",
        "judgeCost": 36.0,
        "gpuCost": 0.2,  # 240 GPU-s = 1/15 GPU-h × 3.0
        "unpriced": [],
    }
    assert st["costDisplay"] == "0.07 GPU-h · judge 36.00 USD"
    assert st["runtime"]["gpuSeconds"] == st["cost"]["gpuSecondsHeld"]


def test_one_job_gets_its_held_gpu_seconds_from_the_operator() -> None:
    done = job(Stage.RUN, "Complete")  # started T0, completed T3: 4 minutes × 2 GPUs
    cost = _summary_cost().priced(PRICED.pricing, {"gpt-4-0613": (1_000_000, 100_000)})
    assert cost.gpu_seconds_held is None  # the evaluator cannot see its own Job end
    summary = Summary(status="completed", model="org/model", overall=0.5, cost=cost)
    obs = Observation(
        generation=1,
        job_name="e-g1",
        job=done,
        pods=(exited(done, summary.to_json()),),
        termination=last_termination([exited(done, summary.to_json())], done),
        gpus=2,
        pricing=PRICED.pricing,
    )
    st = reduce_status({}, obs, at=T3)
    assert st["runtime"]["gpuSeconds"] == st["cost"]["gpuSecondsHeld"] == 480.0
    assert st["cost"]["gpuCost"] == 0.4 and st["cost"]["judgeCost"] == 36.0
    unpriced = _summary_cost().priced(None, {"gpt-4-0613": (1_000_000, 100_000)})
    bare = dataclasses.replace(obs, pricing=None)
    bare = dataclasses.replace(
        bare,
        termination=last_termination(
            [exited(done, Summary(status="completed", model="m", overall=0.5, cost=unpriced).to_json())], done
        ),
    )
    st = reduce_status({}, bare, at=T3)
    assert st["cost"]["gpuSecondsHeld"] == 480.0
    assert "judgeCost" not in st["cost"] and "gpuCost" not in st["cost"]  # unknown: absent, never 0
    assert st["cost"]["unpriced"] == ["gpt-4-0613"] and st["costDisplay"] == "0.13 GPU-h"
    # an evaluator that reports no cost: none in the status either
    plain = Summary(status="completed", model="m", overall=0.5).to_json()
    st = reduce_status(
        {}, dataclasses.replace(obs, termination=last_termination([exited(done, plain)], done))
    )
    assert "cost" not in st and "costDisplay" not in st
