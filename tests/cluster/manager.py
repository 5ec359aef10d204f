"""A controller manager built from a Go module, run as a local process against the test control
plane, with its webhooks on loopback: what the Kueue and LeaderWorkerSet harnesses share.

Both are controller-runtime managers installed the same way, from the one pinned module version
(the binary its make target builds, and the manifests in the same module's ``config/``, found
through ``go mod download -json``, so they cannot drift apart). What a real install does
in-cluster, and what ``Manager`` does instead on loopback:

- **Serving certificate**: a fresh harness CA (``tests.cluster.certs``) issues the manager's
  serving certificate for 127.0.0.1, written to ``workdir/webhook-certs`` (and any other folder of
  ``CERT_DIRS``); its certificate is every ``caBundle``.
- **CRDs**: ``<CRD_DIR>/bases`` as they are, plus the conversion webhook on the CRDs that the CRD
  kustomization patches one into (``patches/webhook_in_*``, not those commented out), with
  ``clientConfig`` ``url: https://127.0.0.1:<port>/convert`` instead of a Service.
- **Identity**: a client certificate for ``USER``, bound to the module's own roles from
  ``RBAC_DIR`` (``RBAC_FILES``; leader election's are left out, it is off), named
  ``<NAME_PREFIX>...`` as kustomize's ``namePrefix`` would, so a missing permission shows up as it
  would in a cluster; a namespaced role goes into ``NAMESPACE``.
- **Webhooks**: the subclass's webhook configurations (``_webhook_configurations``), renamed the
  same way, with every ``clientConfig`` rewritten to ``url: https://127.0.0.1:<port><path>`` and
  the harness CA as ``caBundle``.
- **Configuration**: the manager's Configuration file (``_config``) with leader election and
  internal certificate management off, and the webhook, health and metrics servers on free
  loopback ports.

Everything is installed as the admin (server-side apply, so a restart on the same control plane
updates it). Ready means: ``/readyz`` answers (the webhook server listens), and the subclass's
dry-run creates pass through the API server to the manager's webhooks (``_webhooks_answer``).
``stop`` removes the webhook configurations first, so a stopped manager never blocks the creations
its webhooks intercept; the CRDs stay.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from tests.cluster.certs import CertificateAuthority
from tests.cluster.controlplane import REPO, ControlPlane, Process, StartupError, free_ports, wait_until
from tests.cluster.gomodules import apply, install_crds, load_yaml, module_dir


@contextlib.contextmanager
def installing(control_plane: ControlPlane, stop: Callable[[], None]) -> Iterator[DynamicClient]:
    """The admin's client for a harness's ``start`` (closed after): a start that fails or is
    interrupted calls ``stop``, so nothing it already launched or installed outlives it."""
    api = control_plane.api_client()
    try:
        yield DynamicClient(api)
    except BaseException:
        stop()
        raise
    finally:
        api.close()


def startup_error(exc: BaseException, proc: Process) -> StartupError:
    """``exc`` as a StartupError quoting the tail of ``proc``'s log."""
    return StartupError(f"{exc}\n--- {proc.log_path} (tail) ---\n{proc.log_tail()}")


