"""Where an evaluation is among its stages (`api.v1alpha1.stages`), from its Jobs alone.

A served model's evaluation is three Jobs of one generation (fetch, serve, judge), made one after
the other: the next when the one before completed. What exists says where it is, so nothing is
kept in memory and a restarted operator takes up where its predecessor was: the current stage is
the last one whose Job exists; the next is made when the current one is Complete. A Job made by
an operator without stages (no stage label) is the one Job of its generation (`run`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nejumi_eval.api.v1alpha1.names import LABEL_STAGE
from nejumi_eval.api.v1alpha1.stages import STAGED, Stage, after
from nejumi_operator.reconcile.group import group_size_of
from nejumi_operator.reconcile.job import ANNOTATION_GENERATION, CONTAINER, GPU_RESOURCE
from nejumi_operator.reconcile.ownership import owned_by
from nejumi_operator.status.observation import job_condition, parse_time

ORDER = (Stage.RUN, *STAGED)


def job_stage(job: Mapping[str, Any]) -> Stage:
    """A Job's stage, by its label (none: the one Job of an evaluation without stages)."""
    value = (((job.get("metadata") or {}).get("labels")) or {}).get(LABEL_STAGE)
    try:
        return Stage(value) if value else Stage.RUN
    except ValueError:
        return Stage.RUN


def job_generation(job: Mapping[str, Any]) -> int | None:
    annotations = ((job.get("metadata") or {}).get("annotations")) or {}
    try:
        return int(annotations.get(ANNOTATION_GENERATION) or 0) or None
    except ValueError:
        return None


def job_gpus(job: Mapping[str, Any]) -> int:
    """The GPUs the Job's evaluator container asks for (what the scheduler and the bill see,
    whatever the spec's defaults were when it was built)."""
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == CONTAINER:
            limits = (container.get("resources") or {}).get("limits") or {}
            try:
                return int(str(limits.get(GPU_RESOURCE, 0)))
            except ValueError:
                return 0
    return 0


def held_gpus(job: Mapping[str, Any]) -> int:
    """The GPUs a stage held while it ran: its pod's, times the nodes of a serving group
    (`reconcile.group.as_job`: one pod per node, each with a node's GPUs)."""
    return job_gpus(job) * group_size_of(job)


@dataclass(frozen=True)
class StageJobs:
    """One generation's Jobs that are this evaluation's, by stage."""

    jobs: dict[Stage, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def current(self) -> tuple[Stage, Mapping[str, Any]] | None:
        """The stage in progress, or the last one reached, and its Job (None: no Job yet)."""
        for stage in reversed(ORDER):
            if stage in self.jobs:
                return stage, self.jobs[stage]
        return None

    @property
    def staged(self) -> bool:
        return any(stage != Stage.RUN for stage in self.jobs)

    def next_stage(self) -> Stage | None:
        """The stage whose Job is to be made now: the one after a Complete fetch or serve Job."""
        current = self.current
        if current is None or not job_condition(current[1], "Complete"):
            return None
        return after(current[0])

    def records(self) -> list[dict[str, Any]]:
        """`status.stages` as far as the Jobs tell (the caller sets the current one's phase)."""
        out = []
        for stage in STAGED:
            job = self.jobs.get(stage)
            if job is None:
                continue
            jstatus = job.get("status") or {}
            complete, failed = job_condition(job, "Complete"), job_condition(job, "Failed")
            end = jstatus.get("completionTime") or (failed or complete or {}).get("lastTransitionTime")
            gpus = held_gpus(job)
            record: dict[str, Any] = {
                "name": stage.value,
                "jobName": (job.get("metadata") or {}).get("name"),
                "phase": "Succeeded" if complete else "Failed" if failed else "Running",
                "gpus": gpus,
                "startTime": jstatus.get("startTime"),
                "completionTime": end if (complete or failed) else None,
            }
            start, stop = parse_time(jstatus.get("startTime")), parse_time(record["completionTime"])
            if gpus and start and stop:
                record["gpuSeconds"] = round((stop - start).total_seconds() * gpus, 3)
            out.append({k: v for k, v in record.items() if v is not None})
        return out

    def gpu_seconds_held(self) -> float | None:
        """GPU-seconds held by the stages that ended (the serve stage's wall time × its GPUs, on
        every node of a group); None before any GPU stage ended."""
        held = [r["gpuSeconds"] for r in self.records() if r.get("gpuSeconds") is not None]
        return round(sum(held), 3) if held else None


def stage_jobs(jobs: Iterable[Mapping[str, Any]], uid: str, generation: int) -> StageJobs:
    """The Jobs of `generation` owned by the evaluation with `uid` (a namesake's never count)."""
    found: dict[Stage, Mapping[str, Any]] = {}
    for job in jobs:
        if owned_by(job, uid) and job_generation(job) == generation:
            found[job_stage(job)] = job
    return StageJobs(found)
