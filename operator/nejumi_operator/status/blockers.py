"""Why an evaluation is not running, in words that say what to fix: queued (Kueue's Workload),
unschedulable (the scheduler's reason with hints naming spec fields), a container that cannot be
built (a missing Secret key, an image pull), or a pod that cannot be created at all (the Job
controller's FailedCreate event: PodSecurity, quota, a webhook)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_operator.reconcile.job import CONTAINER, GPU_RESOURCE
from nejumi_operator.status.observation import (
    IMAGE_PULL_REASONS,
    STARTING_REASONS,
    evaluator_status,
    pod_name,
    time_or_epoch,
)


def queued_reason(
    name: str, queue: str, workload: Mapping[str, Any] | None, nodes: int = 0
) -> tuple[str, str]:
    """Reason and message of a Job waiting in a Kueue LocalQueue, in Kueue's own words when its
    Workload says more: evicted (preempted) and requeued, or not fitting the quota (and why).
    `nodes`: it is a serving group of that many nodes (a LeaderWorkerSet: its pods wait at Kueue's
    scheduling gate, all of them, until the whole group fits)."""
    if nodes:
        what = f"LeaderWorkerSet {name}"
        waiting = (
            f"{what} ({nodes} nodes, admitted whole or not at all) is waiting for admission in "
            f"LocalQueue {queue}"
        )
        resumes = "the group resumes from the workspace's response cache"
    else:
        what = f"Job {name}"
        waiting = f"{what} is suspended, waiting for admission in LocalQueue {queue}"
        resumes = "its next pod resumes from the workspace's response cache"
    conds = ((workload or {}).get("status") or {}).get("conditions") or []
    evicted = c.find(conds, "Evicted")
    if evicted and evicted.get("status") == c.TRUE:
        why = (
            f"{evicted.get('reason')}: {evicted.get('message')}"
            if evicted.get("message")
            else evicted.get("reason")
        )
        return c.PREEMPTED, (
            f"Kueue evicted {what} ({why}); it waits for readmission in LocalQueue {queue}, and {resumes}"
        )
    reserved = c.find(conds, "QuotaReserved")
    if reserved and reserved.get("status") == c.FALSE and reserved.get("message"):
        return c.SUSPENDED, f"{waiting}; Kueue: {reserved.get('reason')}: {reserved.get('message')}"
    return c.SUSPENDED, waiting


def _scheduling_hints(message: str, gpus: int) -> list[str]:
    hints = []
    if f"Insufficient {GPU_RESOURCE}" in message:
        asked = f"{gpus} {GPU_RESOURCE}" if gpus else GPU_RESOURCE
        hints.append(
            f"the pod asks for {asked} and no node has that many free: lower spec.resources.gpus, "
            "wait for GPUs to be freed, or add GPU nodes"
        )
    for resource in ("memory", "cpu"):
        if f"Insufficient {resource}" in message:
            hints.append(f"no node has the {resource} free: lower spec.resources.{resource}")
    if m := re.search(r'persistentvolumeclaim "([^"]+)" not found', message):
        hints.append(
            f"create PersistentVolumeClaim {m.group(1)} in this namespace or fix spec.workspace.pvcName"
        )
    if "unbound immediate PersistentVolumeClaims" in message:
        hints.append("the workspace PVC is not bound: check its StorageClass and provisioner")
    if "untolerated taint" in message:
        # Only some nodes may be tainted, and the others may lack something else: not a sure fix.
        hints.append(
            "some nodes have taints the pod does not tolerate (if it should run there, add the "
            "toleration to spec.resources.tolerations, as the operator's policy allows)"
        )
    if "node affinity/selector" in message:
        hints.append("no node matches spec.resources.nodeSelector")
    return hints


def _config_hint(message: str, namespace: str) -> str:
    where = f" in namespace {namespace}" if namespace else ""
    if m := re.search(r'secret "([^"]+)" not found', message):
        return f"create Secret {m.group(1)}{where}, or fix the apiKeySecretRef in the spec that names it"
    if m := re.search(r"couldn't find key (\S+) in [Ss]ecret (?:[\w.-]+/)?([\w.-]+)", message):
        return f"add key {m.group(1)} to Secret {m.group(2)}, or fix the key in the spec's apiKeySecretRef"
    if m := re.search(r'configmap "([^"]+)" not found', message, re.IGNORECASE):
        return f"create ConfigMap {m.group(1)}{where}"
    return "fix the reference the kubelet names"


def pod_blocker(pod: Mapping[str, Any], gpus: int) -> tuple[str, str] | None:
    """(reason, message) when the pod cannot start its evaluator, from the kubelet's container
    state or the scheduler's PodScheduled condition; None when it is merely on its way."""
    name = pod_name(pod)
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    ev = evaluator_status(pod)
    waiting = (ev.get("state") or {}).get("waiting") or {}
    reason, detail = waiting.get("reason") or "", (waiting.get("message") or "").strip()
    if reason == "CreateContainerConfigError":
        what = detail or "a Secret or ConfigMap it references is missing"
        return (
            c.CREATE_CONTAINER_CONFIG_ERROR,
            f"pod {name} cannot start the evaluator: {what}: {_config_hint(detail, namespace)}",
        )
    if reason in IMAGE_PULL_REASONS:
        image = ev.get("image") or next(
            (
                x.get("image")
                for x in (pod.get("spec") or {}).get("containers") or []
                if x.get("name") == CONTAINER
            ),
            "",
        )
        return (
            c.IMAGE_PULL_ERROR,
            f"pod {name} cannot pull the evaluator image {image} ({reason}"
            + (f": {detail}" if detail else "")
            + "): check the operator's evaluator image setting, the registry and imagePullSecrets",
        )
    if reason and reason not in STARTING_REASONS:
        return (
            c.CONTAINER_WAITING,
            f"pod {name}: the evaluator container is waiting ({reason}"
            + (f": {detail}" if detail else "")
            + ")",
        )
    scheduled = c.find((pod.get("status") or {}).get("conditions"), "PodScheduled")
    if (
        scheduled
        and scheduled.get("status") == c.FALSE
        and scheduled.get("reason")
        in (
            "Unschedulable",
            "SchedulingGated",
        )
    ):
        why = (scheduled.get("message") or scheduled.get("reason") or "").strip()
        hints = _scheduling_hints(why, gpus)
        gate = "is gated" if scheduled.get("reason") == "SchedulingGated" else "cannot be scheduled"
        return (
            c.UNSCHEDULABLE,
            f"pod {name} {gate}: {why}" + (f" ({'; '.join(hints)})" if hints else ""),
        )
    return None


