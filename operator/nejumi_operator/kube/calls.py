"""Thin API calls. Everything returns plain camelCase dicts, as the API serves them (and as kopf
hands bodies to handlers), so the pure code in `reconcile` sees one shape. Reads parse the
response's JSON themselves (`_preload_content=False`): the client's typed models (a V1Pod is some
hundred objects, each field validated) were built only to be turned back into dicts, which cost a
status sync more CPU and transient memory than the rest of it."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any, cast

from kubernetes.client import (
    ApiClient,
    BatchV1Api,
    CoreV1Api,
    CustomObjectsApi,
    RbacAuthorizationV1Api,
    V1DeleteOptions,
    V1Preconditions,
)
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
log = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed since it was read (optimistic concurrency): read again and retry."""


def _read(response: Any) -> Any:
    """The JSON of a response asked for with `_preload_content=False`; the connection goes back."""
    try:
        return json.loads(cast(bytes, response.data) or b"{}")
    finally:
        response.release_conn()


def _items(response: Any) -> list[dict[str, Any]]:
    return list(_read(response).get("items") or [])


_KINDS: dict[tuple[str, str], tuple[type, str]] = {
    ("batch/v1", "Job"): (BatchV1Api, "job"),
    ("v1", "PersistentVolumeClaim"): (CoreV1Api, "persistent_volume_claim"),
    ("v1", "ServiceAccount"): (CoreV1Api, "service_account"),
    ("v1", "ConfigMap"): (CoreV1Api, "config_map"),
    ("rbac.authorization.k8s.io/v1", "Role"): (RbacAuthorizationV1Api, "role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): (RbacAuthorizationV1Api, "role_binding"),
}
"""The kinds the operator creates, with their typed client and method stem."""
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
"""LeaderWorkerSet (sigs.k8s.io/lws): a multi-node serve stage (`reconcile.group`)."""


def create_or_get(api: ApiClient, namespace: str, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a namespaced object (one of `_KINDS`, or a LeaderWorkerSet); if it exists already (409:
    a retried handler, a later generation, an operator restart), return the existing one unchanged.
    Returns (object, created)."""
    name = obj["metadata"]["name"]
    if obj["kind"] == "LeaderWorkerSet":
        custom = CustomObjectsApi(api)
        where = (LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL)

        def create() -> Any:
            return custom.create_namespaced_custom_object(*where, dict(obj), _preload_content=False)

        def read() -> Any:
            return custom.get_namespaced_custom_object(*where, name, _preload_content=False)
    else:
        group, stem = _KINDS[(obj["apiVersion"], obj["kind"])]
        client = group(api)

        def create() -> Any:
            return getattr(client, f"create_namespaced_{stem}")(namespace, dict(obj), _preload_content=False)

        def read() -> Any:
            return getattr(client, f"read_namespaced_{stem}")(name, namespace, _preload_content=False)

    try:
        return _read(create()), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return _read(read()), False


def labelled_groups(api: ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The LeaderWorkerSets matching a label selector; none where LWS is not installed."""
    try:
        found = CustomObjectsApi(api).list_namespaced_custom_object(
            LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL, label_selector=selector, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return _items(found)


def release_group(
    api: ApiClient, namespace: str, name: str, patch: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Merge-patch a LeaderWorkerSet (`reconcile.group.release_patch`); None when it is gone."""
    try:
        patched = CustomObjectsApi(api).patch_namespaced_custom_object(
            LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL, name, dict(patch), _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(_read(patched))


def delete_group(api: ApiClient, namespace: str, name: str, uid: str) -> bool:
    """Delete that LeaderWorkerSet (only the object with `uid`), its pods in the background. False
    when it is already gone."""
    body = V1DeleteOptions(propagation_policy="Background", preconditions=V1Preconditions(uid=uid))
    try:
        CustomObjectsApi(api).delete_namespaced_custom_object(
            LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL, name, body=body
        )
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
"""Accept header that makes the API server answer with an object's metadata only."""


def secret_labels(api: ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's labels, or None when it does not exist. Asks for metadata only (`METADATA_ONLY`):
    the operator never receives a Secret's data."""
    try:
        response = CoreV1Api(api).read_namespaced_secret(
            name, namespace, _preload_content=False, _headers={"Accept": METADATA_ONLY}
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    meta = json.loads(cast(bytes, response.data) or b"{}").get("metadata") or {}
    return dict(meta.get("labels") or {})


def read_configmap(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _read(CoreV1Api(api).read_namespaced_config_map(name, namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status in (403, 404):  # gone, or not readable: no progress to show, nothing wrong
            return None
        raise


def read_job(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _read(BatchV1Api(api).read_namespaced_job(name, namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def labelled_jobs(api: ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The Jobs matching a label selector (the caller checks who owns them)."""
    return _items(
        BatchV1Api(api).list_namespaced_job(namespace, label_selector=selector, _preload_content=False)
    )


def delete_job(api: ApiClient, namespace: str, name: str, uid: str) -> bool:
    """Delete that Job — only the object with `uid` (a precondition: never a namesake made since) —
    and its pods in the background. False when it is already gone."""
    body = V1DeleteOptions(propagation_policy="Background", preconditions=V1Preconditions(uid=uid))
    try:
        BatchV1Api(api).delete_namespaced_job(name, namespace, body=body)
    except ApiException as exc:
        if exc.status in (404, 409):  # gone, or the name now belongs to another object
            return False
        raise
    return True


def job_pods(api: ApiClient, namespace: str, job_name: str) -> list[dict[str, Any]]:
    selector = f"batch.kubernetes.io/job-name={job_name}"
    return _items(
        CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
    )


def read_evaluation(api: ApiClient, namespace: str, name: str, plural: str = PLURAL) -> dict[str, Any] | None:
    """A NejumiEvaluation (or, with `plural`, another kind of the group), None when it is gone."""
    try:
        found = CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        return cast(dict[str, Any], found)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_status(
    api: ApiClient,
    namespace: str,
    name: str,
    status: Mapping[str, Any],
    resource_version: str,
    plural: str = PLURAL,
) -> dict[str, Any]:
    """Merge-patch the `/status` subresource, only if the object is still at `resource_version`
    (else `Conflict`), so a writer never overwrites a status computed from newer observations."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    try:
        patched = CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE_PATCH
        )
        return cast(dict[str, Any], patched)
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(str(exc.reason)) from None
        raise


_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSIONS = ("v1beta2", "v1beta1")  # Kueue ≥ 0.15 serves both; older ones only v1beta1


def job_workload(api: ApiClient, namespace: str, job_uid: str) -> dict[str, Any] | None:
    """Kueue's Workload for the Job or LeaderWorkerSet (label `kueue.x-k8s.io/job-uid`), or None:
    none yet, Kueue not installed, or no RBAC to read it (one warning)."""
    return job_workloads(api, namespace, [job_uid]).get(job_uid)


def job_workloads(api: ApiClient, namespace: str, job_uids: Collection[str]) -> dict[str, dict[str, Any]]:
    """Kueue's Workloads of these Jobs, by Job UID, in one list call (none for a Job that has none
    yet, and none at all when Kueue is not installed or the operator may not read them: one
    warning)."""
    if not job_uids:
        return {}
    custom = CustomObjectsApi(api)
    selector = f"{KUEUE_GROUP}/job-uid in ({','.join(sorted(job_uids))})"
    for version in KUEUE_VERSIONS:
        try:
            found = custom.list_namespaced_custom_object(
                KUEUE_GROUP, version, namespace, "workloads", label_selector=selector, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                continue  # this version (or Kueue) is not served
            if exc.status in (401, 403):
                _warn_once(
                    "list-workloads",
                    "cannot list Kueue Workloads (%s %s): queued evaluations do not say why they wait",
                    exc.status,
                    exc.reason,
                )
                return {}
            raise
        by_uid: dict[str, dict[str, Any]] = {}
        for item in _items(found):
            uid = ((item.get("metadata") or {}).get("labels") or {}).get(f"{KUEUE_GROUP}/job-uid")
            if isinstance(uid, str) and uid in job_uids:
                by_uid.setdefault(uid, item)
        return by_uid
    return {}


def labelled_pods(api: ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The pods matching a label selector (the caller checks who owns them)."""
    return _items(
        CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
    )


def job_events(api: ApiClient, namespace: str, job_name: str, job_uid: str | None) -> list[dict[str, Any]]:
    """The Job's core/v1 Events (e.g. the Job controller's FailedCreate: why no pod can be created).
    Without RBAC `list` on events the operator cannot see them: [] and one warning."""
    selector = f"involvedObject.kind=Job,involvedObject.name={job_name}"
    if job_uid:
        selector += f",involvedObject.uid={job_uid}"
    try:
        events = CoreV1Api(api).list_namespaced_event(
            namespace, field_selector=selector, _preload_content=False
        )
    except ApiException as exc:
        if exc.status in (401, 403):
            _warn_once(
                "list-events",
                "cannot list Events (%s %s): pod-creation failures of Jobs are not reported; "
                "grant the operator `list` on core events",
                exc.status,
                exc.reason,
            )
            return []
        raise
    return _items(events)


def create_event(api: ApiClient, namespace: str, event: Mapping[str, Any]) -> bool:
    """Post a core/v1 Event; False (and a log line) when the API refuses it: an Event is never worth
    failing a status write for."""
    try:
        # A plain dict is what the API takes (the client serialises it as it is).
        CoreV1Api(api).create_namespaced_event(namespace, dict(event))  # type: ignore[arg-type]
    except ApiException as exc:
        where = f"{namespace}/{event.get('involvedObject', {}).get('name', '')}"
        if exc.status in (401, 403):
            _warn_once("create-events", "%s: cannot post Events (%s %s)", where, exc.status, exc.reason)
        else:
            log.warning(
                "%s: posting Event %s failed: %s %s", where, event.get("reason"), exc.status, exc.reason
            )
        return False
    return True
