"""The operator ↔ evaluator contract besides the spec and the summary: exit codes and env names.

The operator runs `nejumi-eval run --spec-env SPEC_ENV --summary <termination path>`, mounts each
Secret reference as one of the key variables below (the evaluator never sees a Secret object),
and reads the exit code to choose the Succeeded=False reason. Both packages import these names
from here; nothing keeps two copies equal.
"""

from __future__ import annotations

# ---- the pod --------------------------------------------------------------------------------
WORKSPACE_MOUNT = "/workspace"
"""Where the evaluation pod mounts its workspace (its working directory): an absolute `resultsDir`
in a status is under it, and relative to the workspace volume once the mount is taken off."""

# ---- exit codes: what kind of failure ended a run --------------------------------------------
EXIT_OK = 0
EXIT_BUG = 1
"""Anything unexpected: a bug (the traceback is printed)."""
EXIT_CONFIG = 2
"""Bad configuration or input: the user must change the resource."""
EXIT_INFRA = 3
"""Infrastructure (data, model server, endpoint): retrying or fixing the environment may help."""
EXIT_INTERRUPTED = 130
"""Ctrl-C / SIGINT: rerun the same command to resume from the cache."""
NON_RETRYABLE_EXIT_CODES = (EXIT_BUG, EXIT_CONFIG)
"""Exit codes no retry can fix: the operator fails a Job at once on them (its podFailurePolicy), and
a serving group's leader makes them its last attempt (`GROUP_ATTEMPTS_ENV`). 3 (infrastructure) is
retried; the response cache makes a retry cheap."""

# ---- environment variables ------------------------------------------------------------------
SPEC_ENV = "NEJUMI_SPEC"
"""The spec as JSON (the operator's way to pass it)."""
MODEL_API_KEY_ENV = "NEJUMI_MODEL_API_KEY"
"""`model.apiKeySecretRef`, mounted by the operator."""
JUDGE_API_KEY_ENV = "NEJUMI_JUDGE_API_KEY"
"""A benchmark judge's `apiKeySecretRef`, mounted by the operator."""
WANDB_API_KEY_ENV = "WANDB_API_KEY"
"""`wandb.apiKeySecretRef` (the name the wandb library reads)."""
CACHE_ENV = "NEJUMI_CACHE_DIR"
"""Root of the data and model caches (default `~/.cache/nejumi`)."""
DATA_MIRROR_ENV = "NEJUMI_DATA_MIRROR"
"""A local folder laid out like `shared/datasets/raw`: offline data."""
PREPARED_DIRS_ENV = "NEJUMI_PREPARED_DIRS"
"""Read-only roots laid out like `$NEJUMI_CACHE_DIR` (os.pathsep-separated), searched for prepared
data before the writable cache and never written to: the image's baked copy, a shared PVC."""
HF_TOKEN_ENV = "HF_TOKEN"
"""`model.hfTokenSecretRef` (gated or private Hugging Face models): the name huggingface_hub and
vLLM read, so the evaluator passes nothing on."""
HF_HOME_ENV = "HF_HOME"
"""Hugging Face's cache root; the operator puts it on the workspace (weights survive a retry)."""
MODEL_CACHE_ENV = "NEJUMI_MODEL_CACHE_DIR"
"""The shared model cache's mount (the operator's `evaluator.modelCache`): the fetch stage fills it
(`nejumi_eval.runtime.weights`: once per content, under a lock, verified), the serve stage reads it.
Unset: a model.storageUri's weights are cached in the workspace."""
MODEL_CACHE_MOUNT = "/mnt/nejumi/models"
"""Where the operator mounts the shared model cache (`$NEJUMI_MODEL_CACHE_DIR`)."""
WEIGHTS_PVC_MOUNT = "/mnt/nejumi/pvc"
"""Where a pod mounts the claim of a `pvc://claim/path` model.storageUri: the weights are the folder
`WEIGHTS_PVC_MOUNT/claim/path` (`nejumi_eval.runtime.weights` resolves it there, copies nothing)."""
PROGRESS_CONFIGMAP_ENV = "NEJUMI_PROGRESS_CONFIGMAP"
"""The ConfigMap (in the pod's namespace) the evaluator writes its live progress to
(`api.v1alpha1.progress`); unset outside Kubernetes, and then nothing is written."""
POD_NAME_ENV = "NEJUMI_POD_NAME"
"""The pod's name (downward API): a progress report names the attempt that wrote it."""
POD_NAMESPACE_ENV = "NEJUMI_POD_NAMESPACE"
"""The pod's namespace (downward API)."""
RESULTS_KEY_ENV = "NEJUMI_RESULTS_KEY"
"""The evaluation's key under `results.uri` (`api.v1alpha1.results.cluster_key`: namespace/name/
generation), set by the operator; unset (a local run): `<model>/<time>`."""
RESULTS_CA_MOUNT = "/etc/nejumi/results-ca"
"""Where the pod mounts `results.caBundleRef` (the file is `$AWS_CA_BUNDLE`)."""
RESULTS_ACCESS_KEY_ID_ENV = "AWS_ACCESS_KEY_ID"
"""`results.credentialsSecretRef`'s access key id, mounted by the operator (the name boto3 reads)."""
RESULTS_SECRET_ACCESS_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
"""`results.credentialsSecretRef`'s secret access key, mounted by the operator (boto3's name)."""
RESULTS_CA_BUNDLE_ENV = "AWS_CA_BUNDLE"
"""The PEM CA bundle boto3 verifies the store with: `RESULTS_CA_MOUNT/<key>` with `results.caBundleRef`."""
PRICING_ENV = "NEJUMI_PRICING"
"""The price table as JSON (`api.v1alpha1.cost.Pricing`: the chart's `pricing`), set by the operator on
the Jobs that report (the one `run` Job, the judge stage); a local run reads it too. Configuration,
never a secret; unset: costs are reported in tokens and GPU-seconds only."""
GPU_SECONDS_HELD_ENV = "NEJUMI_GPU_SECONDS_HELD"
"""GPU-seconds the evaluation's earlier stages held (the serve stage's Job wall time × its GPUs, as the
operator observed it), set on the judge stage's Job: the evaluator cannot see a Job's end itself."""

