"""Publishing live progress to the evaluation's ConfigMap (the contract: `api.v1alpha1.progress`).

Only inside a pod the operator made: it sets `NEJUMI_PROGRESS_CONFIGMAP` and gives the pod a
ServiceAccount whose Role allows `patch` on that one ConfigMap. The request is a JSON merge patch
of one key, authenticated with the pod's projected token (read anew each time: the kubelet rotates
it) and verified against the cluster CA the kubelet mounts beside it. Progress is a courtesy: a
failed write is logged once and never fails or slows the evaluation.

A serving group's leader also writes its serve stage's outcome there (`publish_outcome`, another
key of the same ConfigMap): that is no courtesy (the operator learns the stage ended only from it),
so it is retried, and every failure is logged.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx

from nejumi_eval.api.v1alpha1.contract import POD_NAME_ENV, POD_NAMESPACE_ENV, PROGRESS_CONFIGMAP_ENV
from nejumi_eval.api.v1alpha1.progress import (
    OUTCOME_KEY,
    PROGRESS_KEY,
    Counter,
    ProgressReport,
    StageOutcome,
    Step,
)
from nejumi_eval.runtime.client.retry import Retry, RetryPolicy, retry_sync

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_S = 5.0
OUTCOME_RETRY = RetryPolicy(max_attempts=5, initial_delay_s=1.0, max_delay_s=8.0, jitter=0.0)
"""An outcome is tried 5 times, waiting 1, 2, 4, 8 s between tries, whatever the failure: an API
server restarting, a connection dropped, a token being rotated."""


class ProgressPublisher:
    """Writes `ProgressReport`s to `namespaces/<ns>/configmaps/<name>`."""

    def __init__(self, url: str, pod: str, token_file: Path, ca_file: Path) -> None:
        self.url = url
        self.pod = pod
        self.token_file = token_file
        self.ca_file = ca_file
        self._client = httpx.AsyncClient(verify=_verify(ca_file), timeout=TIMEOUT_S)
        self._warned = False
        self.sent = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ProgressPublisher | None:
        """The publisher the pod's environment describes, or None (not in a pod the operator made)."""
        name = environ.get(PROGRESS_CONFIGMAP_ENV)
        host = environ.get("KUBERNETES_SERVICE_HOST")
        if not name or not host:
            return None
        namespace = environ.get(POD_NAMESPACE_ENV) or _read(SERVICE_ACCOUNT_DIR / "namespace")
        pod = pod_name(environ)
        if not namespace or not pod:
            log.warning(
                "progress: %s is set but the pod's namespace or name is unknown", PROGRESS_CONFIGMAP_ENV
            )
            return None
        token, ca = SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt"
        if not ca.is_file():
            log.warning("progress: no ServiceAccount CA at %s; progress is not published", ca)
            return None
        host = f"[{host}]" if ":" in host else host
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        url = f"https://{host}:{port}/api/v1/namespaces/{namespace}/configmaps/{name}"
        return cls(url, pod, token, ca)

    def report(self, step: Step, counts: Mapping[str, tuple[int, int]]) -> ProgressReport:
        counters = [Counter(name=k, done=min(d, t), total=t) for k, (d, t) in counts.items()]
        return ProgressReport(pod=self.pod, step=step, counters=counters, updated_at=datetime.now(UTC))

    async def publish(self, step: Step, counts: Mapping[str, tuple[int, int]]) -> bool:
        """Write one report; False (logged once) when the API server did not take it."""
        body = _merge_patch(PROGRESS_KEY, self.report(step, counts).model_dump_json(by_alias=True))
        try:
            response = await self._client.patch(self.url, json=body, headers=self._headers())
            response.raise_for_status()
        except (OSError, httpx.HTTPError) as exc:
            if not self._warned:
                log.warning("progress: could not write %s (%s); the evaluation goes on", self.url, exc)
                self._warned = True
            return False
        self.sent += 1
        return True

    def publish_outcome(self, outcome: StageOutcome, retry: RetryPolicy = OUTCOME_RETRY) -> bool:
        """Write a serving group leader's `StageOutcome` under `OUTCOME_KEY`, leaving the progress
        key as it is (a merge patch of that one key), retried by the evaluator's one retry loop.
        Synchronous: the leader writes it after its serve stage's event loop ended, and while it
        holds. Every failure is logged (a warning per try, an error at the last); False when no try
        got through."""
        body = _merge_patch(OUTCOME_KEY, outcome.model_dump_json(by_alias=True))

        def failed(number: int, failure: Retry, level: int = logging.WARNING) -> None:
            log.log(
                level,
                "serve outcome: could not write %s (try %d of %d): %s",
                self.url,
                number,
                retry.max_attempts,
                failure.reason,
            )

        def exhausted(number: int, failure: Retry) -> bool:
            failed(number, failure, logging.ERROR)
            return False

        with httpx.Client(verify=_verify(self.ca_file), timeout=TIMEOUT_S) as client:

            def attempt(_number: int) -> bool | Retry:
                try:
                    client.patch(self.url, json=body, headers=self._headers()).raise_for_status()
                except (OSError, httpx.HTTPError) as exc:
                    return Retry(str(exc))
                return True

            return retry_sync(retry, attempt, exhausted=exhausted, on_retry=lambda n, _delay, f: failed(n, f))

    def _headers(self) -> dict[str, str]:
        """The pod's token read anew (the kubelet rotates it), and the patch's type."""
        token = self.token_file.read_text().strip()
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"}

    async def aclose(self) -> None:
        await self._client.aclose()


def pod_name(environ: Mapping[str, str]) -> str:
    """This pod's name: the downward API's, else the hostname (a pod's, unless it set another)."""
    return environ.get(POD_NAME_ENV) or environ.get("HOSTNAME", "")


def _verify(ca_file: Path) -> ssl.SSLContext:
    """TLS that trusts the cluster's CA alone."""
    return ssl.create_default_context(cafile=str(ca_file))


def _merge_patch(key: str, value: str) -> dict[str, dict[str, str]]:
    """A JSON merge patch of one ConfigMap key: every other key stays as it is."""
    return {"data": {key: value}}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
