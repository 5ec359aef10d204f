"""NejumiEvaluation resources as a leaderboard source: `nejumi-eval leaderboard --cluster`.

What a resource offers is its `status` (scores, flags, runtime, cost, the results it stored, the W&B run)
and its `spec` (the model). Per-question data, and with it the bootstrap intervals and the
drill-down, is in the results of record: `status.results.uri` names the evaluation's prefix in the
results store, and the board reads it there (the manifest's digest checked against the status), with
the standard AWS variables for credentials; read permission is enough. So the board needs nothing
but the API and the store, and an evaluation deleted since (a GitOps prune, its volume gone) keeps
its place on it through the store. An evaluation whose results were not stored may still be read
from a local copy of its workspace (`--workspace-root DIR`: `DIR/<namespace>/<name>/`). One with
neither is ranked by its status scores alone, says so in a warning, and gets no interval: an
interval needs the questions, and the board never makes one up.

Only a Succeeded evaluation can be ranked. Queued, Pending, Running and Failed ones are listed with
their phase as the reason (`compare.exclusion_reasons`: any status but `completed`).

The `kubernetes` package (the `operator` extra) is imported only here and only when the cluster is
read, so the evaluator image does not need it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.contract import WORKSPACE_MOUNT
from nejumi_eval.api.v1alpha1.cost import Cost
from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, Summary
from nejumi_eval.errors import InfrastructureError, InputError
from nejumi_eval.leaderboard.sources import (
    SUMMARY,
    Evaluation,
    entry_from_summary,
    from_sources,
    load_results_folder,
)

log = logging.getLogger(__name__)

PAGE = 200
"""Resources per list call (a large cluster is read in pages, not in one response)."""

NO_QUESTIONS = (
    "per-question data unavailable ({why}): ranked by its status scores, no bootstrap interval, no drill-down"
)


class _Lenient(BaseModel):
    """The resource as read back: camelCase, unknown fields ignored (a newer operator may add
    some; the operator's own `EvaluationStatus` forbids them, which suits a writer, not a reader)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _Metadata(_Lenient):
    name: str
    namespace: str = "default"
    creation_timestamp: datetime | None = None


class _Model(_Lenient):
    name: str
    revision: str | None = None
    source: str | None = None


class _Spec(_Lenient):
    model: _Model


class _BenchmarkScores(_Lenient):
    avg: float | None = None
    categories: dict[str, float | None] = Field(default_factory=dict)


class _Scores(_Lenient):
    overall: float | None = None
    benchmarks: dict[str, _BenchmarkScores] = Field(default_factory=dict)


class _Results(_Lenient):
    uri: str
    stored: bool = False
    manifest_sha256: str | None = None


class _Status(_Lenient):
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    scores: _Scores | None = None
    runtime: dict[str, float] = Field(default_factory=dict)
    cost: Cost | None = None
    degraded: bool = False
    capped: bool = False
    synthetic_judge: bool = False
    results_dir: str | None = None
    results: _Results | None = None
    wandb_run_path: str | None = None
    wandb_run_url: str | None = None


class Resource(_Lenient):
    """One NejumiEvaluation, as much of it as the leaderboard reads."""

    metadata: _Metadata
    spec: _Spec
    status: _Status = Field(default_factory=_Status)

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


# ---- resource → evaluation (pure) -----------------------------------------------------------------


def _entry_status(phase: str | None) -> str:
    """Succeeded → completed (rankable), Failed → failed; an unfinished phase is named as it is."""
    if phase == "Succeeded":
        return "completed"
    if phase == "Failed":
        return "failed"
    return (phase or "not started").lower()


def workspace_relative(results_dir: str) -> PurePosixPath:
    """`status.resultsDir` relative to the workspace. The evaluator records it as the pod sees it
    (`/workspace/results/<model>-<stamp>`); a relative one is taken as it is."""
    path = PurePosixPath(results_dir)
    if path.is_absolute():
        try:
            return path.relative_to(WORKSPACE_MOUNT)
        except ValueError:  # another mount point: keep what follows the last `results`
            parts = path.parts
            cut = max((i for i, p in enumerate(parts) if p == "results"), default=len(parts) - 1)
            return PurePosixPath(*parts[cut:])
    return path


def local_results_folder(resource: Resource, workspace_root: Path | None) -> tuple[Path | None, str]:
    """The local copy of the evaluation's results folder, or None and why not."""
    results_dir = resource.status.results_dir
    if not results_dir:
        return None, "the status names no results folder"
    if workspace_root is None:
        return None, "no --workspace-root given"
    base = workspace_root / resource.metadata.namespace / resource.metadata.name
    relative = workspace_relative(results_dir)
    candidates = [base / relative, base / "results" / relative.name]
    for folder in candidates:
        if (folder / SUMMARY).is_file():
            return folder, ""
    return None, f"{results_dir} not found under {base}"


def _status_summary(resource: Resource) -> Summary:
    """The status's scores in the summary's shape (what `entry_from_summary` reads)."""
    status = resource.status
    scores = status.scores or _Scores()
    benchmarks = {
        name: BenchmarkSummary(avg=b.avg, categories=dict(b.categories))
        for name, b in scores.benchmarks.items()
    }
    runtime = {"total": status.runtime["totalSeconds"]} if "totalSeconds" in status.runtime else {}
    return Summary(
        status="failed" if status.phase == "Failed" else "completed",
        model=resource.spec.model.name,
        overall=scores.overall,
        degraded=status.degraded,
        capped=status.capped,
        synthetic_judge=status.synthetic_judge,
        benchmarks=benchmarks,
        runtime_seconds=runtime,
        cost=status.cost,
        results_dir=status.results_dir,
        wandb_run_path=status.wandb_run_path,
    )


def _from_store(resource: Resource, store: Any) -> tuple[Evaluation | None, str, str]:
    """The evaluation from the results store the status names: (evaluation, where, why not)."""
    results = resource.status.results
    if results is None:
        return None, "", "the status names no stored results"
    if not results.stored:
        return None, "", f"its results were not stored in {results.uri}"
    from nejumi_eval.leaderboard.store_source import load_stored
    from nejumi_eval.storage.store import ObjectStore, StoreError

    try:
        evaluation, digest = load_stored(store or ObjectStore(), results.uri, entry_id=resource.key)
        evaluation.questions  # noqa: B018  (read now: a store error is this entry's, not the board's)
    except (StoreError, ValueError, ValidationError) as exc:
        return None, "", f"{results.uri} is not readable: {exc}"
    if results.manifest_sha256 and digest != results.manifest_sha256:
        evaluation.entry.warnings.append(
            f"the manifest in {results.uri} ({digest}) is not the one the status names "
            f"({results.manifest_sha256}): stored again since?"
        )
    return evaluation, results.uri, ""


def evaluation_from_resource(
    resource: Resource, workspace_root: Path | None = None, store: Any = None
) -> Evaluation:
    """One resource as an evaluation: from the results store its status names (the record), else
    from its results folder's local copy when there is one (the status is then a cross-check),
    else from its status alone (no per-question data). `store`: an ObjectStore to read with
    (default: one from the standard AWS variables)."""
    status = resource.status
    evaluation, where, why = _from_store(resource, store)
    if evaluation is None:
        folder, folder_why = local_results_folder(resource, workspace_root)
        why = "; ".join(w for w in (why, folder_why) if w)
        if folder is not None:
            try:
                evaluation, where = load_results_folder(folder), str(folder)
            except (OSError, ValueError, ValidationError) as exc:
                why = f"{folder} is not readable: {exc}"
    if evaluation is None:
        model = resource.spec.model
        run = {"model": {"name": model.name, "revision": model.revision, "source": model.source}}
        entry = entry_from_summary(
            _status_summary(resource),
            run,
            entry_id=resource.key,
            source=f"NejumiEvaluation {resource.key}",
            started_at=status.start_time or resource.metadata.creation_timestamp,
        )
        entry.ended_at = status.completion_time
        entry.provenance.missing = "status only"  # what the board says of its protocol group
        if status.phase == "Succeeded":  # unfinished ones have no scores to qualify
            entry.warnings.append(NO_QUESTIONS.format(why=why))
        evaluation = Evaluation(entry=entry)
    else:
        entry = evaluation.entry
        entry.id = resource.key
        entry.source = f"NejumiEvaluation {resource.key} ({where})"
        # The status is what the operator observed; flags set there hold even if the copy lacks them.
        entry.capped = entry.capped or status.capped
        entry.synthetic_judge = entry.synthetic_judge or status.synthetic_judge
        entry.degraded = entry.degraded or status.degraded
        # The status's cost has the GPU-seconds held as the operator observed them (the one Job's,
        # which its own summary cannot know).
        entry.cost = status.cost or entry.cost
        recorded = (status.scores or _Scores()).overall
        if recorded is not None and entry.overall is not None and abs(recorded - entry.overall) > 1e-9:
            entry.warnings.append(
                f"the status reports Overall {recorded:.6f} but the results at {where} give "
                f"{entry.overall:.6f}: are they of another run?"
            )
    entry.status = _entry_status(status.phase)
    details = entry.provenance.details
    details["resource"] = resource.key
    if status.phase != "Succeeded" and status.reason:
        details["phase_reason"] = status.reason
    wandb_run = status.wandb_run_url or status.wandb_run_path
    if wandb_run:
        details["wandb_run"] = wandb_run
    return evaluation


def evaluations_from_objects(
    objects: list[dict[str, Any]], workspace_root: Path | None = None, store: Any = None
) -> list[Evaluation]:
    """Resources as the API lists them (dicts) → evaluations; an unreadable one is skipped with a
    warning (one malformed resource must not hide the others)."""
    out = []
    if store is None and any(((o.get("status") or {}).get("results") or {}).get("stored") for o in objects):
        from nejumi_eval.storage.store import ObjectStore

        store = ObjectStore()  # one client for every resource's stored results
    for obj in objects:
        try:
            resource = Resource.model_validate(obj)
        except ValidationError as exc:
            meta = obj.get("metadata") or {}
            log.warning("skipping NejumiEvaluation %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)
            continue
        out.append(evaluation_from_resource(resource, workspace_root, store))
    return from_sources([out])


# ---- the API --------------------------------------------------------------------------------------


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise InputError("--cluster needs the kubernetes package: pip install 'nejumi[operator]'") from exc
    return kubernetes


def api_client(kubeconfig: str | Path | None = None) -> tuple[Any, str]:
    """An ApiClient and the namespace of the current context: from `kubeconfig` (default
    `$KUBECONFIG` or ~/.kube/config), else, inside a pod, the service account's."""
    k8s = _kubernetes()
    from kubernetes.config.config_exception import ConfigException

    try:
        _, active = k8s.config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
        client = k8s.config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)
        return client, (active or {}).get("context", {}).get("namespace") or "default"
    except (ConfigException, OSError) as exc:
        if kubeconfig is not None:
            raise InputError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
        try:
            k8s.config.load_incluster_config()
        except ConfigException:
            raise InputError(f"no Kubernetes configuration found ({exc}); pass --kubeconfig") from exc
        token_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        namespace = token_ns.read_text().strip() if token_ns.is_file() else "default"
        return k8s.client.ApiClient(), namespace


def list_resources(
    client: Any, namespace: str | None, label_selector: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every NejumiEvaluation in `namespace` (None: all namespaces) matching `label_selector` (the
    API's syntax, as `kubectl -l`; None: all), page by page."""
    k8s = _kubernetes()
    from kubernetes.client.exceptions import ApiException

    custom = k8s.client.CustomObjectsApi(client)
    token: str | None = None
    where = f"namespace {namespace}" if namespace else "any namespace"
    while True:
        kwargs: dict[str, Any] = {"limit": PAGE}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if token:
            kwargs["_continue"] = token
        try:
            if namespace:
                page = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs)
            else:
                page = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise InputError(
                    f"the cluster serves no {PLURAL}.{GROUP} (is the NejumiEvaluation CRD installed?)"
                ) from exc
            if exc.status in (401, 403):
                raise InputError(f"not allowed to list NejumiEvaluations in {where}: {exc.reason}") from exc
            raise InfrastructureError(f"listing NejumiEvaluations failed: {exc.status} {exc.reason}") from exc
        except OSError as exc:  # urllib3's connection errors derive from it
            raise InfrastructureError(f"the Kubernetes API server is unreachable: {exc}") from exc
        yield from page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def from_cluster(
    *,
    namespace: str | None = None,
    all_namespaces: bool = False,
    kubeconfig: str | Path | None = None,
    workspace_root: str | Path | None = None,
    client: Any = None,
    label_selector: str | None = None,
) -> list[Evaluation]:
    """The evaluations of one namespace (default: the current context's) or of all of them.

    `client` (an ApiClient) is for callers that already hold one; otherwise one is made from
    `kubeconfig`. Nothing found is not an error here: an empty namespace is a fact about the
    cluster, and the command decides what to say."""
    default_namespace = "default"
    if client is None:
        client, default_namespace = api_client(kubeconfig)
    where = None if all_namespaces else (namespace or default_namespace)
    root = Path(workspace_root).expanduser() if workspace_root is not None else None
    objects = list(list_resources(client, where, label_selector))
    for obj in objects:  # the cluster-wide list carries the namespace; a namespaced one may not
        obj.setdefault("metadata", {}).setdefault("namespace", where or "default")
    return evaluations_from_objects(objects, root)
