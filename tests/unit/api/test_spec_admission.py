"""Nothing admitted that cannot run (issue 10): every spec the Job or the evaluator would refuse later
is refused by the spec model, and so by the CRD generated from it, naming the field.

`REJECTED` and `ACCEPTED` are the one table of cases: here the evaluator's side (`parse_spec`, and
the Job builder, which refuses what the evaluator refuses), in `tests/integration/test_admission.py`
the API server's side on the real control plane, each with the message it must name."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nejumi_eval.api.v1alpha1 import spec as api
from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec
from tests.support.paths import REPO

API_MODEL = {"name": "gpt-x", "source": "openai-compatible", "endpoint": "https://api.example/v1"}
SECRET = {"name": "creds", "key": "token"}


def with_resources(**resources: Any) -> dict[str, Any]:
    return {"model": {"name": "m"}, "resources": resources}


def with_model(**model: Any) -> dict[str, Any]:
    return {"model": {"name": "m", **model}}


def with_judge(**judge: Any) -> dict[str, Any]:
    return {"model": {"name": "m"}, "benchmarks": {"mtbench": {"judge": judge}}}


def case(case_id: str, spec: dict[str, Any], crd: str, local: str | None) -> Any:
    """One bad spec: `crd` is in the API server's message, `local` in the evaluator's (None: the rule
    is the API server's only, e.g. pod resources a local run ignores)."""
    return pytest.param(spec, crd, local, id=case_id)


PATTERN = "String should match pattern"

REJECTED = [
    # ---- resource quantities (Kubernetes quantity syntax; integers are quantities too) ----------
    case("memory-word", with_resources(memory="lots"), "spec.resources.memory in body should match", PATTERN),
    case(
        "memory-lowercase-gi",
        with_resources(memory="64gi"),
        "spec.resources.memory in body should match",
        PATTERN,
    ),
    case(
        "memory-space", with_resources(memory="64 Gi"), "spec.resources.memory in body should match", PATTERN
    ),
    case(
        "memory-negative",
        with_resources(memory="-1Gi"),
        "spec.resources.memory in body should match",
        PATTERN,
    ),
    case("cpu-unit-word", with_resources(cpu="4 cores"), "spec.resources.cpu in body should match", PATTERN),
    case(
        "cpu-negative-int",
        with_resources(cpu=-1),
        "spec.resources.cpu in body should be greater than or equal to 0",
        "resources.cpu: " + PATTERN,
    ),
    case(
        "cpu-float",
        with_resources(cpu=0.5),
        "spec.resources.cpu",
        "resources.cpu: Input should be a valid string",
    ),
    case(
        "cpu-bool",
        with_resources(cpu=True),
        "spec.resources.cpu",
        "resources.cpu: Input should be a valid string",
    ),
    case("shm-size", with_resources(shmSize="big"), "spec.resources.shmSize in body should match", PATTERN),
    case(
        "workspace-size",
        {"model": {"name": "m"}, "workspace": {"size": "50 GB"}},
        "spec.workspace.size in body should match",
        "workspace.size: " + PATTERN,
    ),
    # ---- label keys and values -----------------------------------------------------------------
    case(
        "node-selector-key-space",
        with_resources(nodeSelector={"gpu type": "h100"}),
        'spec.resources.nodeSelector: Invalid value: "object": '
        "resources.nodeSelector keys must be label keys",
        "resources.nodeSelector keys must be label keys",
    ),
    case(
        "node-selector-key-upper-prefix",
        with_resources(nodeSelector={"Example.com/gpu": "h100"}),
        "resources.nodeSelector keys must be label keys",
        "resources.nodeSelector keys must be label keys",
    ),
    case(
        "node-selector-key-name-too-long",
        with_resources(nodeSelector={"example.com/" + "a" * 64: "x"}),
        "resources.nodeSelector keys must be label keys",
        "resources.nodeSelector keys must be label keys",
    ),
    case(
        "node-selector-key-prefix-too-long",
        with_resources(nodeSelector={("a" * 60 + ".") * 5 + "b/gpu": "x"}),
        "resources.nodeSelector keys must be label keys",
        "resources.nodeSelector keys must be label keys",
    ),
    case(
        "node-selector-key-empty-name",
        with_resources(nodeSelector={"example.com/": "x"}),
        "resources.nodeSelector keys must be label keys",
        "resources.nodeSelector keys must be label keys",
    ),
    case(
        "node-selector-value-space",
        with_resources(nodeSelector={"gpu": "h 100"}),
        "spec.resources.nodeSelector.gpu in body should match",
        "resources.nodeSelector.gpu: " + PATTERN,
    ),
    case(
        "node-selector-value-too-long",
        with_resources(nodeSelector={"gpu": "a" * 64}),
        "spec.resources.nodeSelector.gpu: Too long",
        "resources.nodeSelector.gpu: String should have at most 63 characters",
    ),
    case(
        "node-selector-value-dash-end",
        with_resources(nodeSelector={"gpu": "h100-"}),
        "spec.resources.nodeSelector.gpu in body should match",
        PATTERN,
    ),
    case(
        "queue-name-upper",
        {"model": {"name": "m"}, "queueName": "GPU"},
        "spec.queueName in body should match",
        "queueName: " + PATTERN,
    ),
    case(
        "queue-name-too-long",
        {"model": {"name": "m"}, "queueName": "q" * 64},
        "spec.queueName: Too long",
        "queueName: String should have at most 63 characters",
    ),
    # ---- tolerations ---------------------------------------------------------------------------
    case(
        "toleration-exists-with-value",
        with_resources(tolerations=[{"key": "gpu", "operator": "Exists", "value": "x"}]),
        'spec.resources.tolerations[0].value: Invalid value: "object": '
        "a toleration with operator Exists must have no value",
        "resources.tolerations.0: Value error, a toleration with operator Exists must have no value",
    ),
    case(
        "toleration-effect",
        with_resources(tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedul"}]),
        'spec.resources.tolerations[0].effect: Unsupported value: "NoSchedul"',
        "resources.tolerations.0.effect: Input should be",
    ),
    case(
        "toleration-operator",
        with_resources(tolerations=[{"key": "gpu", "operator": "In"}]),
        'spec.resources.tolerations[0].operator: Unsupported value: "In"',
        "resources.tolerations.0.operator: Input should be",
    ),
    case(
        "toleration-seconds-without-no-execute",
        with_resources(tolerations=[{"key": "spot", "effect": "NoSchedule", "tolerationSeconds": 60}]),
        'spec.resources.tolerations[0].tolerationSeconds: Invalid value: "object": '
        "tolerationSeconds is only valid with effect NoExecute",
        "tolerationSeconds is only valid with effect NoExecute",
    ),
    case(
        "toleration-seconds-without-effect",
        with_resources(tolerations=[{"key": "spot", "tolerationSeconds": 60}]),
        "tolerationSeconds is only valid with effect NoExecute",
        "tolerationSeconds is only valid with effect NoExecute",
    ),
    case(
        "toleration-no-key-equal",
        with_resources(tolerations=[{"value": "x"}]),
        'spec.resources.tolerations[0].operator: Invalid value: "object": '
        "a toleration without a key must have operator Exists",
        "a toleration without a key must have operator Exists",
    ),
    case(
        "toleration-key",
        with_resources(tolerations=[{"key": "gpu type", "operator": "Exists"}]),
        'spec.resources.tolerations[0].key: Invalid value: "object": toleration key must be a label key',
        "toleration key must be a label key",
    ),
    case(
        "toleration-value",
        with_resources(tolerations=[{"key": "gpu", "value": "a b"}]),
        "spec.resources.tolerations[0].value in body should match",
        "resources.tolerations.0.value: " + PATTERN,
    ),
    # ---- names of Secrets, PVCs and keys; classes; pull secrets -------------------------------
    case(
        "secret-name-upper",
        {"model": {**API_MODEL, "apiKeySecretRef": {"name": "OpenAI", "key": "k"}}},
        "spec.model.apiKeySecretRef.name in body should match",
        "model.apiKeySecretRef.name: " + PATTERN,
    ),
    case(
        "secret-name-underscore",
        with_judge(apiKeySecretRef={"name": "judge_key", "key": "k"}),
        "spec.benchmarks.mtbench.judge.apiKeySecretRef.name in body should match",
        "benchmarks.mtbench.judge.apiKeySecretRef.name: " + PATTERN,
    ),
    case(
        "secret-name-too-long",
        {"model": {"name": "m"}, "wandb": {"apiKeySecretRef": {"name": "a" * 254, "key": "k"}}},
        "spec.wandb.apiKeySecretRef.name: Too long",
        "wandb.apiKeySecretRef.name: String should have at most 253 characters",
    ),
    case(
        "secret-key-slash",
        {"model": {"name": "m"}, "wandb": {"apiKeySecretRef": {"name": "wandb", "key": "api/key"}}},
        "spec.wandb.apiKeySecretRef.key in body should match",
        "wandb.apiKeySecretRef.key: " + PATTERN,
    ),
    case(
        "hf-token-secret-name",
        with_model(hfTokenSecretRef={"name": "-hf", "key": "token"}),
        "spec.model.hfTokenSecretRef.name in body should match",
        "model.hfTokenSecretRef.name: " + PATTERN,
    ),
    case(
        "hf-token-secret-key-empty",
        with_model(hfTokenSecretRef={"name": "hf", "key": ""}),
        "spec.model.hfTokenSecretRef.key",
        "model.hfTokenSecretRef.key: String should have at least 1 character",
    ),
    case(
        "pvc-name",
        {"model": {"name": "m"}, "workspace": {"pvcName": "My_PVC"}},
        "spec.workspace.pvcName in body should match",
        "workspace.pvcName: " + PATTERN,
    ),
    case(
        "priority-class-name",
        with_resources(priorityClassName="High Priority"),
        "spec.resources.priorityClassName in body should match",
        "resources.priorityClassName: " + PATTERN,
    ),
    case(
        "runtime-class-name",
        with_resources(runtimeClassName="NVIDIA"),
        "spec.resources.runtimeClassName in body should match",
        "resources.runtimeClassName: " + PATTERN,
    ),
    case(
        "image-pull-secret-name",
        with_resources(imagePullSecrets=[{"name": "reg cred"}]),
        "spec.resources.imagePullSecrets[0].name in body should match",
        "resources.imagePullSecrets.0.name: " + PATTERN,
    ),
    # ---- endpoint URLs -------------------------------------------------------------------------
    *(
        case(
            f"endpoint-{name}",
            {"model": {**API_MODEL, "endpoint": url}},
            'spec.model.endpoint: Invalid value: "object": model.endpoint must be an http(s) URL',
            "model.endpoint must be an http(s) URL",
        )
        for name, url in [
            ("no-scheme", "api.example.com/v1"),
            ("ftp", "ftp://api.example.com/v1"),
            ("space", "http://api example.com/v1"),
            ("query", "https://api.example.com/v1?key=abc"),
            ("user-info", "https://user:pw@api.example.com/v1"),
            ("port-letters", "http://vllm:80a/v1"),
            ("port-too-long", "http://vllm:800000/v1"),
            ("no-host", "http:///v1"),
            ("scheme-only", "https://"),
        ]
    ),
    case(
        "judge-endpoint-no-scheme",
        with_judge(endpoint="localhost:8000/v1"),
        'spec.benchmarks.mtbench.judge.endpoint: Invalid value: "object": '
        "judge.endpoint must be an http(s) URL",
        "judge.endpoint must be an http(s) URL",
    ),
    case(
        "judge-endpoint-fragment",
        with_judge(endpoint="https://judge.example/v1#x"),
        "judge.endpoint must be an http(s) URL",
        "judge.endpoint must be an http(s) URL",
    ),
    # ---- vLLM dtype ----------------------------------------------------------------------------
    *(
        case(
            f"dtype-{dtype}",
            with_model(vllm={"dtype": dtype}),
            f'spec.model.vllm.dtype: Unsupported value: "{dtype}"',
            "model.vllm.dtype: Input should be 'auto', 'half', 'float16', 'bfloat16', 'float' or 'float32'",
        )
        for dtype in ("bf16", "fp8", "Auto", "int8")
    ),
    # ---- contradictions ------------------------------------------------------------------------
    case(
        "no-benchmark",
        {"model": {"name": "m"}, "benchmarks": {"jaster": {"enabled": False}, "mtbench": {"enabled": False}}},
        'spec.benchmarks: Invalid value: "object": benchmarks: enable at least one benchmark',
        "benchmarks: Value error, benchmarks: enable at least one benchmark",
    ),
    case(
        "transformers-tensor-parallel",
        {
            "model": {"name": "m", "source": "transformers", "vllm": {"tensorParallelSize": 2}},
            "resources": {"gpus": 2},
        },
        'spec.model.vllm.tensorParallelSize: Invalid value: "object": '
        "model.vllm.tensorParallelSize: transformers serve runs on one device",
        "model.vllm.tensorParallelSize: transformers serve runs on one device",
    ),
    case(
        "pvc-name-and-size",
        {"model": {"name": "m"}, "workspace": {"pvcName": "ws", "size": "10Gi"}},
        'spec.workspace.size: Invalid value: "object": workspace: set pvcName',
        "workspace: set pvcName (an existing PVC) or size",
    ),
    case(
        "gpus-below-tensor-parallel-unset",
        with_model(vllm={"tensorParallelSize": 2}),
        'spec.resources.gpus: Invalid value: "object": resources.gpus must be at least',
        None,  # pod resources: a local run ignores them (the Job builder still refuses it)
    ),
    # ---- GPUs across pipeline stages and nodes (issue 22) ----------------------------------------
    case(
        "pipeline-parallel-0",
        with_model(vllm={"pipelineParallelSize": 0}),
        "spec.model.vllm.pipelineParallelSize in body should be greater than or equal to 1",
        "model.vllm.pipelineParallelSize: Input should be greater than or equal to 1",
    ),
    case(
        "pipeline-parallel-65",
        with_model(vllm={"pipelineParallelSize": 65}),
        "spec.model.vllm.pipelineParallelSize in body should be less than or equal to 64",
        "model.vllm.pipelineParallelSize: Input should be less than or equal to 64",
    ),
    case(
        "nodes-0",
        with_resources(nodes=0),
        "spec.resources.nodes in body should be greater than or equal to 1",
        "resources.nodes: Input should be greater than or equal to 1",
    ),
    case(
        "transformers-pipeline-parallel",
        {"model": {"name": "m", "source": "transformers", "vllm": {"pipelineParallelSize": 2}}},
        'spec.model.vllm.pipelineParallelSize: Invalid value: "object": '
        "model.vllm.pipelineParallelSize: transformers serve runs on one device",
        "model.vllm.pipelineParallelSize: transformers serve runs on one device",
    ),
    *(
        case(
            f"extra-args-{arg.lstrip('-')}",
            with_model(vllm={"extraArgs": [arg]}),
            'spec.model.vllm.extraArgs: Invalid value: "object": '
            "model.vllm.extraArgs: use model.vllm.pipelineParallelSize, not --pipeline-parallel-size",
            "model.vllm.extraArgs: use model.vllm.pipelineParallelSize, not --pipeline-parallel-size",
        )
        for arg in ("--pipeline-parallel-size", "--pipeline-parallel-size=2")
    ),
    case(
        "gpus-below-pipeline-one-node",
        {
            "model": {"name": "m", "vllm": {"tensorParallelSize": 2, "pipelineParallelSize": 2}},
            "resources": {"gpus": 3},
        },
        'spec.resources.gpus: Invalid value: "object": resources.gpus must be at least '
        "model.vllm.tensorParallelSize * model.vllm.pipelineParallelSize for a vllm model on one node",
        None,  # pod resources of one node: a local run serves on its host's GPUs
    ),
    case(
        "gpus-below-pipeline-one-node-written",
        {
            "model": {"name": "m", "vllm": {"pipelineParallelSize": 2}},
            "resources": {"gpus": 1, "nodes": 1},
        },
        'spec.resources.gpus: Invalid value: "object": resources.gpus must be at least',
        None,
    ),
    *(
        case(
            f"nodes-world-size-{case_id}",
            {"model": {"name": "m", **model}, "resources": resources},
            'spec.resources.nodes: Invalid value: "object": resources.nodes: a vllm model on more than '
            "one node uses every GPU of every node: model.vllm.tensorParallelSize * "
            "model.vllm.pipelineParallelSize must equal resources.gpus (per node) * resources.nodes",
            "resources.nodes: a vllm model on more than one node uses every GPU of every node",
        )
        for case_id, model, resources in [
            ("short", {"vllm": {"tensorParallelSize": 8}}, {"gpus": 8, "nodes": 2}),
            (
                "surplus",
                {"vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 4}},
                {"gpus": 8, "nodes": 2},
            ),
            ("defaults", {}, {"nodes": 2}),  # 1 * 1 GPU served, 1 GPU * 2 nodes held
            ("gpus-unset", {"vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2}}, {"nodes": 2}),
            ("vllm-written", {"source": "vllm", "vllm": {"tensorParallelSize": 4}}, {"gpus": 4, "nodes": 4}),
        ]
    ),
    *(
        case(
            f"nodes-{source_id}",
            {"model": model, "resources": {"nodes": 2}},
            "spec.resources.nodes: Forbidden: "
            "resources.nodes: more than one node only with model.source vllm",
            "resources.nodes: more than one node only with model.source vllm",
        )
        for source_id, model in [
            ("transformers", {"name": "m", "source": "transformers"}),
            ("openai-compatible", API_MODEL),
        ]
    ),
    case(
        "nodes-without-gpus",
        {"model": {"name": "m", "vllm": {"tensorParallelSize": 2}}, "resources": {"gpus": 0, "nodes": 2}},
        'spec.resources.gpus: Invalid value: "object": resources.gpus: a model on more than one node '
        "(resources.nodes > 1) needs at least one GPU per node",
        "resources.gpus: a model on more than one node (resources.nodes > 1) needs at least one GPU per node",
    ),
    # ---- model names: a Hub id or a path for served models, the API's name; never a flag -------
    *(
        case(
            f"served-name-{name_id}",
            with_model(name=name, source=source),
            'spec.model.name: Invalid value: "object": model.name must be a Hugging Face model id',
            "model.name must be a Hugging Face model id",
        )
        for name_id, name, source in [
            ("flag", "--trust-remote-code", "vllm"),
            ("flag-transformers", "--trust-remote-code", "transformers"),
            ("dash", "-m", "vllm"),
            ("org-dash", "org/-m", "vllm"),
            ("double-dash", "org/a--b", "vllm"),
            ("double-dot", "org/a..b", "vllm"),
            ("dot-git", "org/m.git", "vllm"),
            ("leading-dot", ".m", "vllm"),
            ("trailing-dash", "org/m-", "vllm"),
            ("three-parts", "a/b/c", "vllm"),
            ("part-too-long", "org/" + "m" * 97, "vllm"),
            ("space", "org/my model", "vllm"),
            ("newline", "org/m\n", "vllm"),
            ("windows-path", "C:\\models\\m", "vllm"),
            ("path-control-char", "/models/m\x01", "vllm"),
        ]
    ),
    *(
        case(
            f"api-name-{name_id}",
            {"model": {**API_MODEL, "name": name}},
            'spec.model.name: Invalid value: "object": model.name must be the API\'s model name',
            "model.name must be the API's model name",
        )
        for name_id, name in [
            ("flag", "--trust-remote-code"),
            ("dash", "-gpt"),
            ("space", "gpt 4o"),
            ("tab", "gpt-4o\t"),
            ("newline", "gpt-4o\n"),
            ("too-long", "m" * (api.MAX_API_MODEL_NAME + 1)),
        ]
    ),
    case(
        "name-too-long",
        with_model(name="/" + "m" * api.MAX_MODEL_NAME),
        "spec.model.name: Too long",
        "model.name: String should have at most 4096 characters",
    ),
    # ---- model.storageUri: hf://, s3://, pvc:// for served models only -------------------------
    *(
        case(
            f"storage-uri-{uri_id}",
            with_model(storageUri=uri),
            'spec.model.storageUri: Invalid value: "object": model.storageUri must be hf://org/name',
            "model.storageUri must be hf://org/name",
        )
        for uri_id, uri in [
            ("empty", ""),
            ("no-scheme", "org/name"),
            ("gs", "gs://bucket/weights/"),
            ("https", "https://huggingface.co/org/name"),
            ("hf-three-parts", "hf://a/b/c"),
            ("hf-double-dash", "hf://org/a--b"),
            ("hf-dot-git", "hf://org/m.git"),
            ("hf-dot-git-revision", "hf://org/m.git@main"),
            ("hf-empty-revision", "hf://org/m@"),
            ("hf-revision-dotdot", "hf://org/m@refs/../main"),
            ("hf-flag", "hf://--trust-remote-code"),
            ("s3-short-bucket", "s3://b/weights/"),
            ("s3-upper-bucket", "s3://Bucket/weights/"),
            ("s3-space", "s3://bucket/my weights/"),
            ("pvc-upper", "pvc://Models/m"),
            ("pvc-dotdot", "pvc://models/../secrets"),
            ("pvc-dot", "pvc://models/./m"),
            ("pvc-control-char", "pvc://models/m\x01"),
        ]
    ),
    case(
        "storage-uri-too-long",
        with_model(storageUri="s3://bucket/" + "k" * api.MAX_STORAGE_URI),
        "spec.model.storageUri: Too long",
        "model.storageUri: String should have at most 2048 characters",
    ),
    case(
        "storage-uri-api-model",
        {"model": {**API_MODEL, "storageUri": "hf://org/name"}},
        "spec.model.storageUri: Forbidden: model.storageUri is only valid when model.source is vllm",
        "model.storageUri is only valid when model.source is vllm or transformers",
    ),
    *(
        case(
            f"storage-uri-revision-{uri_id}",
            with_model(storageUri=uri, revision="main"),
            'spec.model.revision: Invalid value: "object": model.revision: with model.storageUri, '
            "the revision is written once",
            "model.revision: with model.storageUri, the revision is written once",
        )
        for uri_id, uri in [
            ("hf-at-revision", "hf://org/name@v1"),
            ("s3", "s3://bucket/weights/"),
            ("pvc", "pvc://models/m"),
        ]
    ),
    # ---- the Job's deadline --------------------------------------------------------------------
    case(
        "deadline-zero",
        with_resources(activeDeadlineSeconds=0),
        "spec.resources.activeDeadlineSeconds in body should be greater than or equal to 1",
        "resources.activeDeadlineSeconds: Input should be greater than or equal to 1",
    ),
    case(
        "deadline-too-long",
        with_resources(activeDeadlineSeconds=api.MAX_DEADLINE_SECONDS + 1),
        "spec.resources.activeDeadlineSeconds in body should be less than or equal to",
        "resources.activeDeadlineSeconds: Input should be less than or equal to",
    ),
]


def example_specs() -> list[Any]:
    """The repository's shipped evaluation examples, as specs (the leaderboard example is
    test_leaderboard_spec's)."""
    out = []
    for path in sorted((REPO / "operator" / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if doc["kind"] == "NejumiEvaluation":
            out.append(pytest.param(doc["spec"], id=path.name))
    path = REPO / "evaluator-image" / "examples" / "evaluation.yaml"
    out.append(pytest.param(yaml.safe_load(path.read_text(encoding="utf-8")), id="evaluator-" + path.name))
    return out


def good(case_id: str, spec: dict[str, Any]) -> Any:
    return pytest.param(spec, id=case_id)


ACCEPTED = [
    *example_specs(),
    good("cpu-int-memory-int", with_resources(cpu=4, memory=68719476736)),
    good("cpu-milli-memory-gi", with_resources(cpu="500m", memory="64Gi")),
    good("quantities-decimal-exponent", with_resources(cpu="1.5", memory="1e9", shmSize="16Gi")),
    good("quantity-zero", with_resources(cpu=0)),
    good("workspace-size-only", {"model": {"name": "m"}, "workspace": {"size": "100Gi"}}),
    good("workspace-size-int", {"model": {"name": "m"}, "workspace": {"size": 10737418240}}),
    good("workspace-pvc-only", {"model": {"name": "m"}, "workspace": {"pvcName": "nejumi-workspace.v2"}}),
    good(
        "node-selector",
        with_resources(
            nodeSelector={
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "kubernetes.io/arch": "amd64",
                "pool": "",
                "A_b.c-D": "x_Y.z-1",
            }
        ),
    ),
    good("tolerate-everything", with_resources(tolerations=[{"operator": "Exists"}])),
    good(
        "tolerations",
        with_resources(
            tolerations=[
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "spot", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60},
                {"key": "dedicated", "operator": "Equal", "value": "", "effect": "PreferNoSchedule"},
            ]
        ),
    ),
    *(
        good(f"endpoint-{name}", {"model": {**API_MODEL, "endpoint": url}})
        for name, url in [
            ("https", "https://api.openai.com/v1"),
            ("ip-port", "http://127.0.0.1:8000/v1"),
            ("ipv6", "http://[::1]:8000/v1"),
            ("service", "http://vllm.team-a.svc.cluster.local:8000/v1"),
            ("no-path", "https://api.example.com"),
            ("trailing-slash", "https://api.example.com/v1/"),
            ("path-chars", "https://gateway.example.com/openai/deployments/gpt-4o_mini~1/v1"),
        ]
    ),
    good("judge-endpoint", with_judge(endpoint="https://judge.example/v1", apiKeySecretRef=SECRET)),
    *(
        good(f"dtype-{d}", with_model(vllm={"dtype": d}))
        for d in ("auto", "half", "float16", "bfloat16", "float", "float32")
    ),
    good("only-jaster", {"model": {"name": "m"}, "benchmarks": {"mtbench": {"enabled": False}}}),
    good("only-mtbench", {"model": {"name": "m"}, "benchmarks": {"jaster": {"enabled": False}}}),
    good(
        "transformers-one-device",
        {"model": {"name": "m", "source": "transformers", "vllm": {"tensorParallelSize": 1}}},
    ),
    good("api-model-no-gpus", {"model": API_MODEL}),
    # one node: as many GPUs as tensor * pipeline stages, or more (admitted before pipelines existed)
    good(
        "pipeline-one-node",
        {
            "model": {"name": "m", "vllm": {"tensorParallelSize": 2, "pipelineParallelSize": 2}},
            "resources": {"gpus": 4},
        },
    ),
    good(
        "more-gpus-than-tensor-parallel",
        {"model": {"name": "m", "vllm": {"tensorParallelSize": 2}}, "resources": {"gpus": 4}},
    ),
    good("one-node-written", with_resources(gpus=1, nodes=1)),
    good(
        "one-node-transformers", {"model": {"name": "m", "source": "transformers"}, "resources": {"nodes": 1}}
    ),
    good("one-node-api", {"model": API_MODEL, "resources": {"nodes": 1}}),
    good(
        "pod-settings",
        {
            "model": {**API_MODEL, "apiKeySecretRef": {"name": "openai.keys", "key": "API_KEY.v1"}},
            "queueName": "gpu-queue",
            "resources": {
                "priorityClassName": "high",
                "runtimeClassName": "nvidia",
                "imagePullSecrets": [{"name": "regcred"}],
                "activeDeadlineSeconds": 3600,
            },
        },
    ),
    good("hf-token", with_model(hfTokenSecretRef={"name": "hf", "key": "token"})),
    *(
        good(f"served-name-{name_id}", with_model(name=name, source=source))
        for name_id, name, source in [
            ("hub-id", "llm-jp/llm-jp-3-1.8b-instruct", "vllm"),
            ("hub-id-dots", "meta-llama/Llama-3.1-8B-Instruct", "vllm"),
            ("hub-id-underscore", "org_x/m.v2_1", "transformers"),
            ("hub-name-only", "gpt2", "vllm"),
            ("hub-parts-96", "o" * 96 + "/" + "m" * 96, "vllm"),
            ("absolute-path", "/models/llm-jp 3 (1.8b)", "vllm"),
            ("dot-path", "./models/m", "transformers"),
            ("parent-path", "../models/m--v2..old", "transformers"),
            ("home-path", "~/models/m", "vllm"),
        ]
    ),
    *(
        good(f"storage-uri-{uri_id}", with_model(**model))
        for uri_id, model in [
            ("hf", {"storageUri": "hf://llm-jp/llm-jp-3-1.8b-instruct"}),
            ("hf-name-only", {"storageUri": "hf://gpt2"}),
            ("hf-at-tag", {"storageUri": "hf://meta-llama/Llama-3.1-8B-Instruct@v1.0"}),
            ("hf-at-commit", {"storageUri": "hf://org/m@" + "0123456789abcdef" * 2 + "01234567"}),
            ("hf-at-pr", {"storageUri": "hf://org/m@refs/pr/1"}),
            ("hf-model-revision", {"storageUri": "hf://org/m", "revision": "v2"}),
            ("s3-folder", {"storageUri": "s3://models.example/llm-jp/3-1.8b/"}),
            ("s3-bucket", {"storageUri": "s3://models"}),
            ("pvc-path", {"storageUri": "pvc://models/llm-jp/3 (1.8b)"}),
            ("pvc-claim", {"storageUri": "pvc://models.v2"}),
            ("transformers", {"storageUri": "hf://org/m", "source": "transformers"}),
            ("served-name", {"name": "llm-jp-3", "storageUri": "s3://models/llm-jp-3/"}),
        ]
    ),
    *(
        good(f"api-name-{name_id}", {"model": {**API_MODEL, "name": name}})
        for name_id, name in [
            ("openai", "gpt-4o-2024-08-06"),
            ("fireworks", "accounts/fireworks/models/x"),
            ("hub-id", "meta-llama/Llama-3.1-8B-Instruct"),
            ("vertex", "claude-3-5-sonnet@20240620"),
            ("gemini", "models/gemini-1.5-pro"),
            ("fine-tuned", "ft:gpt-4o-mini:org::abc123"),
            ("longest", "m" * api.MAX_API_MODEL_NAME),
        ]
    ),
]


MULTI_NODE = [
    good(case_id, {"model": {"name": "m", **model}, "resources": resources})
    for case_id, model, resources in [
        (
            "tensor-in-node-pipeline-across",
            {"vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2}},
            {"gpus": 8, "nodes": 2},
        ),
        ("tensor-across-nodes", {"vllm": {"tensorParallelSize": 16}}, {"gpus": 8, "nodes": 2}),
        (
            "four-nodes",
            {"source": "vllm", "vllm": {"tensorParallelSize": 4, "pipelineParallelSize": 4}},
            {"gpus": 4, "nodes": 4},
        ),
        ("one-gpu-per-node-gpus-unset", {"vllm": {"pipelineParallelSize": 2}}, {"nodes": 2}),
    ]
]
"""Valid for the API (admitted, stored as written) and for the spec model, but not run by this version:
the operator refuses them, and so does `nejumi-eval run`, which serves on one host (issue 22)."""


@pytest.mark.parametrize(("spec", "crd", "local"), REJECTED)
def test_the_evaluator_refuses_what_the_api_server_refuses(
    spec: dict[str, Any], crd: str, local: str | None
) -> None:
    if local is None:
        parse_spec(spec)  # the API server's rule only
        return
    with pytest.raises(ConfigError) as err:
        parse_spec(spec)
    assert local in str(err.value)


@pytest.mark.parametrize(("spec", "crd", "local"), REJECTED)
def test_the_job_builder_refuses_every_rejected_spec(
    spec: dict[str, Any], crd: str, local: str | None
) -> None:
    """Whatever the CRD refuses, the operator refuses too (a resource admitted by an older CRD)."""
    from nejumi_operator.reconcile.job import InvalidEvaluation, build_job
    from nejumi_operator.settings import OperatorConfig

    evaluation = {"metadata": {"name": "e", "namespace": "ns", "generation": 1}, "spec": spec}
    with pytest.raises(InvalidEvaluation):
        build_job(evaluation, OperatorConfig())


@pytest.mark.parametrize("spec", ACCEPTED)
def test_valid_specs_still_pass(spec: dict[str, Any]) -> None:
    from nejumi_operator.policy import Policy
    from nejumi_operator.reconcile.job import build_job
    from nejumi_operator.settings import OperatorConfig

    parse_spec(spec)
    unlimited = OperatorConfig(policy=Policy(enabled=False))  # the schema's verdict, not the policy's
    build_job({"metadata": {"name": "e", "namespace": "ns", "generation": 1}, "spec": spec}, unlimited)


@pytest.mark.parametrize("spec", MULTI_NODE)
def test_a_multi_node_spec_is_valid_and_served_only_by_a_group(spec: dict[str, Any]) -> None:
    from nejumi_eval.pipeline import check_one_host
    from nejumi_operator.policy import Policy
    from nejumi_operator.reconcile.group import build_serve_group
    from nejumi_operator.settings import OperatorConfig

    parsed = parse_spec(spec)
    assert parsed.resources.nodes == spec["resources"]["nodes"] > 1
    unlimited = OperatorConfig(policy=Policy(enabled=False))
    evaluation = {"metadata": {"name": "e", "namespace": "ns", "generation": 1}, "spec": spec}
    group = build_serve_group(evaluation, unlimited)
    assert group["spec"]["leaderWorkerTemplate"]["size"] == parsed.resources.nodes
    with pytest.raises(ConfigError, match=r"resources\.nodes: .* in the cluster, as a LeaderWorkerSet group"):
        check_one_host(parsed)  # a local run serves on this one host only


def test_one_node_and_its_defaults() -> None:
    spec = parse_spec({"model": {"name": "m"}})
    assert (spec.resources.nodes, spec.model.vllm.pipeline_parallel_size) == (1, 1)
    assert "nodes" not in spec.resources.model_fields_set  # as written: a round trip adds nothing
    from nejumi_eval.pipeline import check_one_host

    check_one_host(spec)  # one node: served on this host, as always


def test_quantities_keep_what_was_written_as_a_string() -> None:
    parsed = parse_spec(with_resources(cpu=4, memory="64Gi", shmSize=8589934592))
    assert (parsed.resources.cpu, parsed.resources.memory, parsed.resources.shm_size) == (
        "4",
        "64Gi",
        "8589934592",
    )
    assert parse_spec({"model": {"name": "m"}, "workspace": {"size": 1024}}).workspace.size == "1024"


def test_gpus_default_by_source() -> None:
    """An API model requests no GPU unless asked; served models one; an explicit value stands."""
    assert parse_spec({"model": API_MODEL}).resources.gpus == 0
    assert parse_spec({"model": {"name": "m"}}).resources.gpus == 1
    assert parse_spec({"model": {"name": "m", "source": "transformers"}}).resources.gpus == 1
    assert parse_spec({"model": API_MODEL, "resources": {"gpus": 2}}).resources.gpus == 2
    assert parse_spec({"model": {"name": "m"}, "resources": {"gpus": 0}}).resources.gpus == 0
    # still "unset" as written (what the CEL rules and a round trip see)
    assert "gpus" not in parse_spec({"model": API_MODEL}).resources.model_fields_set


def test_the_crd_schema_says_what_pydantic_says() -> None:
    """Quantities are int-or-string with Kubernetes' pattern; names carry the DNS pattern."""
    from nejumi_eval.api.v1alpha1.crd import build_crd

    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    resources = spec["properties"]["resources"]["properties"]
    for node in (
        resources["memory"],
        resources["cpu"],
        resources["shmSize"],
        spec["properties"]["workspace"]["properties"]["size"],
    ):
        assert node["x-kubernetes-int-or-string"] is True and "type" not in node
        assert node["pattern"] == api.QUANTITY and node["minimum"] == 0
    assert resources["nodeSelector"]["maxProperties"] == 64
    assert resources["nodeSelector"]["additionalProperties"]["pattern"] == api.LABEL_VALUE
    assert resources["tolerations"]["maxItems"] == 64
    assert spec["properties"]["workspace"]["properties"]["pvcName"]["pattern"] == api.DNS_SUBDOMAIN
    assert spec["properties"]["queueName"]["maxLength"] == 63
    dtype = spec["properties"]["model"]["properties"]["vllm"]["properties"]["dtype"]
    assert dtype["enum"] == ["auto", "half", "float16", "bfloat16", "float", "float32"]


def test_rules_carry_their_model_and_are_evaluated_locally_unless_marked() -> None:
    """Every new rule is written once; only one node's GPUs ≥ tensor * pipeline stages (pod
    resources), the apiKeyEnv rules (cluster only by nature) and the no-benchmark rule (plugins count
    locally, via a validator with the same message) are the API server's alone."""
    cluster_only = {
        r.field_path or r.message
        for m in (api.EvaluationSpec, api.BenchmarksSpec)
        for r in m.cel_rules
        if not r.local
    }
    assert cluster_only == {
        ".resources.gpus",
        ".model.apiKeyEnv",
        ".benchmarks.mtbench.judge.apiKeyEnv",
        api.NO_BENCHMARK,
    }
    for model in (api.ModelSpec, api.JudgeSpec, api.WorkspaceSpec, api.Toleration, api.ResourcesSpec):
        assert model.cel_rules and all(r.evaluated_locally for r in model.cel_rules), model


def test_a_plugin_benchmark_counts_as_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator's no-benchmark check counts plugin sections, which the CRD cannot know."""
    from nejumi_eval.benchmarks import registry

    class Plugin:
        spec_model = api.BenchmarkSpec

    monkeypatch.setattr(registry, "plugin_names", lambda: ["extra"])
    monkeypatch.setattr(registry, "get", lambda name: Plugin())
    doc = {
        "model": {"name": "m"},
        "benchmarks": {"jaster": {"enabled": False}, "mtbench": {"enabled": False}, "extra": {}},
    }
    assert list(parse_spec(doc).benchmarks.enabled()) == ["extra"]
    doc["benchmarks"]["extra"] = {"enabled": False}
    with pytest.raises(ConfigError, match="enable at least one benchmark"):
        parse_spec(doc)
