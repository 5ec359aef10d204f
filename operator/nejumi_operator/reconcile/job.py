"""NejumiEvaluation → batch/v1 Job: a pure function of the resource and the operator's settings.

The evaluator gets its spec as JSON in `$NEJUMI_SPEC` (`nejumi-eval run --spec-env NEJUMI_SPEC`)
and writes its compact summary to the termination message (`--summary /dev/termination-log`).
Secrets are passed only as `secretKeyRef`s; the builder never sees a secret's value.

The pod passes PodSecurity `restricted`: non-root (UID/GID `POD_UID`), no privilege escalation, no
capabilities, seccomp RuntimeDefault and a read-only root filesystem; what it writes goes to the
workspace (results, caches, Hugging Face weights: `HF_HOME`), an emptyDir `/tmp` (also `$HOME`, for
the tools that write under it) and a memory-backed `/dev/shm` (vLLM's tensor-parallel workers talk
through shared memory). The Job has an `activeDeadlineSeconds`, so a hung server cannot hold its
GPUs forever.

The workspace is a PVC: `workspace.pvcName` (an existing one, never the operator's to delete) or
the one the operator creates per evaluation (`build_workspace_pvc`, owned by the evaluation unless
`workspace.retain`), so a retried or preempted pod resumes from the response cache.

A served model's evaluation is three Jobs, one per stage (`api.v1alpha1.stages`: fetch, serve,
judge), built here by the same function (`stage=`): only the serve stage's pod asks for GPUs (and
the GPU nodes' nodeSelector and runtimeClassName); the others are CPU pods. Each is its own Kueue
workload; they share the workspace (the response cache carries the answers from serve to judge).

The results of record go to `results` (`effective_results`: the spec's, else the operator's
default, taken whole): the evaluator gets it in its spec, its key under the URI in
`$NEJUMI_RESULTS_KEY` (namespace/name/generation, so a retried pod rewrites the same objects and a
new generation never overwrites an older one's), the access key pair as `secretKeyRef`s and the
CA bundle as a read-only ConfigMap volume.

The stage that reports (`run`, or `judge`) gets the operator's price table (`$NEJUMI_PRICING`), and
the judge stage the GPU-seconds the serve stage's Job held (`$NEJUMI_GPU_SECONDS_HELD`): its cost
is the whole evaluation's (`api.v1alpha1.cost`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from nejumi_eval.api.v1alpha1.cel import broken
from nejumi_eval.api.v1alpha1.contract import (
    CACHE_ENV,
    GPU_SECONDS_HELD_ENV,
    HF_HOME_ENV,
    HF_TOKEN_ENV,
    JUDGE_API_KEY_ENV,
    MODEL_API_KEY_ENV,
    MODEL_CACHE_ENV,
    MODEL_CACHE_MOUNT,
    NON_RETRYABLE_EXIT_CODES,
    PREPARED_DIRS_ENV,
    PRICING_ENV,
    RESULTS_ACCESS_KEY_ID_ENV,
    RESULTS_CA_BUNDLE_ENV,
    RESULTS_CA_MOUNT,
    RESULTS_KEY_ENV,
    RESULTS_SECRET_ACCESS_KEY_ENV,
    SPEC_ENV,
    WANDB_API_KEY_ENV,
    WEIGHTS_PVC_MOUNT,
    WORKSPACE_MOUNT,
)
from nejumi_eval.api.v1alpha1.names import GROUP, KIND, LABEL_QUEUE, LABEL_STAGE, LABEL_WORKLOAD_PRIORITY
from nejumi_eval.api.v1alpha1.results import cluster_key
from nejumi_eval.api.v1alpha1.spec import (
    LOCAL_MODEL_PATH,
    ConfigError,
    EvaluationSpec,
    ModelSource,
    ResultsSpec,
    SecretKeyRef,
    parse_spec,
)
from nejumi_eval.api.v1alpha1.stages import GPU_STAGES, REPORTING_STAGES, STAGE_FLAG, Stage
from nejumi_operator.reconcile.naming import MAX_NAME, labels, short
from nejumi_operator.reconcile.progress import evaluator_account_name, progress_env
from nejumi_operator.settings import OperatorConfig

CONTAINER = "evaluator"
TERMINATION_PATH = "/dev/termination-log"
WORKSPACE_VOLUME = "workspace"
WORKSPACE_CLAIM_SUFFIX = "-workspace"
GPU_RESOURCE = "nvidia.com/gpu"
CACHE_IN_WORKSPACE = ".cache"  # relative to the working dir, the workspace volume
# Prepared data the evaluator reads without preparing (`$NEJUMI_PREPARED_DIRS`, read-only roots):
# the image's baked copy (evaluator-image/Dockerfile) and, when configured, a shared PVC.
IMAGE_PREPARED_DIR = "/opt/nejumi/prepared"
PREPARED_DATA_VOLUME = "prepared-data"
PREPARED_DATA_MOUNT = "/mnt/nejumi-prepared"
MODEL_CACHE_VOLUME = "model-cache"
WEIGHTS_PVC_VOLUME = "weights-pvc"
POD_PATHSEP = ":"  # the evaluator's os.pathsep (a Linux container), whatever the operator runs on
# Set by the builder only: the operator's evaluator env cannot put a literal key (or another spec)
# in their place, whether or not the spec names a Secret for them.
RESERVED_ENV = (
    SPEC_ENV,
    MODEL_API_KEY_ENV,
    JUDGE_API_KEY_ENV,
    WANDB_API_KEY_ENV,
    HF_TOKEN_ENV,
    RESULTS_ACCESS_KEY_ID_ENV,
    RESULTS_SECRET_ACCESS_KEY_ENV,
    RESULTS_KEY_ENV,
    PRICING_ENV,
    GPU_SECONDS_HELD_ENV,
)
RESULTS_CA_VOLUME = "results-ca"
# Read-only root filesystem: the writable places (PodSecurity `restricted` allows emptyDir).
TMP_VOLUME = "tmp"
TMP_MOUNT = "/tmp"
SHM_VOLUME = "dshm"
SHM_MOUNT = "/dev/shm"
SHM_PER_GPU_GI = 2  # NCCL between tensor-parallel workers (vLLM's own Kubernetes example: 2Gi)
SHM_WITHOUT_GPU = "1Gi"
HOME_DIR = TMP_MOUNT  # $HOME: vLLM's config, triton's cache; an unknown UID's $HOME is `/`, read-only
HF_HOME_IN_WORKSPACE = ".cache/huggingface"  # relative to the working dir, the workspace volume
POD_UID = 1000  # runAsUser/runAsGroup/fsGroup: the image's root is never needed
DEFAULT_DEADLINE_SECONDS = 24 * 3600  # resources.activeDeadlineSeconds unset
ANNOTATION_GENERATION = f"{GROUP}/generation"


class InvalidEvaluation(ValueError):
    """A spec the CRD admitted but the operator cannot run (the message names the field)."""


def job_name(name: str, generation: int, stage: Stage = Stage.RUN) -> str:
    """The Job of generation `generation` of evaluation `name` (of its `stage`: `-g1-fetch`; one pod
    for everything: `-g1`): stable, so creation is idempotent."""
    suffix = f"-g{generation}" if stage == Stage.RUN else f"-g{generation}-{stage.value}"
    return short(name, MAX_NAME - len(suffix)) + suffix


HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
"""Set in a serve stage's pod: its weights were fetched before, so the server never downloads
(on GPU time) and a missing file is an error, not a silent download."""

MULTI_NODE_UNSTAGED = (
    "resources.nodes is {nodes}: a model served across nodes runs in stages (its serve stage is a "
    "LeaderWorkerSet group), and this operator runs every evaluation in one pod (evaluator.stages is "
    "off in its settings); the evaluation is not run on one node instead: set resources.nodes to 1, "
    "or ask the platform team to turn the stages on"
)
"""Why a multi-node evaluation is refused by an operator without stages: a single-node run would
evaluate another deployment under its name."""
MULTI_NODE_SERVE_JOB = (
    "resources.nodes is {nodes}: its serve stage is a LeaderWorkerSet group (reconcile.group), not a Job"
)


def gpu_layout(spec: EvaluationSpec) -> str:
    """The GPU numbers of `spec` as read (defaults applied), for a message about them."""
    vllm = spec.model.vllm
    return (
        f"resources.gpus {spec.resources.gpus}, resources.nodes {spec.resources.nodes}, "
        f"model.vllm.tensorParallelSize {vllm.tensor_parallel_size}, "
        f"model.vllm.pipelineParallelSize {vllm.pipeline_parallel_size}"
    )


def validate(spec: Mapping[str, Any] | None, source: str = "spec") -> EvaluationSpec:
    """The spec as the evaluator will read it, plus the API server's cluster-only rules."""
    try:
        parsed = parse_spec(dict(spec or {}), source=source, path_prefix="spec")
    except ConfigError as exc:
        raise InvalidEvaluation(str(exc)) from None
    env_fields = [("model.apiKeyEnv", parsed.model.api_key_env)] + [
        (f"benchmarks.{name}.judge.apiKeyEnv", judge.api_key_env)
        for name, judge in parsed.benchmarks.judges().items()
    ]
    for field, value in env_fields:
        if value:  # the CRD refuses these too; an operator may run beside an older CRD
            raise InvalidEvaluation(
                f"{source}: {field} is for local runs (nejumi-eval run); in the cluster name the key's "
                "Secret with apiKeySecretRef (an environment variable of the evaluator is the operator's)"
            )
    # The API server's own rules (pod resources a local run ignores), the same CEL expressions: the
    # CRD installed may be older than the operator.
    written = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    if rules := broken(EvaluationSpec.cel_rules, written, cluster=True):
        about_gpus = any((r.field_path or "").startswith(".resources.") for r in rules)
        layout = f" ({gpu_layout(parsed)})" if about_gpus else ""
        raise InvalidEvaluation(f"{source}: " + "; ".join(r.message for r in rules) + layout)
    return parsed


