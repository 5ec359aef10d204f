"""Run the real Kueue (sigs.k8s.io/kueue) against the test control plane, as a local process.

The operator queues its evaluation Jobs through Kueue, and what it relies on (the Job webhook
suspending a queued Job, quota reservation and admission, preemption by priority, the reasons and
messages on a Workload's conditions) lives in Kueue's code, so tests run the genuine manager
rather than a mock. Everything comes from the one pinned module version: the binary built by
``make kueue-bin`` (``go install sigs.k8s.io/kueue/cmd/kueue@v0.17.0``) and the manifests in the
same module's ``config/`` (found through ``go mod download -json``), so they cannot drift apart.

What a real install does in-cluster, and what this harness does instead on loopback:

- **CRDs**: ``config/components/crd/bases`` as they are, plus the conversion-webhook patches that
  Kueue's own kustomization applies (LocalQueue, ClusterQueue, Cohort, Workload,
  MultiKueueCluster serve v1beta1 and store v1beta2, converted by Kueue's ``/convert``). The
  webhook's ``clientConfig`` is ``url: https://127.0.0.1:<port>/convert`` instead of a Service.
- **Webhooks**: ``config/components/webhook/manifests.yaml`` with every ``clientConfig`` rewritten
  to ``url: https://127.0.0.1:<port><path>`` and ``caBundle`` set to a harness CA
  (``tests.cluster.certs``) that also issued the manager's serving certificate for 127.0.0.1.
  Only the webhooks for Kueue's own API group and for the enabled ``frameworks`` are installed:
  Kueue answers the others with no-op handlers anyway, and leaving them out keeps the creation of
  every Pod in the cluster off Kueue's path. The LeaderWorkerSet integration enables Kueue's
  ``pod`` integration with it (Kueue gates and groups the pods of a LeaderWorkerSet): its Pod
  webhooks are installed with an ``objectSelector`` on the label every such pod carries
  (``leaderworkerset.sigs.k8s.io/name``), so other pods still never reach Kueue.
- **Identity**: a client certificate for the user ``kueue-controller-manager``, bound to Kueue's
  own roles from ``config/components/rbac`` (``role.yaml``, ``metrics_auth_role.yaml``, and
  ``manager_secrets_role.yaml`` in the ``kueue-system`` namespace, which MultiKueue's controllers
  watch), named ``kueue-...`` as kustomize's ``namePrefix`` would, so a missing permission shows up
  as it would in a cluster. The harness installs CRDs, RBAC and webhooks as the admin (server-side
  apply, so a restart on the same control plane updates them).
- **Configuration**: the Configuration file from ``controller_manager_config.yaml``'s format with
  ``integrations.frameworks`` (``batch/job`` by default; the session fixture adds
  ``leaderworkerset.x-k8s.io/leaderworkerset``, which needs the LWS CRD installed first, see
  ``tests.cluster.lws``), ``manageJobsWithoutQueueName: false`` (only objects labelled
  ``kueue.x-k8s.io/queue-name`` are managed), leader election off, internal certificate
  management off, and webhook/health/metrics servers on free loopback ports. The visibility API
  server (``VisibilityOnDemand``) is turned off: it would need an APIService and certificates of
  its own, and the tests read Workloads directly.
- **Metrics certificate**: with internal certificate management off, Kueue insists on reading
  ``/etc/kueue/metrics/certs/tls.{crt,key}`` (a hard-coded path in ``cmd/kueue/main.go``). Rather
  than writing into ``/etc`` (shared by every test session on the machine), the manager runs in a
  private mount namespace (``unshare --mount``) where this instance's certificate folder is
  bind-mounted there; that needs root (or an existing folder of that name, see ``_launch``).

Ready means: ``/readyz`` answers (the webhook server listens), and dry-run creates pass through
the API server to Kueue's webhooks: a ResourceFlavor, a queued Job that must come back suspended,
and with the LWS integration a queued LeaderWorkerSet whose pod template must come back marked as
suspended by its parent. ``stop`` removes the webhook configurations first, so a stopped Kueue
never blocks Job creation; the CRDs stay.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
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

KUEUE_MODULE = "sigs.k8s.io/kueue"
KUEUE_VERSION = "v0.17.0"
GROUP = "kueue.x-k8s.io"
API_VERSION = "v1beta2"  # the storage version; v1beta1 is served through the conversion webhook
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # a Job's LocalQueue
USER = "kueue-controller-manager"
NAMESPACE = "kueue-system"  # Kueue's own namespace (Configuration.namespace's default)
# Kueue's own roles and their bindings (config/components/rbac), except leader election (off here).
RBAC_FILES = (
    ("role.yaml", "role_binding.yaml"),
    ("manager_secrets_role.yaml", "manager_secrets_role_binding.yaml"),  # MultiKueue's kubeconfigs
    ("metrics_auth_role.yaml", "metrics_auth_role_binding.yaml"),  # authn/authz of /metrics
)
LWS_FRAMEWORK = "leaderworkerset.x-k8s.io/leaderworkerset"  # Kueue's LeaderWorkerSet integration
LWS_SET_LABEL = "leaderworkerset.sigs.k8s.io/name"  # on every pod of a LeaderWorkerSet
NAME_PREFIX = "kueue-"  # what config/default's kustomization prefixes every object's name with
METRICS_CERT_DIR = "/etc/kueue/metrics/certs"  # hard-coded in cmd/kueue/main.go

# Kueue integration name -> the (API group, resource) its webhooks intercept, for the built-in
# integrations this harness supports.
FRAMEWORK_RESOURCES = {
    "batch/job": ("batch", "jobs"),
    "pod": ("", "pods"),
    "deployment": ("apps", "deployments"),
    "statefulset": ("apps", "statefulsets"),
    LWS_FRAMEWORK: ("leaderworkerset.x-k8s.io", "leaderworkersets"),
}
# Integrations Kueue enables along with another (``ImplicitlyEnabledFrameworkNames`` of its
# integration), with the pods they reach: LWS's pods are gated and grouped by Kueue's pod
# integration, so its Pod webhooks are installed too, limited to the pods of a LeaderWorkerSet.
IMPLICIT_FRAMEWORKS = {LWS_FRAMEWORK: ("pod", {"key": LWS_SET_LABEL, "operator": "Exists"})}


class KueueMissing(RuntimeError):
    """The Kueue binary has not been built (``make kueue-bin``)."""


def find_kueue() -> Path:
    """The kueue binary: ``NEJUMI_KUEUE`` (exported by the Makefile), else the Makefile's cache."""
    env = os.environ.get("NEJUMI_KUEUE")
    binary = Path(env) if env else REPO / ".cache" / "kueue-bin" / KUEUE_VERSION / "kueue"
    if not os.access(binary, os.X_OK):
        raise KueueMissing(f"kueue binary missing at {binary}: run `make kueue-bin` first (~3 min cold)")
    return binary


