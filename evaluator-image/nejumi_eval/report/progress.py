"""Publishing live progress to the evaluation's ConfigMap (the contract: `api.v1alpha1.progress`).

Only inside a pod the operator made: it sets `NEJUMI_PROGRESS_CONFIGMAP` and gives the pod a
ServiceAccount whose Role allows `patch` on that one ConfigMap. The request is a JSON merge patch
of one key, authenticated with the pod's projected token (read anew each time: the kubelet rotates
it) and verified against the cluster CA the kubelet mounts beside it. Progress is a courtesy: a
failed write is logged once and never fails or slows the evaluation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx

from nejumi_eval.api.v1alpha1.contract import POD_NAME_ENV, POD_NAMESPACE_ENV, PROGRESS_CONFIGMAP_ENV
from nejumi_eval.api.v1alpha1.progress import PROGRESS_KEY, Counter, ProgressReport, Step

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_S = 5.0


class ProgressPublisher:
    """Writes `ProgressReport`s to `namespaces/<ns>/configmaps/<name>`."""

    def __init__(self, url: str, pod: str, token_file: Path, ca_file: Path) -> None:
        self.url = url
        self.pod = pod
        self.token_file = token_file
        self._client = httpx.AsyncClient(verify=str(ca_file), timeout=TIMEOUT_S)
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
        pod = environ.get(POD_NAME_ENV) or environ.get("HOSTNAME", "")
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
        body = {"data": {PROGRESS_KEY: self.report(step, counts).model_dump_json(by_alias=True)}}
        try:
            token = self.token_file.read_text().strip()
            response = await self._client.patch(
                self.url,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"},
            )
            response.raise_for_status()
        except (OSError, httpx.HTTPError) as exc:
            if not self._warned:
                log.warning("progress: could not write %s (%s); the evaluation goes on", self.url, exc)
                self._warned = True
            return False
        self.sent += 1
        return True

    async def aclose(self) -> None:
        await self._client.aclose()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