def effective_results(spec: EvaluationSpec, config: OperatorConfig) -> ResultsSpec | None:
    """Where the evaluation's results of record go: `spec.results` when it names a `uri`, else the
    operator's default (the chart's `results`), else nowhere (the workspace only). Never a mix: a
    spec's own destination never borrows the default's credentials, and the default's never go
    anywhere but the destination the platform admin named with them."""
    if spec.results.uri:
        return spec.results
    return config.default_results


def evaluator_spec(spec: EvaluationSpec, config: OperatorConfig) -> EvaluationSpec:
    """The spec the evaluator runs: workspace = the pod's working dir (the mounted volume), summary
    = the termination message, results = `effective_results`."""
    out = spec.model_copy(deep=True)
    out.workspace.path = "."
    out.summary_path = TERMINATION_PATH
    if (results := effective_results(spec, config)) is not None:
        out.results = results.model_copy(deep=True)
    return out


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _judge_secret_ref(spec: EvaluationSpec) -> SecretKeyRef | None:
    """The one judge key of an evaluation (every benchmark's judge reads `JUDGE_API_KEY_ENV`)."""
    refs = {
        name: judge.api_key_secret_ref
        for name, judge in spec.benchmarks.judges().items()
        if judge.api_key_secret_ref is not None
    }
    if len({(r.name, r.key) for r in refs.values()}) > 1:
        names = ", ".join(f"benchmarks.{n}.judge.apiKeySecretRef" for n in refs)
        raise InvalidEvaluation(
            f"{names}: name one Secret key for every judge (one judge key per evaluation)"
        )
    return next(iter(refs.values()), None)


