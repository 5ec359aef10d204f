"""Run the real LeaderWorkerSet controller (sigs.k8s.io/lws) against the test control plane.

A model larger than one node is served by a leader and its workers started together as one group:
LeaderWorkerSet (LWS) creates them (a leader StatefulSet per LWS, a worker StatefulSet per group),
gives every pod the group's environment (``LWS_LEADER_ADDRESS``, ``LWS_GROUP_SIZE``,
``LWS_WORKER_INDEX``) and recreates the whole group when one of its pods fails; Kueue admits the
group as one Workload. What the operator relies on lives in LWS's code, so tests run the genuine
manager. Everything comes from the one pinned module version: the binary built by
``make lws-bin`` (the ``sigs.k8s.io/lws/cmd`` tool of ``tests/lws-bin/go.mod``) and the manifests
in the same module's ``config/`` (found through ``go mod download -json``), so they cannot drift
apart.

What a real install (``config/default``) does in-cluster, and what this harness does instead on
loopback:

- **CRD**: ``config/crd/bases`` as it is, plus the conversion-webhook patch of the CRD
  kustomization, with ``clientConfig`` ``url: https://127.0.0.1:<port>/convert`` instead of a
  Service (the CRD has one version, so the API server never actually calls it).
- **Webhooks**: ``config/webhook/manifests.yaml`` with the kustomization's JSON patches applied
  (they add ``objectSelector: leaderworkerset.sigs.k8s.io/name Exists`` to the Pod webhooks, so
  only pods of a group go through LWS), every ``clientConfig`` rewritten to
  ``url: https://127.0.0.1:<port><path>`` and ``caBundle`` set to a harness CA
  (``tests.cluster.certs``) that also issued the manager's serving certificate for 127.0.0.1.
- **Identity**: a client certificate for the user ``lws-controller-manager``, bound to LWS's own
  ClusterRoles from ``config/rbac`` (``role.yaml`` and the metrics ``auth_proxy_role.yaml``), named
  ``lws-...`` as kustomize's ``namePrefix`` would, so a missing permission shows up as it would in
  a cluster. CRD, RBAC and webhooks are installed as the admin (server-side apply).
- **Configuration**: the ``config.lws.x-k8s.io/v1alpha1`` Configuration of
  ``config/manager/controller_manager_config.yaml`` with leader election and internal certificate
  management off, and the webhook, health and metrics servers on free loopback ports (the metrics
  server makes its own self-signed certificate; the tests do not scrape it). No gang-scheduling
  provider: Kueue is what admits a group whole.

Ready means: ``/readyz`` answers, and a dry-run create of a LeaderWorkerSet passes through the API
server to LWS's mutating webhook (it comes back with ``spec.networkConfig.subdomainPolicy``, which
only the webhook sets). ``stop`` removes the webhook configurations first, so a stopped LWS never
blocks the creation of a LeaderWorkerSet or of a group's pods; the CRD stays.

Groups need the control plane's StatefulSet controller (``tests.cluster.controlplane.CONTROLLERS``).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import time
import urllib.request
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from tests.cluster.certs import CertificateAuthority
from tests.cluster.controlplane import REPO, ControlPlane, Process, StartupError, free_ports, wait_until
from tests.cluster.gomodules import apply, load_yaml, module_dir, wait_established

LWS_MODULE = "sigs.k8s.io/lws"
LWS_VERSION = "v0.7.0"  # tests/lws-bin/go.mod's
GROUP = "leaderworkerset.x-k8s.io"
API_VERSION = "v1"
KIND = "LeaderWorkerSet"
PLURAL = "leaderworkersets"
USER = "lws-controller-manager"
NAMESPACE = "lws-system"  # what config/default installs into (and the manager's default)
NAME_PREFIX = "lws-"  # what config/default's kustomization prefixes every object's name with
# LWS's ClusterRoles and their bindings (config/rbac), except leader election (off here).
RBAC_FILES = (
    ("role.yaml", "role_binding.yaml"),
    ("auth_proxy_role.yaml", "auth_proxy_role_binding.yaml"),  # authn/authz of /metrics
)

# Labels and environment LWS gives every pod of a group (api/leaderworkerset/v1/leaderworkerset_types.go).
SET_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LEADER_ADDRESS_ENV = "LWS_LEADER_ADDRESS"
GROUP_SIZE_ENV = "LWS_GROUP_SIZE"
WORKER_INDEX_ENV = "LWS_WORKER_INDEX"


class LwsMissing(RuntimeError):
    """The LWS binary has not been built (``make lws-bin``)."""


def find_lws() -> Path:
    """The lws binary: ``NEJUMI_LWS`` (exported by the Makefile), else the Makefile's cache."""
    env = os.environ.get("NEJUMI_LWS")
    binary = Path(env) if env else REPO / ".cache" / "lws-bin" / LWS_VERSION / "lws"
    if not os.access(binary, os.X_OK):
        raise LwsMissing(f"lws binary missing at {binary}: run `make lws-bin` first (~3 min cold)")
    return binary


