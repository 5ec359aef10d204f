"""A real Kubernetes control plane plus a test-only GPU node agent, run as local processes.

``ControlPlane`` starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built by
``make k8s-bin``); ``NodeAgent`` registers a GPU node and runs the pods bound to it as processes.
The pytest fixtures live in ``tests/integration/conftest.py``; ``python -m tests.cluster up|down``
(``make cluster-up``/``cluster-down``) runs the same cluster for poking at with kubectl.
"""

from tests.cluster.controlplane import (
    BinariesMissing,
    ControlPlane,
    StartupError,
    find_binaries,
    wait_until,
)
from tests.cluster.nodeagent import GPU_RESOURCE, POD_DIR_ENV, TERMINATION_ENV, NodeAgent

__all__ = [
    "GPU_RESOURCE",
    "POD_DIR_ENV",
    "TERMINATION_ENV",
    "BinariesMissing",
    "ControlPlane",
    "NodeAgent",
    "StartupError",
    "find_binaries",
    "wait_until",
]
