"""A serving group's serve stage, end to end on this machine: the real evaluator as the group's
leader (`nejumi-eval run --stage serve` in LeaderWorkerSet's environment, `group_leader`) and as
its worker (`--join-group`, which becomes the stub's `vllm serve --headless`), the stub `vllm`
(tests/fixtures/served_model.py) meeting in its rendezvous folder. Each "group" is the two
processes started anew on the same workspace, as LeaderWorkerSet recreates a group's pods.

An attempt SIGTERM stops is not counted; a worker lost mid-generation fails the attempt (exit 3,
not final), and the next attempt resumes from the response cache and is the final one. No
progress ConfigMap here: the leader exits with its code instead of holding."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.contract import (
    EXIT_INFRA,
    EXIT_OK,
    GROUP_ATTEMPTS_ENV,
    GROUP_SIZE_ENV,
    LEADER_ADDRESS_ENV,
    SPEC_ENV,
    WORKER_INDEX_ENV,
)
from nejumi_eval.group_leader import ATTEMPTS_RECORD
from nejumi_eval.pipeline import STAGE_RECORDS
from tests.support.paths import REPO
from tests.support.served import model_folder, stub_vllm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TIMEOUT_S = 120
LEADER = "big-g1-serve-0.big-g1-serve.team-a"
REQUESTS = 32  # jaster: 16 datasets × 2 samples


class Group:
    """The leader's and the worker's evaluators, started together on one workspace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.model = model_folder(root)
        self.records = root / "records"
        self.records.mkdir()
        self.workspace = root / "ws"
        spec = {
            "model": {"name": str(self.model), "source": "vllm", "vllm": {"pipelineParallelSize": 2}},
            "benchmarks": {"jaster": {"testSamples": 2, "devSamples": 0}, "mtbench": {"enabled": False}},
            "generation": {"maxRetries": 1},  # a lost server's requests fail fast
            "wandb": {"enabled": False},
            "resources": {"gpus": 1, "nodes": 2},
            "workspace": {"path": str(self.workspace)},
        }
        bin_dir = stub_vllm(root / "bin").parent
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
            "NEJUMI_STUB_RECORD": str(self.records),
            SPEC_ENV: json.dumps(spec),
            GROUP_SIZE_ENV: "2",
            LEADER_ADDRESS_ENV: LEADER,
            GROUP_ATTEMPTS_ENV: "2",
        }
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, latency_s: float) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
        """A new group: its worker and its leader (whose stderr is kept)."""
        run = [sys.executable, "-m", "nejumi_eval.cli", "run", "--spec-env", SPEC_ENV, "--stage", "serve"]
        env = {**self.env, "NEJUMI_STUB_LATENCY_S": str(latency_s)}
        worker = subprocess.Popen(
            [*run, "--join-group"], cwd=REPO, env={**env, WORKER_INDEX_ENV: "1"}, text=True
        )
        leader = subprocess.Popen(
            run, cwd=REPO, env={**env, WORKER_INDEX_ENV: "0"}, stderr=subprocess.PIPE, text=True
        )
        self.procs += [worker, leader]
        return worker, leader

    def replies(self) -> int:
        path = self.records / f"{self.model.name}.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return sum("reply" in json.loads(line) for line in lines)

    def requests(self) -> int:
        return len((self.records / f"{self.model.name}.requests.jsonl").read_text().splitlines())

    def attempts(self) -> dict[str, Any]:
        return json.loads((self.workspace / STAGE_RECORDS / ATTEMPTS_RECORD).read_text())

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def ended(leader: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = leader.communicate(timeout=TIMEOUT_S)
    return leader.returncode, err


def test_interrupted_and_lost_attempts_then_the_final_one_resumes_from_the_cache(tmp_path: Path) -> None:
    group = Group(tmp_path)
    try:
        # 1. The group deleted mid-generation: its leader gets SIGTERM; the attempt is not counted.
        worker, leader = group.start(latency_s=1.0)
        wait_for(lambda: group.replies() >= 1, "the first reply")
        leader.send_signal(signal.SIGTERM)
        code, err = ended(leader)
        assert code == 128 + signal.SIGTERM, err
        assert "recorded as interrupted" in err
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(TIMEOUT_S) == 0
        assert [a["state"] for a in group.attempts()["attempts"]] == ["interrupted"]

        # 2. A worker lost mid-generation: the leader's server ends, so does the attempt (exit 3):
        #    attempt 1 of 2, not final.
        worker, leader = group.start(latency_s=1.0)
        before = group.replies()
        wait_for(lambda: group.replies() > before, "a reply of the second group")
        worker.kill()
        worker.wait()
        code, err = ended(leader)
        assert code == EXIT_INFRA, err
        assert "the serving group lost its server while generating" in err and "worker rank 1 lost" in err
        assert "serve stage finished (exit 3, attempt 1 of 2)" in err
        record = group.attempts()
        assert [a["state"] for a in record["attempts"]] == ["interrupted", "ended"]
        assert record["final"] is None

        # 3. The next group: the answers kept so far come from the cache; attempt 2 of 2, final.
        received = group.requests()
        worker, leader = group.start(latency_s=0.01)
        code, err = ended(leader)
        assert code == EXIT_OK, err
        assert "serve stage finished (exit 0, attempt 2 of 2)" in err
        generated = re.search(r"generate: (\d+) sent, (\d+) from the cache, 0 failed", err)
        assert generated is not None, err
        sent, cached = int(generated[1]), int(generated[2])
        assert sent + cached == REQUESTS and cached >= 1
        assert group.requests() - received == sent  # the stub saw exactly what was not cached
        final = group.attempts()["final"]
        assert final["final"] and (final["attempt"], final["attempts"], final["exitCode"]) == (2, 2, 0)
        assert json.loads(final["summary"])["status"] == "completed"
    finally:
        group.stop_all()