def _results_env(results: ResultsSpec | None, key: str) -> list[dict[str, Any]]:
    """The evaluation's key under `results.uri`, and its access key pair as references."""
    if results is None:
        return []
    env: list[dict[str, Any]] = [{"name": RESULTS_KEY_ENV, "value": key}]
    creds = results.credentials_secret_ref
    if creds is not None:
        for name, secret_key in (
            (RESULTS_ACCESS_KEY_ID_ENV, creds.access_key_id_key),
            (RESULTS_SECRET_ACCESS_KEY_ENV, creds.secret_access_key_key),
        ):
            env.append(_secret_env(name, SecretKeyRef(name=creds.name, key=secret_key)))
    return env


def _results_ca_volumes(results: ResultsSpec | None) -> list[dict[str, Any]]:
    """`results.caBundleRef`: that one key of the ConfigMap, nothing else of it."""
    if results is None or results.ca_bundle_ref is None:
        return []
    ref = results.ca_bundle_ref
    items = [{"key": ref.key, "path": ref.key}]
    return [{"name": RESULTS_CA_VOLUME, "configMap": {"name": ref.name, "items": items}}]


def uses_model_cache(spec: EvaluationSpec, config: OperatorConfig, stage: Stage = Stage.RUN) -> bool:
    """The stage's pod mounts the shared model cache (`config.model_cache_pvc`): a vLLM model with
    weights to fetch (a Hub id, or `model.storageUri`), in a stage that fetches or serves them."""
    m = spec.model
    fetchable = bool(m.storage_uri) or not re.fullmatch(LOCAL_MODEL_PATH, m.name)
    return (
        bool(config.model_cache_pvc)
        and m.source == ModelSource.VLLM
        and fetchable
        and stage in (Stage.RUN, Stage.FETCH, Stage.SERVE)
    )


