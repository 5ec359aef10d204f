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
loopback (the parts shared with Kueue's harness are ``tests.cluster.manager.Manager``'s):

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

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes.dynamic import DynamicClient

from tests.cluster.gomodules import load_yaml
from tests.cluster.manager import Manager

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
class Lws(Manager):
    """The LWS manager for ``control_plane``, with its state (certs, config, log) in ``workdir``.

    Use as a context manager (or call ``start``/``stop``), like ``Kueue``.
    """

    NAME = "lws"
    TITLE = "LWS"
    MODULE = LWS_MODULE
    VERSION = LWS_VERSION
    BINARY_ENV = "NEJUMI_LWS"
    MISSING = LwsMissing
    USER = USER
    NAMESPACE = NAMESPACE
    NAME_PREFIX = NAME_PREFIX
    CRD_DIR = "config/crd"
    RBAC_DIR = "config/rbac"
    RBAC_FILES = RBAC_FILES
    CONFIG_API_VERSION = "config.lws.x-k8s.io/v1alpha1"

    def _webhook_configurations(self) -> Iterator[dict[str, Any]]:
        """LWS's webhook configurations with its kustomization's patches."""
        webhook_dir = self.source / "config" / "webhook"
        kustomization = yaml.safe_load((webhook_dir / "kustomization.yaml").read_text())
        patches = {
            (p["target"]["kind"], p["target"]["name"]): yaml.safe_load((webhook_dir / p["path"]).read_text())
            for p in kustomization.get("patches") or []
        }
        for config in load_yaml(webhook_dir / "manifests.yaml"):
            yield json_patch(config, patches.get((config["kind"], config["metadata"]["name"]), []))

    def _webhooks_answer(self, cluster: DynamicClient) -> Callable[[], bool]:
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

        return answered
