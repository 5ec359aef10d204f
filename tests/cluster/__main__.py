"""``python -m tests.cluster up|down|status``: the test cluster for interactive use.

``up`` starts the same control plane, node agent and volume provisioner the tests use, but
detached, under ``.cache/cluster/`` (``$NEJUMI_CLUSTER_DIR`` when set), and records each process as
it starts (its PID, which leads its own process group) and the kubeconfig path in ``state.json``
there, so ``down`` can stop exactly those processes later (``make cluster-up`` / ``make
cluster-down``). ``down`` stops every recorded group, then whatever else ``up`` started that is
still running (a pod process the agent did not stop, a provisioner an older ``up`` left), and
returns once all of them are gone. ``agent`` and ``provision`` run the node agent and the
provisioner in the foreground (what ``up`` starts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.cluster import nodeagent, provisioner
from tests.cluster.controlplane import REPO, ControlPlane, Process, StartupError, wait_until

STATE_ENV = "NEJUMI_CLUSTER_DIR"
"""Where ``up`` keeps its cluster (default ``.cache/cluster/``): a test runs its own cluster beside a
developer's by setting it."""
NODE = "nejumi-gpu-0"
# Stop order: the agent (kills pod processes), the provisioner (a watcher), scheduler and
# controllers, apiserver, then etcd. A recorded name not listed here is stopped after these.
STOP_ORDER = (
    "node-agent",
    "provisioner",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
)
# What /proc/<pid>/cmdline must contain, so a recycled PID is never signalled.
MARKERS = {name: name for name in STOP_ORDER} | {
    "node-agent": "tests.cluster agent",
    "provisioner": "tests.cluster provision",
}
# The binaries `up` runs with the cluster's folder in their arguments (and `-m tests.cluster` helpers).
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
GRACE = 20.0
# The agent stops its pods (each for up to its capped grace period) before it exits.
AGENT_GRACE = nodeagent.NodeAgent.max_grace_seconds + GRACE


def state_dir() -> Path:
    """The cluster's folder, absolute: its path is how ``down`` recognises what ``up`` started."""
    return Path(os.environ.get(STATE_ENV) or REPO / ".cache" / "cluster").absolute()


def state_file() -> Path:
    return state_dir() / "state.json"


def _proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _cmdline(pid: int) -> str:
    return _proc(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")


def _ours(name: str, pid: int) -> bool:
    return MARKERS.get(name, name) in _cmdline(pid)


def _read_state() -> dict | None:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None


def _record(cp: ControlPlane, gpus: int) -> None:
    """Write every process started so far to state.json, right after it starts: an ``up`` that
    dies halfway still leaves ``down`` the list of what to stop."""
    state = {"kubeconfig": str(cp.kubeconfig), "pids": cp.pids(), "node": NODE, "gpus": gpus}
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_file())


def up(gpus: int) -> int:
    """Start (or report) the detached cluster; print how to use it."""
    state = _read_state()
    if state and all(_ours(n, p) for n, p in state["pids"].items()):
        print(f"cluster already up\nexport KUBECONFIG={state['kubeconfig']}")
        return 0
    if down() != 0:  # a half-dead earlier cluster, or processes an older `up` left behind
        return 1
    folder = state_dir()
    shutil.rmtree(folder, ignore_errors=True)
    cp = ControlPlane(folder, tie_to_parent=False)
    try:
        cp.start()
        _record(cp, gpus)
        node_kubeconfig = cp.write_kubeconfig(
            folder / "node.kubeconfig", f"system:node:{NODE}", ("system:nodes",)
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
                str(folder / "pods"),
                "--name",
                NODE,
                "--gpus",
                str(gpus),
            ],
            folder / "logs" / "node-agent.log",
        )
        agent.start(tie_to_parent=False, cwd=REPO)
        cp.processes.append(agent)
        _record(cp, gpus)
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
                str(folder / "volumes"),
            ],
            folder / "logs" / "provisioner.log",
        )
        storage.start(tie_to_parent=False, cwd=REPO)
        cp.processes.append(storage)
        _record(cp, gpus)
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
        down()  # what cp.stop() does not know of (a pod the agent started)
        raise
    print(f"control plane ready in {cp.startup_seconds:.1f}s; node {NODE} has {gpus} GPUs")
    print(f"logs: {folder / 'logs'}\nexport KUBECONFIG={cp.kubeconfig}")
    return 0