def weights_claim(spec: EvaluationSpec, stage: Stage = Stage.RUN) -> str | None:
    """The claim of a `pvc://claim/path` model.storageUri, mounted read-only where the weights are
    read (fetch lists them, serve loads them)."""
    uri = spec.model.storage_uri or ""
    if not uri.startswith("pvc://") or stage == Stage.JUDGE:
        return None
    return uri.removeprefix("pvc://").split("/", 1)[0]


def build_model_cache_pvc(namespace: str, config: OperatorConfig) -> dict[str, Any]:
    """The shared model cache of a namespace, made by the operator when missing: ReadWriteMany (fetch
    pods write it while serve pods on other nodes read it), no owner (it outlives evaluations)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": config.model_cache_size}},
    }
    if config.model_cache_storage_class:
        spec["storageClassName"] = config.model_cache_storage_class
    meta = {
        "name": config.model_cache_pvc,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/component": "model-cache",
            "app.kubernetes.io/part-of": "nejumi",
            "app.kubernetes.io/managed-by": "nejumi-operator",
        },
    }
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def _cost_env(config: OperatorConfig, stage: Stage, gpu_seconds_held: float | None) -> list[dict[str, Any]]:
    """What the stage that reports needs to price the evaluation: the price table (configuration,
    a plain value) and, for the judge stage, the GPU-seconds the serve stage's Job held (the
    evaluator cannot see a Job's end; `run` holds its own GPUs, and the operator adds those)."""
    if stage not in REPORTING_STAGES:
        return []
    env = []
    if config.pricing is not None:
        env.append({"name": PRICING_ENV, "value": config.pricing.model_dump_json(by_alias=True)})
    if stage == Stage.JUDGE and gpu_seconds_held is not None:
        env.append({"name": GPU_SECONDS_HELD_ENV, "value": str(round(gpu_seconds_held, 3))})
    return env


