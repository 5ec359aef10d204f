"""kopf wiring only: each handler takes the kwargs it uses and calls plain functions.

- create/resume/spec update: create the workspace PVC (unless `workspace.pvcName`; owned by the evaluation
  unless `workspace.retain`), build the Job (pure) of the first stage (`api.v1alpha1.stages`: fetch
  for a served model on GPUs, else the one Job), adopt it, create it (409 = already there), write
  status;
  a spec the CRD admitted but the evaluator cannot run → status InvalidSpec + `kopf.PermanentError`.
  A spec edit is a new generation: the earlier generations' Jobs are deleted and this one's made.
- Job, pod and progress ConfigMap events (label `nejumi.wandb.ai/evaluation`, `…/progress-of`): the
  evaluation's status is synced from observations, debounced per evaluation (`nejumi_operator.syncs`:
  the events of a pod starting cost one sync, not one each; a pod running or a Job finished shows at
  once).
  A stage's Job that completed gets its successor first (`controller.advance`, also on every
  resync round).
- NejumiLeaderboards: created, resumed or edited → computed (debounced); an evaluation event that
  changes what a board shows (phase, labels, stored results, deletion) → every leaderboard that
  reads its namespace and selects it (now or before) is computed again, debounced
  (`nejumi_operator.leaderboards`: seventy evaluations finishing together cost one or two
  computations, each in a child process, never in a handler).
- Resync, a safety net for missed Job events: one operator-level loop (started at startup) syncs
  every unfinished evaluation every `OperatorConfig.resync_seconds`, a few at a time, skipping those
  an event synced within the interval (`syncs.resync_forever`). Which evaluations are unfinished
  comes from a kopf index, a view of what kopf's watch last saw (rebuilt from a fresh list at every
  start); the children are listed a hundred evaluations at a time (`controller.list_children`).

No handler needs a finalizer. kopf puts its finalizer on every resource that has a timer, a daemon
or a (non-optional) deletion handler, and then a deletion waits for the operator — with the Job
still running while the operator is down. There are none here: the Job (and through it its pods)
is owned by the evaluation, so the garbage collector deletes them when the evaluation goes,
operator or not. Older operators had a per-resource timer; kopf removes the finalizer it added
then (`settings.persistence.finalizer`, unchanged) from any resource that no handler needs it on.

Run: `python -m nejumi_operator` or `kopf run --standalone -m nejumi_operator.handlers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1 import cel
from nejumi_eval.api.v1alpha1.conditions import (
    ACCEPTED,
    NAME_CONFLICT,
    SECRET_NOT_FOUND,
    SECRET_NOT_USABLE,
    TRUE,
    WAITING_FOR_CLEANUP,
    find,
    is_finished,
)
from nejumi_eval.api.v1alpha1.leaderboard import LabelSelector
from nejumi_eval.api.v1alpha1.names import (
    GROUP,
    KIND,
    LABEL_EVALUATION,
    LEADERBOARD_PLURAL,
    PLURAL,
    VERSION,
)
from nejumi_eval.api.v1alpha1.progress import OUTCOME_KEY, PROGRESS_KEY
from nejumi_eval.api.v1alpha1.stages import stages_for
from nejumi_operator.controller import complete_finished_status, generation_jobs, list_children, sync_status
from nejumi_operator.debounce import Debouncer
from nejumi_operator.kube import calls
from nejumi_operator.kube.client import kopf_connections, kopf_session, make_api_client
from nejumi_operator.leaderboards.compute import fingerprint
from nejumi_operator.leaderboards.controller import compute_leaderboard
from nejumi_operator.policy import LABEL_USABLE_BY_EVALUATIONS, secret_refs
from nejumi_operator.reconcile.group import Release
from nejumi_operator.reconcile.job import (
    ANNOTATION_GENERATION,
    InvalidEvaluation,
    build_job,
    build_model_cache_pvc,
    build_workspace_pvc,
    retain_workspace,
    uses_model_cache,
    validate,
)
from nejumi_operator.reconcile.naming import MAX_NAME, label_value
from nejumi_operator.reconcile.ownership import Claim, claim, owned_by
from nejumi_operator.reconcile.progress import LABEL_PROGRESS_OF, build_progress_objects
from nejumi_operator.reconcile.stages import job_generation
from nejumi_operator.settings import OperatorConfig
from nejumi_operator.status.observation import job_finished
from nejumi_operator.syncs import StatusSyncs, resync_forever

FINALIZER = f"{GROUP}/finalizer"
"""kopf's finalizer name here. Nothing needs it any more; it stays configured so that kopf removes it
from evaluations an older operator (with a resync timer) put it on."""


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    # kopf passes every index by its name among the kwargs (its handler protocol names none).
    unfinished_evaluations: kopf.Index[tuple[str, str], bool] = kwargs["unfinished_evaluations"]
    config = OperatorConfig.from_env()
    # Our own group for kopf's bookkeeping; progress in annotations only (status has a strict schema).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.watching.server_timeout = config.server_timeout_seconds
    # After patching its annotations kopf waits this long for the patched version to come back
    # through its watch before it handles the evaluation's next event; past it, it takes an older
    # version (without its annotations) for unhandled and runs the create handler again. Under load
    # (hundreds of evaluations at once) its default 5 s was too short: every other one ran twice.
    settings.persistence.consistency_timeout = 30.0
    # kopf's per-object worker keeps the object's last body until it has been idle this long: with
    # hundreds of evaluations, Jobs and pods changing at once, its default 5 s kept most of them in
    # memory at the same time (make bench --only scale: peak RSS).
    settings.queueing.idle_timeout = 1.0
    # Threads for the handlers that block on API calls: the evaluations' create/resume/update
    # (status syncs have their own, `syncs.SYNC_CONCURRENCY`; the event handlers only schedule).
    # Together within the API client's pool (`kube.client.POOL`).
    settings.execution.max_workers = 16
    memo.config = config
    # cel-python's parser (spec validation), built here once rather than by the first handler
    # threads at once (tens of MB each while built, never given back to the system).
    cel.prepare()
    memo.api = make_api_client()
    memo.leaderboards = Debouncer(
        functools.partial(compute_leaderboard, memo.api, config),
        quiet=config.leaderboard_quiet_seconds,
        max_delay=config.leaderboard_max_delay_seconds,
        name="leaderboard",
    )
    memo.seen = {}  # (namespace, name) → (hash of its fingerprint, labels) of each evaluation
    memo.syncs = StatusSyncs(
        functools.partial(sync_status, memo.api, config=config),
        listing=functools.partial(list_children, memo.api),
    )
    memo.resync = asyncio.create_task(
        resync_forever(config.resync_seconds, unfinished_evaluations, memo.syncs, logger),
        name="nejumi resync",
    )
    logger.info(
        "evaluator image %s, command %s; resync every %gs",
        config.image,
        list(config.command),
        config.resync_seconds,
    )


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.AiohttpSession | None:
    """The kubernetes client's own configuration — the pod's ServiceAccount at
    `$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` in a cluster, else $KUBECONFIG — so kopf's
    watches and the operator's own calls (`make_api_client`) reach the same API server. (kopf's
    `login_with_service_account` would dial `kubernetes.default.svc`, which needs cluster DNS.)
    Outside a pod, $KUBECONFIG as it is now (the client library reads it once, at import).
    kopf's session gets a bounded number of connections (`kube.client.kopf_connections`: the
    namespaces watched come from `python -m nejumi_operator`, in the memo)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        info = kopf.login_via_client(**kwargs)
    else:
        info = kopf.login_with_kubeconfig(**kwargs)
    if info is None:
        return None
    return kopf_session(info, kopf_connections(memo.get("namespaces")))


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    leaderboards = getattr(memo, "leaderboards", None)
    if leaderboards is not None:
        await leaderboards.close()
    task = getattr(memo, "resync", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    syncs = getattr(memo, "syncs", None)
    if syncs is not None:
        await syncs.close()
    api = getattr(memo, "api", None)
    if api is not None:
        api.close()


@kopf.index(GROUP, VERSION, PLURAL)
def unfinished_evaluations(
    namespace: str | None, name: str, meta: kopf.Meta, status: kopf.Status, **_: Any
) -> dict[tuple[str, str], bool]:
    """(namespace, name) → True for each evaluation the resync loop visits: not finished and not being
    deleted. `{}` (not None) for the others, so that kopf drops what it indexed for them before."""
    namespace = _namespaced(namespace)
    settled = is_finished(status) and status.get("observedGeneration") == meta.get("generation")
    if settled or meta.get("deletionTimestamp"):
        return {}
    return {(namespace, name): True}


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=5)
@kopf.on.create(GROUP, VERSION, PLURAL, backoff=5)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=5)
def ensure_job(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    status: kopf.Status,
    reason: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Make this generation's Job (and what it needs), or say in status why not. Retried without a
    limit (every 5 s): the waits — a Secret that does not exist yet, a deleted namesake's objects
    the garbage collector is removing — end by themselves, and a final refusal is a PermanentError."""
    namespace = _namespaced(namespace)
    generation = int(body.meta.get("generation") or 1)
    if is_finished(status) and status.get("observedGeneration") == generation:
        if reason == kopf.Reason.RESUME:  # finished under an older operator: kstatus must read it right
            complete_finished_status(memo.api, namespace, name)
        return
    if generation > 1:  # an edit: there are earlier generations' Jobs to look for
        _stop_earlier_generations(body, namespace, generation, memo, logger)
    accepted = find(status.get("conditions"), ACCEPTED) or {}
    if (
        reason == kopf.Reason.CREATE
        and accepted.get("status") == TRUE
        and status.get("observedGeneration") == generation
    ):
        # kopf can hand the creation over again when it does not see its own annotations in time
        # under load: the status already says this generation's Job exists (written after it was
        # created), so there is nothing to create. (A resume, after a restart, checks everything.)
        return
    if generation_jobs(memo.api, body).current is not None:  # ours (by owner UID): made before
        # Admitted under the policy of its day: a later policy (a `helm upgrade`) applies to new
        # evaluations only and never rewrites what runs or ran (nor stops one between stages).
        _note_policy_change(body, memo.config, logger)
        sync_status(memo.api, namespace, name, config=memo.config)
        return
    try:
        spec = validate(body.get("spec"))
        first = stages_for(spec, memo.config.staged)[0]
        job = build_job(body, memo.config, first)
    except InvalidEvaluation as exc:
        sync_status(memo.api, namespace, name, rejected={"spec_error": str(exc)})
        raise kopf.PermanentError(str(exc)) from None
    _check_secrets(body, name, namespace, memo)
    # Owner reference → the Job and its pods are garbage-collected with the evaluation, even while
    # the operator is down. (Not kopf.adopt: it would copy the evaluation's labels, e.g. a Kueue
    # queue label, onto the Job.)
    kopf.append_owner_reference(job, owner=body)
    # The workspace PVC first, so the Job's pod never waits on a claim nobody creates. Owned by the
    # evaluation (collected with it) unless workspace.retain. Then the progress channel
    # (ServiceAccount, Role, RoleBinding, ConfigMap): the Job's pods run as that ServiceAccount, and
    # the pod would not be created without it. The Job last.
    pvc = build_workspace_pvc(body, memo.config)
    retained = pvc is not None and retain_workspace(body)
    if pvc is not None and not retained:
        kopf.append_owner_reference(pvc, owner=body)
    progress = build_progress_objects(body)
    for obj in progress:
        kopf.append_owner_reference(obj, owner=body)
    # The namespace's shared model cache, made on first need and owned by no evaluation (an
    # existing one of that name is the platform's own: used as it is).
    shared = [build_model_cache_pvc(namespace, memo.config)] if uses_model_cache(spec, memo.config) else []
    for obj in [*shared, *([pvc] if pvc is not None else []), *progress, job]:
        try:
            made, created = calls.create_or_get(memo.api, namespace, obj)
        except ApiException as exc:
            if exc.status not in (400, 403, 422):  # the API server's word on it: no retry helps
                raise
            what = None if obj is job else f"{obj['kind']} {obj['metadata']['name']}"
            message = _api_message(exc)
            sync_status(memo.api, namespace, name, rejected={"job_rejected": message, "refused": what})
            raise kopf.PermanentError(f"the API server refused the {what or 'Job'}: {message}") from None
        if not created and obj not in shared:
            unowned = obj["metadata"]["labels"] if obj is pvc and retained else None
            _check_claim({**made, "kind": obj["kind"]}, body, name, namespace, memo, unowned)
        elif obj is pvc or obj in shared:
            logger.info("PersistentVolumeClaim %s created", made["metadata"]["name"])
    # the loop ends with the Job: `created` is the Job's
    logger.info("Job %s %s", job["metadata"]["name"], "created" if created else "already exists")
    sync_status(memo.api, namespace, name, config=memo.config)


def _stop_earlier_generations(
    evaluation: kopf.Body, namespace: str, generation: int, memo: kopf.Memo, logger: kopf.Logger
) -> None:
    """A spec edit is a new generation: the unfinished Jobs of earlier ones (ours by owner UID) are
    deleted, so a running one frees its GPUs and a queued one leaves the queue. Their outcome stays in
    `status.history` (the reducer moves it there); the workspace, and with it the response cache,
    stays for the new Job."""
    uid = str(evaluation.meta.get("uid"))
    selector = f"{LABEL_EVALUATION}={label_value(evaluation.meta['name'])}"
    for job in calls.labelled_jobs(memo.api, namespace, selector):
        meta = job.get("metadata") or {}
        try:
            of = int((meta.get("annotations") or {}).get(ANNOTATION_GENERATION) or 0)
        except ValueError:
            continue
        if of >= generation or not owned_by(job, uid) or meta.get("deletionTimestamp") or job_finished(job):
            continue  # a finished one holds nothing: it stays (with its pod's log) until the evaluation goes
        if calls.delete_job(memo.api, namespace, meta["name"], str(meta.get("uid"))):
            logger.info(
                "Job %s (generation %d) deleted: generation %d replaces it", meta["name"], of, generation
            )
    # A serving group (a model across nodes) of an earlier generation holds its nodes until deleted;
    # a released one holds nothing (no replica) and stays as its stage's record.
    for group in calls.labelled_groups(memo.api, namespace, selector):
        meta = group.get("metadata") or {}
        of = job_generation(group) or generation
        if of >= generation or not owned_by(group, uid) or meta.get("deletionTimestamp"):
            continue
        if Release.of(group) is None and calls.delete_group(
            memo.api, namespace, meta["name"], str(meta.get("uid"))
        ):
            logger.info(
                "LeaderWorkerSet %s (generation %d) deleted: generation %d replaces it",
                meta["name"],
                of,
                generation,
            )


def _check_claim(
    existing: dict[str, Any],
    evaluation: kopf.Body,
    name: str,
    namespace: str,
    memo: kopf.Memo,
    unowned_labels: dict[str, str] | None,
) -> None:
    """An object of the name the operator needs already exists: go on only if it is this
    evaluation's (reconcile.ownership); wait for a deleted namesake's to be collected; refuse a
    foreign one (NameConflict) without using, writing or reading it."""
    found, owner = claim(existing, evaluation, unowned_labels=unowned_labels)
    if found is Claim.OURS:
        return
    what = f"{existing.get('kind') or 'object'} {existing['metadata']['name']}"
    if found is Claim.COLLECTING:
        message = f"{what} belongs to {owner}: waiting for the garbage collector to remove it"
        sync_status(memo.api, namespace, name, rejected={"waiting": (WAITING_FOR_CLEANUP, message)})
        raise kopf.TemporaryError(message, delay=5)
    hint = (
        " (a workspace kept with workspace.retain: set workspace.retain: true to use it again, or delete it)"
        if existing.get("kind") == "PersistentVolumeClaim" and owner == "no owner"
        else ""
    )
    message = (
        f"{what} already exists and is not this evaluation's ({owner}); the operator never uses an "
        f"object it did not make for this evaluation: delete or rename it, or rename the evaluation{hint}"
    )
    sync_status(memo.api, namespace, name, rejected={"refusal": (NAME_CONFLICT, message)})
    raise kopf.PermanentError(message)


def _check_secrets(evaluation: kopf.Body, name: str, namespace: str, memo: kopf.Memo) -> None:
    """Every Secret the spec names must consent to evaluations (nejumi_operator.policy) before any
    pod exists. A missing one is waited for (it is checked when it appears); reading labels only."""
    policy = memo.config.policy
    if not policy.enabled:
        return
    spec = validate(evaluation.get("spec"), source=f"{KIND} {namespace}/{name}: spec")
    names = {secret for _, secret in secret_refs(spec) if secret not in policy.usable_secrets}
    labels = {secret: calls.secret_labels(memo.api, namespace, secret) for secret in sorted(names)}
    if problems := policy.secret_problems(spec, labels.get):
        message = "; ".join(problems)
        sync_status(memo.api, namespace, name, rejected={"refusal": (SECRET_NOT_USABLE, message)})
        raise kopf.PermanentError(message)
    if missing := sorted(secret for secret, found in labels.items() if found is None):
        fields = [field for field, secret in secret_refs(spec) if secret in missing]
        message = (
            f"Secret {', '.join(missing)} ({', '.join(fields)}) not found: create it in namespace "
            f'{namespace} with label {LABEL_USABLE_BY_EVALUATIONS}="true"; no Job until it exists'
        )
        sync_status(memo.api, namespace, name, rejected={"waiting": (SECRET_NOT_FOUND, message)})
        raise kopf.TemporaryError(message, delay=5)


def _note_policy_change(evaluation: kopf.Body, config: OperatorConfig, logger: kopf.Logger) -> None:
    """A Job that exists is never re-judged; say (in the log) when today's policy would refuse it."""
    try:
        spec = validate(evaluation.get("spec"))
    except InvalidEvaluation:
        return
    if problems := config.policy.violations(spec):
        logger.warning(
            "admitted under an earlier policy; today's would refuse it (it runs on): %s", "; ".join(problems)
        )


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_EVALUATION: kopf.PRESENT})
async def job_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """The evaluation's Job changed: its status is synced soon (at once when the Job finished).
    Not for the Job just created (no status yet): the create handler syncs after creating it."""
    if event.get("type") == "ADDED" and not body.get("status"):
        return
    owner = _owner(body.meta.get("ownerReferences"))
    if owner is not None:
        memo.syncs.touch(_namespaced(namespace), owner, prompt=job_finished(body))


