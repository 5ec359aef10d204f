"""What the operator image has (`pip install .[operator,leaderboard]`, operator/Dockerfile) is
enough for a leaderboard computation and the page server: they import, and read both benchmarks'
results, without W&B, rhoknp or any model runtime (the `eval` and `serve` extras)."""

from __future__ import annotations

import subprocess
import sys

NOT_IN_THE_IMAGE = ("wandb", "wandb_workspaces", "rhoknp", "torch", "transformers", "vllm")

PROBE = f"""
import importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_IN_THE_IMAGE!r}:
            raise ImportError(f"{{name}} is not in the operator image")
        return None

sys.meta_path.insert(0, Absent())
import nejumi_eval.leaderboard.compute
import nejumi_eval.leaderboard.server
import nejumi_eval.leaderboard.html
from nejumi_eval.benchmarks import registry
for name in ("jaster", "mtbench"):
    assert registry.reading(name) is not None, name
print("ok")
"""


def test_the_operator_image_can_compute_and_serve_a_leaderboard() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_the_dockerfile_installs_the_leaderboard_extra() -> None:
    import tomllib

    from tests.support.paths import REPO

    dockerfile = (REPO / "operator" / "Dockerfile").read_text(encoding="utf-8")
    assert 'pip install ".[operator,leaderboard]"' in dockerfile
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert not any(dep.split(">")[0].split("=")[0] in ("wandb", "rhoknp") for dep in extras["leaderboard"])