def _env(
    spec: EvaluationSpec,
    config: OperatorConfig,
    results_key: str,
    stage: Stage = Stage.RUN,
    gpu_seconds_held: float | None = None,
) -> list[dict[str, Any]]:
    # Downloaded data and built models live in the workspace too, so a retried pod on the same
    # PVC neither downloads nor parses again (the operator's settings may point elsewhere).
    # Hugging Face weights too (HF_HOME): a retried pod on the same PVC does not download them again.
    extra = {
        CACHE_ENV: CACHE_IN_WORKSPACE,
        HF_HOME_ENV: HF_HOME_IN_WORKSPACE,
        "HOME": HOME_DIR,
        **config.evaluator_env,
    }
    if stage == Stage.SERVE:
        extra[HF_OFFLINE_ENV] = "1"
    if uses_model_cache(spec, config, stage):
        extra[MODEL_CACHE_ENV] = MODEL_CACHE_MOUNT
    if config.prepared_data_pvc:
        # A container env value replaces the image's ENV, so the baked root is named again first
        # (local disk, fastest) unless the operator's evaluator env already says which roots.
        roots = extra.get(PREPARED_DIRS_ENV) or IMAGE_PREPARED_DIR
        extra[PREPARED_DIRS_ENV] = POD_PATHSEP.join([roots, PREPARED_DATA_MOUNT])
    results = effective_results(spec, config)
    if results is not None and results.ca_bundle_ref is not None:
        # The destination's own CA replaces any bundle the operator's evaluator env names.
        extra[RESULTS_CA_BUNDLE_ENV] = f"{RESULTS_CA_MOUNT}/{results.ca_bundle_ref.key}"
    env = [{"name": k, "value": v} for k, v in sorted(extra.items()) if k not in RESERVED_ENV]
    payload = evaluator_spec(spec, config).model_dump(mode="json", by_alias=True)
    env.append({"name": SPEC_ENV, "value": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))})
    if spec.model.api_key_secret_ref:
        env.append(_secret_env(MODEL_API_KEY_ENV, spec.model.api_key_secret_ref))
    judge_ref = _judge_secret_ref(spec)
    if judge_ref is not None:
        env.append(_secret_env(JUDGE_API_KEY_ENV, judge_ref))
    if spec.wandb.api_key_secret_ref:
        env.append(_secret_env(WANDB_API_KEY_ENV, spec.wandb.api_key_secret_ref))
    if spec.model.hf_token_secret_ref:
        env.append(_secret_env(HF_TOKEN_ENV, spec.model.hf_token_secret_ref))
    env.extend(_results_env(results, results_key))
    env.extend(_cost_env(config, stage, gpu_seconds_held))
    return env


def stage_gpus(spec: EvaluationSpec, stage: Stage) -> int:
    """The GPUs a stage's pod asks for: `resources.gpus` for the pod that serves, else none."""
    return spec.resources.gpus if stage in GPU_STAGES else 0


def _resources(spec: EvaluationSpec, gpus: int) -> dict[str, Any]:
    r = spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)  # extended resources: requests default to limits
    if r.memory:
        requests["memory"] = limits["memory"] = r.memory
    if r.cpu:
        requests["cpu"] = r.cpu  # no CPU limit: throttling a tokenizer/server only slows the GPU down
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def queue_name(spec: EvaluationSpec, config: OperatorConfig) -> str | None:
    """The Kueue LocalQueue of the Job: `queueName`, else the operator's default (the chart's
    `evaluator.queueName`), else none."""
    return spec.queue_name or config.default_queue_name or None


def workspace_claim_name(name: str) -> str:
    """The PVC the operator creates for evaluation `name` (without `workspace.pvcName`): one per
    evaluation, not per generation, so every attempt and every generation finds the same cache."""
    return short(name, MAX_NAME - len(WORKSPACE_CLAIM_SUFFIX)) + WORKSPACE_CLAIM_SUFFIX


def _claim_name(name: str, spec: EvaluationSpec) -> str:
    return spec.workspace.pvc_name or workspace_claim_name(name)


