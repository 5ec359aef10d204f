"""The Argo CD health check's test objects, made by the operator's own reducer (never by hand).

`charts/nejumi-operator/argocd/nejumi.wandb.ai/NejumiEvaluation/testdata/*.yaml` are
NejumiEvaluations as the API server would return them: the example CR
(`operator/examples/llm-jp-3-1.8b.yaml`) with the status `reduce_status` writes for an observed
Job, its pods and the evaluator's summary. health.lua reads those statuses, so a change to the
status that would break it changes these files and fails `tests/unit/charts/test_argocd_health.py`.

    python -m tests.support.argocd_testdata           # (re)write the files
    python -m tests.support.argocd_testdata --check   # exit 1 when a file differs or is missing
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from nejumi_eval.api.v1alpha1.progress import Counter, ProgressReport
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, StoredResults, Summary, Usage
from nejumi_operator.reconcile.job import build_job, job_name
from nejumi_operator.reconcile.stages import job_gpus
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status import Observation, last_termination, reduce_status
from tests.support.argocd_health import HEALTH_DIR
from tests.support.paths import REPO

TESTDATA = HEALTH_DIR / "testdata"
EXAMPLE = REPO / "operator" / "examples" / "llm-jp-3-1.8b.yaml"
NAMESPACE = "team-a"
QUEUE = "gpu"
JOB_UID = "0b7e6d4c-1a2f-4e3b-8c5d-6f9a0e1b2c3d"
CREATED, STARTED, FINISHED, WRITTEN = (f"2026-01-05T09:{m:02d}:00Z" for m in (0, 2, 47, 48))
HEADER = (
    "# Written by the Nejumi operator's status reducer (`python -m tests.support.argocd_testdata` in the\n"
    "# Nejumi repository): do not edit.\n"
)


def evaluation(generation: int = 1, **spec: Any) -> dict[str, Any]:
    """The example CR as the API server returns it (metadata filled in), `spec` merged over it."""
    cr = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    cr["metadata"] |= {
        "namespace": NAMESPACE,
        "generation": generation,
        "uid": "5f0c2a8e-3b1d-4c7a-9e6f-2d8b4a1c7e90",
        "creationTimestamp": CREATED,
    }
    cr["spec"] |= spec
    return cr


def job_of(cr: Mapping[str, Any], **status: Any) -> dict[str, Any]:
    """The Job the operator builds for `cr`, with the Job controller's `status`."""
    job = build_job(cr, OperatorConfig())
    job["metadata"]["uid"] = JOB_UID
    job["status"] = {"startTime": STARTED, **status} if not job["spec"].get("suspend") else status
    return job


def pod_of(job: Mapping[str, Any], status: dict[str, Any], node: str | None = "gpu-node-1") -> dict[str, Any]:
    """The Job's (only) pod with `status`; `node` when the scheduler has placed it."""
    spec = copy.deepcopy(job["spec"]["template"]["spec"])
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {
            "name": f"{job['metadata']['name']}-7xk2p",
            "namespace": NAMESPACE,
            "creationTimestamp": STARTED,
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": JOB_UID}
            ],
        },
        "spec": spec,
        "status": status,
    }


def evaluator(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "evaluator", "image": "ghcr.io/nejumi/evaluator:1", "restartCount": 0, "state": state}]


def observe(
    cr: Mapping[str, Any], job: Mapping[str, Any] | None, pods: list[dict[str, Any]], **kw: Any
) -> Observation:
    """What the controller would gather (`nejumi_operator.controller.observe`)."""
    meta = cr["metadata"]
    return Observation(
        generation=meta["generation"],
        job_name=job_name(meta["name"], meta["generation"]),
        job=job,
        pods=tuple(pods),
        termination=last_termination(pods, job),
        gpus=job_gpus(job) if job else 0,
        queue_name=cr["spec"].get("queueName"),
        **kw,
    )


def with_status(cr: dict[str, Any], obs: Observation) -> dict[str, Any]:
    return cr | {"status": reduce_status({}, obs, at=WRITTEN)}


# ---- the cases ----------------------------------------------------------------------------------


def no_status() -> dict[str, Any]:
    return evaluation()


def queued() -> dict[str, Any]:
    cr = evaluation(queueName=QUEUE)
    quota = (
        "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in "
        "flavor default-flavor, 1 more needed"
    )
    workload = {
        "metadata": {"name": f"job-{job_name(cr['metadata']['name'], 1)}-3f9a1"},
        "status": {
            "conditions": [
                {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": quota}
            ]
        },
    }
    job = job_of(cr)
    return with_status(cr, observe(cr, job, [], workload=workload))


def pending_unschedulable() -> dict[str, Any]:
    cr = evaluation()
    job = job_of(cr, active=1)
    why = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available."
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why}
    pod = pod_of(job, {"phase": "Pending", "conditions": [scheduled]}, node=None)
    return with_status(cr, observe(cr, job, [pod]))


def running() -> dict[str, Any]:
    cr = evaluation()
    job = job_of(cr, active=1)
    pod = pod_of(
        job, {"phase": "Running", "containerStatuses": evaluator({"running": {"startedAt": STARTED}})}
    )
    report = ProgressReport(
        pod=pod["metadata"]["name"],
        step="generate",
        counters=[Counter(name="jaster", done=812, total=1920), Counter(name="mtbench", done=40, total=160)],
        updated_at=dt.datetime(2026, 1, 5, 9, 20, tzinfo=dt.UTC),
    )
    return with_status(cr, observe(cr, job, [pod], progress=report))