@dataclass
class Kueue:
    """The Kueue manager for ``control_plane``, with its state (certs, config, log) in ``workdir``.

    Use as a context manager (or call ``start``/``stop``), like ``ControlPlane``. ``frameworks``
    are Kueue integration names (``integrations.frameworks``).
    """

    control_plane: ControlPlane
    workdir: Path
    binary: Path | None = None
    frameworks: tuple[str, ...] = ("batch/job",)
    tie_to_parent: bool = True
    process: Process | None = None
    startup_seconds: float | None = None
    webhook_port: int = 0
    health_port: int = 0
    metrics_port: int = 0
    _webhook_configs: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        unknown = set(self.frameworks) - FRAMEWORK_RESOURCES.keys()
        if unknown:
            raise ValueError(f"frameworks not supported by this harness: {sorted(unknown)}")
        self._finalizer: weakref.finalize[Any, Kueue] | None = None

    @property
    def log_path(self) -> Path:
        """Kueue's log (stdout and stderr)."""
        return self.workdir / "logs" / "kueue.log"

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Kueue:
        """Install CRDs, RBAC and webhooks, run the manager, and return once its webhooks answer."""
        t0 = time.monotonic()
        binary = self.binary or find_kueue()
        self.source = module_dir(KUEUE_MODULE, KUEUE_VERSION, KueueMissing)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.webhook_port, self.health_port, self.metrics_port = free_ports(3)
        ca = CertificateAuthority("nejumi-kueue-webhook-ca")
        self.ca_bundle = base64.b64encode(ca.pair.cert_pem).decode()
        serving = ca.serving("kueue-webhook", ["localhost"], ["127.0.0.1"])
        for folder in ("webhook-certs", "metrics-certs"):
            (self.workdir / folder).mkdir(exist_ok=True)
            serving.write(self.workdir / folder, "tls")

        api = self.control_plane.api_client()
        try:
            cluster = DynamicClient(api)
            self._install_crds(cluster, timeout)
            self._install_rbac(cluster)
            kubeconfig = self.control_plane.write_kubeconfig(self.workdir / "kueue.kubeconfig", USER)
            config = self._write_config()
            self._launch(binary, config, kubeconfig)
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
        """Remove the webhook configurations (so nothing calls a dead endpoint), then stop Kueue.

        The CRDs and Kueue's objects stay; safe to call twice.
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

    def __enter__(self) -> Kueue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- installation -------------------------------------------------------------------------

    def _install_crds(self, cluster: DynamicClient, timeout: float) -> None:
        """Kueue's CRDs, with the conversion webhook where Kueue's kustomization enables one."""
        crd_dir = self.source / "config" / "components" / "crd"
        # The conversion patches the kustomization lists (not those commented out), e.g. workloads.
        converted = {
            doc["metadata"]["name"]
            for entry in yaml.safe_load((crd_dir / "kustomization.yaml").read_text())["patches"]
            if entry["path"].startswith("patches/webhook_in_")
            for doc in load_yaml(crd_dir / entry["path"])
        }
        names = []
        for path in sorted((crd_dir / "bases").glob("*.yaml")):
            for crd in load_yaml(path):
                if crd["metadata"]["name"] in converted:
                    crd["spec"]["conversion"] = {
                        "strategy": "Webhook",
                        "webhook": {
                            "clientConfig": {"url": self._url("/convert"), "caBundle": self.ca_bundle},
                            "conversionReviewVersions": ["v1"],
                        },
                    }
                apply(cluster, crd)
                names.append(crd["metadata"]["name"])

        wait_established(cluster, names, timeout, "Kueue")

    def _install_rbac(self, cluster: DynamicClient) -> None:
        """Kueue's roles (the namespaced one in its namespace), bound to the manager's user."""
        apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        rbac_dir = self.source / "config" / "components" / "rbac"
        for role_file, binding_file in RBAC_FILES:
            for doc in load_yaml(rbac_dir / role_file) + load_yaml(rbac_dir / binding_file):
                doc["metadata"]["name"] = NAME_PREFIX + doc["metadata"]["name"]
                if "namespace" in doc["metadata"]:  # `system`, which config/default renames
                    doc["metadata"]["namespace"] = NAMESPACE
                if "roleRef" in doc:
                    doc["roleRef"]["name"] = NAME_PREFIX + doc["roleRef"]["name"]
                    doc["subjects"] = [
                        {"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}
                    ]
                apply(cluster, doc)

    def _install_webhooks(self, cluster: DynamicClient) -> None:
        """Kueue's webhook configurations, pointed at the manager on loopback."""
        frameworks = {FRAMEWORK_RESOURCES[f] for f in self.frameworks}
        # An implicitly enabled integration's webhooks see only its parent's objects.
        implicit = {
            FRAMEWORK_RESOURCES[name]: selector
            for f in self.frameworks
            if f in IMPLICIT_FRAMEWORKS
            for name, selector in [IMPLICIT_FRAMEWORKS[f]]
            if name not in self.frameworks
        }

        def resources(webhook: dict[str, Any]) -> set[tuple[str, str]]:
            return {
                (group, resource)
                for rule in webhook["rules"]
                for group in rule["apiGroups"]
                for resource in rule["resources"]
            }

        def intercepted(webhook: dict[str, Any]) -> bool:
            """For Kueue's own objects, or for a resource of an enabled integration."""
            return any(
                group == GROUP or (group, resource) in frameworks | implicit.keys()
                for group, resource in resources(webhook)
            )

        manifests = self.source / "config" / "components" / "webhook" / "manifests.yaml"
        for config in load_yaml(manifests):
            config["metadata"]["name"] = NAME_PREFIX + config["metadata"]["name"]
            config["webhooks"] = [w for w in config["webhooks"] if intercepted(w)]
            for webhook in config["webhooks"]:
                selectors = [implicit[r] for r in resources(webhook) if r in implicit]
                if selectors:
                    webhook["objectSelector"] = {"matchExpressions": selectors}
                path = webhook["clientConfig"]["service"]["path"]
                webhook["clientConfig"] = {"url": self._url(path), "caBundle": self.ca_bundle}
            apply(cluster, config)
            self._webhook_configs.append((config["kind"], config["metadata"]["name"]))

    # ---- the manager process ------------------------------------------------------------------

    def _write_config(self) -> Path:
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "metrics": {"bindAddress": f"127.0.0.1:{self.metrics_port}"},
            "webhook": {
                "host": "127.0.0.1",
                "port": self.webhook_port,
                "certDir": str(self.workdir / "webhook-certs"),
            },
            "namespace": NAMESPACE,
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": list(self.frameworks)},
            "featureGates": {"VisibilityOnDemand": False},
            "clientConnection": {"qps": 50, "burst": 100},
        }
        path = self.workdir / "controller_manager_config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _launch(self, binary: Path, config: Path, kubeconfig: Path) -> None:
        """Start the manager in a private mount namespace with our metrics certificate mounted
        on the path Kueue hard-codes. Without root, a readable ``METRICS_CERT_DIR`` that already
        holds ``tls.crt``/``tls.key`` (any certificate; the tests do not scrape metrics) is used."""
        argv = [str(binary), f"--config={config}", f"--kubeconfig={kubeconfig}", "--zap-log-level=info"]
        if os.geteuid() == 0 and shutil.which("unshare"):
            script = f'mkdir -p {METRICS_CERT_DIR} && mount --bind "$0" {METRICS_CERT_DIR} && exec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                    str(self.workdir / "metrics-certs"), *argv]  # fmt: skip
        elif not all(os.access(Path(METRICS_CERT_DIR) / f, os.R_OK) for f in ("tls.crt", "tls.key")):
            raise StartupError(
                f"Kueue needs {METRICS_CERT_DIR}/tls.{{crt,key}}: run the tests as root (the harness "
                "then mounts its own there, privately) or provide any certificate pair at that path"
            )
        self.process = Process("kueue", argv, self.log_path)
        self.process.start(tie_to_parent=self.tie_to_parent)
        if self.tie_to_parent:  # stopped at interpreter exit too (the kernel kills it if we die)
            self._finalizer = weakref.finalize(self, self.process.stop)

    def _wait_ready(self, timeout: float) -> None:
        proc = self.process
        assert proc is not None

        def ready() -> bool:
            if not proc.alive():
                raise StartupError(f"kueue exited with {proc.popen and proc.popen.returncode}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as resp:
                return resp.status == 200

        try:
            wait_until(ready, timeout, "Kueue /readyz", interval=0.1)
        except (TimeoutError, StartupError) as exc:
            raise StartupError(f"{exc}\n--- {proc.log_path} (tail) ---\n{proc.log_tail()}") from None

    def _wait_webhooks(self, cluster: DynamicClient, timeout: float) -> None:
        """Dry-run creates reach Kueue's webhooks through the API server: a ResourceFlavor (both
        of its webhooks), and with ``batch/job`` a queued Job, which must come back suspended."""
        flavors = cluster.resources.get(api_version=f"{GROUP}/{API_VERSION}", kind="ResourceFlavor")
        jobs = cluster.resources.get(api_version="batch/v1", kind="Job")
        name = "nejumi-kueue-readiness-probe"
        flavor = {
            "apiVersion": f"{GROUP}/{API_VERSION}",
            "kind": "ResourceFlavor",
            "metadata": {"name": name},
        }
        container = {"name": "probe", "image": "probe", "command": ["true"]}
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {QUEUE_LABEL: name}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
        }

        def answered() -> bool:
            flavors.create(body=flavor, dry_run="All")
            if "batch/job" in self.frameworks and not jobs.create(body=job, dry_run="All").spec.suspend:
                return False
            return LWS_FRAMEWORK not in self.frameworks or self._lws_answered(cluster, name, container)

        try:
            wait_until(answered, timeout, "Kueue webhooks (dry-run creates)", interval=0.2)
        except TimeoutError as exc:
            assert self.process is not None
            raise StartupError(f"{exc}\n--- {self.log_path} (tail) ---\n{self.process.log_tail()}") from None

    @staticmethod
    def _lws_answered(cluster: DynamicClient, name: str, container: dict[str, Any]) -> bool:
        """A queued LeaderWorkerSet (dry run) comes back with its pod template marked as suspended
        by its parent: Kueue's LWS webhook answered (needs the LWS CRD, ``tests.cluster.lws``)."""
        sets = cluster.resources.get(api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet")
        template = {"spec": {"containers": [container]}}
        body = {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {QUEUE_LABEL: name}},
            "spec": {"leaderWorkerTemplate": {"size": 1, "workerTemplate": template}},
        }
        created = sets.create(body=body, dry_run="All").to_dict()
        annotations = created["spec"]["leaderWorkerTemplate"]["workerTemplate"]["metadata"].get("annotations")
        return (annotations or {}).get("kueue.x-k8s.io/pod-suspending-parent") == LWS_FRAMEWORK

    def _url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.webhook_port}{path}"