def _event_time(event: Mapping[str, Any]) -> dt.datetime:
    series = event.get("series") or {}
    return max(
        time_or_epoch(series.get("lastObservedTime")),
        time_or_epoch(event.get("lastTimestamp")),
        time_or_epoch(event.get("eventTime")),
        time_or_epoch(event.get("firstTimestamp")),
        time_or_epoch((event.get("metadata") or {}).get("creationTimestamp")),
    )


def pod_creation_failure(
    events: Iterable[Mapping[str, Any]], after: dt.datetime | None
) -> Mapping[str, Any] | None:
    """The latest FailedCreate event of the Job that is newer than `after` (the last pod's end)."""
    failed = [
        e for e in events if e.get("reason") == "FailedCreate" and (after is None or _event_time(e) >= after)
    ]
    return max(failed, key=_event_time, default=None)


def creation_failure_text(event: Mapping[str, Any]) -> str:
    """The API server's words on why the Job's pod could not be created, and what they mean."""
    detail = str(event.get("message") or "").strip()
    hint = _creation_hint(detail)
    return detail + (f" ({hint})" if hint else "")


def _creation_hint(message: str) -> str:
    if "violates PodSecurity" in message:
        return "the namespace's PodSecurity level forbids the pod"
    if "exceeded quota" in message:
        return "the namespace's ResourceQuota has no room for the pod"
    if "admission webhook" in message:
        return "an admission webhook denied the pod"
    if "forbidden" in message:
        return "the API server forbids the pod"
    return ""
