"""NejumiEvaluation → LeaderWorkerSet: the serve stage of a model larger than one node (issue 22),
a pure function of the resource and the operator's settings, beside `job.build_job`.

A one-node model's serve stage is one Job (`build_job(..., Stage.SERVE)`). With `resources.nodes`
N > 1 it is one LeaderWorkerSet group (sigs.k8s.io/lws, `leaderworkerset.x-k8s.io/v1`) of N pods,
each asking for `resources.gpus` (one node's GPUs), all built from the serve Job's own pod template
(`job.build_pod_template`): the same image, env (`HF_HUB_OFFLINE=1`), volumes (the workspace, the
model cache read-only), nodeSelector, tolerations, runtimeClass, priority and securityContext.

Who runs what. vLLM serves one model across nodes without Ray (its multiprocessing backend; vLLM's
documentation, "Running vLLM with MultiProcessing" in `docs/serving/parallelism_scaling.md`): the
head node runs `vllm serve` with `--nnodes N --node-rank 0 --master-addr <head>`, every other node
the same command with its `--node-rank` and `--headless`. Here:

- the **leader** pod runs the serve stage exactly as a one-node serve pod does (`nejumi-eval run
  --stage serve`): the evaluator starts `vllm serve` locally, with the group's flags read from the
  environment LWS gives every pod (`LWS_GROUP_SIZE` → `--nnodes`, `LWS_WORKER_INDEX` (0) →
  `--node-rank`, `LWS_LEADER_ADDRESS` → `--master-addr`; `runtime.serve.commands.node_group`), and
  sends every request to it on 127.0.0.1, into the response cache on the workspace;
- each **worker** pod runs `nejumi-eval run --stage serve --join-group` (`JOIN_GROUP_FLAG`): the
  evaluator resolves the same weights and engine settings as the leader and becomes `vllm serve
  --headless` with its own `--node-rank` (`pipeline.join_group_command`). It evaluates nothing, so
  it gets no Secret, no summary and no progress channel, and no API token.

No Service of ours. The issue sketched the evaluator as the group's client through a Service; the
client is in the leader pod, so it reaches the server on loopback, and the workers find the leader
by `LWS_LEADER_ADDRESS`, the leader pod's name under the headless Service LWS makes for every
LeaderWorkerSet. A Service selecting the leader would add an object to create, own and delete
with nothing sending through it.

Kueue admits the group whole: the LeaderWorkerSet carries the queue-name label (only with a queue,
as a Job) and Kueue's LWS integration makes the group one Workload (a leader and a worker pod set),
holding every pod at its scheduling gate until all N fit. `restartPolicy: RecreateGroupOnPodRestart`
(LWS's default, written out): a worker lost takes the group down and LWS starts it again, and the
leader's evaluator resumes from the response cache. `startupPolicy: LeaderCreated`: the workers
start with the leader pod, not after its readiness: the leader's server is ready only once every
worker joined it.

What a Job gave that a group does not (for the operator's wiring, step 3b): a StatefulSet's pods
restart `Always` (so an evaluator that ends is restarted, and the group with it: the operator must
read the serve stage's end and delete the group, which never completes by itself); no
`activeDeadlineSeconds`, `backoffLimit` or `podFailurePolicy` (the operator must time the group out
and stop on a non-retryable exit code); and a worker on another node mounts the workspace and the
weights, so they must be readable from several nodes at once (the shared model cache is
ReadWriteMany; an operator-made workspace is ReadWriteOnce today). Owner references are the
caller's (`kopf.append_owner_reference`), as for Jobs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from nejumi_eval.api.v1alpha1.contract import (
    JOIN_GROUP_FLAG,
    POD_NAME_ENV,
    POD_NAMESPACE_ENV,
    PROGRESS_CONFIGMAP_ENV,
    SPEC_ENV,
)
from nejumi_eval.api.v1alpha1.stages import STAGE_FLAG, Stage
from nejumi_operator.reconcile.job import (
    InvalidEvaluation,
    build_pod_template,
    job_name,
    object_meta,
    parse_evaluation,
    workload_labels,
)
from nejumi_operator.reconcile.naming import short
from nejumi_operator.settings import OperatorConfig

GROUP_API_VERSION = "leaderworkerset.x-k8s.io/v1"
GROUP_KIND = "LeaderWorkerSet"
GROUP_RESTART_POLICY = "RecreateGroupOnPodRestart"
GROUP_STARTUP_POLICY = "LeaderCreated"
GROUP_POD_RESTART_POLICY = "Always"
"""A group's pods belong to StatefulSets, which accept no other pod restartPolicy."""
MAX_GROUP_NAME = 50
"""LWS names the group's worker StatefulSet `<name>-0`, whose pods carry the label
`controller-revision-hash: <name>-0-<hash of up to 10 characters>`, a label value (≤63)."""
WORKER_DROPPED_ENV = frozenset({PROGRESS_CONFIGMAP_ENV, POD_NAME_ENV, POD_NAMESPACE_ENV})
"""The leader's progress channel: a worker reports nothing."""


