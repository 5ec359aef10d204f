"""`make cluster-up` / `make cluster-down` (issue 16): `down` stops every process `up` started (the
hostPath provisioner used to be left running, one more per `up`), and whatever a crash left behind.

Each test runs the real `python -m tests.cluster up` and `down` in a folder of its own
(`NEJUMI_CLUSTER_DIR`), beside a developer's cluster, and then looks through /proc for anything
still running there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config
from kubernetes.client import CoreV1Api

from tests.cluster import POD_DIR_ENV, wait_until
from tests.cluster.__main__ import STATE_ENV, started_here
from tests.cluster.controlplane import REPO

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

COMPONENTS = {
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "node-agent",
    "provisioner",
}


def cli(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, STATE_ENV: str(folder), "NEJUMI_TEST_GPUS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tests.cluster", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def naming(folder: Path) -> dict[int, str]:
    """Every running process (but this one) whose command line names ``folder``, or whose pod
    folder (set by the node agent) lies inside it: the test's own scan, apart from `started_here`."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (str(folder) in cmdline or f"{POD_DIR_ENV}={folder}/".encode() in environ):
            out[int(proc.name)] = cmdline
    return out


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A cluster up in a folder of its own: (folder, its state.json); `down` afterwards whatever
    the test did (a failed test must not leave a cluster running either)."""
    folder = tmp_path / "cluster"
    started = cli("up", folder)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((folder / "state.json").read_text())
        assert set(state["pids"]) == COMPONENTS
        assert set(state["pids"].values()) <= set(started_here(folder)), started_here(folder)
        yield folder, state
    finally:
        cli("down", folder)


def start_pod(kubeconfig: str) -> None:
    """A pod that sleeps, run as a process by the cluster's node agent."""
    core = CoreV1Api(config.new_client_from_config(kubeconfig))
    wait_until(
        lambda: core.list_namespaced_service_account("default").items, 30, "the default ServiceAccount"
    )
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "sleeper"},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",  # ignored by the node agent
                        "command": [sys.executable, "-c", "import time; time.sleep(600)"],
                    }
                ],
            },
        },
    )
    wait_until(
        lambda: core.read_namespaced_pod("sleeper", "default").status.phase == "Running", 30, "the pod to run"
    )


def pod_pids(folder: Path) -> set[int]:
    return {pid for pid, cmdline in naming(folder).items() if "time.sleep(600)" in cmdline}


def test_down_stops_every_process_up_started(cluster: tuple[Path, dict[str, Any]]) -> None:
    folder, state = cluster
    start_pod(state["kubeconfig"])
    pods = wait_until(lambda: pod_pids(folder), 10, "the pod's process")
    recorded = set(state["pids"].values())
    assert recorded | pods <= set(naming(folder))

    stopped = cli("down", folder)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for name in COMPONENTS:
        assert f"stopped {name} (pid {state['pids'][name]})" in stopped.stdout
    assert not naming(folder), naming(folder)
    assert not started_here(folder)
    assert not (folder / "state.json").exists()


def test_down_finds_what_an_earlier_run_left_behind(cluster: tuple[Path, dict[str, Any]]) -> None:
    """A node agent killed outright leaves its pods running; an `up` of an older version never
    recorded (or never stopped) its provisioner. `down` finds them by the cluster's folder."""
    folder, state = cluster
    start_pod(state["kubeconfig"])
    pods = wait_until(lambda: pod_pids(folder), 10, "the pod's process")
    agent = state["pids"]["node-agent"]
    os.killpg(agent, signal.SIGKILL)  # no chance to stop its pods
    wait_until(lambda: agent not in naming(folder), 10, "the agent to die")
    assert pods <= set(naming(folder))  # orphaned, still running
    (folder / "state.json").unlink()  # nothing recorded at all

    stopped = cli("down", folder)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "left by an earlier run" in stopped.stdout
    assert not naming(folder), naming(folder)
