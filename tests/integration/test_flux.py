"""GitOps with the real Flux (issue 19): a team commits a NejumiEvaluation into Git, Flux's
source-controller fetches the commit and kustomize-controller applies it with `wait: true`, which
health-checks what it applied with kstatus. On the real control plane with the real operator, the
stub model and scripted judges (which count requests), and a real S3 server for the results:

- the Kustomization is Ready only once the evaluation has its score (it is recorded over time:
  while the evaluation runs, the Kustomization is not Ready);
- an evaluation that cannot get a score (a judge that never rates: Failed / NoScore) fails the
  Kustomization's health check, naming the evaluation;
- a committed edit (another judge) is a new generation that sends only the judgments again, and the
  Kustomization waits for that generation;
- removing the file prunes the evaluation; its stored results stay, and the leaderboard lists it.

The figures of the first test (commit → Job, evaluation done → Kustomization Ready, beside Flux's
interval) go to `.cache/bench/flux.json` for `make bench` (tests/bench/flux_bench.py); nothing here
asserts a timing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from nejumi_eval.api.v1alpha1.results import MANIFEST
from nejumi_eval.cli import main
from tests.cluster import NodeAgent, wait_until
from tests.cluster.controlplane import REPO
from tests.cluster.flux import KUSTOMIZE_GROUP, Flux, GitServer, conditions, git_repository, kustomization
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.support.kube import judged_spec, operator_runner
from tests.support.s3 import RESULTS_BUCKET as BUCKET
from tests.support.s3 import S3Server, results_spec

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

INTERVAL_S = 5  # the GitRepository's and the Kustomization's interval
BENCH_OUT = REPO / ".cache" / "bench" / "flux.json"
README = "NejumiEvaluations applied by Flux (the Kustomization `evaluations`).\n"


@pytest.fixture
def repo(
    flux: Flux, k8s_client: ApiClient, namespace: str, tmp_path: Path
) -> Iterator[tuple[GitServer, Callable[[], dict[str, Any]]]]:
    """A Git repository on loopback, with the GitRepository and the Kustomization `evaluations`
    (./models, prune, wait) a team would apply once; yields the server and a reader of the
    Kustomization."""
    custom = CustomObjectsApi(k8s_client)
    with GitServer(tmp_path / "git") as git:
        git.commit({"models/README.md": README}, "an empty folder of evaluations")
        for body, plural in (
            (git_repository("evaluations", namespace, git.url, interval=f"{INTERVAL_S}s"), "gitrepositories"),
            (
                kustomization(
                    "evaluations", namespace, "evaluations", interval=f"{INTERVAL_S}s", timeout="10m"
                ),
                "kustomizations",
            ),
        ):
            group, version = body["apiVersion"].split("/")
            custom.create_namespaced_custom_object(group, version, namespace, plural, body)

        def read() -> dict[str, Any]:
            obj: dict[str, Any] = custom.get_namespaced_custom_object(
                KUSTOMIZE_GROUP, "v1", namespace, "kustomizations", "evaluations"
            )
            return obj

        yield git, read


def _manifest(name: str, spec: dict[str, Any]) -> str:
    """The file a team commits (no namespace: the Kustomization's targetNamespace sets it)."""
    return yaml.safe_dump({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec})


def _spec(model: str, judge: ScriptedJudge, s3: S3Server) -> dict[str, Any]:
    return judged_spec(model, judge.base_url, judge.model, results=results_spec(s3))


@dataclass(frozen=True)
class Step:
    """One observed state: the Kustomization's Ready and revisions, then (read after it) the
    evaluation's generation, observed generation and phase, and the namespace's Jobs."""

    t: float
    ready: str
    reason: str
    message: str
    reconciling: str  # the Reconciling condition's message (what kustomize-controller is doing)
    applied: str
    attempted: str
    generation: int | None
    observed: int | None
    phase: str
    jobs: tuple[str, ...]


@dataclass
class Timeline:
    """The Kustomization and the evaluation `name` sampled together every 0.2 s from a thread;
    consecutive equal states collapsed (``t`` is when a state was first seen)."""

    client: ApiClient
    namespace: str
    name: str
    read: Callable[[], dict[str, Any]]
    steps: list[Step] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> Step:
        ks = self.read()
        ready = conditions(ks).get("Ready", {})
        status = ks.get("status") or {}
        try:
            ev = CustomObjectsApi(self.client).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            ev = {}
        ev_status = ev.get("status") or {}
        jobs = BatchV1Api(self.client).list_namespaced_job(self.namespace).items
        return Step(
            t=time.monotonic(),
            ready=ready.get("status", ""),
            reason=ready.get("reason", ""),
            message=ready.get("message", ""),
            reconciling=conditions(ks).get("Reconciling", {}).get("message", ""),
            applied=status.get("lastAppliedRevision", ""),
            attempted=status.get("lastAttemptedRevision", ""),
            generation=(ev.get("metadata") or {}).get("generation"),
            observed=ev_status.get("observedGeneration"),
            phase=ev_status.get("phase", ""),
            jobs=tuple(sorted(j.metadata.name for j in jobs)),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                step = self._sample()
            except Exception as exc:  # the API server is busy for a moment: sample again
                self.errors.append(repr(exc))
            else:
                last = self.steps[-1] if self.steps else None
                if last is None or (step.__dict__ | {"t": 0}) != (last.__dict__ | {"t": 0}):
                    self.steps.append(step)
            self._stop.wait(0.2)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait(self, predicate: Callable[[Step], bool], timeout: float, what: str) -> Step:
        def found() -> Step | None:
            return next((s for s in list(self.steps) if predicate(s)), None)

        try:
            step: Step = wait_until(found, timeout, what, interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nlast states:\n" + "\n".join(map(repr, self.steps[-8:]))) from None
        return step


def _revision(sha: str) -> Callable[[str], bool]:
    return lambda revision: revision.endswith(sha)  # Flux writes `<branch>@sha1:<sha>`


def test_flux_applies_waits_for_the_score_edits_and_prunes(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    store: S3Server,
    repo: tuple[GitServer, Callable[[], dict[str, Any]]],
    questions: dict[int, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    git, read = repo
    figures: dict[str, Any] = {"interval_s": INTERVAL_S}
    with (
        StubServer() as model,
        ScriptedJudge(questions) as first_judge,
        ScriptedJudge(questions, model="gpt-4o-2024-08-06") as second_judge,
        operator_runner(namespace) as operator,
        Timeline(k8s_client, namespace, "stub", read) as seen,
    ):
        # the empty folder is applied first: Ready with nothing in it
        seen.wait(lambda s: s.ready == "True" and s.applied != "", 120, "the empty folder applied")

        # 1. commit an evaluation: Flux applies it, and is Ready only once it has its score
        spec = _spec(model.base_url, first_judge, store)
        committed = time.monotonic()
        first = git.commit({"models/stub.yaml": _manifest("stub", spec)}, "evaluate stub-model")
        job = seen.wait(lambda s: "stub-g1" in s.jobs, 180, "the Job stub-g1")
        done = seen.wait(lambda s: s.phase in ("Succeeded", "Failed"), 400, "the evaluation to finish")
        assert done.phase == "Succeeded", done
        ready = seen.wait(
            lambda s: s.ready == "True" and _revision(first)(s.applied),
            400,
            "the Kustomization Ready at commit 1",
        )
        figures |= {
            "commit_to_job_s": round(job.t - committed, 1),
            "evaluation_s": round(done.t - job.t, 1),
            "succeeded_to_ready_s": round(ready.t - done.t, 1),
        }
        sent, judged = model.calls, first_judge.calls
        assert sent > 0 and judged > 0
        waiting = [
            s for s in seen.steps if _revision(first)(s.attempted) and s.phase in ("Pending", "Running")
        ]
        assert waiting and all(s.ready != "True" for s in waiting), seen.steps  # not Ready while it ran
        assert any("health check" in s.reconciling.lower() for s in waiting), waiting

        # 2. commit an edit (another judge): generation 2, only the judgments are sent again
        spec["benchmarks"]["mtbench"]["judge"] = {
            "endpoint": second_judge.base_url,
            "model": second_judge.model,
        }
        edited_at = time.monotonic()
        second = git.commit({"models/stub.yaml": _manifest("stub", spec)}, "judge stub-model with gpt-4o")
        job2 = seen.wait(lambda s: "stub-g2" in s.jobs, 180, "the Job stub-g2")
        ready2 = seen.wait(
            lambda s: s.ready == "True" and _revision(second)(s.applied),
            400,
            "the Kustomization Ready at commit 2",
        )
        assert (ready2.generation, ready2.observed, ready2.phase) == (2, 2, "Succeeded"), ready2
        figures |= {"edit_commit_to_job_s": round(job2.t - edited_at, 1)}
        assert model.calls == sent  # every model answer from the workspace's cache
        assert first_judge.calls == judged and second_judge.calls == judged
        status = CustomObjectsApi(k8s_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "stub"
        )["status"]
        (entry,) = status["history"]
        assert (entry["generation"], entry["phase"]) == (1, "Succeeded"), entry
        stored = [status["results"]["uri"], entry["results"]["uri"]]

        # 3. remove the file: the evaluation is pruned, its results stay in the store
        removed_at = time.monotonic()
        third = git.commit({"models/stub.yaml": None}, "stop evaluating stub-model")
        gone = seen.wait(
            lambda s: s.ready == "True" and _revision(third)(s.applied) and s.generation is None,
            300,
            "the evaluation pruned and the Kustomization Ready at commit 3",
        )
        figures |= {"prune_commit_to_ready_s": round(gone.t - removed_at, 1)}
    assert (operator.exit_code, operator.exception) == (0, None), operator.output

    # every state in which the Kustomization was Ready for a commit, with that commit's generation
    # applied, shows that generation done
    generations = {first: 1, second: 2}
    for step in seen.steps:
        for sha, generation in generations.items():
            if step.ready == "True" and _revision(sha)(step.applied) and step.generation == generation:
                assert (step.observed, step.phase) == (generation, "Succeeded"), step

    def collected() -> bool:  # the pruned evaluation's Jobs and workspace go with it
        jobs = BatchV1Api(k8s_client).list_namespaced_job(namespace).items
        claims = CoreV1Api(k8s_client).list_namespaced_persistent_volume_claim(namespace).items
        return not jobs and "stub-workspace" not in {c.metadata.name for c in claims}

    wait_until(collected, 120, "the pruned evaluation's Jobs and workspace PVC to be collected")
    assert stored == [
        f"s3://{BUCKET}/cluster/{namespace}/stub/2/",
        f"s3://{BUCKET}/cluster/{namespace}/stub/1/",
    ]
    keys = {o["Key"] for o in store.client().list_objects_v2(Bucket=BUCKET, Prefix="cluster/")["Contents"]}
    for generation in (1, 2):
        assert f"cluster/{namespace}/stub/{generation}/{MANIFEST}" in keys
    reader = store.add_user("reader")
    store.allow(BUCKET, reader, ["s3:GetObject", "s3:ListBucket"])
    for name, value in store.env(reader).items():
        monkeypatch.setenv(name, value)
    board = tmp_path / "board.json"
    cluster = ["--cluster", "-n", namespace, "--kubeconfig", str(kubeconfig)]
    assert (
        main(["leaderboard", *cluster, f"s3://{BUCKET}/cluster", "--include-all", "--json", str(board)]) == 0
    )
    states = {e["id"]: e["state"] for e in json.loads(board.read_text())["entries"]}
    assert states == {f"{namespace}/stub/2": "ranked", f"{namespace}/stub/1": "superseded"}, states

    BENCH_OUT.parent.mkdir(parents=True, exist_ok=True)
    BENCH_OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nFlux figures: {figures}")


def test_an_evaluation_without_a_score_fails_the_kustomization(
    crd: None,
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    store: S3Server,
    repo: tuple[GitServer, Callable[[], dict[str, Any]]],
    questions: dict[int, str],
) -> None:
    git, read = repo
    with (
        StubServer() as model,
        ScriptedJudge(questions, default="I would rather not rate this answer.") as judge,
        operator_runner(namespace) as operator,
        Timeline(k8s_client, namespace, "unrated", read) as seen,
    ):
        seen.wait(lambda s: s.ready == "True" and s.applied != "", 120, "the empty folder applied")
        sha = git.commit(
            {"models/unrated.yaml": _manifest("unrated", _spec(model.base_url, judge, store))}, "add"
        )
        failed = seen.wait(
            lambda s: s.ready == "False" and _revision(sha)(s.attempted) and s.phase == "Failed",
            400,
            "the Kustomization's health check to fail",
        )
        assert judge.calls > 0
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    status = CustomObjectsApi(k8s_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "unrated"
    )["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "NoScore"), status
    ks = read()
    ready = conditions(ks)["Ready"]
    assert ready["reason"] == "HealthCheckFailed", ready
    assert f"NejumiEvaluation/{namespace}/unrated" in ready["message"], ready
    print(f"\nKustomization Ready=False: {ready['message']}")
    assert not any(s.ready == "True" and _revision(sha)(s.applied) for s in seen.steps), failed
