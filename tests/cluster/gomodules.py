"""What the harnesses of real Go controllers (Kueue, LeaderWorkerSet, Flux) share: the module's
source in the Go module cache (its CRDs and RBAC are installed from there), YAML documents,
server-side apply as the harness's own field manager, and CRDs installed until Established."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes.dynamic import DynamicClient

from tests.cluster.controlplane import REPO, wait_until

FIELD_MANAGER = "nejumi-test-harness"


def module_dir(module: str, version: str, missing: type[Exception]) -> Path:
    """`module@version`'s source in the Go module cache (downloaded there by its make target);
    raises `missing` naming what cannot be found."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
        cwd=REPO,
        check=False,
    )
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        raise missing(f"cannot locate {module}@{version}: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])


def load_yaml(path: Path) -> list[dict[str, Any]]:
    """The (non-empty) documents of a YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply(cluster: DynamicClient, body: dict[str, Any]) -> None:
    """Server-side apply (create, or update after a restart on the same cluster) as the harness."""
    resource = cluster.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    resource.server_side_apply(body=body, field_manager=FIELD_MANAGER, force_conflicts=True)


def wait_established(cluster: DynamicClient, names: list[str], timeout: float, what: str) -> None:
    """Every CRD in `names` has its Established condition True."""
    crds = cluster.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")

    def established() -> bool:
        return all(
            any(c.type == "Established" and c.status == "True" for c in crds.get(name=n).status.conditions)
            for n in names
        )

    wait_until(established, timeout, f"{what} CRDs Established")


def install_crds(
    cluster: DynamicClient,
    folders: Iterable[Path],
    timeout: float,
    what: str,
    conversions: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Every CRD in ``folders`` (a module's ``config/.../crd/bases``), with ``spec.conversion`` set
    from ``conversions`` (CRD name -> conversion) where it names the CRD; returns once all are
    Established."""
    names = []
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            for crd in load_yaml(path):
                if conversions and crd["metadata"]["name"] in conversions:
                    crd["spec"]["conversion"] = conversions[crd["metadata"]["name"]]
                apply(cluster, crd)
                names.append(crd["metadata"]["name"])
    wait_established(cluster, names, timeout, what)
