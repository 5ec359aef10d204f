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

What a Job gives that a group does not, and who keeps it instead. A StatefulSet's pods restart
`Always` and a LeaderWorkerSet never completes, so the leader's evaluator reports how its serve
stage ended in the progress ConfigMap and holds (`nejumi_eval.group_leader`), and the operator
reads that outcome and releases the group (`release_for`, `release_patch`: no replica, and the
record of how it ended), reading it as a Job meanwhile (`as_job`). There is no
`activeDeadlineSeconds` (the operator times the group out: `ANNOTATION_DEADLINE`), nor
`backoffLimit` or `podFailurePolicy` (the leader counts its attempts: `GROUP_ATTEMPTS_ENV`). A
worker on another node mounts the workspace and the weights: the workspace the operator makes is
ReadWriteMany for a group (`job.build_workspace_pvc`), as the shared model cache is. Owner
references are the caller's, as for Jobs.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nejumi_eval.api.v1alpha1.contract import (
    GROUP_ATTEMPTS_ENV,
    GROUP_ID_ENV,
    JOIN_GROUP_FLAG,
    POD_NAME_ENV,
    POD_NAMESPACE_ENV,
    PROGRESS_CONFIGMAP_ENV,
    SPEC_ENV,
)
from nejumi_eval.api.v1alpha1.names import GROUP, LABEL_QUEUE
from nejumi_eval.api.v1alpha1.progress import StageOutcome
from nejumi_eval.api.v1alpha1.stages import STAGE_FLAG, Stage
from nejumi_operator.reconcile.job import (
    CONTAINER,
    DEFAULT_DEADLINE_SECONDS,
    InvalidEvaluation,
    build_pod_template,
    job_name,
    object_meta,
    parse_evaluation,
    workload_labels,
)
from nejumi_operator.reconcile.naming import short
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status.observation import parse_time, stamp

GROUP_API_VERSION = "leaderworkerset.x-k8s.io/v1"
GROUP_KIND = "LeaderWorkerSet"
GROUP_RESTART_POLICY = "RecreateGroupOnPodRestart"
GROUP_STARTUP_POLICY = "LeaderCreated"
GROUP_POD_RESTART_POLICY = "Always"
"""A group's pods belong to StatefulSets, which accept no other pod restartPolicy."""
MAX_GROUP_NAME = 50
"""LWS names the group's worker StatefulSet `<name>-0`, whose pods carry the label
`controller-revision-hash: <name>-0-<hash of up to 10 characters>`, a label value (≤63)."""
WORKER_DROPPED_ENV = frozenset(
    {PROGRESS_CONFIGMAP_ENV, POD_NAME_ENV, POD_NAMESPACE_ENV, GROUP_ATTEMPTS_ENV, GROUP_ID_ENV}
)
"""The leader's progress channel and attempt count: a worker reports nothing."""
ANNOTATION_DEADLINE = f"{GROUP}/active-deadline-seconds"
"""A Job's `activeDeadlineSeconds`, which a LeaderWorkerSet lacks: the operator times the group out."""
ANNOTATION_RELEASED = f"{GROUP}/released"
"""Set by the operator when it releases the group (`Release`, JSON), with `spec.replicas: 0`."""
SET_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
"""LWS's label on every pod of a LeaderWorkerSet."""
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


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
    name, generation, spec = parse_evaluation(evaluation, config, check_policy=check_policy)
    nodes = spec.resources.nodes
    if nodes < 2:
        raise InvalidEvaluation(f"resources.nodes is {nodes}: a one-node serve stage is a Job (build_job)")
    leader = build_pod_template(evaluation, spec, config, Stage.SERVE)
    leader["spec"]["restartPolicy"] = GROUP_POD_RESTART_POLICY
    (container,) = leader["spec"]["containers"]
    uid = evaluation["metadata"].get("uid") or ""
    container["env"] += [
        {"name": GROUP_ATTEMPTS_ENV, "value": str(config.backoff_limit + 1)},
        {"name": GROUP_ID_ENV, "value": f"{uid}/{generation}"},
    ]
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
    deadline = spec.resources.active_deadline_seconds or DEFAULT_DEADLINE_SECONDS
    meta["annotations"][ANNOTATION_DEADLINE] = str(deadline)
    return {"apiVersion": GROUP_API_VERSION, "kind": GROUP_KIND, "metadata": meta, "spec": group_spec}


# ---- the group's life, as the operator reads and ends it ----------------------------------------


def group_size(group: Mapping[str, Any]) -> int:
    """The pods (nodes) of one group: the leader and its workers."""
    return int(((group.get("spec") or {}).get("leaderWorkerTemplate") or {}).get("size") or 1)


def leader_pod_name(group: Mapping[str, Any]) -> str:
    """LWS names group 0's leader pod `<LeaderWorkerSet>-0` (its workers `<LeaderWorkerSet>-0-<i>`)."""
    return f"{group['metadata']['name']}-0"


def attempts_allowed(group: Mapping[str, Any]) -> int:
    """What the leader was told it may try (`GROUP_ATTEMPTS_ENV`), as built."""
    template = ((group.get("spec") or {}).get("leaderWorkerTemplate") or {}).get("leaderTemplate") or {}
    for container in (template.get("spec") or {}).get("containers") or []:
        for var in container.get("env") or []:
            if container.get("name") == CONTAINER and var.get("name") == GROUP_ATTEMPTS_ENV:
                return max(1, int(str(var.get("value") or 1)))
    return 1