def down() -> int:
    """Stop every process ``up`` started and return once all are gone; 1 if any survives SIGKILL.

    First the recorded process groups in `STOP_ORDER` (the agent first, so that it stops its pods;
    the apiserver before etcd), each SIGTERMed, then SIGKILLed after its grace; then whatever else
    `started_here` finds (a pod the agent left, a provisioner of an older ``up``)."""
    state = _read_state()
    pids: dict[str, int] = state["pids"] if state else {}
    for name in [n for n in STOP_ORDER if n in pids] + sorted(set(pids) - set(STOP_ORDER)):
        pid = pids[name]
        if not _ours(name, pid):
            continue
        group = {p for p in _all_pids() if _pgid(p) == pid}  # each leads its own (a new session)
        _stop(group | {pid}, AGENT_GRACE if name == "node-agent" else GRACE)
        print(f"stopped {name} (pid {pid})")
    left = started_here()
    if left:
        _stop(set(left), GRACE)
        for pid, cmdline in sorted(left.items()):
            print(f"stopped pid {pid}, left by an earlier run: {cmdline[:120]}")
    survivors = set(started_here()) | {p for n, p in pids.items() if _ours(n, p) and _running(p)}
    if survivors:
        print(f"still running after SIGKILL: {sorted(survivors)}", file=sys.stderr)
        return 1
    if not state and not left:
        print("no cluster recorded in", state_file())
    state_file().unlink(missing_ok=True)
    shutil.rmtree(state_dir() / "etcd", ignore_errors=True)
    return 0


def started_here(folder: Path | None = None) -> dict[int, str]:
    """Running processes (pid → command line) that ``up`` started for ``folder`` (default: this
    cluster's): a component or ``tests.cluster`` helper with the folder in its arguments, or a pod
    process (the pod folder the agent puts in its environment lies inside). A shell or ``tail``
    that merely names the folder is neither."""
    root = str(folder or state_dir())
    pod_dir = f"{nodeagent.POD_DIR_ENV}=".encode()
    out = {}
    for pid in _all_pids() - {os.getpid(), os.getppid()}:
        if not _running(pid):
            continue
        argv = _proc(pid, "cmdline").decode(errors="replace").split("\0")
        component = Path(argv[0]).name in COMPONENTS or argv[1:3] == ["-m", "tests.cluster"]
        env = _proc(pid, "environ").split(b"\0")
        pod = any(
            _inside(v.removeprefix(pod_dir).decode(errors="replace"), root)
            for v in env
            if v.startswith(pod_dir)
        )
        if pod or (component and any(_inside(a, root) or _inside(a.partition("=")[2], root) for a in argv)):
            out[pid] = " ".join(argv).strip()
    return out


def _inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (``/x/cluster2`` is not below ``/x/cluster``)."""
    return path == root or path.startswith(root + "/")


def _all_pids() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, session, …]; [] when gone."""
    stat = _proc(pid, "stat").decode(errors="replace")
    return stat.rsplit(")", 1)[1].split() if ")" in stat else []


def _pgid(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[2]) if len(fields) > 2 else None


def _running(pid: int) -> bool:
    """True unless the process is gone or a zombie (not our child, so we cannot reap it)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _stop(pids: set[int], grace: float) -> None:
    """SIGTERM ``pids`` (the whole group of one that leads a group), SIGKILL what still runs after
    ``grace`` seconds, and wait until none runs (up to 10 s more)."""

    def signal_all(sig: signal.Signals, targets: set[int]) -> None:
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if _pgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)

    def alive() -> set[int]:
        return {p for p in pids if _running(p)}

    signal_all(signal.SIGTERM, pids)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_all(signal.SIGKILL, alive())
    deadline = time.monotonic() + 10.0
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)


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
