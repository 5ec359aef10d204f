"""What kstatus makes of Kubernetes objects: the real library, through the small Go command in
tests/kstatus/ that `make kstatus-bin` builds.

kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`) is how Flux's health checks and Helm
4's `--wait` decide whether an object is InProgress, Current or Failed. Asking the library itself,
not a Python copy of its rules, is the point: a copy would only repeat what its author believed.

The binary is found through `$NEJUMI_KSTATUS` (exported by the Makefile) or, for a bare `pytest`,
at `.cache/kstatus-bin/<cli-utils version from tests/kstatus/go.mod>/kstatus`. Missing is an error,
not a skip: a suite that skipped itself would report green without having asked kstatus anything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

KSTATUS_MOD = REPO / "tests" / "kstatus"
TIMEOUT_S = 60.0
"""One run over a handful of objects (milliseconds when idle; generous for a loaded machine)."""


def kstatus_version() -> str:
    """The cli-utils version tests/kstatus/go.mod pins: the one pin, so harness and build agree."""
    text = (KSTATUS_MOD / "go.mod").read_text(encoding="utf-8")
    match = re.search(r"^\s*sigs\.k8s\.io/cli-utils (v\S+)", text, re.M)
    assert match, "sigs.k8s.io/cli-utils not found in tests/kstatus/go.mod"
    return match.group(1)


def kstatus_binary() -> Path:
    env = os.environ.get("NEJUMI_KSTATUS")
    path = Path(env) if env else REPO / ".cache" / "kstatus-bin" / kstatus_version() / "kstatus"
    if not os.access(path, os.X_OK):
        pytest.fail(f"kstatus not found at {path}: run `make kstatus-bin`", pytrace=False)
    return path


def kstatus(objects: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """Object name → (kstatus status, its message) for `objects` (whole objects, status included,
    as the API server returns them). Names must be unique within one call."""
    items = list(objects)
    document = {"apiVersion": "v1", "kind": "List", "items": items}
    proc = subprocess.run(
        [str(kstatus_binary())],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"kstatus exited {proc.returncode}: {proc.stderr.strip()}")
    out: dict[str, tuple[str, str]] = {}
    for line in proc.stdout.splitlines():
        result = json.loads(line)
        assert result["name"] not in out, f"two objects named {result['name']}"
        out[result["name"]] = (result["status"], result["message"])
    assert len(out) == len(items), f"kstatus answered for {len(out)} of {len(items)} objects"
    return out
