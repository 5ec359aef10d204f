"""The life of a serving group (a model served across nodes, issue 22) as the operator drives it:
when it is released (`group.release_for`), how it reads as a Job (`group.as_job`), what a sync does
with it against a fake API server (`controller.settle_group`, `advance`, `sync_status`), and what
the status says at each step of its life (`status.reducer`)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.contract import GPU_SECONDS_HELD_ENV, GROUP_ATTEMPTS_ENV
from nejumi_eval.api.v1alpha1.progress import OUTCOME_KEY, PROGRESS_KEY, ProgressReport, StageOutcome
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_operator import controller
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile import group as groups
from nejumi_operator.reconcile.group import (
    ANNOTATION_DEADLINE,
    ANNOTATION_RELEASED,
    Release,
    as_job,
    build_serve_group,
    leader_pod_name,
    release_for,
    release_patch,
)
from nejumi_operator.reconcile.job import build_job
from nejumi_operator.reconcile.ownership import owner_reference
from nejumi_operator.reconcile.stages import StageJobs, stage_jobs
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status import GroupState, Observation, Termination, reduce_status

CONFIG = OperatorConfig(image="registry.test/evaluator:1", policy=Policy(enabled=False))
NAME, NAMESPACE, UID = "big", "team-a", "u-1"
GROUP = "big-g1-serve"
LEADER, WORKER = "big-g1-serve-0", "big-g1-serve-0-1"
QUEUE = "gpu-queue"
T_FETCH, T_FETCHED = "2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z"
T_CREATED, T_ADMITTED, T_DONE = "2026-01-01T00:00:31Z", "2026-01-01T00:01:00Z", "2026-01-01T00:31:00Z"
SERVED_SECONDS = 1800  # T_ADMITTED → T_DONE
GPUS, NODES = 8, 2
SPEC: dict[str, Any] = {
    "model": {
        "name": "org/big-405b",
        "source": "vllm",
        "vllm": {"tensorParallelSize": GPUS, "pipelineParallelSize": NODES},
    },
    "resources": {"gpus": GPUS, "nodes": NODES},
    "queueName": QUEUE,
}


def at(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(seconds: float) -> str:
    return stamp(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds))


def evaluation(spec: Mapping[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": UID,
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": copy.deepcopy(dict(spec or SPEC)),
        "status": {},
    }


def one_node() -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["resources"]["nodes"] = 1
    spec["model"]["vllm"]["pipelineParallelSize"] = 1
    return spec


def fetch_job(spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fetch stage's Job as the API server returns it once it completed."""
    ev = evaluation(spec)
    job = build_job(ev, CONFIG, Stage.FETCH)
    job["metadata"]["ownerReferences"] = [owner_reference(ev)]
    job["metadata"]["uid"] = "fetch-uid"
    job["spec"]["suspend"] = False
    job["status"] = {
        "startTime": T_FETCH,
        "completionTime": T_FETCHED,
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": T_FETCHED}],
    }
    return job


def lws(
    *,
    generation: int = 1,
    config: OperatorConfig = CONFIG,
    queued: bool = True,
    deadline: int | None = None,
    owner: str = UID,
) -> dict[str, Any]:
    """The serve stage's LeaderWorkerSet as the API server returns it (made by `advance`)."""
    spec = copy.deepcopy(SPEC)
    if not queued:
        del spec["queueName"]
    if deadline is not None:
        spec["resources"]["activeDeadlineSeconds"] = deadline
    ev = evaluation(spec, generation)
    group = build_serve_group(ev, config)
    group["metadata"]["ownerReferences"] = [{**owner_reference(ev), "uid": owner}]
    group["metadata"]["uid"] = f"lws-uid-g{generation}"
    group["metadata"]["creationTimestamp"] = T_CREATED
    return group


def workload(*conditions: dict[str, Any], owner: str = "lws-uid-g1") -> dict[str, Any]:
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "Workload",
        "metadata": {
            "name": f"leaderworkerset-{GROUP}-0-abcde",
            "ownerReferences": [{"kind": "LeaderWorkerSet", "name": GROUP, "uid": owner}],
        },
        "status": {"conditions": list(conditions)},
    }


def admitted(when: str = T_ADMITTED) -> dict[str, Any]:
    return workload(
        {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "lastTransitionTime": when},
        {"type": "Admitted", "status": "True", "reason": "Admitted", "lastTransitionTime": when},
    )


NO_QUOTA_MESSAGE = (
    "couldn't assign flavors to pod set leader: insufficient unused quota for nvidia.com/gpu in flavor "
    "h100, 16 more needed"
)


