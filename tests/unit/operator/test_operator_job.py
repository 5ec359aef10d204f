"""The pure NejumiEvaluation → Job builder."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.contract import RESULTS_CA_MOUNT
from nejumi_eval.api.v1alpha1.names import LABEL_EVALUATION, LABEL_QUEUE
from nejumi_eval.api.v1alpha1.spec import ResultsSpec, parse_spec
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile import job as builder
from nejumi_operator.reconcile.job import InvalidEvaluation, build_job, build_workspace_pvc, job_name
from nejumi_operator.settings import DEFAULT_COMMAND, OperatorConfig, SettingsError

# The Job's shape: the placement policy is lifted here (tests/unit/operator/test_policy.py covers it).
CONFIG = OperatorConfig(
    image="registry.test/evaluator:1", command=("nejumi-eval", "run"), policy=Policy(enabled=False)
)


def evaluation(spec: dict[str, Any], name: str = "llama-eval", generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": name, "namespace": "team-a", "generation": generation, "uid": "u-1"},
        "spec": spec,
    }


SECRETS_SPEC = {
    "model": {
        "name": "gpt-x",
        "source": "openai-compatible",
        "endpoint": "https://llm.team-a.svc/v1",
        "apiKeySecretRef": {"name": "model-creds", "key": "token"},
    },
    "benchmarks": {
        "mtbench": {"judge": {"model": "gpt-4-0613", "apiKeySecretRef": {"name": "judge-creds", "key": "k"}}}
    },
    "wandb": {"apiKeySecretRef": {"name": "wandb-creds", "key": "api-key"}},
    "resources": {"gpus": 0},
}


def container(job: dict[str, Any]) -> dict[str, Any]:
    (c,) = job["spec"]["template"]["spec"]["containers"]
    return c


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(job)["env"]}


# The read-only root filesystem's writable places, after the workspace (and the prepared data).
SCRATCH_MOUNTS = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}]


def scratch_volumes(shm: str) -> list[dict[str, Any]]:
    return [
        {"name": "tmp", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
    ]


def test_job_shape_for_a_gpu_model() -> None:
    spec = {
        "model": {"name": "org/model", "vllm": {"tensorParallelSize": 2}},
        "resources": {
            "gpus": 2,
            "memory": "64Gi",
            "cpu": "8",
            "nodeSelector": {"gpu": "h100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "spot",
                    "operator": "Equal",
                    "value": "true",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                },
            ],
        },
    }
    job = build_job(evaluation(spec, generation=3), CONFIG)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == "llama-eval-g3" == job_name("llama-eval", 3)
    assert job["metadata"]["namespace"] == "team-a"
    labels = job["metadata"]["labels"]
    assert labels[LABEL_EVALUATION] == "llama-eval"
    assert labels["app.kubernetes.io/managed-by"] == "nejumi-operator"
    assert labels["app.kubernetes.io/instance"] == "llama-eval"
    assert LABEL_QUEUE not in labels and "suspend" not in job["spec"]
    assert job["spec"]["template"]["metadata"]["labels"][LABEL_EVALUATION] == "llama-eval"
    assert 0 < job["spec"]["backoffLimit"] <= 3
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == spec["resources"]["tolerations"]
    # Its own ServiceAccount, for the progress ConfigMap only (reconcile.progress).
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("llama-eval-evaluator", True)
    env = env_of(job)
    assert env["NEJUMI_PROGRESS_CONFIGMAP"] == {
        "name": "NEJUMI_PROGRESS_CONFIGMAP",
        "value": "llama-eval-progress",
    }
    assert env["NEJUMI_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    c = container(job)
    assert c["image"] == "registry.test/evaluator:1"
    assert c["command"] == ["nejumi-eval", "run"]
    assert c["args"] == ["--spec-env", "NEJUMI_SPEC", "--summary", "/dev/termination-log"]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["resources"] == {
        "requests": {"memory": "64Gi", "cpu": "8"},
        "limits": {"nvidia.com/gpu": "2", "memory": "64Gi"},
    }
    # Bugs (1) and bad specs (2) fail the Job at once; infrastructure (3) is retried.
    (fail, ignore) = job["spec"]["podFailurePolicy"]["rules"]
    assert fail["action"] == "FailJob" and fail["onExitCodes"]["values"] == [1, 2]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_no_gpu_resource_when_zero_gpus() -> None:
    job = build_job(evaluation(SECRETS_SPEC), CONFIG)
    assert "resources" not in container(job)


def test_spec_env_round_trips_through_parse_spec() -> None:
    job = build_job(evaluation(SECRETS_SPEC), CONFIG)
    parsed = parse_spec(json.loads(env_of(job)["NEJUMI_SPEC"]["value"]))
    original = parse_spec(SECRETS_SPEC)
    assert parsed.summary_path == "/dev/termination-log"
    assert parsed.workspace.path == "."  # the working dir = the mounted workspace volume
    assert container(job)["workingDir"] == "/workspace"
    assert container(job)["volumeMounts"] == [
        {"name": "workspace", "mountPath": "/workspace"},
        *SCRATCH_MOUNTS,
    ]
    original.summary_path, original.workspace.path = parsed.summary_path, parsed.workspace.path
    assert parsed == original


def test_explicit_nulls_survive_the_round_trip() -> None:
    """A judge with apiKeyEnv: null (no key) must not get its default back."""
    spec = {"model": {"name": "m"}, "benchmarks": {"mtbench": {"judge": {"apiKeyEnv": None}}}}
    job = build_job(evaluation(spec), CONFIG)
    parsed = parse_spec(json.loads(env_of(job)["NEJUMI_SPEC"]["value"]))
    assert parsed.benchmarks.mtbench.judge is not None
    assert parsed.benchmarks.mtbench.judge.api_key_env is None


def test_secrets_only_by_reference() -> None:
    job = build_job(evaluation(SECRETS_SPEC), CONFIG)
    env = env_of(job)
    assert env["NEJUMI_MODEL_API_KEY"] == {
        "name": "NEJUMI_MODEL_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "model-creds", "key": "token"}},
    }
    assert env["NEJUMI_JUDGE_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "judge-creds", "key": "k"}}
    assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wandb-creds", "key": "api-key"}}
    # Nothing but references: no key env var has a literal value, and no secretKeyRef is resolved.
    for name in ("NEJUMI_MODEL_API_KEY", "NEJUMI_JUDGE_API_KEY", "WANDB_API_KEY"):
        assert "value" not in env[name]
    # The builder cannot leak what it never sees: it makes no API calls, so the only strings in
    # the Job are from the spec and settings. The spec env names secrets, never values.
    refs = json.loads(env["NEJUMI_SPEC"]["value"])["model"]["apiKeySecretRef"]
    assert refs == {"name": "model-creds", "key": "token"}
    assert "envFrom" not in container(job)


def test_operator_env_cannot_override_reserved_names() -> None:
    config = OperatorConfig(evaluator_env={"NEJUMI_DATA_MIRROR": "/data", "NEJUMI_MODEL_API_KEY": "leak"})
    env = env_of(build_job(evaluation(SECRETS_SPEC), config))
    assert env["NEJUMI_DATA_MIRROR"] == {"name": "NEJUMI_DATA_MIRROR", "value": "/data"}
    assert "value" not in env["NEJUMI_MODEL_API_KEY"]


def test_env_names_match_the_evaluator() -> None:
    """One home for the contract: both sides import the same names (no copies kept equal)."""
    from nejumi_eval import endpoints
    from nejumi_eval.api.v1alpha1 import contract

    assert builder.MODEL_API_KEY_ENV == endpoints.MODEL_API_KEY_ENV == contract.MODEL_API_KEY_ENV
    assert builder.JUDGE_API_KEY_ENV == endpoints.JUDGE_API_KEY_ENV == contract.JUDGE_API_KEY_ENV


def test_kueue_label_and_suspend_only_with_queue_name() -> None:
    plain = build_job(evaluation({"model": {"name": "m"}}), CONFIG)
    assert LABEL_QUEUE not in plain["metadata"]["labels"] and "suspend" not in plain["spec"]
    queued = build_job(evaluation({"model": {"name": "m"}, "queueName": "gpu-queue"}), CONFIG)
    assert queued["metadata"]["labels"][LABEL_QUEUE] == "gpu-queue"
    assert queued["spec"]["suspend"] is True
    assert LABEL_QUEUE not in queued["spec"]["template"]["metadata"]["labels"]


def test_workspace_volume() -> None:
    pvc = build_job(evaluation({"model": {"name": "m"}, "workspace": {"pvcName": "cache"}}), CONFIG)
    assert pvc["spec"]["template"]["spec"]["volumes"] == [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": "cache"}},
        *scratch_volumes("2Gi"),
    ]
    # Without pvcName: the PVC the operator creates for the evaluation (issue 10; was an emptyDir).
    own = build_job(evaluation({"model": {"name": "m"}, "workspace": {"size": "50Gi"}}), CONFIG)
    assert own["spec"]["template"]["spec"]["volumes"] == [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": "llama-eval-workspace"}},
        *scratch_volumes("2Gi"),
    ]


def test_long_names_fit_label_and_name_limits() -> None:
    name = "a-very-long-evaluation-name-" + "x" * 200
    job = build_job(evaluation({"model": {"name": "m"}}, name=name, generation=12), CONFIG)
    assert len(job["metadata"]["name"]) <= 63 and job["metadata"]["name"].endswith("-g12")
    assert len(job["metadata"]["labels"][LABEL_EVALUATION]) <= 63
    assert job_name(name, 12) == job["metadata"]["name"]  # stable: creation stays idempotent
    assert job_name(name, 12) != job_name(name + "y", 12)


def test_invalid_spec_names_the_field() -> None:
    with pytest.raises(InvalidEvaluation, match=r"model.endpoint is required"):
        build_job(evaluation({"model": {"name": "m", "source": "openai-compatible"}}), CONFIG)
    with pytest.raises(InvalidEvaluation, match=r"resources.gpus must be at least .*\(resources.gpus 1,"):
        build_job(evaluation({"model": {"name": "m", "vllm": {"tensorParallelSize": 2}}}), CONFIG)


def test_settings_from_env() -> None:
    assert OperatorConfig.from_env({}).command == DEFAULT_COMMAND
    assert OperatorConfig.from_env({}).image.startswith("ghcr.io/nejumi/evaluator:")
    config = OperatorConfig.from_env(
        {
            "NEJUMI_OPERATOR_EVALUATOR_IMAGE": "img:2",
            "NEJUMI_OPERATOR_EVALUATOR_COMMAND": '["/venv/bin/nejumi-eval", "run"]',
            "NEJUMI_OPERATOR_EVALUATOR_ENV": '{"A": "1"}',
            "NEJUMI_OPERATOR_SERVER_TIMEOUT": "5",
        }
    )
    assert (config.image, config.command, dict(config.evaluator_env)) == (
        "img:2",
        ("/venv/bin/nejumi-eval", "run"),
        {"A": "1"},
    )
    assert config.server_timeout_seconds == 5
    with pytest.raises(SettingsError, match="EVALUATOR_COMMAND"):
        OperatorConfig.from_env({"NEJUMI_OPERATOR_EVALUATOR_COMMAND": '"nejumi-eval run"'})


def test_data_cache_lives_in_the_workspace_unless_configured() -> None:
    env = env_of(build_job(evaluation(SECRETS_SPEC), OperatorConfig()))
    assert env["NEJUMI_CACHE_DIR"] == {"name": "NEJUMI_CACHE_DIR", "value": ".cache"}
    job = build_job(evaluation(SECRETS_SPEC), OperatorConfig(evaluator_env={"NEJUMI_CACHE_DIR": "/cache"}))
    assert env_of(job)["NEJUMI_CACHE_DIR"]["value"] == "/cache"


# ---- shared prepared data (issue 8 §5) ------------------------------------------------------------


def test_no_prepared_data_volume_by_default() -> None:
    job = build_job(evaluation(SECRETS_SPEC), CONFIG)
    assert [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]] == ["workspace", "tmp", "dshm"]
    assert container(job)["volumeMounts"] == [
        {"name": "workspace", "mountPath": "/workspace"},
        *SCRATCH_MOUNTS,
    ]
    # The image's own NEJUMI_PREPARED_DIRS (its baked copy) stays in force: no container env for it.
    assert "NEJUMI_PREPARED_DIRS" not in env_of(job)


def test_prepared_data_pvc_is_mounted_read_only_and_searched() -> None:
    from nejumi_eval.api.v1alpha1.contract import PREPARED_DIRS_ENV

    config = OperatorConfig(image="img:1", prepared_data_pvc="nejumi-prepared")
    spec = {"model": {"name": "m"}, "workspace": {"pvcName": "ws"}}
    job = build_job(evaluation(spec), config)
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": "ws"}},
        {
            "name": "prepared-data",
            "persistentVolumeClaim": {"claimName": "nejumi-prepared", "readOnly": True},
        },
        *scratch_volumes("2Gi"),
    ]
    assert container(job)["volumeMounts"] == [
        {"name": "workspace", "mountPath": "/workspace"},
        {"name": "prepared-data", "mountPath": builder.PREPARED_DATA_MOUNT, "readOnly": True},
        *SCRATCH_MOUNTS,
    ]
    env = env_of(job)
    # The image's baked root first (a container env value replaces the image's ENV), then the PVC.
    assert env[PREPARED_DIRS_ENV]["value"] == f"/opt/nejumi/prepared:{builder.PREPARED_DATA_MOUNT}"
    assert builder.IMAGE_PREPARED_DIR == "/opt/nejumi/prepared"
    # The writable cache is still the workspace's: the PVC is only ever read.
    assert env["NEJUMI_CACHE_DIR"]["value"] == ".cache"


def test_prepared_data_pvc_appends_to_configured_roots() -> None:
    config = OperatorConfig(
        prepared_data_pvc="shared", evaluator_env={"NEJUMI_PREPARED_DIRS": "/data/a:/data/b"}
    )
    env = env_of(build_job(evaluation(SECRETS_SPEC), config))
    assert env["NEJUMI_PREPARED_DIRS"]["value"] == f"/data/a:/data/b:{builder.PREPARED_DATA_MOUNT}"
    # Without the PVC, the operator's evaluator env passes through untouched.
    plain = OperatorConfig(evaluator_env={"NEJUMI_PREPARED_DIRS": "/data/a"})
    assert env_of(build_job(evaluation(SECRETS_SPEC), plain))["NEJUMI_PREPARED_DIRS"]["value"] == "/data/a"


def test_prepared_data_pvc_setting_from_env() -> None:
    assert OperatorConfig.from_env({}).prepared_data_pvc == ""
    assert OperatorConfig.from_env({"NEJUMI_OPERATOR_PREPARED_DATA_PVC": ""}) == OperatorConfig()
    config = OperatorConfig.from_env({"NEJUMI_OPERATOR_PREPARED_DATA_PVC": "nejumi-prepared"})
    assert config.prepared_data_pvc == "nejumi-prepared"


def test_prepared_data_mount_path_can_be_read_by_the_evaluator(tmp_path, monkeypatch) -> None:
    """The env value the builder writes parses into the roots the evaluator searches, in order."""
    from nejumi_eval.benchmarks.jaster.prepare import prepared_roots

    env = env_of(build_job(evaluation(SECRETS_SPEC), OperatorConfig(prepared_data_pvc="p")))
    monkeypatch.setenv("NEJUMI_PREPARED_DIRS", env["NEJUMI_PREPARED_DIRS"]["value"])
    assert [str(p) for p in prepared_roots()] == [builder.IMAGE_PREPARED_DIR, builder.PREPARED_DATA_MOUNT]


def test_judge_keys_come_from_any_enabled_benchmark_with_a_judge() -> None:
    """The Job builder names no benchmark: any enabled section with a judge may carry the key."""
    ref = {"name": "judge", "key": "api-key"}
    spec = {"model": {"name": "m"}, "benchmarks": {"mtbench": {"judge": {"apiKeySecretRef": ref}}}}
    env = env_of(build_job(evaluation(spec), CONFIG))
    assert env["NEJUMI_JUDGE_API_KEY"]["valueFrom"]["secretKeyRef"] == ref
    disabled = {
        "model": {"name": "m"},
        "benchmarks": {"mtbench": {"enabled": False, "judge": {"apiKeySecretRef": ref}}},
    }
    assert "NEJUMI_JUDGE_API_KEY" not in env_of(build_job(evaluation(disabled), CONFIG))


# ---- defaults a GPU cluster can live with (issue 10) ----------------------------------------------

API_SPEC = {"model": {"name": "gpt-x", "source": "openai-compatible", "endpoint": "https://api.example/v1"}}


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def test_an_api_model_requests_no_gpu_unless_asked() -> None:
    assert "resources" not in container(build_job(evaluation(API_SPEC), CONFIG))
    asked = build_job(evaluation({**API_SPEC, "resources": {"gpus": 1}}), CONFIG)
    assert container(asked)["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    served = build_job(evaluation({"model": {"name": "m"}}), CONFIG)
    assert container(served)["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    # the spec the evaluator gets says so too
    assert (
        json.loads(env_of(build_job(evaluation(API_SPEC), CONFIG))["NEJUMI_SPEC"]["value"])["resources"][
            "gpus"
        ]
        == 0
    )


@pytest.mark.parametrize(
    ("vllm", "resources"),
    [
        ({"tensorParallelSize": 2}, {}),
        ({"pipelineParallelSize": 2}, {}),
        ({"tensorParallelSize": 2, "pipelineParallelSize": 2}, {"gpus": 3}),
    ],
)
def test_the_gpus_rule_still_holds_for_served_models(vllm: dict[str, int], resources: dict[str, int]) -> None:
    """The CRD's cluster-only rule, applied by the operator too (the CRD may be older than it), with
    the numbers it read."""
    spec = {"model": {"name": "m", "vllm": vllm}, "resources": resources}
    with pytest.raises(InvalidEvaluation) as refused:
        build_job(evaluation(spec), CONFIG)
    message = str(refused.value)
    assert (
        "resources.gpus must be at least model.vllm.tensorParallelSize * model.vllm.pipelineParallelSize"
        in (message)
    )
    gpus = resources.get("gpus", 1)
    assert f"resources.gpus {gpus}, resources.nodes 1" in message


@pytest.mark.parametrize(
    ("vllm", "gpus"),
    [({"tensorParallelSize": 2}, 2), ({"tensorParallelSize": 2, "pipelineParallelSize": 2}, 4), ({}, 4)],
)
def test_enough_gpus_on_one_node_run(vllm: dict[str, int], gpus: int) -> None:
    """As many GPUs as tensor * pipeline stages, or more (admitted before pipelines: vLLM uses the
    first ones)."""
    job = build_job(evaluation({"model": {"name": "m", "vllm": vllm}, "resources": {"gpus": gpus}}), CONFIG)
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)


def test_a_multi_node_evaluation_runs_its_cpu_stages_as_jobs_and_never_serves_in_one() -> None:
    """Its fetch and judge stages are one-pod Jobs like any; its serve stage is a group
    (`reconcile.group`): no Job would evaluate the model on one node under the spec's name."""
    spec = {
        "model": {"name": "m", "vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2}},
        "resources": {"gpus": 8, "nodes": 2},
    }
    for stage in (Stage.FETCH, Stage.JUDGE):
        limits = container(build_job(evaluation(spec), CONFIG, stage)).get("resources", {}).get("limits", {})
        assert "nvidia.com/gpu" not in limits
    with pytest.raises(InvalidEvaluation, match="its serve stage is a LeaderWorkerSet group"):
        build_job(evaluation(spec), CONFIG, Stage.SERVE)
    with pytest.raises(InvalidEvaluation, match="a model served across nodes runs in stages"):
        build_job(evaluation(spec), CONFIG)  # the one pod of an operator without stages
    one_node = {**spec, "resources": {"gpus": 16, "nodes": 1}}
    assert container(build_job(evaluation(one_node), CONFIG))["resources"]["limits"]["nvidia.com/gpu"] == "16"


def test_a_multi_node_workspace_is_readable_from_every_node() -> None:
    spec = {
        "model": {"name": "m", "vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2}},
        "resources": {"gpus": 8, "nodes": 2},
    }
    pvc = build_workspace_pvc(evaluation(spec), CONFIG)
    assert pvc is not None and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    one = build_workspace_pvc(evaluation({**spec, "resources": {"gpus": 16}}), CONFIG)
    assert one is not None and one["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_integer_quantities_reach_the_pod_as_quantities() -> None:
    job = build_job(evaluation({**API_SPEC, "resources": {"cpu": 4, "memory": 68719476736}}), CONFIG)
    assert container(job)["resources"] == {
        "requests": {"cpu": "4", "memory": "68719476736"},
        "limits": {"memory": "68719476736"},
    }


def test_active_deadline_by_default_and_from_the_spec() -> None:
    assert build_job(evaluation({"model": {"name": "m"}}), CONFIG)["spec"]["activeDeadlineSeconds"] == 86400
    assert (
        build_job(evaluation(API_SPEC), CONFIG)["spec"]["activeDeadlineSeconds"]
        == builder.DEFAULT_DEADLINE_SECONDS
    )
    spec = {"model": {"name": "m"}, "resources": {"activeDeadlineSeconds": 7200}}
    assert build_job(evaluation(spec), CONFIG)["spec"]["activeDeadlineSeconds"] == 7200


def test_the_pod_meets_pod_security_restricted() -> None:
    """The checks of the `restricted` profile (pod-security-standards), one by one."""
    job = build_job(evaluation(SECRETS_SPEC), CONFIG)
    pod, c = pod_of(job), container(job)
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0 and psc["runAsGroup"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert psc["fsGroup"] == psc["runAsGroup"]  # the workspace PVC is writable by the pod's user
    assert csc["allowPrivilegeEscalation"] is False and csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["readOnlyRootFilesystem"] is True
    # only volume types restricted allows; no host namespaces, ports or paths
    assert all(set(v) - {"name"} <= {"emptyDir", "persistentVolumeClaim"} for v in pod["volumes"])
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert "ports" not in c


def test_writable_places_under_a_read_only_root() -> None:
    job = build_job(evaluation({"model": {"name": "m"}}), CONFIG)
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_of(job)["volumes"]}
    assert volumes[mounts["/tmp"]] == {"name": "tmp", "emptyDir": {}}
    assert volumes[mounts["/workspace"]]["name"] == "workspace"
    env = env_of(job)
    assert env["HOME"]["value"] == "/tmp"  # tools that write under $HOME (vLLM's config, triton)
    # Hugging Face weights on the workspace (relative to the working dir, like NEJUMI_CACHE_DIR)
    assert env["HF_HOME"]["value"] == ".cache/huggingface" and container(job)["workingDir"] == "/workspace"
    # the operator's evaluator env may put them elsewhere
    config = OperatorConfig(evaluator_env={"HF_HOME": "/models/hf"})
    assert env_of(build_job(evaluation({"model": {"name": "m"}}), config))["HF_HOME"]["value"] == "/models/hf"


@pytest.mark.parametrize(
    ("resources", "size"),
    [({}, "2Gi"), ({"gpus": 4}, "8Gi"), ({"gpus": 8}, "16Gi"), ({"gpus": 2, "shmSize": "32Gi"}, "32Gi")],
)
def test_shared_memory_is_memory_backed_and_sized_by_gpus(resources: dict[str, Any], size: str) -> None:
    tp = resources.get("gpus", 1)
    spec = {"model": {"name": "m", "vllm": {"tensorParallelSize": tp}}, "resources": resources}
    assert shm_of(build_job(evaluation(spec), CONFIG)) == {"medium": "Memory", "sizeLimit": size}


def test_shared_memory_without_gpus() -> None:
    assert shm_of(build_job(evaluation(API_SPEC), CONFIG)) == {"medium": "Memory", "sizeLimit": "1Gi"}


def shm_of(job: dict[str, Any]) -> dict[str, Any]:
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    return next(v for v in pod_of(job)["volumes"] if v["name"] == mounts["/dev/shm"])["emptyDir"]


def test_hugging_face_token_only_by_reference() -> None:
    spec = {"model": {"name": "meta-llama/gated", "hfTokenSecretRef": {"name": "hf", "key": "token"}}}
    env = env_of(build_job(evaluation(spec), CONFIG))
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
    }
    assert "HF_TOKEN" not in env_of(build_job(evaluation({"model": {"name": "m"}}), CONFIG))
    # the operator's settings cannot put a literal token there
    config = OperatorConfig(evaluator_env={"HF_TOKEN": "hf_leak"})
    assert env_of(build_job(evaluation(spec), config))["HF_TOKEN"]["valueFrom"]
    assert "HF_TOKEN" not in env_of(build_job(evaluation({"model": {"name": "m"}}), config))


def test_env_name_of_the_token_is_the_contracts() -> None:
    from nejumi_eval.api.v1alpha1 import contract

    assert builder.HF_TOKEN_ENV == contract.HF_TOKEN_ENV == "HF_TOKEN"
    assert contract.HF_TOKEN_ENV in builder.RESERVED_ENV


def test_scheduling_fields_from_the_spec() -> None:
    spec = {
        **API_SPEC,
        "resources": {
            "priorityClassName": "batch-low",
            "runtimeClassName": "nvidia",
            "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
        },
    }
    pod = pod_of(build_job(evaluation(spec), CONFIG))
    assert pod["priorityClassName"] == "batch-low" and pod["runtimeClassName"] == "nvidia"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    plain = pod_of(build_job(evaluation(API_SPEC), CONFIG))
    assert not {"priorityClassName", "runtimeClassName", "imagePullSecrets"} & plain.keys()


def test_the_default_workspace_is_the_evaluations_own_pvc() -> None:
    job = build_job(evaluation({"model": {"name": "m"}}, generation=3), CONFIG)
    (workspace,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "workspace"]
    # one claim per evaluation, whatever the generation: a new generation's Job finds the same cache
    assert workspace == {"name": "workspace", "persistentVolumeClaim": {"claimName": "llama-eval-workspace"}}
    assert builder.workspace_claim_name("llama-eval") == "llama-eval-workspace"


def test_the_operators_default_queue_applies_unless_the_spec_names_one() -> None:
    queued = OperatorConfig(default_queue_name="team-gpus", policy=Policy(enabled=False))
    job = build_job(evaluation(API_SPEC), queued)
    assert job["metadata"]["labels"][LABEL_QUEUE] == "team-gpus" and job["spec"]["suspend"] is True
    own = build_job(evaluation({**API_SPEC, "queueName": "mine"}), queued)
    assert own["metadata"]["labels"][LABEL_QUEUE] == "mine"
    assert OperatorConfig.from_env({"NEJUMI_OPERATOR_DEFAULT_QUEUE_NAME": " q "}).default_queue_name == "q"


# ---- the results of record (issue 18) --------------------------------------------------------------

RESULTS = {
    "uri": "s3://nejumi-results/team-a",
    "endpoint": "https://minio.storage.svc:9000",
    "credentialsSecretRef": {"name": "s3-creds", "secretAccessKeyKey": "secret"},
    "caBundleRef": {"name": "store-ca", "key": "bundle.pem"},
}
DEFAULT_RESULTS = ResultsSpec.model_validate(
    {"uri": "s3://platform-results", "credentialsSecretRef": {"name": "platform-s3"}}
)


def spec_results(job: dict[str, Any]) -> dict[str, Any]:
    return json.loads(env_of(job)["NEJUMI_SPEC"]["value"])["results"]


def test_results_of_the_spec_reach_the_evaluator_by_reference() -> None:
    job = build_job(evaluation({**API_SPEC, "results": RESULTS}, generation=4), CONFIG)
    env = env_of(job)
    # Its own key under the URI: a retried pod rewrites it, a new generation gets another.
    assert env["NEJUMI_RESULTS_KEY"] == {"name": "NEJUMI_RESULTS_KEY", "value": "team-a/llama-eval/4"}
    assert env["AWS_ACCESS_KEY_ID"] == {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}},
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3-creds", "key": "secret"}
    }
    assert "value" not in env["AWS_ACCESS_KEY_ID"] and "value" not in env["AWS_SECRET_ACCESS_KEY"]
    # The CA bundle: that one key of the ConfigMap, read-only, and boto3 told where it is.
    volumes = {v["name"]: v for v in pod_of(job)["volumes"]}
    assert volumes["results-ca"] == {
        "name": "results-ca",
        "configMap": {"name": "store-ca", "items": [{"key": "bundle.pem", "path": "bundle.pem"}]},
    }
    assert container(job)["volumeMounts"][-1] == {
        "name": "results-ca",
        "mountPath": RESULTS_CA_MOUNT,
        "readOnly": True,
    }
    assert (
        env["AWS_CA_BUNDLE"]["value"]
        == f"{RESULTS_CA_MOUNT}/bundle.pem"
        == "/etc/nejumi/results-ca/bundle.pem"
    )
    assert (
        parse_spec({**API_SPEC, "results": RESULTS}).results
        == parse_spec({"model": {"name": "m"}, "results": spec_results(job)}).results
    )