def summary(**kw: Any) -> str:
    """The evaluator's termination message for a completed run (its `Summary`)."""
    base: dict[str, Any] = {
        "status": "completed",
        "model": "llm-jp/llm-jp-3-1.8b-instruct",
        "overall": 0.512345,
        "benchmarks": {
            "jaster": BenchmarkSummary(avg=0.4512, categories={"NLI": 0.52, "QA": 0.3824}, samples=1920),
            "mtbench": BenchmarkSummary(avg=5.725, categories={"coding": 4.9, "writing": 6.55}, samples=160),
        },
        "usage": Usage(
            prompt_tokens=1_204_311, completion_tokens=402_188, judge_tokens=391_020, requests_sent=2_400
        ),
        "runtime_seconds": {"prepare": 61.2, "generate": 2210.4, "judge": 402.7, "total": 2700.3},
        "results_dir": "/workspace/results/llm-jp-3-1-8b-instruct-1",
        "results": StoredResults(
            uri="s3://nejumi-results/evaluations/team-a/llm-jp-3-1-8b-instruct/1/",
            stored=True,
            manifest_sha256="sha256:" + "3a" * 32,
            objects=14,
            bytes=5_812_233,
            uploaded=14,
        ),
        "wandb_run_path": "nejumi/nejumi-leaderboard/k2v9x1qa",
    }
    return Summary(**(base | kw)).to_json()


def finished(cr: dict[str, Any], message: str) -> dict[str, Any]:
    """`cr` once its Job completed: the evaluator exited 0 with its summary `message`."""
    complete = {
        "type": "Complete",
        "status": "True",
        "reason": "CompletionsReached",
        "lastTransitionTime": FINISHED,
    }
    job = job_of(cr, succeeded=1, completionTime=FINISHED, conditions=[complete])
    terminated = {
        "exitCode": 0,
        "reason": "Completed",
        "message": message,
        "startedAt": STARTED,
        "finishedAt": FINISHED,
    }
    pod = pod_of(job, {"phase": "Succeeded", "containerStatuses": evaluator({"terminated": terminated})})
    return with_status(cr, observe(cr, job, [pod]))


def succeeded() -> dict[str, Any]:
    return finished(evaluation(), summary())


def succeeded_degraded() -> dict[str, Any]:
    jaster = BenchmarkSummary(
        avg=0.4488, categories={"NLI": 0.52, "QA": 0.3776}, samples=1920, failures=12, degraded=True
    )
    return finished(evaluation(), summary(degraded=True, benchmarks={**_benchmarks(), "jaster": jaster}))


def succeeded_results_not_stored() -> dict[str, Any]:
    lost = StoredResults(
        uri="s3://nejumi-results/evaluations/team-a/llm-jp-3-1-8b-instruct/1/",
        error="PUT manifest.json: 503 Service Unavailable after 5 attempts",
    )
    return finished(evaluation(), summary(results=lost))


def failed_no_score() -> dict[str, Any]:
    judged = BenchmarkSummary(
        avg=None, categories={"coding": None, "writing": None}, samples=160, invalid=160, degraded=True
    )
    text = summary(overall=None, degraded=True, benchmarks={**_benchmarks(), "mtbench": judged})
    return finished(evaluation(), text)


def new_generation() -> dict[str, Any]:
    """Generation 1 succeeded; the model's revision was then edited in Git (generation 2) and the
    operator has not written the new generation's status yet."""
    done = succeeded()
    done["metadata"]["generation"] = 2
    done["spec"]["model"]["revision"] = "4c8d2f1e9a7b3c5d6e0f1a2b3c4d5e6f7a8b9c0d"
    return done


def _benchmarks() -> dict[str, BenchmarkSummary]:
    return dict(Summary.model_validate_json(summary()).benchmarks)


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "no_status.yaml": no_status,
    "queued.yaml": queued,
    "pending_unschedulable.yaml": pending_unschedulable,
    "running.yaml": running,
    "succeeded.yaml": succeeded,
    "succeeded_degraded.yaml": succeeded_degraded,
    "succeeded_results_not_stored.yaml": succeeded_results_not_stored,
    "failed_no_score.yaml": failed_no_score,
    "new_generation.yaml": new_generation,
}
"""testdata file → the object it holds."""


def render(obj: Mapping[str, Any]) -> str:
    return HEADER + yaml.safe_dump(dict(obj), sort_keys=False, allow_unicode=True, width=100)


def expected() -> dict[Path, str]:
    return {TESTDATA / name: render(make()) for name, make in CASES.items()}


def differences() -> list[str]:
    """Files that differ from what the reducer produces now (missing, changed or unknown)."""
    want = expected()
    out = [
        str(path.relative_to(REPO))
        for path, text in want.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]
    out += [str(p.relative_to(REPO)) for p in sorted(TESTDATA.glob("*.yaml")) if p not in want]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file differs instead of writing it")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences()
        for name in stale:
            print(f"{name}: differs from the reducer's status: run `python -m tests.support.argocd_testdata`")
        return 1 if stale else 0
    TESTDATA.mkdir(parents=True, exist_ok=True)
    for target, text in expected().items():
        target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
