"""The stub `vllm serve` (tests/fixtures/served_model.py) serving across a group of nodes, as the
integration tests run it: real processes meeting in a rendezvous folder; the leader answers only
once its worker joined, and ends (status 1) when its worker is gone, as vLLM does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from nejumi_eval.runtime.serve import free_port
from tests.support.paths import REPO
from tests.support.served import model_folder

pytestmark = pytest.mark.timeout(120)

TIMEOUT_S = 30
LEADER = "big-g1-serve-0.big-g1-serve.team-a"
MODEL = "org/big"


class Stub:
    """One `vllm serve` process of the stub, its stderr read line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.served_model", *args],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in {self.lines}"
            assert self.proc.poll() is None or self._reader.is_alive(), f"ended: {self.lines}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Group:
    """A 2-node group of stubs on this machine: the leader's port, its records, its processes."""

    def __init__(self, root: Path) -> None:
        self.records = root / "records"
        self.records.mkdir()
        self.folder = model_folder(root)
        self.port = free_port()
        self.requests = self.records / f"{self.folder.name}.requests.jsonl"
        self.stubs: list[Stub] = []
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "NEJUMI_STUB_RECORD": str(self.records),
            "NEJUMI_STUB_LATENCY_S": "0.05",
        }
        self.env.pop("NEJUMI_STUB_GROUPS", None)  # the default: beside the records

    def start(self, rank: int, **env: str) -> Stub:
        args = ["serve", str(self.folder), "--port", str(self.port), "--served-model-name", MODEL]
        args += ["--nnodes", "2", "--node-rank", str(rank), "--master-addr", LEADER]
        self.stubs.append(Stub(args + ["--headless"] * (rank > 0), {**self.env, **env}))
        return self.stubs[-1]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    group = Group(tmp_path)
    try:
        yield group
    finally:
        for stub in group.stubs:
            stub.stop()


def health(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
    except httpx.HTTPError:
        return None


def complete(port: int) -> httpx.Response:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 1}
    return httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=TIMEOUT_S)


def wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_the_leader_answers_only_once_its_worker_joined(group: Group) -> None:
    port = group.port
    leader = group.start(0)
    leader.wait_line("waiting for workers: 0 of 1 joined")
    time.sleep(0.3)
    assert health(port) is None  # no HTTP before the group is whole
    worker = group.start(1)
    worker.wait_line(f"worker rank 1 of 2 joined the group of {LEADER}")
    leader.wait_line("waiting for workers: 1 of 1 joined")
    wait(lambda: health(port) == 200, "the leader to answer")
    assert complete(port).status_code == 200
    requests = group.requests.read_text().splitlines()
    assert [json.loads(line)["path"] for line in requests] == ["/v1/completions"]
    # The worker ends with SIGTERM, its registration with it; its leader then ends too.
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(TIMEOUT_S) == 0
    assert not list((group.records / "groups").glob("*/rank-1"))
    assert leader.proc.wait(TIMEOUT_S) == 1


def test_a_lost_worker_ends_the_leader_and_the_request_in_service_still_counts(group: Group) -> None:
    port = group.port
    leader = group.start(0, NEJUMI_STUB_LATENCY_S="5")
    worker = group.start(1)
    wait(lambda: health(port) == 200, "the leader to answer")
    answered: list[object] = []

    def ask() -> None:
        try:
            answered.append(complete(port).status_code)
        except httpx.HTTPError as exc:
            answered.append(exc)

    asking = threading.Thread(target=ask)
    asking.start()
    wait(group.requests.exists, "the request to arrive")
    worker.proc.kill()  # SIGKILL: nothing of it is cleaned up; its registration names a dead pid
    worker.proc.wait()
    assert leader.proc.wait(TIMEOUT_S) == 1
    assert any("worker rank 1 lost" in line for line in leader.lines)
    asking.join(TIMEOUT_S)
    assert answered and isinstance(answered[0], httpx.HTTPError)  # never answered
    assert len(group.requests.read_text().splitlines()) == 1  # but counted


def test_a_dead_worker_s_registration_does_not_count_and_sigterm_ends_the_wait(group: Group) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = group.records / "groups" / LEADER
    folder.mkdir(parents=True)
    (folder / "rank-1").write_text(str(dead.pid))  # a worker of a group gone before (SIGKILL)
    leader = group.start(0)
    leader.wait_line("waiting for workers: 0 of 1 joined")
    leader.proc.send_signal(signal.SIGTERM)
    assert leader.proc.wait(TIMEOUT_S) == 0


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--nnodes", "2", "--node-rank", "2", "--master-addr", LEADER, "--headless"], "--node-rank 2"),
        (["--nnodes", "2", "--node-rank", "1", "--master-addr", LEADER], "--headless"),
        (["--nnodes", "2", "--node-rank", "0", "--master-addr", LEADER, "--headless"], "--headless"),
        (["--nnodes", "2", "--node-rank", "1", "--headless"], "--master-addr"),
        (["--headless"], "--nnodes 1"),
    ],
)
def test_a_place_in_no_group_is_refused(flags: list[str], problem: str, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "tests.fixtures.served_model", "serve", str(model_folder(tmp_path)), *flags]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2 and problem in done.stderr