def group_name(name: str, generation: int) -> str:
    """The serve stage's LeaderWorkerSet of generation `generation` of evaluation `name`: the serve
    Job's name (`job_name`: `<name>-g1-serve`), cut shorter when long (`MAX_GROUP_NAME`); stable,
    so creation is idempotent."""
    suffix = job_name("", generation, Stage.SERVE)
    return short(name, MAX_GROUP_NAME - len(suffix)) + suffix


def worker_args() -> list[str]:
    """A worker's evaluator arguments: the serve stage, joining the group (`JOIN_GROUP_FLAG`)."""
    return ["--spec-env", SPEC_ENV, STAGE_FLAG, Stage.SERVE.value, JOIN_GROUP_FLAG]


def _worker_template(leader: dict[str, Any]) -> dict[str, Any]:
    """The leader's template for a worker: another command, and nothing it does not use."""
    worker = copy.deepcopy(leader)
    pod_spec = worker["spec"]
    pod_spec["automountServiceAccountToken"] = False  # it makes no API call (no progress reports)
    (container,) = pod_spec["containers"]
    container["args"] = worker_args()
    container["env"] = [
        e
        for e in container["env"]
        if e["name"] not in WORKER_DROPPED_ENV and "secretKeyRef" not in e.get("valueFrom", {})
    ]
    return worker


def build_serve_group(
    evaluation: Mapping[str, Any], config: OperatorConfig, *, check_policy: bool = True
) -> dict[str, Any]:
    """The LeaderWorkerSet serving the evaluation's current generation across `resources.nodes`
    nodes (the module's docstring). Raises `InvalidEvaluation` like `build_job`, and for a
    one-node spec, whose serve stage is a Job."""
    name, generation, spec = parse_evaluation(evaluation, config, check_policy=check_policy, multi_node=True)
    nodes = spec.resources.nodes
    if nodes < 2:
        raise InvalidEvaluation(f"resources.nodes is {nodes}: a one-node serve stage is a Job (build_job)")
    leader = build_pod_template(evaluation, spec, config, Stage.SERVE)
    leader["spec"]["restartPolicy"] = GROUP_POD_RESTART_POLICY
    group_spec: dict[str, Any] = {
        "replicas": 1,
        "startupPolicy": GROUP_STARTUP_POLICY,
        "leaderWorkerTemplate": {
            "size": nodes,
            "restartPolicy": GROUP_RESTART_POLICY,
            "leaderTemplate": leader,
            "workerTemplate": _worker_template(leader),
        },
    }
    meta = object_meta(
        evaluation, group_name(name, generation), workload_labels(name, spec, config, Stage.SERVE)
    )
    return {"apiVersion": GROUP_API_VERSION, "kind": GROUP_KIND, "metadata": meta, "spec": group_spec}
