"""The controller: the one status writer. Read the evaluation, its Job, pods (and, when no pod is
live, the Job's events), reduce (`nejumi_operator.status`), write `/status`, and post a Kubernetes
Event for each transition. The kopf handlers (`handlers`) only decide when; this decides what.

A staged evaluation (`api.v1alpha1.stages`) is observed through its current stage's Job; a sync
that finds a fetch or serve Job Complete makes the next stage's Job first (`advance`), so the next
stage starts on the event that ended the one before, or at the latest on the next resync round.

Several triggers call it (the create handler, Job events, the resync loop); the write carries the
`resourceVersion` it was computed from, so a status derived from older observations never
overwrites a newer one (409 → read again, recompute). Events are posted only after a successful
write, so each transition is announced once, by the writer that made it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.conditions import (
    ACCEPTED,
    BEFORE_JOB_WAITS,
    INVALID_SPEC,
    JOB_REJECTED,
    KSTATUS_TYPES,
    NAME_CONFLICT,
    find,
    is_finished,
    kstatus_conditions,
)
from nejumi_eval.api.v1alpha1.names import API_VERSION, KIND, LABEL_EVALUATION, LABEL_QUEUE
from nejumi_eval.api.v1alpha1.stages import Stage, after
from nejumi_operator.kube import calls
from nejumi_operator.reconcile import group as groups
from nejumi_operator.reconcile.job import CONTAINER, InvalidEvaluation, build_job, job_name
from nejumi_operator.reconcile.naming import label_value
from nejumi_operator.reconcile.ownership import owned_by, owner_reference
from nejumi_operator.reconcile.progress import parse_outcome, parse_report, progress_configmap_name
from nejumi_operator.reconcile.stages import StageJobs, job_generation, job_gpus, stage_jobs
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status import (
    GroupState,
    Observation,
    Termination,
    Transition,
    last_termination,
    needs_job_events,
    reduce_status,
    status_patch,
    transitions,
)
from nejumi_operator.status.text import clip_bytes

ATTEMPTS = 5
COMPONENT = "nejumi-operator"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Listing:
    """An evaluation's Jobs, pods and Kueue Workloads as listed for many evaluations at once (a
    resync round, `list_children`): a sync that starts from it asks the API server nothing unless
    the status changed. Every Job and pod labelled with the evaluation's name, whoever owns it (the
    sync keeps its own, by owner UID, as it does with what it reads itself); `workloads` by Job UID,
    for the suspended Jobs among them."""

    jobs: tuple[Mapping[str, Any], ...] = ()
    pods: tuple[Mapping[str, Any], ...] = ()
    workloads: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


def list_children(api: ApiClient, namespace: str, names: Iterable[str]) -> dict[str, Listing]:
    """The `Listing` of each of these evaluations of one namespace, in three list calls whatever
    their number (a label selector `in (…)`: the caller keeps the batch small enough for a URL)."""
    by_value = {label_value(name): name for name in names}
    if not by_value:
        return {}
    selector = f"{LABEL_EVALUATION} in ({','.join(sorted(by_value))})"
    jobs: dict[str, list[Mapping[str, Any]]] = {}
    pods: dict[str, list[Mapping[str, Any]]] = {}
    for into, items in (
        (jobs, calls.labelled_jobs(api, namespace, selector)),
        (pods, calls.labelled_pods(api, namespace, selector)),
    ):
        for item in items:
            value = ((item.get("metadata") or {}).get("labels") or {}).get(LABEL_EVALUATION)
            if value in by_value:
                into.setdefault(by_value[value], []).append(item)
    suspended = [str(job["metadata"].get("uid")) for found in jobs.values() for job in found if _queued(job)]
    workloads = calls.job_workloads(api, namespace, suspended)
    return {
        name: Listing(
            jobs=tuple(jobs.get(name, ())),
            pods=tuple(pods.get(name, ())),
            workloads={
                uid: workloads[uid]
                for job in jobs.get(name, ())
                if (uid := str(job["metadata"].get("uid"))) in workloads
            },
        )
        for name in by_value.values()
    }


def _queued(job: Mapping[str, Any]) -> bool:
    """A Job Kueue may hold: suspended. (Whether it names a queue is `observe`'s to check.)"""
    return bool((job.get("spec") or {}).get("suspend"))


def generation_jobs(
    api: ApiClient, evaluation: Mapping[str, Any], listing: Listing | None = None
) -> StageJobs:
    """The evaluation's Jobs of its current generation, by stage (one list call, none with a
    `listing`; a namesake's Jobs — a deleted predecessor's, or squatted — never count)."""
    meta = evaluation["metadata"]
    selector = f"{LABEL_EVALUATION}={label_value(meta['name'])}"
    if listing is not None:
        jobs: list[Mapping[str, Any]] = list(listing.jobs)
    else:
        jobs = list(calls.labelled_jobs(api, meta["namespace"], selector))
    uid, generation = str(meta.get("uid")), int(meta.get("generation") or 1)
    if multi_node(evaluation):  # its serve stage is a group: read as a Job (`group.as_job`)
        for group in calls.labelled_groups(api, meta["namespace"], selector):
            if owned_by(group, uid) and job_generation(group) == generation:
                jobs.append(_group_as_job(api, meta["namespace"], group))
    return stage_jobs(jobs, uid, generation)


def multi_node(evaluation: Mapping[str, Any]) -> bool:
    """Its model is served across nodes (`resources.nodes` > 1): the serve stage is a group."""
    nodes = ((evaluation.get("spec") or {}).get("resources") or {}).get("nodes")
    return isinstance(nodes, int) and nodes > 1


def _group_as_job(api: ApiClient, namespace: str, group: Mapping[str, Any]) -> dict[str, Any]:
    """The group read as a Job, with Kueue's Workload while it is not released and queued (Kueue
    labels a LeaderWorkerSet's Workload with its UID, as a Job's)."""
    workload = None
    if groups.Release.of(group) is None and groups.queued(group):
        workload = calls.job_workload(api, namespace, str(group["metadata"].get("uid")))
    return groups.as_job(group, workload)


def observe(
    api: ApiClient,
    evaluation: Mapping[str, Any],
    found: StageJobs | None = None,
    listing: Listing | None = None,
) -> Observation:
    meta = evaluation["metadata"]
    namespace = meta["namespace"]
    generation = int(meta.get("generation") or 1)
    uid = str(meta.get("uid"))
    found = found if found is not None else generation_jobs(api, evaluation, listing)
    current = found.current
    stage, job = current if current is not None else (Stage.RUN, None)
    if job is not None and groups.is_group(job):
        return _observe_group(api, evaluation, found, stage, job)
    name = str((job or {}).get("metadata", {}).get("name") or job_name(meta["name"], generation, stage))
    job_uid = str(((job or {}).get("metadata") or {}).get("uid"))
    pods: list[Mapping[str, Any]] = []
    if job and listing is not None:
        pods = [p for p in listing.pods if _pod_of(p, name) and owned_by(p, job_uid)]
    elif job:
        pods = [p for p in calls.job_pods(api, namespace, name) if owned_by(p, job_uid)]
    events: list[dict[str, Any]] = []
    if job and needs_job_events(job, pods):
        events = calls.job_events(api, namespace, name, (job.get("metadata") or {}).get("uid"))
    spec = evaluation.get("spec") or {}
    queue = ((job or {}).get("metadata") or {}).get("labels", {}).get(LABEL_QUEUE) or spec.get("queueName")
    workload = None
    if job and queue and _queued(job):
        if listing is not None and any(j is job for j in listing.jobs):  # listed with its Workload
            workload = listing.workloads.get(job_uid)
        else:  # read now (no listing, or a Job made since: `advance`)
            workload = calls.job_workload(api, namespace, job_uid)
    report = None
    if any(_evaluator_running(pod) for pod in pods):
        configmap = calls.read_configmap(api, namespace, progress_configmap_name(meta["name"]))
        report = parse_report(configmap) if owned_by(configmap, uid) else None
    following = after(stage)
    return Observation(
        generation=generation,
        job_name=name,
        stage=stage.value if found.staged else None,
        next_stage=following.value if following is not None else None,
        stages=tuple(found.records()),
        job=job,
        termination=last_termination(pods, job),
        gpus=job_gpus(job) if job else 0,
        queue_name=queue,  # the Job's (the spec's, or the operator's default when it was built)
        workload=workload,
        pods=tuple(pods),
        job_events=tuple(events),
        progress=report,
    )


def _observe_group(
    api: ApiClient, evaluation: Mapping[str, Any], found: StageJobs, stage: Stage, job: Mapping[str, Any]
) -> Observation:
    """The observation of a serve stage that is a group (`reconcile.group`): its pods (all of
    them: a worker lost is the group's), its Workload, the leader's last outcome and progress."""
    meta = evaluation["metadata"]
    namespace, name = meta["namespace"], str(job["metadata"]["name"])
    leader = groups.leader_pod_name(job)
    pods = calls.labelled_pods(api, namespace, f"{groups.SET_NAME_LABEL}={name}")
    read = job.get("group") or {}
    if "configmap" in read:  # read by this sync's `settle_group`
        configmap = read["configmap"]
    else:
        configmap = calls.read_configmap(api, namespace, progress_configmap_name(meta["name"]))
    ours = owned_by(configmap, str(meta.get("uid")))
    outcome = parse_outcome(configmap) if ours else None
    outcome = outcome if outcome is not None and outcome.pod == leader else None
    running = any(_evaluator_running(p) for p in pods if (p.get("metadata") or {}).get("name") == leader)
    report = parse_report(configmap) if ours and running else None
    release = groups.Release.of(job)
    termination = None
    if release is not None and release.exit_code is not None:
        termination = Termination(
            release.exit_code, release.summary, pod=leader, finished_at=release.completion_time
        )
    elif release is None and outcome is not None:  # the last attempt's end, for "attempt n of m"
        termination = Termination(outcome.exit_code, outcome.summary, pod=leader)
    following = after(stage)
    return Observation(
        generation=int(meta.get("generation") or 1),
        job_name=name,
        stage=stage.value,
        next_stage=following.value if following is not None else None,
        stages=tuple(found.records()),
        job=job,
        termination=termination,
        gpus=job_gpus(job),
        queue_name=((job.get("metadata") or {}).get("labels") or {}).get(LABEL_QUEUE),
        workload=(job.get("group") or {}).get("workload"),
        progress=report,
        group=GroupState(size=groups.group_size_of(job), leader=leader, pods=tuple(pods), outcome=outcome),
    )


def _pod_of(pod: Mapping[str, Any], job: str) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return (labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")) == job


def _evaluator_running(pod: Mapping[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == CONTAINER and "running" in (s.get("state") or {}) for s in statuses)


def advance(
    api: ApiClient, config: OperatorConfig, evaluation: Mapping[str, Any], found: StageJobs
) -> StageJobs:
    """Make the next stage's Job when the current stage's completed (`StageJobs.next_stage`);
    returns the Jobs as they are then. The stage's Job is built from the same spec as the first
    (one generation, one spec), without the policy check: the policy of the day admitted the
    first, and a `helm upgrade` never stops an evaluation halfway."""
    following = found.next_stage()
    if following is None:
        return found
    meta = evaluation["metadata"]
    as_group = following == Stage.SERVE and multi_node(evaluation)
    try:
        if as_group:
            job = groups.build_serve_group(evaluation, config, check_policy=False)
        else:
            job = build_job(
                evaluation, config, following, check_policy=False, gpu_seconds_held=found.gpu_seconds_held()
            )
    except InvalidEvaluation as exc:  # an operator upgrade that reads the spec differently
        raise StageRefused((INVALID_SPEC, str(exc))) from None
    job["metadata"]["ownerReferences"] = [owner_reference(evaluation)]
    kind = "LeaderWorkerSet" if as_group else "Job"
    try:
        made, created = calls.create_or_get(api, meta["namespace"], job)
    except ApiException as exc:
        if not as_group or exc.status not in (400, 403, 404, 422):
            raise
        raise StageRefused((JOB_REJECTED, _group_refused(exc))) from None
    if not created and not owned_by(made, str(meta.get("uid"))):
        raise StageRefused(
            (
                NAME_CONFLICT,
                f"{kind} {job['metadata']['name']} (the {following.value} stage) already exists and is not "
                "this evaluation's; the operator never uses an object it did not make for this "
                "evaluation: delete or rename it",
            )
        )
    if created:
        where = f"{meta['namespace']}/{meta['name']}"
        log.info("%s: %s %s created (stage %s)", where, kind, made["metadata"]["name"], following.value)
    if as_group:
        made = groups.as_job(made)  # just made: not admitted, nothing to ask Kueue yet
    return StageJobs({**found.jobs, following: made})


def _group_refused(exc: ApiException) -> str:
    """Why the serving group could not be made, saying what to install or grant."""
    if exc.status == 404:
        return (
            "a model served across nodes (resources.nodes > 1) runs its serve stage as a LeaderWorkerSet "
            "(leaderworkerset.x-k8s.io/v1), which this cluster does not serve: install LeaderWorkerSet "
            "(sigs.k8s.io/lws), or set resources.nodes to 1"
        )
    if exc.status == 403:
        return (
            "the operator may not create LeaderWorkerSets (leaderworkerset.x-k8s.io): its RBAC lacks them "
            "(the chart grants them; an older install does not)"
        )
    return f"the API server refused the LeaderWorkerSet: {exc.reason}: {(exc.body or '')[:400]}"


def settle_group(api: ApiClient, evaluation: Mapping[str, Any], found: StageJobs) -> StageJobs:
    """Release the serve stage's group when it is done (`group.release_for`: the leader's final
    outcome, or the deadline): no GPU stays held past the serve stage, and the group's record (how
    it ended, when it held the GPUs) stays on its LeaderWorkerSet. Returns the Jobs as they are then."""
    current = found.current
    if current is None or current[0] != Stage.SERVE or not groups.is_group(current[1]):
        return found
    view = current[1]
    if groups.Release.of(view) is not None:
        return found
    meta = evaluation["metadata"]
    namespace = meta["namespace"]
    configmap = calls.read_configmap(api, namespace, progress_configmap_name(meta["name"]))
    outcome = parse_outcome(configmap) if owned_by(configmap, str(meta.get("uid"))) else None
    release = groups.release_for(view, outcome, dt.datetime.now(dt.UTC))
    if release is None:  # still serving: its observation uses the ConfigMap read here
        kept = {**view, "group": {**(view.get("group") or {}), "configmap": configmap}}
        return StageJobs({**found.jobs, Stage.SERVE: kept})
    name = view["metadata"]["name"]
    patched = calls.release_group(api, namespace, name, groups.release_patch(release))
    if patched is None:
        return found
    log.info(
        "%s/%s: LeaderWorkerSet %s released (%s, attempt %d)",
        namespace,
        meta["name"],
        name,
        release.reason,
        release.attempt,
    )
    return StageJobs({**found.jobs, Stage.SERVE: groups.as_job(patched)})


class StageRefused(Exception):
    """The next stage's Job cannot be made: (reason, message) for the status (final)."""

    def __init__(self, refusal: tuple[str, str]) -> None:
        super().__init__(refusal[1])
        self.refusal = refusal


def sync_status(
    api: ApiClient,
    namespace: str,
    name: str,
    rejected: Mapping[str, Any] | None = None,
    config: OperatorConfig | None = None,
    evaluation: dict[str, Any] | None = None,
    listing: Listing | None = None,
    written: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any] | None:
    """Bring the evaluation's status up to date; returns it (None: the evaluation is gone).
    A finished evaluation's status is final and is left alone. `rejected` (the operator refused the
    spec or what it needs, or the API server did, or the create handler waits: `Observation`'s
    `spec_error`, `refusal`, `job_rejected` + `refused`, `waiting`) replaces the observation of a Job
    that does not exist; it goes through the same guarded write, so two replicas that both refuse
    an evaluation post its Event once. With `config`, a completed stage's successor is made first
    (`advance`). `evaluation`: the evaluation as last delivered by the watch (`syncs`), instead of
    reading it for the first attempt: if it is stale, the write (it carries its resourceVersion) is
    refused and the next attempt reads it. `listing`: its Jobs, pods and Workloads as a resync round
    listed them (`list_children`), likewise for the first attempt only. `written` is handed the
    evaluation as the API server returned it after the write, while it is unfinished (the next
    sync can start from it: `syncs`)."""
    # What a refused write had observed, and the status it was reduced with: when the refusal was
    # for a change of anything but the status (kopf's own annotations, mostly), it still holds.
    observed: tuple[Mapping[str, Any], Observation] | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            listing = None  # what was listed may be as stale as the evaluation was: read it all
        if attempt or evaluation is None:
            evaluation = calls.read_evaluation(api, namespace, name)
        if evaluation is None or evaluation["metadata"].get("deletionTimestamp"):
            return None
        old = evaluation.get("status") or {}
        generation = int(evaluation["metadata"].get("generation") or 1)
        if is_finished(old) and old.get("observedGeneration") == generation:
            return old
        if rejected is not None:
            obs = Observation(generation=generation, job_name=job_name(name, generation), **rejected)
        elif observed is not None and observed[0] == old and observed[1].generation == generation:
            obs = observed[1]  # observed a moment ago, and nobody wrote a status since
        else:
            found = generation_jobs(api, evaluation, listing)
            refusal = None
            if config is not None:
                found = settle_group(api, evaluation, found)
                try:
                    found = advance(api, config, evaluation, found)
                except StageRefused as exc:
                    refusal = exc.refusal
            obs = observe(api, evaluation, found, listing)
            if config is not None:  # the price of the GPU-seconds the operator observes (status.cost)
                obs = dataclasses.replace(obs, pricing=config.pricing)
            if refusal is not None:
                obs = dataclasses.replace(obs, stage_refusal=refusal)
            if obs.job is None and (
                not old.get("conditions")
                or (find(old.get("conditions"), ACCEPTED) or {}).get("reason") in BEFORE_JOB_WAITS
            ):
                # The create handler has not made the Job yet (an early event or resync round): it
                # writes the first status itself, so a queued evaluation never shows Pending first,
                # and what it waits for (a Secret, a deleted namesake's objects) stays said.
                return old
        new = reduce_status(old, obs)
        if new == old:
            return old
        try:
            patched = calls.patch_status(
                api, namespace, name, status_patch(old, new), evaluation["metadata"]["resourceVersion"]
            )
        except calls.Conflict:
            # (not what a listing showed: a resync round's may be older than the refused write)
            observed = (old, obs) if listing is None else None
            continue
        if written is not None and not is_finished(new):
            written(patched)
        record_transition(api, evaluation, old, new)
        return new
    raise calls.Conflict(f"{namespace}/{name}: status kept changing during {ATTEMPTS} attempts")


def complete_finished_status(api: ApiClient, namespace: str, name: str) -> bool:
    """A finished status written by an operator from before the kstatus conditions (Ready,
    Reconciling, Stalled) gets them, derived from its own conditions: without them kstatus reads any
    object as Current, a Failed evaluation included. Only the conditions are written; the rest of a
    finished status is final. True when it wrote them."""
    evaluation = calls.read_evaluation(api, namespace, name)
    if evaluation is None:
        return False
    status = evaluation.get("status") or {}
    conditions = list(status.get("conditions") or [])
    if not is_finished(status) or all(find(conditions, t) for t in KSTATUS_TYPES):
        return False
    generation = int(status.get("observedGeneration") or evaluation["metadata"].get("generation") or 1)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for type_, (state, reason, message) in kstatus_conditions(status, generation).items():
        if find(conditions, type_) is None:
            conditions.append(
                {
                    "type": type_,
                    "status": state,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": stamp,
                    "observedGeneration": generation,
                }
            )
    try:
        calls.patch_status(
            api, namespace, name, {"conditions": conditions}, evaluation["metadata"]["resourceVersion"]
        )
    except calls.Conflict:
        return False  # someone wrote it meanwhile: the next resume looks again
    return True


def record_transition(
    api: ApiClient | None,
    evaluation: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
) -> None:
    """Log the phase change (naming the resource, `namespace/name`) and post one Event on the
    evaluation per transition (`status.transitions`). For every writer of the status:
    `sync_status` calls it; a handler that writes the status itself (e.g. a rejected spec or Job)
    calls it with the status it writes. Never raises for an Event the API refuses."""
    meta = evaluation.get("metadata") or {}
    where = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    old = old or {}
    key = ("phase", "reason", "attempt")
    if tuple(old.get(k) for k in key) != tuple(new.get(k) for k in key):
        attempt = f", attempt {new['attempt']}" if new.get("attempt") else ""
        log.info(
            "%s: %s → %s (%s%s): %s",
            where,
            old.get("phase") or "new",
            new.get("phase"),
            new.get("reason"),
            attempt,
            new.get("message") or "",
        )
    if api is None:
        return
    for transition in transitions(old, new):
        calls.create_event(api, str(meta.get("namespace")), event_body(evaluation, transition))


def event_body(evaluation: Mapping[str, Any], transition: Transition) -> dict[str, Any]:
    """A core/v1 Event about the evaluation (what `kubectl describe nejumi` lists)."""
    meta = evaluation.get("metadata") or {}
    at = dt.datetime.now(dt.UTC)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    message = clip_bytes(transition.message)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": evaluation.get("apiVersion") or API_VERSION,
            "kind": evaluation.get("kind") or KIND,
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": transition.type,
        "reason": transition.reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME") or socket.gethostname(),
        "eventTime": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # MicroTime: orders same-second Events
        "action": transition.reason,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