@kopf.on.event("", "v1", "pods", labels={LABEL_EVALUATION: kopf.PRESENT})
async def pod_changed(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A pod scheduled, blocked (image pull, a missing Secret), started or ended: the status says so
    soon, not at the next resync (a running pod at once). The pod's owner is its Job; the label names
    the evaluation."""
    namespace = _namespaced(namespace)
    labels = body.meta.get("labels") or {}
    evaluation = _evaluation_of(labels)
    if evaluation is None and (job := labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")):
        found = await asyncio.to_thread(calls.read_job, memo.api, namespace, job)
        evaluation = _owner(((found or {}).get("metadata") or {}).get("ownerReferences"))
    if evaluation is not None:
        phase = body.status.get("phase")
        memo.syncs.touch(namespace, evaluation, prompt=phase == "Running", ended=phase in ENDED)


@kopf.on.event("", "v1", "configmaps", labels={LABEL_PROGRESS_OF: kopf.PRESENT})
async def progress_reported(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """The evaluator wrote its progress ConfigMap (reconcile.progress): the status shows it soon.
    (Not for the empty ConfigMap the operator itself creates.)"""
    if any((body.get("data") or {}).get(key) for key in (PROGRESS_KEY, OUTCOME_KEY)):
        owner = _owner(body.meta.get("ownerReferences"))
        if owner is not None:
            memo.syncs.touch(_namespaced(namespace), owner)


ENDED = ("Succeeded", "Failed")
"""Pod phases after which the Job either ends (its own event says so at once) or starts another pod."""


def _namespaced(namespace: str | None) -> str:
    """kopf types `namespace` optional (cluster-scoped resources have none); everything watched here
    is namespaced."""
    if not namespace:
        raise kopf.PermanentError("a namespaced object without a namespace")
    return namespace


def _owner(refs: list[dict[str, Any]] | None) -> str | None:
    """The name of the evaluation among an object's owner references, if one is."""
    for ref in refs or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return str(ref["name"])
    return None


def _evaluation_of(pod_labels: dict[str, str]) -> str | None:
    """The evaluation a pod belongs to, by its label: the value is its name, unless the name was
    longer than a label value may be (it was cut and hashed to 63 characters: then None, and the
    Job's owner says)."""
    value = pod_labels.get(LABEL_EVALUATION)
    return value if value and len(value) < MAX_NAME else None


# ---- NejumiLeaderboards -------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, LEADERBOARD_PLURAL)
def leaderboard_readers(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[str, tuple[str, str, str]]:
    """namespace read → (leaderboard namespace, name, its selector as JSON) for each namespace a
    leaderboard reads: which boards an evaluation's change concerns, without an API call."""
    namespace = _namespaced(namespace)
    selector = json.dumps(spec.get("selector") or {}, sort_keys=True)
    read = {namespace, *(spec.get("namespaces") or [])}
    return {n: (namespace, name, selector) for n in read}


@functools.lru_cache(maxsize=1024)
def _selector(text: str) -> LabelSelector:
    """A board's selector as its index holds it (JSON), parsed once: an evaluation's every event
    would otherwise validate it again (with its CEL rules)."""
    return LabelSelector.model_validate(json.loads(text))


@kopf.on.resume(GROUP, VERSION, LEADERBOARD_PLURAL)
@kopf.on.create(GROUP, VERSION, LEADERBOARD_PLURAL)
@kopf.on.update(GROUP, VERSION, LEADERBOARD_PLURAL, field="spec")
async def leaderboard_changed(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    memo.leaderboards.touch((_namespaced(namespace), name))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def evaluation_seen(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """An evaluation was listed, changed or deleted: the status syncs start from it while it is
    unfinished (`syncs.StatusSyncs.remember`), and the leaderboards it concerns are computed
    again (debounced) when what they show of it changed (`fingerprint`). `memo.seen` keeps, per
    evaluation, only a hash of that and its labels (none, mostly): a few hundred bytes each."""
    readers: kopf.Index[str, tuple[str, str, str]] = kwargs["leaderboard_readers"]
    namespace = _namespaced(namespace)
    key = (namespace, name)
    labels = dict(body.meta.get("labels") or {})
    now = None if event.get("type") == "DELETED" else hash(fingerprint(body))
    if now is None or (
        is_finished(body.status) and body.status.get("observedGeneration") == body.meta.get("generation")
    ):
        memo.syncs.forget(namespace, name)
    else:  # what the next status sync starts from
        memo.syncs.remember(namespace, name, event["object"])
    before: tuple[int, tuple[tuple[str, str], ...]] | None = memo.seen.get(key)
    if now is None:
        memo.seen.pop(key, None)
    else:
        memo.seen[key] = (now, tuple(sorted(labels.items())))
    if before is not None and before[0] == now:
        return
    old_labels = dict(before[1]) if before is not None else labels
    for board_namespace, board, selector in readers.get(namespace, []):
        chosen = _selector(selector)
        if chosen.matches(labels) or chosen.matches(old_labels):
            memo.leaderboards.touch((board_namespace, board))
