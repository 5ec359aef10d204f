"""Run the real Kueue (sigs.k8s.io/kueue) against the test control plane, as a local process.

The operator queues its evaluation Jobs through Kueue, and what it relies on (the Job webhook
suspending a queued Job, quota reservation and admission, preemption by priority, the reasons and
messages on a Workload's conditions) lives in Kueue's code, so tests run the genuine manager
rather than a mock. Everything comes from the one pinned module version: the binary built by
``make kueue-bin`` (``go install sigs.k8s.io/kueue/cmd/kueue@v0.17.0``) and the manifests in the
same module's ``config/`` (found through ``go mod download -json``), so they cannot drift apart.

What a real install does in-cluster, and what this harness does instead on loopback (the parts
shared with LeaderWorkerSet's harness are ``tests.cluster.manager.Manager``'s):

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
  bind-mounted there; that needs root (or an existing folder of that name, see ``_argv``).

Ready means: ``/readyz`` answers (the webhook server listens), and dry-run creates pass through
the API server to Kueue's webhooks: a ResourceFlavor, a queued Job that must come back suspended,
and with the LWS integration a queued LeaderWorkerSet whose pod template must come back marked as
suspended by its parent. ``stop`` removes the webhook configurations first, so a stopped Kueue
never blocks Job creation; the CRDs stay.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.dynamic import DynamicClient

from tests.cluster.controlplane import StartupError
from tests.cluster.gomodules import load_yaml
from tests.cluster.manager import Manager

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


@dataclass
class Kueue(Manager):
    """The Kueue manager for ``control_plane``, with its state (certs, config, log) in ``workdir``.

    Use as a context manager (or call ``start``/``stop``), like ``ControlPlane``. ``frameworks``
    are Kueue integration names (``integrations.frameworks``).
    """

    NAME = "kueue"
    TITLE = "Kueue"
    MODULE = KUEUE_MODULE
    VERSION = KUEUE_VERSION
    BINARY_ENV = "NEJUMI_KUEUE"
    MISSING = KueueMissing
    USER = USER
    NAMESPACE = NAMESPACE
    NAME_PREFIX = NAME_PREFIX
    CRD_DIR = "config/components/crd"
    RBAC_DIR = "config/components/rbac"
    RBAC_FILES = RBAC_FILES
    CONFIG_API_VERSION = "config.kueue.x-k8s.io/v1beta2"
    CERT_DIRS = ("webhook-certs", "metrics-certs")  # the metrics one is mounted, see ``_argv``

    frameworks: tuple[str, ...] = ("batch/job",)

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = set(self.frameworks) - FRAMEWORK_RESOURCES.keys()
        if unknown:
            raise ValueError(f"frameworks not supported by this harness: {sorted(unknown)}")

    # ---- installation -------------------------------------------------------------------------

    def _webhook_configurations(self) -> Iterator[dict[str, Any]]:
        """Kueue's webhook configurations, with only the webhooks for its own objects and the
        enabled integrations (an implicitly enabled one's limited to its parent's objects)."""
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
            config["webhooks"] = [w for w in config["webhooks"] if intercepted(w)]
            for webhook in config["webhooks"]:
                selectors = [implicit[r] for r in resources(webhook) if r in implicit]
                if selectors:
                    webhook["objectSelector"] = {"matchExpressions": selectors}
            yield config

    # ---- the manager process ------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return super()._config() | {
            "namespace": NAMESPACE,
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": list(self.frameworks)},
            "featureGates": {"VisibilityOnDemand": False},
        }

    def _argv(self, binary: Path, config: Path, kubeconfig: Path) -> list[str]:
        """Run the manager in a private mount namespace with our metrics certificate mounted
        on the path Kueue hard-codes. Without root, a readable ``METRICS_CERT_DIR`` that already
        holds ``tls.crt``/``tls.key`` (any certificate; the tests do not scrape metrics) is used."""
        argv = super()._argv(binary, config, kubeconfig)
        if os.geteuid() == 0 and shutil.which("unshare"):
            script = f'mkdir -p {METRICS_CERT_DIR} && mount --bind "$0" {METRICS_CERT_DIR} && exec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                    str(self.workdir / "metrics-certs"), *argv]  # fmt: skip
        elif not all(os.access(Path(METRICS_CERT_DIR) / f, os.R_OK) for f in ("tls.crt", "tls.key")):
            raise StartupError(
                f"Kueue needs {METRICS_CERT_DIR}/tls.{{crt,key}}: run the tests as root (the harness "
                "then mounts its own there, privately) or provide any certificate pair at that path"
            )
        return argv

    def _webhooks_answer(self, cluster: DynamicClient) -> Callable[[], bool]:
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

        return answered

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