def _workspace_volume(name: str, spec: EvaluationSpec) -> dict[str, Any]:
    return {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": _claim_name(name, spec)}}


def build_workspace_pvc(evaluation: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any] | None:
    """The workspace PVC the operator creates for the evaluation, or None when the spec names an
    existing one (`workspace.pvcName`: mounted, never created, owned or deleted by the operator).

    Size: `workspace.size`, else the operator's default; StorageClass: `workspace.storageClassName`,
    else the operator's setting, else none named (the cluster's default class). Owner references are
    the caller's (`kopf.append_owner_reference`), and only when `retain_workspace` is False: a
    retained PVC outlives its evaluation. Raises `InvalidEvaluation` like `build_job`."""
    meta = evaluation["metadata"]
    name = meta["name"]
    spec = validate(evaluation.get("spec"), source=f"{KIND} {meta.get('namespace', '')}/{name}: spec".strip())
    ws = spec.workspace
    if ws.pvc_name:
        return None
    pvc_spec: dict[str, Any] = {
        # One evaluator pod at a time (a Job's parallelism is 1); a serving group's pods on several
        # nodes all read the weights and the fetch record from it (`reconcile.group`).
        "accessModes": ["ReadWriteMany" if spec.resources.nodes > 1 else "ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": ws.size or config.workspace_size}},
    }
    if storage_class := ws.storage_class_name or config.workspace_storage_class:
        pvc_spec["storageClassName"] = storage_class
    pvc_meta: dict[str, Any] = {"name": workspace_claim_name(name), "labels": labels(name)}
    if meta.get("namespace"):
        pvc_meta["namespace"] = meta["namespace"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": pvc_meta, "spec": pvc_spec}


def retain_workspace(evaluation: Mapping[str, Any]) -> bool:
    """`workspace.retain`: the operator's PVC gets no ownerReference and survives the evaluation."""
    return bool(((evaluation.get("spec") or {}).get("workspace") or {}).get("retain"))


def shm_size(spec: EvaluationSpec, stage: Stage = Stage.RUN) -> str:
    """`/dev/shm`'s size limit: `resources.shmSize`, else 2Gi per GPU (1Gi without GPUs: a CPU
    stage's pod)."""
    gpus = stage_gpus(spec, stage)
    if spec.resources.shm_size and (gpus or stage == Stage.RUN):
        return spec.resources.shm_size
    return f"{SHM_PER_GPU_GI * gpus}Gi" if gpus else SHM_WITHOUT_GPU


def _scratch_volumes(spec: EvaluationSpec, stage: Stage) -> list[dict[str, Any]]:
    """The writable places besides the workspace (the root filesystem is read-only)."""
    return [
        {"name": TMP_VOLUME, "emptyDir": {}},
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(spec, stage)}},
    ]


def _weights_volumes(spec: EvaluationSpec, config: OperatorConfig, stage: Stage) -> list[dict[str, Any]]:
    volumes = []
    if uses_model_cache(spec, config, stage):
        claim = {"claimName": config.model_cache_pvc, "readOnly": stage == Stage.SERVE}
        volumes.append({"name": MODEL_CACHE_VOLUME, "persistentVolumeClaim": claim})
    if (weights := weights_claim(spec, stage)) is not None:
        volumes.append(
            {"name": WEIGHTS_PVC_VOLUME, "persistentVolumeClaim": {"claimName": weights, "readOnly": True}}
        )
    return volumes