def test_a_spec_without_a_uri_gets_the_operators_default_whole() -> None:
    config = OperatorConfig(policy=Policy(enabled=False), default_results=DEFAULT_RESULTS)
    job = build_job(evaluation(API_SPEC), config)
    assert spec_results(job)["uri"] == "s3://platform-results"
    assert spec_results(job)["credentialsSecretRef"]["name"] == "platform-s3"
    env = env_of(job)
    assert env["NEJUMI_RESULTS_KEY"]["value"] == "team-a/llama-eval/1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "platform-s3",
        "key": "AWS_ACCESS_KEY_ID",
    }
    assert "AWS_CA_BUNDLE" not in env and "results-ca" not in [v["name"] for v in pod_of(job)["volumes"]]
    # A spec naming its own destination replaces the default as a whole: none of its credentials.
    own = {"uri": "s3://team-bucket/x", "endpoint": "http://minio.team-a.svc:9000"}
    job = build_job(evaluation({**API_SPEC, "results": own}), config)
    assert (
        spec_results(job)["uri"] == "s3://team-bucket/x" and spec_results(job)["credentialsSecretRef"] is None
    )
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & env_of(job).keys()
    assert env_of(job)["NEJUMI_RESULTS_KEY"]["value"] == "team-a/llama-eval/1"


