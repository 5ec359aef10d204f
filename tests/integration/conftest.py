"""Fixtures for tests that need the real control plane (``@pytest.mark.cluster``).

One control plane per test session (startup is a few seconds; a fresh one per test would dominate
the suite), one fresh namespace per test (isolation without restarting anything), and one GPU node
agent per session whose GPU count a test may change (restored afterwards).

Later suites (operator, e2e) reuse these: ``control_plane``, ``kubeconfig``, ``k8s_client``,
``namespace`` and ``node_agent``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

from tests.cluster import BinariesMissing, ControlPlane, NodeAgent, StartupError, find_binaries, wait_until
from tests.cluster.provisioner import HostPathProvisioner

NODE_NAME = "nejumi-gpu-0"
DEFAULT_GPUS = int(os.environ.get("NEJUMI_TEST_GPUS", "8"))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler for the whole session.

    Missing binaries are a failure, not a skip: a suite that silently skips its cluster tests
    would report green without having tested anything.
    """
    problem = None
    try:
        cp = ControlPlane(tmp_path_factory.mktemp("control-plane"), bin_dir=find_binaries())
        cp.start()
    except BinariesMissing as exc:
        problem = str(exc)
    except StartupError as exc:
        problem = f"control plane did not start: {exc}"
    if problem:  # outside the except block, so the report shows only the message
        pytest.fail(problem, pytrace=False)
    print(f"\ncontrol plane ready in {cp.startup_seconds:.1f}s at {cp.server} (kubeconfig {cp.kubeconfig})")
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session", autouse=True)
def provisioner(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostPathProvisioner]:
    """The default StorageClass ``nejumi-test-local`` and its hostPath provisioner, for the whole
    session: every evaluation's workspace PVC gets a volume (a folder the node agent mounts)."""
    prov = HostPathProvisioner(control_plane.kubeconfig, tmp_path_factory.mktemp("volumes"))
    prov.start()
    try:
        yield prov
    finally:
        prov.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """Path of the admin kubeconfig (for kubectl, kopf, subprocesses)."""
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def k8s_client(control_plane: ControlPlane) -> Iterator[ApiClient]:
    """An admin ``kubernetes.client.ApiClient`` (``system:masters``)."""
    client = control_plane.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def _session_node_agent(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeAgent]:
    node_kubeconfig = control_plane.write_kubeconfig(
        control_plane.workdir / "node.kubeconfig", f"system:node:{NODE_NAME}", ("system:nodes",)
    )
    agent = NodeAgent(
        node_kubeconfig,
        control_plane.kubeconfig,
        tmp_path_factory.mktemp("pods"),
        name=NODE_NAME,
        gpus=DEFAULT_GPUS,
        # Pod commands find the test venv's python and console scripts first.
        extra_env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def node_agent(_session_node_agent: NodeAgent) -> Iterator[NodeAgent]:
    """The Ready GPU node running pods as processes; ``set_gpus(n)`` is undone after the test, and
    agent errors (bugs in the harness, not pod failures) fail the test that was running."""
    agent = _session_node_agent
    yield agent
    if agent.gpus != DEFAULT_GPUS:
        agent.set_gpus(DEFAULT_GPUS)
    errors, agent.errors[:] = list(agent.errors), []
    assert not errors, "node agent errors:\n" + "\n".join(errors)


@pytest.fixture
def namespace(k8s_client: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, ready for Pods (its ``default`` ServiceAccount
    exists), deleted afterwards without waiting for finalization."""
    core = CoreV1Api(k8s_client)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"nejumi.test/owner": "pytest"}}})

    def default_sa() -> Any:
        try:
            return core.read_namespaced_service_account("default", name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    wait_until(default_sa, 20, f"ServiceAccount {name}/default (serviceaccount controller)")
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def operator_env(kubeconfig: Path, data_mirror: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The operator's settings for this machine: the node agent runs the Job's command as a local
    process, so the command is this checkout's evaluator, with the offline data in its env."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    evaluator = Path(sys.executable).parent / "nejumi-eval"
    monkeypatch.setenv("NEJUMI_OPERATOR_EVALUATOR_COMMAND", json.dumps([str(evaluator), "run"]))
    monkeypatch.setenv(
        "NEJUMI_OPERATOR_EVALUATOR_ENV",
        json.dumps(
            {
                "NEJUMI_DATA_MIRROR": str(data_mirror),
                "NEJUMI_CACHE_DIR": os.environ["NEJUMI_CACHE_DIR"],
                "HF_HUB_OFFLINE": "1",
                "WANDB_MODE": "offline",
            }
        ),
    )
    monkeypatch.setenv("NEJUMI_OPERATOR_SERVER_TIMEOUT", "10")
    monkeypatch.setenv("NEJUMI_OPERATOR_RESYNC_SECONDS", "5")
    return monkeypatch