def lws_source() -> Path:
    """The ``sigs.k8s.io/lws`` module's tree in the Go module cache (CRD, RBAC, webhooks)."""
    return module_dir(LWS_MODULE, LWS_VERSION, LwsMissing)


def install_crds(cluster: DynamicClient, timeout: float, conversion: dict[str, Any] | None = None) -> None:
    """LWS's CRD as the module ships it; ``conversion`` (a CRD ``spec.conversion``) where LWS's
    kustomization patches one in. Kueue's LWS integration needs the API present when it starts."""
    names = []
    for path in sorted((lws_source() / "config" / "crd" / "bases").glob("*.yaml")):
        for crd in load_yaml(path):
            if conversion is not None:
                crd["spec"]["conversion"] = conversion
            apply(cluster, crd)
            names.append(crd["metadata"]["name"])
    wait_established(cluster, names, timeout, "LeaderWorkerSet")


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add``/``replace``/``remove`` (what kustomize's patches of LWS's config use)."""
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target: Any = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = (len(target) if last == "-" else int(last)) if isinstance(target, list) else last
        if op["op"] == "remove":
            del target[key]
        elif op["op"] == "replace" or not isinstance(target, list):
            target[key] = copy.deepcopy(op["value"])
        else:  # add into a list
            target.insert(key, copy.deepcopy(op["value"]))
    return out


@dataclass
class Lws:
    """The LWS manager for ``control_plane``, with its state (certs, config, log) in ``workdir``.

    Use as a context manager (or call ``start``/``stop``), like ``Kueue``.
    """

    control_plane: ControlPlane
    workdir: Path
    binary: Path | None = None
    tie_to_parent: bool = True
    process: Process | None = None
    startup_seconds: float | None = None
    webhook_port: int = 0
    health_port: int = 0
    metrics_port: int = 0
    _webhook_configs: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self._finalizer: weakref.finalize[Any, Lws] | None = None

    @property
    def log_path(self) -> Path:
        """LWS's log (stdout and stderr)."""
        return self.workdir / "logs" / "lws.log"

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Lws:
        """Install the CRD, RBAC and webhooks, run the manager, and return once its webhooks answer."""
        t0 = time.monotonic()
        binary = self.binary or find_lws()
        self.source = lws_source()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "webhook-certs").mkdir(exist_ok=True)
        self.webhook_port, self.health_port, self.metrics_port = free_ports(3)
        ca = CertificateAuthority("nejumi-lws-webhook-ca")
        self.ca_bundle = base64.b64encode(ca.pair.cert_pem).decode()
        ca.serving("lws-webhook", ["localhost"], ["127.0.0.1"]).write(self.workdir / "webhook-certs", "tls")

        api = self.control_plane.api_client()
        try:
            cluster = DynamicClient(api)
            install_crds(cluster, timeout, self._conversion())
            self._install_rbac(cluster)
            kubeconfig = self.control_plane.write_kubeconfig(self.workdir / "lws.kubeconfig", USER)
            self._launch(binary, self._write_config(), kubeconfig)
            self._wait_ready(timeout)
            self._install_webhooks(cluster)
            self._wait_webhooks(cluster, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            api.close()
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Remove the webhook configurations (so nothing calls a dead endpoint), then stop LWS.

        The CRD and the LeaderWorkerSets stay; safe to call twice.
        """
        if self._webhook_configs:
            with self.control_plane.api_client() as api:
                cluster = DynamicClient(api)
                for kind, name in self._webhook_configs:
                    with contextlib.suppress(NotFoundError):
                        cluster.resources.get(
                            api_version="admissionregistration.k8s.io/v1", kind=kind
                        ).delete(name)
            self._webhook_configs.clear()
        if self.process is not None:
            self.process.stop()
        if self._finalizer is not None:
            self._finalizer.detach()

    def __enter__(self) -> Lws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- installation -------------------------------------------------------------------------

    def _conversion(self) -> dict[str, Any] | None:
        """The CRD's ``spec.conversion`` when LWS's CRD kustomization patches one in."""
        crd_dir = self.source / "config" / "crd"
        patches = yaml.safe_load((crd_dir / "kustomization.yaml").read_text()).get("patches") or []
        if not any(p["path"].startswith("patches/webhook_in_") for p in patches):
            return None
        return {
            "strategy": "Webhook",
            "webhook": {
                "clientConfig": {"url": self._url("/convert"), "caBundle": self.ca_bundle},
                "conversionReviewVersions": ["v1"],
            },
        }

    def _install_rbac(self, cluster: DynamicClient) -> None:
        """LWS's ClusterRoles, bound to the manager's user."""
        apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        rbac_dir = self.source / "config" / "rbac"
        for role_file, binding_file in RBAC_FILES:
            for doc in load_yaml(rbac_dir / role_file) + load_yaml(rbac_dir / binding_file):
                doc["metadata"]["name"] = NAME_PREFIX + doc["metadata"]["name"]
                if "roleRef" in doc:
                    doc["roleRef"]["name"] = NAME_PREFIX + doc["roleRef"]["name"]
                    doc["subjects"] = [
                        {"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}
                    ]
                apply(cluster, doc)

    def _install_webhooks(self, cluster: DynamicClient) -> None:
        """LWS's webhook configurations with its kustomization's patches, pointed at loopback."""
        webhook_dir = self.source / "config" / "webhook"
        kustomization = yaml.safe_load((webhook_dir / "kustomization.yaml").read_text())
        patches = {
            (p["target"]["kind"], p["target"]["name"]): yaml.safe_load((webhook_dir / p["path"]).read_text())
            for p in kustomization.get("patches") or []
        }
        for config in load_yaml(webhook_dir / "manifests.yaml"):
            config = json_patch(config, patches.get((config["kind"], config["metadata"]["name"]), []))
            config["metadata"]["name"] = NAME_PREFIX + config["metadata"]["name"]
            for webhook in config["webhooks"]:
                path = webhook["clientConfig"]["service"]["path"]
                webhook["clientConfig"] = {"url": self._url(path), "caBundle": self.ca_bundle}
            apply(cluster, config)
            self._webhook_configs.append((config["kind"], config["metadata"]["name"]))

    # ---- the manager process ------------------------------------------------------------------

    def _write_config(self) -> Path:
        config = {
            "apiVersion": "config.lws.x-k8s.io/v1alpha1",
            "kind": "Configuration",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "metrics": {"bindAddress": f"127.0.0.1:{self.metrics_port}"},
            "webhook": {
                "host": "127.0.0.1",
                "port": self.webhook_port,
                "certDir": str(self.workdir / "webhook-certs"),
            },
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "clientConnection": {"qps": 50, "burst": 100},
        }
        path = self.workdir / "controller_manager_config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _launch(self, binary: Path, config: Path, kubeconfig: Path) -> None:
        argv = [str(binary), f"--config={config}", f"--kubeconfig={kubeconfig}", "--zap-log-level=info"]
        self.process = Process("lws", argv, self.log_path)
        self.process.start(tie_to_parent=self.tie_to_parent)
        if self.tie_to_parent:  # stopped at interpreter exit too (the kernel kills it if we die)
            self._finalizer = weakref.finalize(self, self.process.stop)

    def _wait_ready(self, timeout: float) -> None:
        proc = self.process
        assert proc is not None

        def ready() -> bool:
            if not proc.alive():
                raise StartupError(f"lws exited with {proc.popen and proc.popen.returncode}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as resp:
                return resp.status == 200

        try:
            wait_until(ready, timeout, "LWS /readyz", interval=0.1)
        except (TimeoutError, StartupError) as exc:
            raise StartupError(f"{exc}\n--- {proc.log_path} (tail) ---\n{proc.log_tail()}") from None

    def _wait_webhooks(self, cluster: DynamicClient, timeout: float) -> None:
        """A dry-run create of a LeaderWorkerSet comes back defaulted by LWS's mutating webhook
        (its validating one runs too): the webhooks are registered and reachable."""
        sets = cluster.resources.get(api_version=f"{GROUP}/{API_VERSION}", kind=KIND)
        template = {"spec": {"containers": [{"name": "probe", "image": "probe", "command": ["true"]}]}}
        probe = {
            "apiVersion": f"{GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {"name": "nejumi-lws-readiness-probe", "namespace": NAMESPACE},
            "spec": {"leaderWorkerTemplate": {"size": 1, "workerTemplate": template}},
        }

        def answered() -> bool:
            created = sets.create(body=probe, dry_run="All")
            return bool((created.spec.networkConfig or {}).get("subdomainPolicy"))

        try:
            wait_until(answered, timeout, "LWS webhooks (dry-run create)", interval=0.2)
        except TimeoutError as exc:
            assert self.process is not None
            raise StartupError(f"{exc}\n--- {self.log_path} (tail) ---\n{self.process.log_tail()}") from None

    def _url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.webhook_port}{path}"