def test_no_results_env_without_a_destination() -> None:
    job = build_job(evaluation(SECRETS_SPEC), CONFIG)
    env = env_of(job)
    assert (
        not {"NEJUMI_RESULTS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CA_BUNDLE"} & env.keys()
    )
    assert spec_results(job)["uri"] is None
    assert [v["name"] for v in pod_of(job)["volumes"]] == ["workspace", "tmp", "dshm"]


def test_the_operators_evaluator_env_cannot_supply_store_keys() -> None:
    from nejumi_eval.api.v1alpha1 import contract

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NEJUMI_RESULTS_KEY"):
        assert name in builder.RESERVED_ENV
    assert contract.RESULTS_KEY_ENV == "NEJUMI_RESULTS_KEY"
    leaky = {"AWS_ACCESS_KEY_ID": "AKIALEAK", "AWS_SECRET_ACCESS_KEY": "leak", "NEJUMI_RESULTS_KEY": "x/y/1"}
    config = OperatorConfig(
        policy=Policy(enabled=False), evaluator_env={**leaky, "AWS_CA_BUNDLE": "/etc/corp.pem"}
    )
    plain = env_of(build_job(evaluation(API_SPEC), config))
    assert not leaky.keys() & plain.keys()
    assert plain["AWS_CA_BUNDLE"]["value"] == "/etc/corp.pem"  # not a secret: the admin's CA stays
    stored = [e for e in container(build_job(evaluation({**API_SPEC, "results": RESULTS}), config))["env"]]
    names = [e["name"] for e in stored]
    assert len(names) == len(set(names))  # one value per name: the spec's CA replaced the admin's
    by_name = {e["name"]: e for e in stored}
    assert "value" not in by_name["AWS_ACCESS_KEY_ID"] and "value" not in by_name["AWS_SECRET_ACCESS_KEY"]
    assert by_name["NEJUMI_RESULTS_KEY"]["value"] == "team-a/llama-eval/1"
    assert by_name["AWS_CA_BUNDLE"]["value"] == f"{RESULTS_CA_MOUNT}/bundle.pem"