def _weights_mounts(spec: EvaluationSpec, config: OperatorConfig, stage: Stage) -> list[dict[str, Any]]:
    mounts = []
    if uses_model_cache(spec, config, stage):  # the serve stage reads what a fetch stage filled
        mounts.append(
            {"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_MOUNT, "readOnly": stage == Stage.SERVE}
        )
    if (weights := weights_claim(spec, stage)) is not None:
        mounts.append(
            {"name": WEIGHTS_PVC_VOLUME, "mountPath": f"{WEIGHTS_PVC_MOUNT}/{weights}", "readOnly": True}
        )
    return mounts


def _volume_mounts(config: OperatorConfig, results: ResultsSpec | None) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": WORKSPACE_VOLUME, "mountPath": WORKSPACE_MOUNT}]
    if config.prepared_data_pvc:
        mounts.append({"name": PREPARED_DATA_VOLUME, "mountPath": PREPARED_DATA_MOUNT, "readOnly": True})
    mounts.append({"name": TMP_VOLUME, "mountPath": TMP_MOUNT})
    mounts.append({"name": SHM_VOLUME, "mountPath": SHM_MOUNT})
    if _results_ca_volumes(results):
        mounts.append({"name": RESULTS_CA_VOLUME, "mountPath": RESULTS_CA_MOUNT, "readOnly": True})
    return mounts


POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": POD_UID,
    "runAsGroup": POD_UID,
    "fsGroup": POD_UID,  # the workspace PVC is writable by the pod's user
    "fsGroupChangePolicy": "OnRootMismatch",  # no recursive chown of a PVC full of weights per pod
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
}
"""PodSecurity `restricted` (https://kubernetes.io/docs/concepts/security/pod-security-standards/)."""


def _prepared_data_volumes(config: OperatorConfig) -> list[dict[str, Any]]:
    """The shared prepared-data PVC, read-only: many evaluations read it at once, none writes it."""
    if not config.prepared_data_pvc:
        return []
    claim = {"claimName": config.prepared_data_pvc, "readOnly": True}
    return [{"name": PREPARED_DATA_VOLUME, "persistentVolumeClaim": claim}]


def parse_evaluation(
    evaluation: Mapping[str, Any],
    config: OperatorConfig,
    *,
    check_policy: bool = True,
) -> tuple[str, int, EvaluationSpec]:
    """The evaluation's name, generation and spec, validated as `build_job` needs (`validate`, then
    the operator's placement policy unless `check_policy` is False)."""
    meta = evaluation["metadata"]
    name, generation = meta["name"], int(meta.get("generation") or 1)
    source = f"{KIND} {meta.get('namespace', '')}/{name}: spec".strip()
    spec = validate(evaluation.get("spec"), source=source)
    if check_policy and (problems := config.policy.violations(spec)):  # nejumi_operator.policy
        raise InvalidEvaluation("; ".join(problems))
    return name, generation, spec


def pod_labels(name: str, stage: Stage) -> dict[str, str]:
    """The labels of a stage's pods: the evaluation's, and the stage's (none for `run`)."""
    out = labels(name)
    if stage != Stage.RUN:
        out[LABEL_STAGE] = stage.value
    return out


def workload_labels(name: str, spec: EvaluationSpec, config: OperatorConfig, stage: Stage) -> dict[str, str]:
    """The labels of what Kueue admits (a Job, a LeaderWorkerSet): the pods' labels plus Kueue's
    queue name (only with a queue: Kueue then manages the object) and workload priority class."""
    out = pod_labels(name, stage)
    if queue := queue_name(spec, config):
        out[LABEL_QUEUE] = queue
    if spec.workload_priority_class_name:
        out[LABEL_WORKLOAD_PRIORITY] = spec.workload_priority_class_name
    return out


def object_meta(evaluation: Mapping[str, Any], name: str, obj_labels: dict[str, str]) -> dict[str, Any]:
    """The metadata of a child of the evaluation's generation: `name`, labels, the generation's
    annotation, the evaluation's namespace."""
    meta = evaluation["metadata"]
    out: dict[str, Any] = {
        "name": name,
        "labels": obj_labels,
        "annotations": {ANNOTATION_GENERATION: str(int(meta.get("generation") or 1))},
    }
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    return out