def wait_ready(proc: Process, port: int, timeout: float, what: str, interval: float) -> None:
    """``proc``'s health server answers ``/readyz`` on loopback ``port``; a StartupError with the
    tail of its log if the process exits first, or on timeout."""

    def ready() -> bool:
        if not proc.alive():
            raise StartupError(f"{proc.name} exited with {proc.popen and proc.popen.returncode}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200

    try:
        wait_until(ready, timeout, f"{what} /readyz", interval=interval)
    except (TimeoutError, StartupError) as exc:
        raise startup_error(exc, proc) from None


@dataclass
class Manager:
    """A manager for ``control_plane``, with its state (certs, config, log) in ``workdir``.

    Use as a context manager (or call ``start``/``stop``), like ``ControlPlane``. A subclass names
    its module and binary (the class constants below), and supplies its Configuration
    (``_config``), its webhook configurations (``_webhook_configurations``) and the dry-run check
    that they answer (``_webhooks_answer``).
    """

    NAME: ClassVar[str]  # the binary, process, log (logs/<NAME>.log) and kubeconfig name
    TITLE: ClassVar[str]  # in messages
    MODULE: ClassVar[str]
    VERSION: ClassVar[str]
    BINARY_ENV: ClassVar[str]  # names the binary (exported by the Makefile)
    MISSING: ClassVar[type[Exception]]  # raised when the binary or the module is not there
    USER: ClassVar[str]  # the manager's client-certificate user
    NAMESPACE: ClassVar[str]  # the manager's own namespace
    NAME_PREFIX: ClassVar[str]  # what config/default's kustomization prefixes every object's name with
    CRD_DIR: ClassVar[str]  # in the module: bases/ and the kustomization with the conversion patches
    RBAC_DIR: ClassVar[str]  # in the module
    RBAC_FILES: ClassVar[tuple[tuple[str, str], ...]]  # (role, its binding) in RBAC_DIR
    CONFIG_API_VERSION: ClassVar[str]  # of the Configuration
    CERT_DIRS: ClassVar[tuple[str, ...]] = ("webhook-certs",)  # folders in workdir with tls.{crt,key}

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
        self._finalizer: weakref.finalize[Any, Manager] | None = None

    @classmethod
    def find_binary(cls) -> Path:
        """The binary: ``BINARY_ENV`` (exported by the Makefile), else the Makefile's cache."""
        env = os.environ.get(cls.BINARY_ENV)
        binary = Path(env) if env else REPO / ".cache" / f"{cls.NAME}-bin" / cls.VERSION / cls.NAME
        if not os.access(binary, os.X_OK):
            raise cls.MISSING(
                f"{cls.NAME} binary missing at {binary}: run `make {cls.NAME}-bin` first (~3 min cold)"
            )
        return binary

    @property
    def log_path(self) -> Path:
        """The manager's log (stdout and stderr)."""
        return self.workdir / "logs" / f"{self.NAME}.log"

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Self:
        """Install CRDs, RBAC and webhooks, run the manager, and return once its webhooks answer."""
        t0 = time.monotonic()
        binary = self.binary or self.find_binary()
        self.source = module_dir(self.MODULE, self.VERSION, self.MISSING)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.webhook_port, self.health_port, self.metrics_port = free_ports(3)
        ca = CertificateAuthority(f"nejumi-{self.NAME}-webhook-ca")
        self.ca_bundle = base64.b64encode(ca.pair.cert_pem).decode()
        serving = ca.serving(f"{self.NAME}-webhook", ["localhost"], ["127.0.0.1"])
        for folder in self.CERT_DIRS:
            (self.workdir / folder).mkdir(exist_ok=True)
            serving.write(self.workdir / folder, "tls")

        with installing(self.control_plane, self.stop) as cluster:
            self._install_crds(cluster, timeout)
            self._install_rbac(cluster)
            kubeconfig = self.workdir / f"{self.NAME}.kubeconfig"
            self.control_plane.write_kubeconfig(kubeconfig, self.USER)
            self._launch(binary, self._write_config(), kubeconfig)
            self._wait_ready(timeout)
            self._install_webhooks(cluster)
            self._wait_webhooks(cluster, timeout)
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Remove the webhook configurations (so nothing calls a dead endpoint), then stop the
        manager. The CRDs and the manager's objects stay; safe to call twice."""
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- installation -------------------------------------------------------------------------

    def _install_crds(self, cluster: DynamicClient, timeout: float) -> None:
        """The module's CRDs, with the conversion webhook where its CRD kustomization enables one."""
        crd_dir = self.source / self.CRD_DIR
        # The conversion patches the kustomization lists (not those commented out), e.g. workloads.
        converted = {
            doc["metadata"]["name"]
            for entry in yaml.safe_load((crd_dir / "kustomization.yaml").read_text()).get("patches") or []
            if entry["path"].startswith("patches/webhook_in_")
            for doc in load_yaml(crd_dir / entry["path"])
        }
        conversion = {
            "strategy": "Webhook",
            "webhook": {
                "clientConfig": {"url": self._url("/convert"), "caBundle": self.ca_bundle},
                "conversionReviewVersions": ["v1"],
            },
        }
        install_crds(cluster, [crd_dir / "bases"], timeout, self.TITLE, dict.fromkeys(converted, conversion))

    def _install_rbac(self, cluster: DynamicClient) -> None:
        """The module's roles (a namespaced one in ``NAMESPACE``), bound to the manager's user."""
        apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.NAMESPACE}})
        rbac_dir = self.source / self.RBAC_DIR
        for role_file, binding_file in self.RBAC_FILES:
            for doc in load_yaml(rbac_dir / role_file) + load_yaml(rbac_dir / binding_file):
                doc["metadata"]["name"] = self.NAME_PREFIX + doc["metadata"]["name"]
                if "namespace" in doc["metadata"]:  # `system`, which config/default renames
                    doc["metadata"]["namespace"] = self.NAMESPACE
                if "roleRef" in doc:
                    doc["roleRef"]["name"] = self.NAME_PREFIX + doc["roleRef"]["name"]
                    doc["subjects"] = [
                        {"kind": "User", "name": self.USER, "apiGroup": "rbac.authorization.k8s.io"}
                    ]
                apply(cluster, doc)

    def _install_webhooks(self, cluster: DynamicClient) -> None:
        """The manager's webhook configurations, pointed at the manager on loopback."""
        for config in self._webhook_configurations():
            config["metadata"]["name"] = self.NAME_PREFIX + config["metadata"]["name"]
            for webhook in config["webhooks"]:
                path = webhook["clientConfig"]["service"]["path"]
                webhook["clientConfig"] = {"url": self._url(path), "caBundle": self.ca_bundle}
            apply(cluster, config)
            self._webhook_configs.append((config["kind"], config["metadata"]["name"]))

    def _webhook_configurations(self) -> Iterator[dict[str, Any]]:
        """The module's webhook configurations to install, as the module names them, their
        ``clientConfig`` still a Service's."""
        raise NotImplementedError

    # ---- the manager process ------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        """The manager's Configuration; a subclass adds its own settings."""
        return {
            "apiVersion": self.CONFIG_API_VERSION,
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

    def _write_config(self) -> Path:
        path = self.workdir / "controller_manager_config.yaml"
        path.write_text(yaml.safe_dump(self._config()))
        return path

    def _argv(self, binary: Path, config: Path, kubeconfig: Path) -> list[str]:
        return [str(binary), f"--config={config}", f"--kubeconfig={kubeconfig}", "--zap-log-level=info"]

    def _launch(self, binary: Path, config: Path, kubeconfig: Path) -> None:
        self.process = Process(self.NAME, self._argv(binary, config, kubeconfig), self.log_path)
        self.process.start(tie_to_parent=self.tie_to_parent)
        if self.tie_to_parent:  # stopped at interpreter exit too (the kernel kills it if we die)
            self._finalizer = weakref.finalize(self, self.process.stop)

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        wait_ready(self.process, self.health_port, timeout, self.TITLE, interval=0.1)

    def _wait_webhooks(self, cluster: DynamicClient, timeout: float) -> None:
        assert self.process is not None
        answered = self._webhooks_answer(cluster)
        try:
            wait_until(answered, timeout, f"{self.TITLE} webhooks (dry-run creates)", interval=0.2)
        except TimeoutError as exc:
            raise startup_error(exc, self.process) from None

    def _webhooks_answer(self, cluster: DynamicClient) -> Callable[[], bool]:
        """A check, polled until it holds, that dry-run creates reach the manager's webhooks
        through the API server."""
        raise NotImplementedError

    def _url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.webhook_port}{path}"
