"""Run a model server so that it cannot outlive the evaluator that started it.

    python watchdog.py PARENT_PID GRACE_S -- COMMAND [ARG...]

The evaluator starts this script (stdlib only, run by path: no package import, a few MB) as the
leader of a new session and process group; it starts ``COMMAND`` (``vllm serve``, ``transformers
serve``) in that group and stays beside it:

- While the evaluator lives it is transparent: the evaluator's ``killpg`` reaches the server and
  whatever it spawned (vLLM's engine core, tensor-parallel workers) directly; this process ignores
  SIGTERM/SIGINT (a handler, not SIG_IGN, so the server does not inherit the ignoring) and, when the
  server exits, exits with the server's status (its code, or the same signal), so
  ``ModelServer.returncode`` and its error messages read as before.
- When the evaluator dies, however (SIGKILL, the OOM killer, a crash that skips every ``finally``),
  it SIGTERMs the whole group, waits ``GRACE_S`` and SIGKILLs the group, itself included.

Why a watchdog and not ``prctl(PR_SET_PDEATHSIG)`` on the server: the parent-death signal fires
when the *thread* that forked exits, not the process (the evaluator forks from its event loop's
thread, which need not live as long as the process), it reaches the one process that set it and
not the grandchildren the server spawns, and an ``exec`` of a set-uid binary clears it. Polling the
parent from inside the server's group covers all of these: the evaluator's death is seen through a
pidfd when the kernel has them (Linux ≥ 5.3: at once), else by polling ``getppid()`` (a child of a
dead parent is re-parented to init or a subreaper, so its parent pid changes), and the whole group
goes, however deep the server's process tree is.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

POLL_S = 0.25
"""How often the parent and the server are checked when no pidfd wakes this process earlier."""

EXIT_CANNOT_START = 127


def _pidfd(pid: int) -> int | None:
    """A descriptor that turns readable when ``pid`` exits, or None (old kernel, not Linux)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _killpg(sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgrp(), sig)


def _exit_like(status: int) -> None:
    """Exit as the server did: its exit code, or killed by the same signal."""
    if status >= 0:
        os._exit(status)
    sig = -status
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # a signal whose default is not to terminate


def _bring_down(server: subprocess.Popen[bytes], grace_s: float) -> None:
    """The evaluator is gone: the whole group goes, politely first."""
    print(f"watchdog: parent gone; stopping the server group {os.getpgrp()}", file=sys.stderr, flush=True)
    _killpg(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.05)
    _killpg(signal.SIGKILL)  # stragglers (workers) and this process
    os._exit(137)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        os._exit(2)
    parent, grace_s, command = int(argv[0]), float(argv[1]), argv[3:]
    parent_fd = _pidfd(parent)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # the group signal reaches the server itself
    if os.getppid() != parent:  # the evaluator died before this process got here
        os._exit(137)
    try:
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"cannot start model server: {exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_CANNOT_START)
    server_fd = _pidfd(server.pid)
    watched = [fd for fd in (parent_fd, server_fd) if fd is not None]
    while True:
        if (status := server.poll()) is not None:
            _exit_like(status)
        if os.getppid() != parent:
            _bring_down(server, grace_s)
        select.select(watched, [], [], POLL_S)  # a signal's handler wakes it too (PEP 475 retries)


if __name__ == "__main__":
    main(sys.argv[1:])