# ---- a model served across nodes: the serve stage as a LeaderWorkerSet group ------------------
# LeaderWorkerSet (sigs.k8s.io/lws, api/leaderworkerset/v1/leaderworkerset_types.go) sets these in
# every container of a group's pods; the evaluator reads them (`runtime.serve.commands.node_group`)
# to start its part of one vLLM server spread over the group's nodes.
LEADER_ADDRESS_ENV = "LWS_LEADER_ADDRESS"
"""The leader pod's DNS name (`<group>-0.<lws>.<namespace>`, LWS's headless Service): vLLM's
`--master-addr` on every node."""
GROUP_SIZE_ENV = "LWS_GROUP_SIZE"
"""The pods in the group, leader included (`resources.nodes`): vLLM's `--nnodes`."""
WORKER_INDEX_ENV = "LWS_WORKER_INDEX"
"""The pod's index in its group, 0 for the leader: vLLM's `--node-rank`."""
JOIN_GROUP_FLAG = "--join-group"
"""`nejumi-eval run --stage serve --join-group`: a worker pod of the group. It evaluates nothing:
it loads the same weights the leader serves and runs `vllm serve --headless`, joining the leader's
server, until the group is deleted. The leader pod runs the serve stage as a one-node pod does."""
GROUP_ATTEMPTS_ENV = "NEJUMI_GROUP_ATTEMPTS"
"""Set on a serving group's leader: how many attempts its serve stage may make (the operator's
`backoffLimit` + 1, what a Job would allow). A group's pods restart `Always` and a Job's retry
accounting does not exist for them, so the leader's evaluator keeps it: it counts its attempts on
the workspace (an attempt stopped by SIGTERM, a lost worker or a preemption, is not counted, as a
Job does not count a disrupted pod), and reports how each ended in the progress ConfigMap under
`progress.OUTCOME_KEY`. On success, a non-retryable exit (`NON_RETRYABLE_EXIT_CODES`) or its last
attempt it reports the outcome `final` and then holds (it sleeps until SIGTERM, then exits 0)
instead of exiting: the operator reads the outcome and releases the group. Otherwise it exits with
its code and LeaderWorkerSet recreates the group for the next attempt."""
GROUP_ID_ENV = "NEJUMI_GROUP_ID"
"""Set on a serving group's leader: the evaluation's UID and generation (`<uid>/<generation>`). The
leader keys its attempts record with it (beside the leader's address), so an evaluation deleted and
made again under the same name and spec, on a workspace that outlived the first (`workspace.retain`,
`pvcName`), never inherits the first one's attempts or final outcome."""
