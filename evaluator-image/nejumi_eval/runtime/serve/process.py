"""Lifecycle of a model server child process: start, wait for health, stop cleanly.

The server runs in its own session (process group) so that stopping it also stops what it spawned
(vLLM's engine and tensor-parallel workers): SIGTERM to the group, SIGKILL after a grace period.
That group is led by a small watchdog (:mod:`.watchdog`) that starts the server and brings the
whole group down when the evaluator dies without stopping it (SIGKILL, the OOM killer): a server
that outlived its evaluator would hold the GPU, or a CPU test machine's cores, for nobody.
Its stdout/stderr go to a log file in the workspace; when it dies or never becomes healthy the
error carries the log's last lines, which is where the real cause (OOM, bad flag) is.

The server's temporary folder is kept short enough for Unix sockets (:func:`socket_safe_tmpdir`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from nejumi_eval.runtime.serve.commands import (
    ServerSettings,
    base_url,
    health_url,
    served_model_name,
    server_command,
)

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 50
WATCHDOG = Path(__file__).with_name("watchdog.py")

MAX_TMPDIR_CHARS = 64
"""Longest ``TMPDIR`` handed to a server as is. A Unix socket's path holds at most 107 bytes, and
servers bind theirs in the temporary folder: Python's multiprocessing ``<tmp>/pymp-XXXXXXXX/
listener-XXXXXXXX`` (32 more; ``transformers serve`` >= 5 passes every request to its model's
process through one), vLLM's ``<tmp>/<uuid4>`` IPC sockets (37 more)."""
_TAIL_BYTES = 64 * 1024


class ServerError(RuntimeError):
    """The model server could not be brought up."""


class ServerExitedError(ServerError):
    """The server process exited before it became healthy."""