def no_quota() -> dict[str, Any]:
    return workload(
        {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": NO_QUOTA_MESSAGE}
    )


def preempted() -> dict[str, Any]:
    return workload(
        {
            "type": "Evicted",
            "status": "True",
            "reason": "Preempted",
            "message": "Preempted to accommodate a workload (UID: w-9) due to prioritization",
        },
        {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "no quota"},
        {"type": "Admitted", "status": "False", "reason": "NoReservation", "lastTransitionTime": T_DONE},
    )


def outcome(
    *,
    pod: str = LEADER,
    attempt: int = 1,
    exit_code: int = 0,
    final: bool = True,
    summary: str = "",
    finished_at: str = T_DONE,
) -> StageOutcome:
    return StageOutcome(
        pod=pod,
        attempt=attempt,
        attempts=3,
        exit_code=exit_code,
        final=final,
        summary=summary,
        finished_at=at(finished_at),
    )


def failed_summary(error: str) -> str:
    return Summary(status="failed", model="org/big-405b", stage="serve", error=error).to_json()


SERVED_SUMMARY = Summary(status="completed", model="org/big-405b", stage="serve").to_json()


def report(pod: str = LEADER) -> ProgressReport:
    return ProgressReport.model_validate(
        {
            "pod": pod,
            "step": "generate",
            "counters": [{"name": "jaster", "done": 812, "total": 1920}],
            "updatedAt": "2026-01-01T00:10:00Z",
        }
    )


def configmap(
    *, stage_outcome: StageOutcome | None = None, progress: ProgressReport | None = None, owner: str = UID
) -> dict[str, Any]:
    """The evaluation's progress ConfigMap, as the leader's evaluator leaves it."""
    data: dict[str, str] = {}
    if stage_outcome is not None:
        data[OUTCOME_KEY] = stage_outcome.model_dump_json(by_alias=True)
    if progress is not None:
        data[PROGRESS_KEY] = progress.model_dump_json(by_alias=True)
    ref = {**owner_reference(evaluation()), "uid": owner}
    return {"metadata": {"name": f"{NAME}-progress", "ownerReferences": [ref]}, "data": data}


def group_pod(
    name: str,
    *,
    state: dict[str, Any] | None = None,
    restarts: int = 0,
    last: dict[str, Any] | None = None,
    node: str | None = "gpu-0",
    scheduled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod of the group, as LWS makes it (its StatefulSet's, labelled with the LeaderWorkerSet)."""
    status: dict[str, Any] = {"phase": "Running" if state and "running" in state else "Pending"}
    if state is not None:
        ev: dict[str, Any] = {
            "name": "evaluator",
            "image": CONFIG.image,
            "restartCount": restarts,
            "state": state,
        }
        if last is not None:
            ev["lastState"] = last
        status["containerStatuses"] = [ev]
    if scheduled is not None:
        status["conditions"] = [{"type": "PodScheduled", **scheduled}]
    spec: dict[str, Any] = {"containers": [{"name": "evaluator", "image": CONFIG.image}]}
    if node:
        spec["nodeName"] = node
    labels = {groups.SET_NAME_LABEL: GROUP, groups.WORKER_INDEX_LABEL: "0" if name == LEADER else "1"}
    meta = {"name": name, "namespace": NAMESPACE, "creationTimestamp": T_ADMITTED, "labels": labels}
    return {"metadata": meta, "spec": spec, "status": status}


def up(name: str, node: str = "gpu-0") -> dict[str, Any]:
    return group_pod(name, state={"running": {"startedAt": T_ADMITTED}}, node=node)


def creating(name: str) -> dict[str, Any]:
    return group_pod(name, state={"waiting": {"reason": "ContainerCreating"}})


def cond(status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    found = c.find(status["conditions"], type_)
    assert found is not None
    return dict(found)


def released(group: dict[str, Any], release: Release) -> dict[str, Any]:
    """The LeaderWorkerSet after the operator's merge patch (`release_patch`)."""
    out = copy.deepcopy(group)
    patch = release_patch(release)
    out["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
    out["spec"].update(patch["spec"])
    return out


# ---- when a group is released (`release_for`) ----------------------------------------------------


def view(group: dict[str, Any] | None = None, wl: dict[str, Any] | None = None) -> dict[str, Any]:
    """The group as the sync reads it (admitted at T_ADMITTED unless told otherwise)."""
    return as_job(group if group is not None else lws(), wl if wl is not None else admitted())


def test_a_final_success_releases_the_group_as_completed_at_the_leaders_end() -> None:
    done = outcome(attempt=2, summary=SERVED_SUMMARY)
    release = release_for(view(), done, at(T_DONE) + dt.timedelta(seconds=5))
    assert release == Release(
        succeeded=True,
        reason="Completed",
        completion_time=T_DONE,  # the leader's end, not the operator's clock
        start_time=T_ADMITTED,
        exit_code=0,
        summary=SERVED_SUMMARY,
        attempt=2,
    )


def test_a_final_failure_releases_the_group_as_failed_with_the_evaluators_summary() -> None:
    text = failed_summary("the model server on node 2 died: NCCL timeout")
    release = release_for(view(), outcome(attempt=3, exit_code=3, summary=text), at(T_DONE))
    assert release is not None
    assert (release.succeeded, release.reason, release.exit_code, release.attempt) == (False, "Failed", 3, 3)
    assert release.summary == text and release.completion_time == T_DONE and release.start_time == T_ADMITTED


def test_a_non_final_outcome_releases_nothing_the_group_restarts() -> None:
    retried = outcome(attempt=1, exit_code=3, final=False, summary=failed_summary("NCCL timeout"))
    assert release_for(view(), retried, at(T_DONE)) is None
    assert release_for(view(), None, at(T_DONE)) is None


def test_an_outcome_of_another_pod_is_never_this_groups() -> None:
    """An earlier generation's leader (`big-g1-serve-0`) reported in the same ConfigMap: generation
    2's group (leader `big-g2-serve-0`) is not released on its word."""
    group = lws(generation=2)
    assert leader_pod_name(group) == "big-g2-serve-0"
    stale = outcome(pod=LEADER, summary=SERVED_SUMMARY)
    assert release_for(view(group, admitted()), stale, at(T_DONE)) is None
    worker = outcome(pod=WORKER, exit_code=1)  # a worker reports nothing; were it to, it is not the leader
    assert release_for(view(), worker, at(T_DONE)) is None


def test_the_deadline_since_admission_releases_the_group_with_the_last_outcome() -> None:
    group = lws(deadline=3600)
    assert group["metadata"]["annotations"][ANNOTATION_DEADLINE] == "3600"
    admission = at(T_ADMITTED)
    # not yet: exactly the deadline is still within it
    assert release_for(view(group), None, admission + dt.timedelta(seconds=3600)) is None
    late = admission + dt.timedelta(seconds=3601)
    last = outcome(attempt=1, exit_code=3, final=False, summary=failed_summary("NCCL timeout"))
    release = release_for(view(group), last, late)
    assert release is not None
    assert (release.succeeded, release.reason) == (False, "DeadlineExceeded")
    assert release.completion_time == stamp(late) and release.start_time == T_ADMITTED
    assert (release.exit_code, release.summary) == (3, last.summary)  # what the last attempt said
    # attempt 1 failed and attempt 2 was under way when the clock stopped it: both failed
    assert release.attempt == 2
    assert as_job(released(group, release))["status"]["failed"] == 2


def test_the_deadline_without_an_outcome_or_with_another_pods() -> None:
    late = at(T_ADMITTED) + dt.timedelta(days=2)  # past the default deadline (a day)
    release = release_for(view(), None, late)
    assert release is not None and release.reason == "DeadlineExceeded"
    assert (release.exit_code, release.summary, release.attempt) == (None, "", 1)
    stranger = outcome(pod="big-g0-serve-0", exit_code=3, final=False, summary="old")
    assert release_for(view(), stranger, late) == release  # nothing of another pod is carried


def test_a_group_not_yet_admitted_never_times_out() -> None:
    waiting = as_job(lws(), no_quota())
    assert "startTime" not in waiting["status"]
    assert release_for(waiting, None, at(T_ADMITTED) + dt.timedelta(days=30)) is None
    unknown = as_job(lws(), None)  # no Workload yet
    assert release_for(unknown, None, at(T_ADMITTED) + dt.timedelta(days=30)) is None


# ---- the group read as a Job (`as_job`) ----------------------------------------------------------


def test_a_queued_group_not_admitted_reads_as_a_suspended_job_without_a_start() -> None:
    for wl in (None, no_quota(), preempted()):
        job = as_job(lws(), wl)
        assert job["spec"]["suspend"] is True and "startTime" not in job["status"]
        assert job["group"] == {"size": NODES, "workload": wl}
    assert groups.is_group(as_job(lws())) and as_job(lws())["kind"] == "LeaderWorkerSet"
    assert groups.group_size_of(as_job(lws())) == NODES


def test_an_admitted_group_started_at_its_admission() -> None:
    job = as_job(lws(), admitted("2026-01-01T00:02:03Z"))
    assert job["spec"]["suspend"] is False
    assert job["status"] == {"startTime": "2026-01-01T00:02:03Z"}
    # reserved quota is not admission yet (admission checks may still be pending)
    reserved = workload({"type": "QuotaReserved", "status": "True", "lastTransitionTime": T_ADMITTED})
    assert as_job(lws(), reserved)["spec"]["suspend"] is True


def test_a_group_without_a_queue_started_when_it_was_made() -> None:
    job = as_job(lws(queued=False), None)
    assert job["spec"]["suspend"] is False and job["status"]["startTime"] == T_CREATED
    assert groups.queued(lws()) and not groups.queued(lws(queued=False))


def test_a_released_group_is_a_finished_job_with_the_times_it_held_its_gpus() -> None:
    ok = Release(True, "Completed", T_DONE, T_ADMITTED, 0, SERVED_SUMMARY, attempt=2)
    job = as_job(released(lws(), ok), None)  # no Workload any more: the release keeps the start
    assert job["spec"]["suspend"] is False
    assert job["status"] == {
        "conditions": [
            {"type": "Complete", "status": "True", "reason": "Completed", "lastTransitionTime": T_DONE}
        ],
        "completionTime": T_DONE,
        "startTime": T_ADMITTED,
        "failed": 1,  # attempt 2 succeeded: one failed before it
    }
    bad = Release(False, "Failed", T_DONE, T_ADMITTED, 1, "boom", attempt=3)
    job = as_job(released(lws(), bad), None)
    assert job["status"]["conditions"] == [
        {"type": "Failed", "status": "True", "reason": "Failed", "lastTransitionTime": T_DONE}
    ]
    assert "completionTime" not in job["status"] and job["status"]["failed"] == 3
    assert job["status"]["startTime"] == T_ADMITTED
    # released without a known start (its Workload unread): finished, never suspended again
    unknown = Release(False, "DeadlineExceeded", T_DONE, None, None, "")
    job = as_job(released(lws(), unknown), None)
    assert job["spec"]["suspend"] is False and "startTime" not in job["status"]
    assert job["status"]["conditions"][0]["reason"] == "DeadlineExceeded"


def test_the_group_keeps_the_jobs_retry_budget_and_deadline() -> None:
    job = as_job(lws(deadline=7200))
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert groups.attempts_allowed(lws()) == CONFIG.backoff_limit + 1 == 3
    assert job["spec"]["backoffLimit"] == 2  # NEJUMI_GROUP_ATTEMPTS - 1
    five = OperatorConfig(image="x", policy=Policy(enabled=False), backoff_limit=4)
    group = lws(config=five)
    (leader,) = group["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"]
    assert {"name": GROUP_ATTEMPTS_ENV, "value": "5"} in leader["env"]
    assert as_job(group)["spec"]["backoffLimit"] == 4
    # the leader's pod template is the Job's: what the reducer and the stage records read
    assert as_job(group)["spec"]["template"] == group["spec"]["leaderWorkerTemplate"]["leaderTemplate"]


def test_a_released_groups_record_holds_every_nodes_gpus() -> None:
    ok = Release(True, "Completed", T_DONE, T_ADMITTED, 0, SERVED_SUMMARY)
    found = stage_jobs([fetch_job(), as_job(released(lws(), ok))], UID, 1)
    fetch, serve = found.records()
    assert fetch["name"] == "fetch" and "gpuSeconds" not in fetch
    assert serve == {
        "name": "serve",
        "jobName": GROUP,
        "phase": "Succeeded",
        "gpus": GPUS * NODES,
        "startTime": T_ADMITTED,
        "completionTime": T_DONE,
        "gpuSeconds": float(SERVED_SECONDS * GPUS * NODES),
    }
    assert found.gpu_seconds_held() == SERVED_SECONDS * GPUS * NODES
    assert found.next_stage() == Stage.JUDGE
    # a failed one held them too
    bad = Release(False, "Failed", T_DONE, T_ADMITTED, 3, "")
    (_, failed) = stage_jobs([fetch_job(), as_job(released(lws(), bad))], UID, 1).records()
    assert failed["phase"] == "Failed" and failed["gpuSeconds"] == SERVED_SECONDS * GPUS * NODES
    assert stage_jobs([fetch_job(), as_job(released(lws(), bad))], UID, 1).next_stage() is None


def test_the_release_round_trips_through_its_annotation() -> None:
    for release in (
        Release(True, "Completed", T_DONE, T_ADMITTED, 0, SERVED_SUMMARY, attempt=2),
        Release(False, "DeadlineExceeded", T_DONE, None, None, "", attempt=1),
        Release(False, "Failed", T_DONE, T_ADMITTED, 3, 'text with "quotes" and ünïcode\n', attempt=3),
    ):
        patch = release_patch(release)
        assert patch["spec"] == {"replicas": 0}
        assert json.loads(patch["metadata"]["annotations"][ANNOTATION_RELEASED])["reason"] == release.reason
        assert Release.of(released(lws(), release)) == release
    assert Release.of(lws()) is None
    for garbage in ("", "{", "[]", '"x"', '{"succeeded": true}', '{"unknown": 1}'):
        group = lws()
        group["metadata"]["annotations"][ANNOTATION_RELEASED] = garbage
        assert Release.of(group) is None


# ---- a sync against a fake API server -----------------------------------------------------------


class Cluster:
    """A fake API server holding one evaluation and its children: the controller's `calls`,
    answering from (and writing to) this state, counting every call."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        ev: dict[str, Any],
        *,
        jobs: list[dict[str, Any]] | None = None,
        groups_: list[dict[str, Any]] | None = None,
        workloads: dict[str, dict[str, Any]] | None = None,
        cm: dict[str, Any] | None = None,
        pods: list[dict[str, Any]] | None = None,
        lists_groups: bool = True,
        refuse: ApiException | None = None,
    ) -> None:
        self.evaluation = ev
        self.jobs = list(jobs or [])
        self.groups = list(groups_ or [])
        self.workloads = dict(workloads or {})
        self.configmap = cm
        self.pods = list(pods or [])
        self.lists_groups = lists_groups
        self.refuse = refuse
        self.called: Counter[str] = Counter()
        self.created: list[dict[str, Any]] = []
        self.released: list[tuple[str, dict[str, Any]]] = []
        self.patches: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.selectors: list[str] = []
        self.workload_uids: list[str] = []
        for name in (
            "read_evaluation",
            "labelled_jobs",
            "labelled_groups",
            "read_configmap",
            "release_group",
            "create_or_get",
            "labelled_pods",
            "job_pods",
            "job_events",
            "job_workload",
            "patch_status",
            "create_event",
        ):
            monkeypatch.setattr(controller.calls, name, self._counted(name))

    def _counted(self, name: str) -> Any:
        method = getattr(self, name)

        def call(*args: Any) -> Any:
            self.called[name] += 1
            return method(*args)

        return call

    def read_evaluation(self, api: Any, ns: str, name: str) -> dict[str, Any]:
        assert (ns, name) == (NAMESPACE, NAME)
        return copy.deepcopy(self.evaluation)

    def labelled_jobs(self, api: Any, ns: str, selector: str) -> list[dict[str, Any]]:
        assert selector == f"nejumi.wandb.ai/evaluation={NAME}"
        return copy.deepcopy(self.jobs)

    def labelled_groups(self, api: Any, ns: str, selector: str) -> list[dict[str, Any]]:
        if not self.lists_groups:
            pytest.fail("a one-node evaluation lists no LeaderWorkerSet")
        assert selector == f"nejumi.wandb.ai/evaluation={NAME}"
        return copy.deepcopy(self.groups)

    def read_configmap(self, api: Any, ns: str, name: str) -> dict[str, Any] | None:
        assert name == f"{NAME}-progress"
        return copy.deepcopy(self.configmap)

    def release_group(self, api: Any, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        self.released.append((name, copy.deepcopy(patch)))
        for group in self.groups:
            if group["metadata"]["name"] == name:
                group["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
                group["spec"].update(patch["spec"])
                return copy.deepcopy(group)
        return None

    def create_or_get(self, api: Any, ns: str, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if self.refuse is not None:
            raise self.refuse
        into = self.groups if obj["kind"] == "LeaderWorkerSet" else self.jobs
        for existing in into:
            if existing["metadata"]["name"] == obj["metadata"]["name"]:
                return copy.deepcopy(existing), False
        made = copy.deepcopy(obj)
        made["metadata"]["uid"] = f"{obj['metadata']['name']}-uid"
        made["metadata"]["creationTimestamp"] = T_CREATED
        into.append(made)
        self.created.append(copy.deepcopy(made))
        return copy.deepcopy(made), True

    def labelled_pods(self, api: Any, ns: str, selector: str) -> list[dict[str, Any]]:
        self.selectors.append(selector)
        return copy.deepcopy(self.pods)

    def job_pods(self, api: Any, ns: str, name: str) -> list[dict[str, Any]]:
        return []

    def job_events(self, api: Any, ns: str, name: str, uid: str | None) -> list[dict[str, Any]]:
        return []

    def job_workload(self, api: Any, ns: str, uid: str) -> dict[str, Any] | None:
        """Kueue's Workload by its owner's UID (label `kueue.x-k8s.io/job-uid`): the group's here."""
        self.workload_uids.append(uid)
        return copy.deepcopy(self.workloads.get(uid))

    def patch_status(self, api: Any, ns: str, name: str, patch: dict[str, Any], rv: str) -> dict[str, Any]:
        assert rv == self.evaluation["metadata"]["resourceVersion"]
        self.patches.append(copy.deepcopy(patch))
        status = self.evaluation.setdefault("status", {})
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        self.evaluation["metadata"]["resourceVersion"] = str(int(rv) + 1)
        return copy.deepcopy(self.evaluation)

    def create_event(self, api: Any, ns: str, body: dict[str, Any]) -> bool:
        self.events.append(body)
        return True

    def sync(self) -> dict[str, Any]:
        new = controller.sync_status(object(), NAMESPACE, NAME, config=CONFIG)  # type: ignore[arg-type]
        assert new is not None
        return new


def env_of(job: Mapping[str, Any]) -> dict[str, Any]:
    (one,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in one["env"]}


def test_a_multi_node_evaluation_whose_weights_are_fetched_gets_its_serving_group_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Cluster(monkeypatch, evaluation(), jobs=[fetch_job()])
    st = cluster.sync()
    (made,) = cluster.created
    assert (made["apiVersion"], made["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    assert made["metadata"]["name"] == GROUP == groups.group_name(NAME, 1)
    (ref,) = made["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("NejumiEvaluation", NAME, UID, True)
    assert made["spec"]["leaderWorkerTemplate"]["size"] == NODES
    # just made: Kueue has not admitted it, nothing is asked of Kueue in this sync
    assert cluster.called["job_workload"] == 0
    assert (st["phase"], st["reason"], st["stage"]) == ("Queued", c.SUSPENDED, "serve")
    assert st["message"] == (
        f"the serve stage: LeaderWorkerSet {GROUP} ({NODES} nodes, admitted whole or not at all) is "
        f"waiting for admission in LocalQueue {QUEUE}"
    )
    assert cond(st, c.ACCEPTED)["message"] == f"LeaderWorkerSet {GROUP} created"
    assert [(s["name"], s["phase"]) for s in st["stages"]] == [("fetch", "Succeeded"), ("serve", "Queued")]
    assert st["stages"][1]["gpus"] == GPUS * NODES and st["jobName"] == GROUP
    assert ("Normal", "Queued") in [(e["type"], e["reason"]) for e in cluster.events]

    # the next sync finds it, reads its Workload, and says why Kueue holds it, in Kueue's words
    cluster.workloads["big-g1-serve-uid"] = no_quota()
    st = cluster.sync()
    assert len(cluster.created) == 1  # made once
    assert cluster.called["job_workload"] == 1
    assert (st["phase"], st["reason"]) == ("Queued", c.SUSPENDED)
    assert st["message"].endswith(f"; Kueue: Pending: {NO_QUOTA_MESSAGE}")
    assert cluster.released == []


def test_a_running_group_says_so_with_the_leaders_live_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    group = lws()
    cluster = Cluster(
        monkeypatch,
        evaluation(),
        jobs=[fetch_job()],
        groups_=[group],
        workloads={"lws-uid-g1": admitted(ago(60))},
        cm=configmap(progress=report()),
        pods=[up(LEADER, "gpu-0"), up(WORKER, "gpu-1")],
    )
    st = cluster.sync()
    assert cluster.selectors == [f"leaderworkerset.sigs.k8s.io/name={GROUP}"]  # every pod of the group
    assert (st["phase"], st["reason"]) == ("Running", c.JOB_RUNNING)
    assert st["message"] == (
        f"the serve stage: the evaluator is running in pod {LEADER} on node gpu-0, serving the model "
        f"across the 2 nodes of LeaderWorkerSet {GROUP}"
    )
    assert st["liveProgress"]["pod"] == LEADER and st["liveProgress"]["counters"] == [
        {"name": "jaster", "done": 812, "total": 1920}
    ]
    assert st["progress"] == "serve: jaster 812/1920" and st["attempt"] == 1
    assert cluster.released == [] and cluster.created == []
    # one read of the progress ConfigMap serves the release check and the observation
    assert cluster.called["read_configmap"] == 1


def test_the_leaders_final_success_releases_the_group_and_the_judge_is_told_what_it_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = outcome(attempt=2, summary=SERVED_SUMMARY)
    cluster = Cluster(
        monkeypatch,
        evaluation(),
        jobs=[fetch_job()],
        groups_=[lws()],
        workloads={"lws-uid-g1": admitted()},
        cm=configmap(stage_outcome=done, progress=report()),
        pods=[up(LEADER), up(WORKER)],
    )
    st = cluster.sync()
    ((name, patch),) = cluster.released
    assert name == GROUP and patch["spec"] == {"replicas": 0}
    release = Release(**json.loads(patch["metadata"]["annotations"][ANNOTATION_RELEASED]))
    assert release == Release(True, "Completed", T_DONE, T_ADMITTED, 0, SERVED_SUMMARY, attempt=2)
    # the judge stage's Job, made in the same sync, told the GPU-seconds of every node of the group
    (judge,) = cluster.created
    assert judge["kind"] == "Job" and judge["metadata"]["name"] == "big-g1-judge"
    held = SERVED_SECONDS * GPUS * NODES
    assert env_of(judge)[GPU_SECONDS_HELD_ENV] == str(float(held)) == "28800.0"
    assert st["stage"] == "judge" and st["jobName"] == "big-g1-judge"
    serve = next(s for s in st["stages"] if s["name"] == "serve")
    assert serve == {
        "name": "serve",
        "jobName": GROUP,
        "phase": "Succeeded",
        "gpus": GPUS * NODES,
        "startTime": T_ADMITTED,
        "completionTime": T_DONE,
        "gpuSeconds": float(held),
    }
    assert st["runtime"]["gpuSeconds"] == held

    # the next sync: the released group is read as it is, never released again, its Workload not asked
    workload_reads = cluster.workload_uids.count("lws-uid-g1")
    cluster.sync()
    assert len(cluster.released) == 1 and len(cluster.created) == 1
    assert cluster.workload_uids.count("lws-uid-g1") == workload_reads


def test_the_leaders_final_failure_fails_the_evaluation_with_the_evaluators_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = "the model server lost node 2: NCCL timeout after 3 attempts"
    last = outcome(attempt=3, exit_code=3, summary=failed_summary(error))
    cluster = Cluster(
        monkeypatch,
        evaluation(),
        jobs=[fetch_job()],
        groups_=[lws()],
        workloads={"lws-uid-g1": admitted()},
        cm=configmap(stage_outcome=last),
        pods=[up(LEADER), up(WORKER)],
    )
    st = cluster.sync()
    assert len(cluster.released) == 1 and cluster.created == []  # no judge Job
    assert (st["phase"], st["reason"]) == ("Failed", c.INFRASTRUCTURE_FAILURE)
    assert st["message"] == f"the serve stage: {error}"
    assert cond(st, c.RUNNING)["message"] == f"the serve stage: LeaderWorkerSet {GROUP} failed"
    assert st["attempt"] == 3 and st["completionTime"] == T_DONE
    serve = st["stages"][-1]
    assert serve["phase"] == "Failed" and serve["gpuSeconds"] == SERVED_SECONDS * GPUS * NODES
    (failed,) = [e for e in cluster.events if e["reason"] == "Failed"]
    assert failed["type"] == "Warning" and error in failed["message"]
    # final: the next sync changes nothing, writes nothing
    writes = len(cluster.patches)
    assert cluster.sync() == st and len(cluster.patches) == writes


def test_the_deadline_releases_a_group_that_never_ends_and_fails_the_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    last = outcome(attempt=1, exit_code=3, final=False, summary=failed_summary("NCCL timeout"))
    cluster = Cluster(
        monkeypatch,
        evaluation(),
        jobs=[fetch_job()],
        groups_=[lws(deadline=3600)],
        workloads={"lws-uid-g1": admitted(ago(3700))},
        cm=configmap(stage_outcome=last),
        pods=[up(LEADER), up(WORKER)],
    )
    st = cluster.sync()
    ((_, patch),) = cluster.released
    assert json.loads(patch["metadata"]["annotations"][ANNOTATION_RELEASED])["reason"] == "DeadlineExceeded"
    assert (st["phase"], st["reason"]) == ("Failed", c.DEADLINE_EXCEEDED)
    assert st["message"].startswith(
        f"the serve stage: LeaderWorkerSet {GROUP} ran longer than its activeDeadlineSeconds (3600 s) "
        "and was stopped; the evaluator: NCCL timeout"
    )
    assert st["attempt"] == 2 and cluster.created == []


def test_a_configmap_not_owned_by_the_evaluation_releases_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    forged = configmap(stage_outcome=outcome(summary=SERVED_SUMMARY), progress=report(), owner="someone-else")
    cluster = Cluster(
        monkeypatch,
        evaluation(),
        jobs=[fetch_job()],
        groups_=[lws()],
        workloads={"lws-uid-g1": admitted(ago(60))},
        cm=forged,
        pods=[up(LEADER), up(WORKER)],
    )
    st = cluster.sync()
    assert cluster.released == [] and cluster.created == []
    assert (st["phase"], st["reason"]) == ("Running", c.JOB_RUNNING)
    assert "liveProgress" not in st  # nor is its progress shown


def test_a_group_already_gone_when_released_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(
        monkeypatch,
        evaluation(),
        jobs=[fetch_job()],
        groups_=[lws()],
        workloads={"lws-uid-g1": admitted()},
        cm=configmap(stage_outcome=outcome(summary=SERVED_SUMMARY)),
    )
    monkeypatch.setattr(controller.calls, "release_group", lambda *a: None)  # 404: deleted meanwhile
    found = controller.generation_jobs(object(), cluster.evaluation)  # type: ignore[arg-type]
    assert controller.settle_group(object(), cluster.evaluation, found) is found  # type: ignore[arg-type]


def test_settling_reads_nothing_unless_the_serve_stage_is_an_unreleased_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Cluster(monkeypatch, evaluation(), jobs=[fetch_job()])
    fetched = stage_jobs([fetch_job()], UID, 1)
    assert controller.settle_group(object(), cluster.evaluation, fetched) is fetched  # type: ignore[arg-type]
    ok = Release(True, "Completed", T_DONE, T_ADMITTED, 0, SERVED_SUMMARY)
    done = StageJobs({Stage.FETCH: fetch_job(), Stage.SERVE: as_job(released(lws(), ok))})
    assert controller.settle_group(object(), cluster.evaluation, done) is done  # type: ignore[arg-type]
    assert cluster.called["read_configmap"] == 0 and cluster.released == []


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (404, "install LeaderWorkerSet (sigs.k8s.io/lws), or set resources.nodes to 1"),
        (403, "the operator may not create LeaderWorkerSets (leaderworkerset.x-k8s.io): its RBAC lacks them"),
        (422, "the API server refused the LeaderWorkerSet: Unprocessable"),
    ],
)
def test_a_cluster_that_cannot_make_the_group_fails_the_evaluation_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, status: int, words: str
) -> None:
    reason = {404: "Not Found", 403: "Forbidden", 422: "Unprocessable"}[status]
    cluster = Cluster(
        monkeypatch, evaluation(), jobs=[fetch_job()], refuse=ApiException(status=status, reason=reason)
    )
    st = cluster.sync()
    assert (st["phase"], st["reason"]) == ("Failed", c.JOB_REJECTED)
    assert words in st["message"]
    assert cond(st, c.RUNNING)["message"].endswith("no Job for the serve stage")
    assert cluster.created == [] and cluster.released == []


def test_another_api_error_making_the_group_is_retried_not_final(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(
        monkeypatch, evaluation(), jobs=[fetch_job()], refuse=ApiException(status=500, reason="boom")
    )
    with pytest.raises(ApiException):
        cluster.sync()
    assert cluster.patches == []


def test_a_one_node_evaluation_never_lists_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(monkeypatch, evaluation(one_node()), jobs=[fetch_job(one_node())], lists_groups=False)
    st = cluster.sync()
    (made,) = cluster.created
    assert (made["kind"], made["metadata"]["name"]) == ("Job", "big-g1-serve")
    assert st["stage"] == "serve" and "LeaderWorkerSet" not in st["message"]
    # nor in a resync round's sync, from its listing
    listing = controller.Listing(jobs=tuple(cluster.jobs))
    found = controller.generation_jobs(object(), evaluation(one_node()), listing)  # type: ignore[arg-type]
    assert found.current is not None and found.current[0] == Stage.SERVE
    assert cluster.called["labelled_groups"] == 0


def test_a_groups_namesake_or_earlier_generation_is_never_this_evaluations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Cluster(
        monkeypatch,
        evaluation(generation=2),
        groups_=[lws(generation=1), lws(generation=2, owner="stranger")],
    )
    found = controller.generation_jobs(object(), cluster.evaluation)  # type: ignore[arg-type]
    assert found.current is None and cluster.called["job_workload"] == 0


# ---- what the status says of a group under way (`reduce_status`) ----------------------------------


def seen(
    pods: list[dict[str, Any]] = (),  # type: ignore[assignment]
    *,
    wl: dict[str, Any] | None = None,
    last: StageOutcome | None = None,
    progress: ProgressReport | None = None,
    before: bool = True,
) -> Observation:
    """What `controller._observe_group` gathers for the serve stage's group (admitted unless
    `wl` says otherwise; `before`: the fetch stage's record comes first, as it always does)."""
    job = as_job(lws(), wl if wl is not None else admitted())
    found = StageJobs({Stage.FETCH: fetch_job(), Stage.SERVE: job} if before else {Stage.SERVE: job})
    term = Termination(last.exit_code, last.summary, pod=LEADER) if last is not None else None
    return Observation(
        generation=1,
        job_name=GROUP,
        stage="serve",
        next_stage="judge",
        stages=tuple(found.records()),
        job=job,
        termination=term,
        gpus=GPUS,
        queue_name=QUEUE,
        workload=job["group"]["workload"],
        progress=progress,
        group=GroupState(size=NODES, leader=LEADER, pods=tuple(pods), outcome=last),
    )


def test_the_observation_is_the_controllers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`seen` gathers what the controller does (so the cases below are what a sync would see)."""
    last = outcome(attempt=1, exit_code=3, final=False, summary=failed_summary("NCCL timeout"))
    pods = [up(LEADER), up(WORKER, "gpu-1")]
    Cluster(
        monkeypatch,
        evaluation(),
        jobs=[fetch_job()],
        groups_=[lws()],
        workloads={"lws-uid-g1": admitted()},
        cm=configmap(stage_outcome=last, progress=report()),
        pods=pods,
    )
    observed = controller.observe(object(), evaluation())  # type: ignore[arg-type]
    assert observed == seen(pods, last=last, progress=report())


def test_the_leader_running_is_running_with_its_live_progress() -> None:
    st = reduce_status({}, seen([up(LEADER), up(WORKER, "gpu-1")], progress=report()), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Running", c.JOB_RUNNING)
    assert f"running in pod {LEADER} on node gpu-0, serving the model across the 2 nodes" in st["message"]
    # before its report says it generates, the server may still be loading or waiting for a node
    starting = reduce_status({}, seen([up(LEADER), up(WORKER, "gpu-1")]), at=T_DONE)
    assert (
        f"running in pod {LEADER} on node gpu-0, starting the model server across the 2 nodes"
        in (starting["message"])
    )
    assert st["liveProgress"] == {
        "pod": LEADER,
        "step": "generate",
        "counters": [{"name": "jaster", "done": 812, "total": 1920}],
        "updatedAt": "2026-01-01T00:10:00Z",
    }
    assert st["progress"] == "serve: jaster 812/1920"
    # a report not the leader's is never shown
    other = reduce_status({}, seen([up(LEADER), up(WORKER)], progress=report(WORKER)), at=T_DONE)
    assert "liveProgress" not in other and other["progress"] == "serve: evaluating"


def test_a_worker_that_restarted_restarts_the_group() -> None:
    lost = group_pod(
        WORKER,
        state={"running": {"startedAt": T_DONE}},
        restarts=1,
        last={"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": T_DONE}},
    )
    running = reduce_status({}, seen([up(LEADER), up(WORKER)]), at=T_ADMITTED)
    st = reduce_status(running, seen([up(LEADER), lost]), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Pending", c.GROUP_RESTARTING)
    assert st["message"] == (
        f"the serve stage: pod {WORKER} of LeaderWorkerSet {GROUP} stopped (exit 137, OOMKilled): "
        "LeaderWorkerSet restarts the whole group on 2 nodes, and the evaluation resumes from the "
        "response cache"
    )
    assert st["progress"] == "serve: group restarting (attempt 1)"
    being_deleted = up(WORKER)
    being_deleted["metadata"]["deletionTimestamp"] = T_DONE
    st = reduce_status({}, seen([up(LEADER), being_deleted]), at=T_DONE)
    assert st["reason"] == c.GROUP_RESTARTING and "stopped (being deleted)" in st["message"]


def test_a_worker_that_cannot_be_scheduled_says_why_naming_it() -> None:
    why = "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match node selector."
    stuck = group_pod(
        WORKER, node=None, scheduled={"status": "False", "reason": "Unschedulable", "message": why}
    )
    st = reduce_status({}, seen([up(LEADER), stuck]), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Pending", c.UNSCHEDULABLE)
    assert st["message"].startswith(f"the serve stage: LeaderWorkerSet {GROUP}: pod {WORKER} ")
    assert st["message"].count(WORKER) == 1 and why in st["message"]
    assert f"the pod asks for {GPUS} nvidia.com/gpu" in st["message"]  # one node's, not the group's


def test_pods_on_their_way_are_counted() -> None:
    # the fetch stage came before: the evaluation stays Running while the next stage starts
    st = reduce_status({}, seen([up(LEADER), creating(WORKER)]), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Running", c.STAGE_STARTING)
    assert f"LeaderWorkerSet {GROUP}: 1 of 2 pods running" in st["message"]
    # the reducer's own reason for it
    alone = reduce_status({}, seen([up(LEADER), creating(WORKER)], before=False), at=T_DONE)
    assert (alone["phase"], alone["reason"]) == ("Pending", c.POD_STARTING)
    assert "1 of 2 pods running (one per node; the model is served once all have joined)" in alone["message"]
    # the workers up but not the leader: not running either
    st = reduce_status({}, seen([creating(LEADER), up(WORKER)], before=False), at=T_DONE)
    assert st["reason"] == c.POD_STARTING and "1 of 2 pods running" in st["message"]
    st = reduce_status({}, seen([], before=False), at=T_DONE)
    assert st["reason"] == c.POD_STARTING and "0 of 2 pods running" in st["message"]


def test_a_failed_attempt_is_counted_in_the_running_message() -> None:
    last = outcome(attempt=1, exit_code=3, final=False, summary=failed_summary("NCCL timeout"))
    st = reduce_status({}, seen([up(LEADER), up(WORKER)], last=last), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Running", c.JOB_RUNNING)
    assert st["message"].endswith("(attempt 2 of 3)") and GROUP in st["message"]
    assert st["attempt"] == 2 and st["progress"] == "serve: evaluating (attempt 2)"
    # while the group restarts after it, the cause is said
    lost = group_pod(LEADER, state={"terminated": {"exitCode": 3, "reason": "Error"}})
    st = reduce_status({}, seen([lost, up(WORKER)], last=last), at=T_DONE)
    assert st["reason"] == c.GROUP_RESTARTING
    assert st["message"].endswith("(attempt 2 of 3; the last exited 3: NCCL timeout)")


def test_a_final_outcome_not_yet_released_is_finishing() -> None:
    done = outcome(attempt=1, exit_code=0, summary=SERVED_SUMMARY)
    st = reduce_status({}, seen([up(LEADER), up(WORKER)], last=done), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Running", c.FINISHING)
    assert st["message"] == (
        f"the serve stage: the evaluator in pod {LEADER} ended (exit 0, attempt 1); the operator "
        f"releases LeaderWorkerSet {GROUP}"
    )
    assert st["progress"] == "serve: finishing"


def test_a_preempted_group_waits_for_readmission_and_resumes_from_the_cache() -> None:
    st = reduce_status({}, seen([], wl=preempted()), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Queued", c.PREEMPTED)
    assert st["message"] == (
        f"the serve stage: Kueue evicted LeaderWorkerSet {GROUP} (Preempted: Preempted to accommodate a "
        f"workload (UID: w-9) due to prioritization); it waits for readmission in LocalQueue {QUEUE}, "
        "and the group resumes from the workspace's response cache"
    )
    assert st["progress"] == "serve: preempted"
    # its pods, gated by Kueue meanwhile, say nothing over it
    gated = group_pod(LEADER, node=None, scheduled={"status": "False", "reason": "SchedulingGated"})
    assert reduce_status({}, seen([gated], wl=preempted()), at=T_DONE)["reason"] == c.PREEMPTED


def test_a_group_queued_for_quota_says_kueues_words() -> None:
    st = reduce_status({}, seen([], wl=no_quota()), at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Queued", c.SUSPENDED)
    assert f"LeaderWorkerSet {GROUP} (2 nodes, admitted whole or not at all)" in st["message"]
    assert st["message"].endswith(f"Kueue: Pending: {NO_QUOTA_MESSAGE}")


def test_a_recreated_leaders_progress_is_its_own_never_the_last_attempts() -> None:
    """The leader pod keeps its name across the group's restarts: a report written before its
    evaluator started is the previous attempt's, and is not shown."""
    restarted = group_pod(LEADER, state={"running": {"startedAt": "2026-01-01T00:11:00Z"}})
    st = reduce_status({}, seen([restarted, up(WORKER, "gpu-1")], progress=report()), at=T_DONE)
    assert st["reason"] == c.JOB_RUNNING and "liveProgress" not in st
    assert st["progress"] == "serve: evaluating"


def test_a_group_whose_workload_cannot_be_read_is_not_shown_queued_while_it_runs() -> None:
    """No Workload read (no RBAC, or Kueue gone) reads as not admitted; pods bound to nodes are past
    Kueue's gate whatever it says: the status follows them."""
    observed = seen([up(LEADER), up(WORKER, "gpu-1")], wl={})
    assert observed.job is not None and observed.job["spec"]["suspend"] is True
    st = reduce_status({}, observed, at=T_DONE)
    assert (st["phase"], st["reason"]) == ("Running", c.JOB_RUNNING)
    gated = seen([group_pod(LEADER, node=None), group_pod(WORKER, node=None)], wl={})
    assert reduce_status({}, gated, at=T_DONE)["phase"] == "Queued"
