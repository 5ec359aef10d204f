"""A test-only dynamic volume provisioner: hostPath PersistentVolumes for one StorageClass.

It stands in for a CSI driver's external-provisioner, which the test cluster has none of. A thread
polls the claims of ``storage_class`` and, for each Pending one without a volume whose pod the
scheduler has placed (``WaitForFirstConsumer``: the ``selected-node`` annotation), creates a
PersistentVolume pre-bound to it (``claimRef`` with the claim's uid) whose ``hostPath`` is a fresh
folder under ``root``; the control plane's own PV controller (``persistentvolume-binder-controller``)
then binds the two, as it does for any external provisioner. When a claim is deleted its volume is
Released; with reclaim policy ``Delete`` the provisioner removes the folder and the volume, as a
real provisioner would. The node agent resolves a pod's claim to that folder (``claim → PV →
hostPath``), so every pod of one claim sees the same files.

It never exists outside ``tests/``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import config
from kubernetes.client import ApiClient, CoreV1Api, StorageV1Api
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("nejumi.provisioner")

STORAGE_CLASS = "nejumi-test-local"
PROVISIONER = "nejumi.test/hostpath"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def storage_class(name: str = STORAGE_CLASS, default: bool = True) -> dict[str, Any]:
    """The StorageClass this provisioner serves (the cluster's default one when `default`)."""
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        # As local volumes do: the claim is provisioned once the scheduler has picked the pod's node
        # (the `selected-node` annotation), so a pod that fits nowhere says why (e.g. Insufficient
        # nvidia.com/gpu), never "unbound immediate PersistentVolumeClaims" while a claim binds.
        "volumeBindingMode": "WaitForFirstConsumer",
    }


@dataclass
class HostPathProvisioner:
    """``start()`` creates (or keeps) the StorageClass and runs the loop; ``stop()`` ends it."""

    kubeconfig: Path
    root: Path
    storage_class: str = STORAGE_CLASS
    default_class: bool = True
    interval: float = 0.2
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: ApiClient | None = None

    def start(self) -> HostPathProvisioner:
        self.root.mkdir(parents=True, exist_ok=True)
        self._client = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core = CoreV1Api(self._client)
        try:
            body = storage_class(self.storage_class, self.default_class)
            StorageV1Api(self._client).create_storage_class(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._thread = threading.Thread(target=self._loop, name="hostpath-provisioner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def __enter__(self) -> HostPathProvisioner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def volume_name(self, claim: dict[str, Any]) -> str:
        return f"pvc-{claim['metadata']['uid']}"

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.sync()
            except Exception as exc:  # a transient API error: next round
                if not self._stopping.is_set():
                    log.warning("provisioner round failed: %s", exc)

    def sync(self) -> None:
        """One round: provision Pending claims of our class, reclaim Released volumes of ours."""
        assert self._client is not None
        plain = self._client.sanitize_for_serialization
        claims = plain(self.core.list_persistent_volume_claim_for_all_namespaces())
        for claim in claims.get("items") or []:
            spec, meta = claim["spec"], claim["metadata"]
            if (
                spec.get("storageClassName") == self.storage_class
                and not spec.get("volumeName")
                and (claim.get("status") or {}).get("phase", "Pending") == "Pending"
                and not meta.get("deletionTimestamp")
                and (meta.get("annotations") or {}).get(SELECTED_NODE)  # WaitForFirstConsumer
            ):
                self._provision(claim)
        volumes = plain(self.core.list_persistent_volume())
        for pv in volumes.get("items") or []:
            ours = (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
            released = (pv.get("status") or {}).get("phase") in ("Released", "Failed")
            if ours and released and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                self._reclaim(pv)

    def _provision(self, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        name = self.volume_name(claim)
        folder = self.root / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)  # any pod user may write (fsGroup is not applied by the test agent)
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": self.storage_class,
                "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            self.core.create_persistent_volume(pv)
            log.info("provisioned %s for %s/%s at %s", name, meta["namespace"], meta["name"], folder)
        except ApiException as exc:
            if exc.status != 409:  # 409: provisioned in an earlier round, binding under way
                raise

    def _reclaim(self, pv: dict[str, Any]) -> None:
        path = Path((pv["spec"].get("hostPath") or {}).get("path") or "")
        if path.is_relative_to(self.root) and path != self.root:
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.core.delete_persistent_volume(pv["metadata"]["name"])
            log.info("reclaimed %s", pv["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 404:
                raise


def main(argv: list[str] | None = None) -> None:
    """Run the provisioner in the foreground until SIGTERM/SIGINT (used by ``make cluster-up``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="admin kubeconfig")
    parser.add_argument("--root", type=Path, required=True, help="folder for the volumes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with HostPathProvisioner(args.kubeconfig, args.root):
        log.info("provisioning StorageClass %s under %s", STORAGE_CLASS, args.root)
        done.wait()
