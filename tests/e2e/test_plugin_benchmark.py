"""Issue 8 §2: a third benchmark, registered from tests/, runs through `nejumi-eval run`, the
results folder, W&B offline and the operator's status with no change outside its own file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from nejumi_eval.api.v1alpha1.status import EvaluationStatus
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_eval.errors import EXIT_CONFIG, EXIT_OK
from nejumi_eval.report.results import read_table
from nejumi_operator.status import Observation, Termination, reduce_status
from tests.fixtures.openai_stub import StubServer
from tests.support import wandb_offline

REPO = Path(__file__).resolve().parents[2]
PLUGIN = {"NEJUMI_BENCHMARKS": "tests.fixtures.toy_benchmark"}


def _cli(config: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nejumi_eval.cli", "-q", "run", str(config), "--json"],
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_plugin_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    with StubServer(model="stub-model") as server:
        doc = {
            "model": {"name": "stub-model", "source": "openai-compatible", "endpoint": server.base_url},
            "benchmarks": {
                "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0},
                "mtbench": {"enabled": False},
                "echo": {"items": 4},
            },
            "workspace": {"path": str(tmp_path / "ws")},
            "wandb": {"mode": "offline", "runName": "plugin"},
        }
        config = tmp_path / "eval.yaml"
        config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        proc = _cli(config, tmp_path, PLUGIN)
        echo_posts = [p for p in server.posts if str(p.get("prompt", "")).startswith("Repeat: ")]
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    assert len(echo_posts) == 4  # through the one client, at the model's endpoint

    summary = Summary.model_validate_json(proc.stdout.strip().splitlines()[-1])
    echo = summary.benchmarks["echo"]
    assert list(summary.benchmarks) == ["jaster", "echo"]
    assert echo.avg == 1.0 and echo.samples == 4  # the stub echoes the prompt, so every word is there
    assert summary.overall is None  # echo is not a term of Overall; jaster (one dataset) is incomplete

    results = Path(summary.results_dir or "")
    rows = read_table(results / "echo_output_table.jsonl")
    assert [r["word"] for r in rows] == ["さくら", "ねずみ", "やま", "かわ"]
    assert all(r["score"] == 1.0 and r["output"].startswith("echo:") for r in rows)
    assert read_table(results / "leaderboard_table.jsonl")[0]["echo_AVG"] == 1.0
    assert json.loads((results / "run.json").read_text())["echo"]["words"][0] == "さくら"
    wb = wandb_offline.offline_run(results)
    assert "echo_output_table" in wandb_offline.tables(wb)
    assert wandb_offline.summary(wb)["echo/AVG"] == 1.0

    # the operator's status reads it with no change: scores keyed by benchmark name
    job = {
        "status": {
            "conditions": [{"type": "Complete", "status": "True"}],
            "startTime": "2026-01-01T00:00:00Z",
        }
    }
    term = Termination(exit_code=0, message=summary.to_json(), finished_at="2026-01-01T00:01:00Z")
    status = reduce_status({}, Observation(generation=1, job_name="e-g1", job=job, termination=term))
    EvaluationStatus.model_validate(status)
    assert status["scores"]["benchmarks"]["echo"] == {"avg": 1.0, "categories": {}}
    assert status["failures"] == {"generation": 0, "judge": 0, "truncatedAnswers": 0}


def test_an_unknown_benchmark_section_is_bad_input(tmp_path: Path) -> None:
    doc = {
        "model": {"name": "m", "source": "openai-compatible", "endpoint": "http://127.0.0.1:9/v1"},
        "benchmarks": {"echo": {"items": 2}},
    }
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    proc = _cli(config, tmp_path, {})  # the plugin is not loaded
    assert proc.returncode == EXIT_CONFIG
    assert "unknown benchmark 'echo'; known: jaster, mtbench" in proc.stderr
