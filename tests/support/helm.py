"""Running the Helm binary that `make helm-bin` builds, for the chart tests (unit and integration),
and the Helm 4 that `make helm4-bin` builds, for its kstatus `--wait` (tests/integration/test_helm4_wait.py).

The binary is found through `$NEJUMI_HELM` (`$NEJUMI_HELM4`), exported by the Makefile, or, for a
bare `pytest`, at `.cache/helm-bin/<HELM_VERSION>/helm` (`.cache/helm4-bin/<HELM4_VERSION>/helm`),
the version read from the Makefile. A missing binary fails the test (no skip): a chart suite that
skipped itself would report green without having tested anything.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "nejumi-operator"
HELM_TIMEOUT_SECONDS = 120


def helm_version(variable: str = "HELM_VERSION") -> str:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{variable} := (\S+)$", text, re.M)
    assert match, f"{variable} not found in the Makefile"
    return match.group(1)


def _binary(env_name: str, folder: str, version_variable: str, target: str) -> Path:
    env = os.environ.get(env_name)
    path = Path(env) if env else REPO / ".cache" / folder / helm_version(version_variable) / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm not found at {path}: run `make {target}`", pytrace=False)
    return path


def helm_binary() -> Path:
    return _binary("NEJUMI_HELM", "helm-bin", "HELM_VERSION", "helm-bin")


def helm4_binary() -> Path:
    return _binary("NEJUMI_HELM4", "helm4-bin", "HELM4_VERSION", "helm4-bin")


def helm(
    args: Sequence[str],
    home: Path,
    *,
    check: bool = True,
    timeout: float = HELM_TIMEOUT_SECONDS,
    binary: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run helm (`binary`, else `make helm-bin`'s) with its cache/config/data homes under `home`
    (never the user's ~/.config/helm)."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(binary or helm_binary()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def set_args(values: dict[str, str] | None = None, strings: dict[str, str] | None = None) -> list[str]:
    """`--set k=v` / `--set-string k=v` arguments."""
    out: list[str] = []
    for key, value in (values or {}).items():
        out += ["--set", f"{key}={value}"]
    for key, value in (strings or {}).items():
        out += ["--set-string", f"{key}={value}"]
    return out


def template(
    home: Path, *extra: str, release: str = "nejumi", namespace: str = "nejumi-system"
) -> list[dict[str, Any]]:
    """`helm template` of the chart (CRDs included), as parsed documents."""
    out = helm(["template", release, str(CHART), "--namespace", namespace, "--include-crds", *extra], home)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
