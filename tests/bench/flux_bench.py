"""`make bench` figures for GitOps with Flux: how long a team waits between a `git push` of an
evaluation and its Job, and between the evaluation's end and Flux reporting the Kustomization Ready,
beside Flux's interval.

Not a test: nothing asserts on a timing. It runs the integration test that drives the real Flux
(tests/integration/test_flux.py, first test: commit → apply → run → Ready, an edit, a prune, on the
real control plane with the real operator), which measures from its own samples (every 0.2 s) and
writes `.cache/bench/flux.json`; this reads that back and prints it:

- `commit_to_job_s`: the commit pushed → the Job `<name>-g1` exists (source-controller's poll of
  the repository at the GitRepository's interval, the artifact, kustomize-controller's apply, the
  operator's Job);
- `evaluation_s`: the Job exists → the evaluation Succeeded (stub model, scripted judge);
- `succeeded_to_ready_s`: the evaluation Succeeded → the Kustomization Ready (kustomize-controller's
  health-check poll with kstatus);
- `edit_commit_to_job_s`: an edit pushed → the Job of generation 2;
- `prune_commit_to_ready_s`: the file removed → the evaluation pruned and the Kustomization Ready.

    python -m tests.bench.flux_bench
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".cache" / "bench" / "flux.json"
TEST = "tests/integration/test_flux.py::test_flux_applies_waits_for_the_score_edits_and_prunes"


def main() -> int:
    OUT.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST], cwd=REPO, env=os.environ
    )
    if proc.returncode != 0 or not OUT.exists():
        print(f"flux bench: {TEST} failed (exit {proc.returncode}); no figures", file=sys.stderr)
        return 1
    figures = json.loads(OUT.read_text())
    print(f"\nFlux (interval {figures['interval_s']} s for the GitRepository and the Kustomization):")
    labels = {
        "commit_to_job_s": "git push → Job",
        "evaluation_s": "Job → evaluation Succeeded",
        "succeeded_to_ready_s": "Succeeded → Kustomization Ready",
        "edit_commit_to_job_s": "edit pushed → Job of generation 2",
        "prune_commit_to_ready_s": "file removed → pruned, Kustomization Ready",
    }
    for key, label in labels.items():
        if key in figures:
            print(f"  {label:<45} {figures[key]:6.1f} s")
    print(f"(figures in {OUT.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