@dataclass(frozen=True)
class Release:
    """What the operator records on the LeaderWorkerSet when it releases the group: how the serve
    stage ended (the leader's final `StageOutcome`, or the operator's deadline), and when it held
    the GPUs (`start_time`: admission, or creation without a queue; `completion_time`: the end).
    The group's pods and Workload go; the record stays on the LeaderWorkerSet, as a finished Job
    stays, so where the evaluation is among its stages is still read from what exists."""

    succeeded: bool
    reason: str
    """`Completed`, `Failed` (the evaluator's exit) or `DeadlineExceeded` (the operator's clock)."""
    completion_time: str
    start_time: str | None = None
    exit_code: int | None = None
    summary: str = ""
    attempt: int = 1

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True)

    @classmethod
    def of(cls, group: Mapping[str, Any]) -> Release | None:
        text = ((group.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RELEASED)
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):
            return None


def admitted_at(group: Mapping[str, Any], workload: Mapping[str, Any] | None, queued: bool) -> str | None:
    """When the group got its nodes: Kueue's admission of its Workload (a Job's `startTime` after
    Kueue resumes it), or the LeaderWorkerSet's creation without a queue. None: not admitted."""
    if not queued:
        return (group.get("metadata") or {}).get("creationTimestamp")
    for cond in ((workload or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Admitted" and cond.get("status") == "True":
            return cond.get("lastTransitionTime")
    return None


def release_for(group: Mapping[str, Any], outcome: StageOutcome | None, now: dt.datetime) -> Release | None:
    """The release the group is due, or None (still serving): the leader's final outcome, or the
    deadline (`ANNOTATION_DEADLINE`) passed since admission, which stops the group whatever its
    evaluator is doing (a hung server, a group that keeps losing a worker). `group` as `as_job`
    reads it."""
    start_time = (group.get("status") or {}).get("startTime")
    if outcome is not None and outcome.final and outcome.pod == leader_pod_name(group):
        done = outcome.exit_code == 0
        return Release(
            succeeded=done,
            reason="Completed" if done else "Failed",
            completion_time=stamp(outcome.finished_at),
            start_time=start_time,
            exit_code=outcome.exit_code,
            summary=outcome.summary,
            attempt=outcome.attempt,
        )
    annotations = (group.get("metadata") or {}).get("annotations") or {}
    deadline = int(annotations.get(ANNOTATION_DEADLINE) or DEFAULT_DEADLINE_SECONDS)
    started = parse_time(start_time)
    if started is not None and (now - started).total_seconds() > deadline:
        last = outcome if outcome is not None and outcome.pod == leader_pod_name(group) else None
        return Release(
            succeeded=False,
            reason="DeadlineExceeded",
            completion_time=stamp(now),
            start_time=start_time,
            exit_code=last.exit_code if last else None,
            summary=last.summary if last else "",
            # the attempt under way when the clock stopped it: the one after the last reported (a
            # final outcome is released above), as the status counted it (`_group_in_progress`)
            attempt=last.attempt + 1 if last else 1,
        )
    return None


def release_patch(release: Release) -> dict[str, Any]:
    """The merge patch that releases a group: no replica (LWS deletes its pods, Kueue its Workload,
    so no GPU stays held) and the record of how the stage ended."""
    return {"metadata": {"annotations": {ANNOTATION_RELEASED: release.to_json()}}, "spec": {"replicas": 0}}


def queued(group: Mapping[str, Any]) -> bool:
    """Kueue admits it (it names a queue), as `build_serve_group` labels it."""
    return LABEL_QUEUE in ((group.get("metadata") or {}).get("labels") or {})


def as_job(group: Mapping[str, Any], workload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The group as the stage machinery reads a stage's Job (`reconcile.stages`, the status
    reducer): its metadata, the leader's pod template, `activeDeadlineSeconds` and `backoffLimit`
    as the group keeps them, `suspend` while Kueue has not admitted it (`workload`: its Workload,
    kept under `group`), `startTime` from its admission, and, once released, `Complete` or
    `Failed` with the times the group held its GPUs and the failed attempts (`status.failed`)."""
    meta = group.get("metadata") or {}
    template = ((group.get("spec") or {}).get("leaderWorkerTemplate") or {}).get("leaderTemplate") or {}
    deadline = int((meta.get("annotations") or {}).get(ANNOTATION_DEADLINE) or DEFAULT_DEADLINE_SECONDS)
    release = Release.of(group)
    status: dict[str, Any] = {}
    if release is not None:
        start_time = release.start_time
        kind = "Complete" if release.succeeded else "Failed"
        status["conditions"] = [
            {
                "type": kind,
                "status": "True",
                "reason": release.reason,
                "lastTransitionTime": release.completion_time,
            }
        ]
        status["failed"] = release.attempt - (1 if release.succeeded else 0)
        if release.succeeded:
            status["completionTime"] = release.completion_time
    else:
        start_time = admitted_at(group, workload, queued(group))
    if start_time:
        status["startTime"] = start_time
    return {
        "apiVersion": group.get("apiVersion", GROUP_API_VERSION),
        "kind": GROUP_KIND,
        "metadata": meta,
        "spec": {
            "activeDeadlineSeconds": deadline,
            "backoffLimit": attempts_allowed(group) - 1,
            "suspend": release is None and start_time is None and queued(group),
            "template": template,
        },
        "status": status,
        "group": {"size": group_size(group), "workload": workload},
    }


def group_size_of(job: Mapping[str, Any]) -> int:
    """The nodes of a group read as a Job (`as_job`)."""
    return int((job.get("group") or {}).get("size") or 1)


def is_group(job: Mapping[str, Any]) -> bool:
    """A stage's "Job" that is a serving group read by `as_job`."""
    return job.get("kind") == GROUP_KIND