def build_pod_template(
    evaluation: Mapping[str, Any],
    spec: EvaluationSpec,
    config: OperatorConfig,
    stage: Stage = Stage.RUN,
    *,
    gpu_seconds_held: float | None = None,
) -> dict[str, Any]:
    """The pod template (labels and spec) of `stage` for the evaluation's current generation, with
    `spec` as `parse_evaluation` read it: a Job's template (`build_job`), and the leader's and
    workers' of a multi-node serve stage (`reconcile.group`), so every pod that serves the model is
    built by this one function."""
    meta = evaluation["metadata"]
    name, generation = meta["name"], int(meta.get("generation") or 1)
    results = effective_results(spec, config)
    results_key = cluster_key(str(meta.get("namespace") or "default"), name, generation)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(config.command),
        "args": ["--spec-env", SPEC_ENV, "--summary", TERMINATION_PATH]
        + ([STAGE_FLAG, stage.value] if stage != Stage.RUN else []),
        "env": [*_env(spec, config, results_key, stage, gpu_seconds_held), *progress_env(name)],
        "workingDir": WORKSPACE_MOUNT,
        "volumeMounts": [*_volume_mounts(config, results), *_weights_mounts(spec, config, stage)],
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
    }
    gpus = stage_gpus(spec, stage)
    if resources := _resources(spec, gpus):
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Its own ServiceAccount, whose token may only write the progress ConfigMap
        # (reconcile.progress): the one API call the evaluator makes.
        "serviceAccountName": evaluator_account_name(name),
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [container],
        "volumes": [
            _workspace_volume(name, spec),
            *_prepared_data_volumes(config),
            *_scratch_volumes(spec, stage),
            *_results_ca_volumes(results),
            *_weights_volumes(spec, config, stage),
        ],
    }
    r = spec.resources
    if r.node_selector and (gpus or stage == Stage.RUN):  # a CPU stage is not bound to GPU nodes
        pod_spec["nodeSelector"] = dict(r.node_selector)
    if r.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in r.tolerations
        ]
    if r.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": ref.name} for ref in r.image_pull_secrets]
    if r.priority_class_name:
        pod_spec["priorityClassName"] = r.priority_class_name
    if r.runtime_class_name and (gpus or stage == Stage.RUN):  # e.g. nvidia: GPU nodes only
        pod_spec["runtimeClassName"] = r.runtime_class_name
    return {"metadata": {"labels": pod_labels(name, stage)}, "spec": pod_spec}


def build_job(
    evaluation: Mapping[str, Any],
    config: OperatorConfig,
    stage: Stage = Stage.RUN,
    *,
    check_policy: bool = True,
    gpu_seconds_held: float | None = None,
) -> dict[str, Any]:
    """The Job of `stage` for the evaluation's current generation. Owner references are added by
    the caller (`kopf.append_owner_reference`). Raises `InvalidEvaluation` for a spec the evaluator
    would reject. `check_policy=False` for a later stage of a generation whose first stage the
    policy of its day admitted: a `helm upgrade` never stops an evaluation halfway.
    `gpu_seconds_held`: for the judge stage, what the stages before it held (its cost reports it)."""
    name, generation, spec = parse_evaluation(evaluation, config, check_policy=check_policy)
    if (nodes := spec.resources.nodes) > 1 and stage == Stage.RUN:
        raise InvalidEvaluation(MULTI_NODE_UNSTAGED.format(nodes=nodes))
    if nodes > 1 and stage == Stage.SERVE:
        raise InvalidEvaluation(MULTI_NODE_SERVE_JOB.format(nodes=nodes))
    template = build_pod_template(evaluation, spec, config, stage, gpu_seconds_held=gpu_seconds_held)
    r = spec.resources
    job_spec: dict[str, Any] = {
        # Wall time for every attempt together (reset while Kueue keeps the Job suspended); then
        # the Job fails with reason DeadlineExceeded and its pods are stopped.
        "activeDeadlineSeconds": r.active_deadline_seconds or DEFAULT_DEADLINE_SECONDS,
        "backoffLimit": config.backoff_limit,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": list(NON_RETRYABLE_EXIT_CODES),
                    },
                },
                # An evicted/preempted pod is not the evaluator's fault: retry without counting.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": template,
    }
    if queue_name(spec, config):
        job_spec["suspend"] = True  # Kueue admits (unsuspends) it; without a queue it starts at once
    job_labels = workload_labels(name, spec, config, stage)
    job_meta = object_meta(evaluation, job_name(name, generation, stage), job_labels)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}