class ServerStartTimeoutError(ServerError):
    """The server process kept running but never became healthy in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the server binds it right after; the race is benign here)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_executable(name: str) -> str:
    """Prefer the console script of the running interpreter's environment (a venv that was not
    activated, as under ``.venv/bin/pytest``), else whatever ``PATH`` finds."""
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else name


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def socket_safe_tmpdir(env: Mapping[str, str], *, scratch: str = "/tmp") -> tuple[str, str | None]:
    """The ``TMPDIR`` for a server launched with ``env``, and a folder to remove after it (or None).

    Why: a server whose temporary folder is too long to bind Unix sockets in does not fail, it
    hangs: ``transformers serve`` 5.x drops each request it cannot hand to its model's process
    (``OSError: AF_UNIX path too long`` in its log) and the client waits out its request timeout,
    10 minutes per attempt (the test cluster's pod sandboxes, ~110 characters deep, did exactly
    that). So a folder longer than :data:`MAX_TMPDIR_CHARS` is reached through a short symlink
    in ``scratch`` instead: the files stay where the environment put them (a pod's volume, its
    size limit, caches kept across runs), only the path the server sees is short. Where no
    symlink can be made the folder is left as it was (and a warning logged).
    """
    current = next((env[k] for k in ("TMPDIR", "TEMP", "TMP") if env.get(k)), tempfile.gettempdir())
    if len(current) <= MAX_TMPDIR_CHARS:
        return current, None
    try:
        holder = tempfile.mkdtemp(prefix="nejumi-serve-", dir=scratch)
    except OSError as exc:
        log.warning(
            "TMPDIR %s is too long for Unix sockets and %s is not writable: %s", current, scratch, exc
        )
        return current, None
    link = os.path.join(holder, "tmp")
    os.symlink(os.path.abspath(current), link)
    return link, holder


class ModelServer:
    """An OpenAI-compatible server child process; ``async with`` starts it healthy and stops it.

    Built from any command (tests use a fake server script); :meth:`from_settings` builds the real
    ``vllm``/``transformers`` one.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        base_url: str,
        health_url: str,
        model_name: str,
        log_path: Path,
        startup_timeout_s: float = 1800.0,
        stop_grace_s: float = 30.0,
        poll_interval_s: float = 0.5,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.base_url = base_url
        self.health_url = health_url
        self.model_name = model_name
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.poll_interval_s = poll_interval_s
        self.env = dict(env or {})
        self.cwd = cwd
        self.startup_s: float | None = None
        self._tmp_holder: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        """The watchdog: the group's leader, whose pid is the group's id and whose exit status is
        the server's."""

    @classmethod
    def from_settings(cls, settings: ServerSettings, *, log_dir: Path) -> ModelServer:
        """Resolve ``port=0`` to a free port and the binary, then build the backend's command line."""
        if settings.port == 0:
            settings = settings.model_copy(update={"port": free_port()})
        if settings.executable is None:
            settings = settings.model_copy(update={"executable": find_executable(settings.backend)})
        return cls(
            server_command(settings),
            base_url=base_url(settings),
            health_url=health_url(settings),
            model_name=served_model_name(settings),
            log_path=Path(log_dir) / f"{settings.backend}-serve.log",
            startup_timeout_s=settings.startup_timeout_s,
            stop_grace_s=settings.stop_grace_s,
            env=settings.env,
        )

    # ---- state ----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The process group's id: the watchdog that leads it, which lives exactly as long as the
        server (it exits with the server's status)."""
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return read_log_tail(self.log_path, lines)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Launch and wait until ``health_url`` answers 200; on failure stop it and raise."""
        if self._proc is not None:
            raise RuntimeError("server already started")
        env = {**os.environ, **self.env}
        if shutil.which(self.command[0], path=env.get("PATH")) is None:
            raise ServerExitedError(f"cannot start model server: {self.command[0]} not found")
        tmpdir, self._tmp_holder = socket_safe_tmpdir(env)
        if self._tmp_holder is not None:
            log.info("model server TMPDIR: %s, a short symlink to %s", tmpdir, os.readlink(tmpdir))
            env["TMPDIR"] = tmpdir
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log_file:
            log_file.write(f"$ {' '.join(self.command)}\n".encode())
            log_file.flush()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.watched_command(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    cwd=self.cwd,
                )
            except FileNotFoundError as exc:
                self._remove_tmp_holder()
                raise ServerExitedError(f"cannot start model server: {exc.filename} not found") from exc
        log.info("started model server, group %s: %s (log: %s)", self._proc.pid, self.command, self.log_path)
        try:
            await self._wait_healthy(started)
        except BaseException:
            await self.stop()
            raise
        self.startup_s = time.monotonic() - started
        log.info("model server healthy at %s after %.1fs", self.base_url, self.startup_s)

    def watched_command(self) -> list[str]:
        """The command line actually launched: the server's, under the watchdog that ends it with
        this process. ``-I -S``: the watchdog needs the standard library only, not the venv's
        site-packages nor ``PYTHONPATH``."""
        watchdog = [sys.executable, "-I", "-S", str(WATCHDOG), str(os.getpid()), f"{self.stop_grace_s:g}"]
        return [*watchdog, "--", *self.command]

    async def _wait_healthy(self, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.startup_timeout_s
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False) as http:
            while True:
                if self._proc.returncode is not None:
                    raise ServerExitedError(
                        f"model server exited with code {self._proc.returncode} before becoming healthy "
                        f"({' '.join(self.command)}); last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(self.health_url)
                    if response.status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    raise ServerStartTimeoutError(
                        f"model server not healthy at {self.health_url} after {self.startup_timeout_s:g}s "
                        f"({' '.join(self.command)}); last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(asyncio.TimeoutError):
                    # wake early if the process dies
                    await asyncio.wait_for(asyncio.shield(self._proc.wait()), self.poll_interval_s)

    async def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``stop_grace_s``; idempotent."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the watchdog leads the server's group
        self._signal_group(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_grace_s)
        except TimeoutError:
            log.warning("model server %s ignored SIGTERM for %gs; killing it", pgid, self.stop_grace_s)
            self._signal_group(pgid, signal.SIGKILL)
            await proc.wait()
        # children that outlived the leader (workers) go too
        self._signal_group(pgid, signal.SIGKILL)
        self._remove_tmp_holder()

    def _remove_tmp_holder(self) -> None:
        """The short symlink's folder (:func:`socket_safe_tmpdir`); what it points to stays."""
        if self._tmp_holder is not None:
            shutil.rmtree(self._tmp_holder, ignore_errors=True)  # unlinks the symlink, follows nothing
            self._tmp_holder = None

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    async def __aenter__(self) -> ModelServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