def test_the_results_ca_volume_passes_pod_security_restricted() -> None:
    pod = pod_of(build_job(evaluation({**API_SPEC, "results": RESULTS}), CONFIG))
    # configMap is one of the volume types `restricted` allows
    assert all(
        set(v) - {"name"} <= {"emptyDir", "persistentVolumeClaim", "configMap"} for v in pod["volumes"]
    )


def test_default_results_setting() -> None:
    assert OperatorConfig.from_env({}).default_results is None
    assert OperatorConfig.from_env({"NEJUMI_OPERATOR_RESULTS": ""}).default_results is None
    raw = {
        "uri": "s3://platform-results/x",
        "endpoint": "https://minio.storage.svc:9000",
        "region": "eu-1",
        "credentialsSecretRef": {"name": "platform-s3"},
        "caBundleRef": {"name": "store-ca", "key": "ca.crt"},
        "pathStyle": False,
    }
    config = OperatorConfig.from_env({"NEJUMI_OPERATOR_RESULTS": json.dumps(raw)})
    assert config.default_results == ResultsSpec.model_validate(raw)
    # exactly a spec's `results` section: what it dumps, it reads back
    dumped = config.default_results.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert OperatorConfig.from_env({"NEJUMI_OPERATOR_RESULTS": json.dumps(dumped)}) == config


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("s3://bucket", "not valid JSON"),
        ('["s3://bucket"]', "expected a JSON dict"),
        ("{}", "uri is required"),
        ('{"uri": "https://bucket"}', "uri: String should match pattern"),
        ('{"uri": "s3://bucket", "credentialsSecret": "x"}', "credentialsSecret: Extra inputs"),
        ('{"uri": "s3://bucket", "endpoint": "minio:9000"}', "results.endpoint: an http(s) URL"),
    ],
)
def test_a_bad_default_results_setting_stops_the_operator(raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match="NEJUMI_OPERATOR_RESULTS") as caught:
        OperatorConfig.from_env({"NEJUMI_OPERATOR_RESULTS": raw})
    assert message in str(caught.value), caught.value
