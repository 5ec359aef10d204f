"""The serve stage of a model larger than one node: the pure NejumiEvaluation → LeaderWorkerSet
builder (`reconcile.group`), against the serve Job's pod that it derives from."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.contract import JOIN_GROUP_FLAG, MODEL_CACHE_MOUNT, SPEC_ENV
from nejumi_eval.api.v1alpha1.names import LABEL_QUEUE, LABEL_STAGE, LABEL_WORKLOAD_PRIORITY
from nejumi_eval.api.v1alpha1.stages import STAGE_FLAG, Stage
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile.group import (
    MAX_GROUP_NAME,
    build_serve_group,
    group_name,
)
from nejumi_operator.reconcile.job import InvalidEvaluation, build_job
from nejumi_operator.settings import OperatorConfig

CONFIG = OperatorConfig(
    image="registry.test/evaluator:1",
    command=("nejumi-eval", "run"),
    policy=Policy(enabled=False),
    model_cache_pvc="models",
)

TWO_NODES: dict[str, Any] = {
    "model": {
        "name": "org/big-405b",
        "revision": "abc123",
        "source": "vllm",
        "vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2},
        "hfTokenSecretRef": {"name": "hf", "key": "token"},
    },
    "benchmarks": {
        "mtbench": {"judge": {"model": "gpt-4-0613", "apiKeySecretRef": {"name": "judge-creds", "key": "k"}}}
    },
    "wandb": {"apiKeySecretRef": {"name": "wandb-creds", "key": "api-key"}},
    "resources": {
        "gpus": 8,
        "nodes": 2,
        "memory": "512Gi",
        "nodeSelector": {"gpu": "h100"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "runtimeClassName": "nvidia",
        "priorityClassName": "eval-high",
    },
    "queueName": "gpu-queue",
    "workloadPriorityClassName": "eval-prio",
}


def evaluation(spec: dict[str, Any], name: str = "big", generation: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": name, "namespace": "team-a", "generation": generation, "uid": "u-1"},
        "spec": spec,
    }


def one_node(spec: dict[str, Any]) -> dict[str, Any]:
    """The same evaluation on one node (its serve stage is a Job): TP 8 × PP 1 = 8 GPUs."""
    out = copy.deepcopy(spec)
    out["resources"]["nodes"] = 1
    out["model"]["vllm"]["pipelineParallelSize"] = 1
    return out


def templates(group: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    t = group["spec"]["leaderWorkerTemplate"]
    return t["leaderTemplate"], t["workerTemplate"]


def container(template: dict[str, Any]) -> dict[str, Any]:
    (c,) = template["spec"]["containers"]
    return c


def env_names(template: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container(template)["env"]]


def test_a_two_node_serve_stage_is_one_group_of_two_admitted_whole_by_kueue() -> None:
    group = build_serve_group(evaluation(TWO_NODES), CONFIG)
    assert (group["apiVersion"], group["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    meta = group["metadata"]
    assert (meta["name"], meta["namespace"]) == ("big-g3-serve", "team-a")
    # A LeaderWorkerSet has no activeDeadlineSeconds: the operator keeps the Job's and times it out.
    assert meta["annotations"] == {
        "nejumi.wandb.ai/generation": "3",
        "nejumi.wandb.ai/active-deadline-seconds": "86400",
    }
    # Labelled as the serve Job is: Kueue manages the group as one Workload in the evaluation's queue.
    assert meta["labels"][LABEL_QUEUE] == "gpu-queue"
    assert meta["labels"][LABEL_WORKLOAD_PRIORITY] == "eval-prio"
    assert meta["labels"][LABEL_STAGE] == Stage.SERVE.value
    spec = group["spec"]
    assert spec["replicas"] == 1 and spec["startupPolicy"] == "LeaderCreated"
    lwt = spec["leaderWorkerTemplate"]
    assert lwt["size"] == 2  # the leader and one worker
    assert lwt["restartPolicy"] == "RecreateGroupOnPodRestart"  # a worker lost: the group starts again
    assert "ownerReferences" not in meta  # the caller's, as for Jobs


def test_the_labels_are_the_serve_jobs_and_without_a_queue_none_for_kueue() -> None:
    one = build_job(evaluation(one_node(TWO_NODES)), CONFIG, Stage.SERVE)
    group = build_serve_group(evaluation(TWO_NODES), CONFIG)
    assert group["metadata"]["labels"] == one["metadata"]["labels"]
    for template in templates(group):
        assert template["metadata"] == one["spec"]["template"]["metadata"]
    unqueued = {k: v for k, v in TWO_NODES.items() if k != "queueName"}
    assert LABEL_QUEUE not in build_serve_group(evaluation(unqueued), CONFIG)["metadata"]["labels"]


def test_every_pod_holds_one_nodes_gpus_and_is_placed_as_the_serve_jobs_pod() -> None:
    one = build_job(evaluation(one_node(TWO_NODES)), CONFIG, Stage.SERVE)
    job_pod = one["spec"]["template"]["spec"]
    for template in templates(build_serve_group(evaluation(TWO_NODES), CONFIG)):
        pod = template["spec"]
        assert container(template)["resources"] == {
            "requests": {"memory": "512Gi"},
            "limits": {"nvidia.com/gpu": "8", "memory": "512Gi"},
        }
        for key in (
            "nodeSelector",
            "tolerations",
            "runtimeClassName",
            "priorityClassName",
            "securityContext",
        ):
            assert pod[key] == job_pod[key], key
        assert pod["volumes"] == job_pod["volumes"]  # the workspace, the model cache (read-only), scratch
        c, job_c = container(template), job_pod["containers"][0]
        for key in ("image", "command", "volumeMounts", "workingDir", "securityContext"):
            assert c[key] == job_c[key], key
        assert {"name": "model-cache", "mountPath": MODEL_CACHE_MOUNT, "readOnly": True} in c["volumeMounts"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HF_HUB_OFFLINE"] == "1"  # weights fetched before: no download on GPU time
        assert env["NEJUMI_MODEL_CACHE_DIR"] == MODEL_CACHE_MOUNT
        assert SPEC_ENV in env
        # A StatefulSet's pod (LWS runs the group as StatefulSets) restarts Always; a Job's, Never.
        assert pod["restartPolicy"] == "Always" and job_pod["restartPolicy"] == "Never"


def test_the_leader_runs_the_serve_stage_and_a_worker_joins_it() -> None:
    one = build_job(evaluation(one_node(TWO_NODES)), CONFIG, Stage.SERVE)
    leader, worker = templates(build_serve_group(evaluation(TWO_NODES), CONFIG))
    # The leader is the serve Job's pod: the evaluator serves (with the group's flags) and generates.
    job_container = one["spec"]["template"]["spec"]["containers"][0]
    assert container(leader)["args"] == job_container["args"]
    serve = ["--spec-env", SPEC_ENV, "--summary", "/dev/termination-log", STAGE_FLAG, "serve"]
    assert container(leader)["args"] == serve
    assert container(worker)["command"] == ["nejumi-eval", "run"]
    assert container(worker)["args"] == ["--spec-env", SPEC_ENV, STAGE_FLAG, "serve", JOIN_GROUP_FLAG]
    # The leader's env is the serve Job's, save the spec (the spec of the multi-node evaluation), plus
    # the attempts it may make (a Job's backoffLimit + 1: the group's pods restart Always).
    job_env = [e for e in job_container["env"] if e["name"] != SPEC_ENV]
    leader_env = [e for e in container(leader)["env"] if e["name"] != SPEC_ENV]
    assert leader_env == [
        *job_env,
        {"name": "NEJUMI_GROUP_ATTEMPTS", "value": str(CONFIG.backoff_limit + 1)},
        {"name": "NEJUMI_GROUP_ID", "value": "u-1/3"},  # the evaluation's UID and generation
    ]
    assert leader["spec"]["automountServiceAccountToken"] is True  # it writes the progress ConfigMap


def test_a_worker_gets_no_secret_no_progress_channel_and_no_api_token() -> None:
    leader, worker = templates(build_serve_group(evaluation(TWO_NODES), CONFIG))
    secrets = {"HF_TOKEN", "NEJUMI_JUDGE_API_KEY", "WANDB_API_KEY"}
    progress = {
        "NEJUMI_PROGRESS_CONFIGMAP",
        "NEJUMI_POD_NAME",
        "NEJUMI_POD_NAMESPACE",
        "NEJUMI_GROUP_ATTEMPTS",
        "NEJUMI_GROUP_ID",
    }
    assert secrets | progress <= set(env_names(leader))
    assert not (secrets | progress) & set(env_names(worker))
    assert set(env_names(worker)) == set(env_names(leader)) - secrets - progress
    assert worker["spec"]["automountServiceAccountToken"] is False
    assert worker["spec"]["serviceAccountName"] == leader["spec"]["serviceAccountName"]


@pytest.mark.parametrize("nodes", [3, 4])
def test_the_group_has_one_pod_per_node(nodes: int) -> None:
    spec = copy.deepcopy(TWO_NODES)
    spec["resources"] |= {"nodes": nodes, "gpus": 4}
    spec["model"]["vllm"] = {"tensorParallelSize": 4, "pipelineParallelSize": nodes}
    group = build_serve_group(evaluation(spec), CONFIG)
    assert group["spec"]["leaderWorkerTemplate"]["size"] == nodes
    for template in templates(group):
        assert container(template)["resources"]["limits"]["nvidia.com/gpu"] == "4"


def test_a_one_node_evaluation_is_still_a_job_and_no_group() -> None:
    with pytest.raises(InvalidEvaluation, match=r"a one-node serve stage is a Job"):
        build_serve_group(evaluation(one_node(TWO_NODES)), CONFIG)
    # And a multi-node serve stage is never a Job.
    with pytest.raises(InvalidEvaluation, match=r"its serve stage is a LeaderWorkerSet group"):
        build_job(evaluation(TWO_NODES), CONFIG, Stage.SERVE)


def test_the_group_is_refused_as_a_job_would_be() -> None:
    strict = OperatorConfig(image="x", policy=Policy())  # the default policy refuses the GPU toleration
    with pytest.raises(InvalidEvaluation):
        build_serve_group(evaluation(TWO_NODES), strict)
    assert build_serve_group(evaluation(TWO_NODES), strict, check_policy=False)["kind"] == "LeaderWorkerSet"
    bad = copy.deepcopy(TWO_NODES)
    bad["model"]["vllm"]["pipelineParallelSize"] = 1  # 8 × 1 ≠ 8 GPUs × 2 nodes
    with pytest.raises(InvalidEvaluation, match=r"resources\.nodes"):
        build_serve_group(evaluation(bad), CONFIG)


def test_names_are_stable_and_fit_lws_statefulset_labels() -> None:
    assert group_name("big", 1) == "big-g1-serve"
    long = "x" * 120
    name = group_name(long, 12)
    assert len(name) <= MAX_GROUP_NAME and name.endswith("-g12-serve") and name == group_name(long, 12)
    # The worker StatefulSet `<name>-0` and its pods' `controller-revision-hash: <name>-0-<10>` label.
    assert len(f"{name}-0-{'h' * 10}") <= 63
    built = build_serve_group(evaluation(TWO_NODES, name=long, generation=12), CONFIG)
    assert built["metadata"]["name"] == name
