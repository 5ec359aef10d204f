"""``python -m tests.cluster up|down|status``: the test cluster for interactive use.

``up`` starts the same control plane and node agent the tests use, but detached, under
``.cache/cluster/``, and records PIDs and the kubeconfig path in ``.cache/cluster/state.json`` so
``down`` can stop exactly those processes later (``make cluster-up`` / ``make cluster-down``).
``agent`` runs the node agent in the foreground (what ``up`` starts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from tests.cluster import nodeagent, provisioner
from tests.cluster.controlplane import REPO, ControlPlane, Process, StartupError, terminate_group, wait_until

STATE_DIR = REPO / ".cache" / "cluster"
STATE_FILE = STATE_DIR / "state.json"
NODE = "nejumi-gpu-0"
# Stop order: the agent (kills pod processes), scheduler and controllers, apiserver, then etcd.
STOP_ORDER = ("node-agent", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
# What /proc/<pid>/cmdline must contain, so a recycled PID is never signalled.
MARKERS = {name: name for name in STOP_ORDER} | {"node-agent": "tests.cluster agent"}


def _ours(name: str, pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return MARKERS[name] in cmdline


def _read_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def up(gpus: int) -> int:
    """Start (or report) the detached cluster; print how to use it."""
    state = _read_state()
    if state and all(_ours(n, p) for n, p in state["pids"].items()):
        print(f"cluster already up\nexport KUBECONFIG={state['kubeconfig']}")
        return 0
    if state:
        down()
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    cp = ControlPlane(STATE_DIR, tie_to_parent=False)
    try:
        cp.start()
        node_kubeconfig = cp.write_kubeconfig(
            STATE_DIR / "node.kubeconfig", f"system:node:{NODE}", ("system:nodes",)
        )
        agent = Process(
            "node-agent",
            [
                sys.executable,
                "-m",
                "tests.cluster",
                "agent",
                "--kubeconfig",
                str(node_kubeconfig),
                "--admin-kubeconfig",
                str(cp.kubeconfig),
                "--root",
                str(STATE_DIR / "pods"),
                "--name",
                NODE,
                "--gpus",
                str(gpus),
            ],
            STATE_DIR / "logs" / "node-agent.log",
        )
        agent.start(tie_to_parent=False, cwd=REPO)
        cp.processes.append(agent)
        # Workspace PVCs need volumes: the default StorageClass and its hostPath provisioner.
        storage = Process(
            "provisioner",
            [
                sys.executable,
                "-m",
                "tests.cluster",
                "provision",
                "--kubeconfig",
                str(cp.kubeconfig),
                "--root",
                str(STATE_DIR / "volumes"),
            ],
            STATE_DIR / "logs" / "provisioner.log",
        )
        storage.start(tie_to_parent=False, cwd=REPO)
        cp.processes.append(storage)
        core = cp.api_client()
        from kubernetes.client import CoreV1Api

        def node_ready() -> bool:
            if not agent.alive():
                raise StartupError(f"node agent exited:\n{agent.log_tail()}")
            node = CoreV1Api(core).read_node(NODE)
            return not node.spec.taints and any(
                c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
            )

        wait_until(node_ready, 30, f"node {NODE} Ready")
    except BaseException:
        cp.stop()
        raise
    STATE_FILE.write_text(
        json.dumps(
            {"kubeconfig": str(cp.kubeconfig), "pids": cp.pids(), "node": NODE, "gpus": gpus}, indent=2
        )
    )
    print(f"control plane ready in {cp.startup_seconds:.1f}s; node {NODE} has {gpus} GPUs")
    print(f"logs: {STATE_DIR / 'logs'}\nexport KUBECONFIG={cp.kubeconfig}")
    return 0


def down() -> int:
    """Stop the processes recorded by ``up`` (apiserver before etcd)."""
    state = _read_state()
    if not state:
        print("no cluster recorded in", STATE_FILE)
        return 0
    pids: dict[str, int] = state["pids"]
    for name in STOP_ORDER:
        pid = pids.get(name)
        if pid is None or not _ours(name, pid):
            continue
        terminate_group(pid, 20.0, lambda pid=pid, name=name: _ours(name, pid) and _running(pid))
        print(f"stopped {name} (pid {pid})")
    STATE_FILE.unlink(missing_ok=True)
    shutil.rmtree(STATE_DIR / "etcd", ignore_errors=True)
    return 0


def _running(pid: int) -> bool:
    """True unless the process is gone or a zombie (not our child, so we cannot reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def status() -> int:
    """Print which recorded processes are alive; exit 1 if any is not."""
    state = _read_state()
    if not state:
        print("down")
        return 1
    ok = True
    for name, pid in state["pids"].items():
        alive = _ours(name, pid)
        ok &= alive
        print(f"{name:24} pid {pid:<8} {'running' if alive else 'GONE'}")
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start the control plane and node agent, detached")
    p_up.add_argument("--gpus", type=int, default=int(os.environ.get("NEJUMI_TEST_GPUS", "8")))
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("status", help="show the recorded processes")
    sub.add_parser("agent", help="run the node agent in the foreground (used by `up`)", add_help=False)
    sub.add_parser(
        "provision", help="run the hostPath provisioner in the foreground (used by `up`)", add_help=False
    )
    args, rest = parser.parse_known_args()
    if args.cmd == "agent":
        nodeagent.main(rest)
        return 0
    if args.cmd == "provision":
        provisioner.main(rest)
        return 0
    with contextlib.suppress(AttributeError):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if args.cmd == "up":
        return up(args.gpus)
    if args.cmd == "down":
        return down()
    return status()


if __name__ == "__main__":
    sys.exit(main())
