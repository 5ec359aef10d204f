"""Thin API calls. Everything returns plain camelCase dicts, as the API serves them (and as kopf
hands bodies to handlers), so the pure code in `reconcile` sees one shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_operator.api.names import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"


class Conflict(Exception):
    """The object changed since it was read (optimistic concurrency): read again and retry."""


def _plain(api: ApiClient, obj: Any) -> dict[str, Any]:
    return api.sanitize_for_serialization(obj)


def create_or_get_job(api: ApiClient, namespace: str, job: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the Job; if it exists already (409: a retried handler), return the existing one.
    Returns (job, created)."""
    batch = BatchV1Api(api)
    try:
        return _plain(api, batch.create_namespaced_job(namespace, dict(job))), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return _plain(api, batch.read_namespaced_job(job["metadata"]["name"], namespace)), False


def read_job(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _plain(api, BatchV1Api(api).read_namespaced_job(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def job_pods(api: ApiClient, namespace: str, job_name: str) -> list[dict[str, Any]]:
    selector = f"batch.kubernetes.io/job-name={job_name}"
    pods = CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
    return [_plain(api, p) for p in pods.items]


def read_evaluation(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_status(
    api: ApiClient, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
) -> dict[str, Any]:
    """Merge-patch the `/status` subresource, only if the object is still at `resource_version`
    (else `Conflict`), so a writer never overwrites a status computed from newer observations."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    try:
        return CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE_PATCH
        )
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(str(exc.reason)) from None
        raise
