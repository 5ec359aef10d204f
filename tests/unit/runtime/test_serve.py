"""Model serving: the exact vllm / transformers command lines and the process lifecycle."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nejumi_eval.runtime.serve import (
    ModelServer,
    ServerExitedError,
    ServerSettings,
    ServerStartTimeoutError,
    base_url,
    free_port,
    health_url,
    served_model_name,
    server_command,
    transformers_command,
    vllm_command,
)
from nejumi_eval.runtime.serve.process import MAX_TMPDIR_CHARS, socket_safe_tmpdir
from nejumi_eval.runtime.serve.tiny import MARKER, TinyModelSpec, build_tiny_model, tiny_model_dir
from tests.support.paths import FIXTURES
from tests.support.procs import cmdline, group_members, wait_group_gone

FAKE = FIXTURES / "fake_model_server.py"


# ---- command lines --------------------------------------------------------------------------


def test_vllm_command_full():
    settings = ServerSettings(
        model="llm-jp/llm-jp-3-1.8b-instruct",
        revision="a1b2c3",
        served_model_name="model-under-test",
        tensor_parallel_size=2,
        pipeline_parallel_size=3,
        max_model_len=4096,
        dtype="bfloat16",
        chat_template=Path("/templates/llmjp.jinja"),
        host="0.0.0.0",
        port=8001,
        extra_args=["--gpu-memory-utilization", "0.85", "--enforce-eager"],
    )
    assert vllm_command(settings) == [
        "vllm", "serve", "llm-jp/llm-jp-3-1.8b-instruct",
        "--host", "0.0.0.0", "--port", "8001",
        "--served-model-name", "model-under-test",
        "--revision", "a1b2c3",
        "--tensor-parallel-size", "2",
        "--pipeline-parallel-size", "3",
        "--dtype", "bfloat16",
        "--max-model-len", "4096",
        "--chat-template", "/templates/llmjp.jinja",
        "--generation-config", "vllm",
        "--seed", "0",
        "--gpu-memory-utilization", "0.85", "--enforce-eager",
    ]  # fmt: skip
    assert server_command(settings) == vllm_command(settings)
    assert served_model_name(settings) == "model-under-test"
    assert base_url(settings) == "http://127.0.0.1:8001/v1"
    assert health_url(settings) == "http://127.0.0.1:8001/health"


def test_vllm_command_minimal():
    settings = ServerSettings(
        model="org/m", generation_config=None, seed=None, executable="/opt/vllm/bin/vllm"
    )
    assert vllm_command(settings) == [
        "/opt/vllm/bin/vllm", "serve", "org/m", "--host", "127.0.0.1", "--port", "8000",
        "--served-model-name", "org/m", "--tensor-parallel-size", "1", "--pipeline-parallel-size", "1",
        "--dtype", "auto",
    ]  # fmt: skip
    assert served_model_name(settings) == "org/m"


def test_transformers_command(tmp_path: Path):
    local = ServerSettings(backend="transformers", model=str(tmp_path), device="cpu", port=9000)
    assert transformers_command(local) == [
        "transformers", "serve", str(tmp_path),
        "--host", "127.0.0.1", "--port", "9000", "--dtype", "auto", "--log-level", "info",
        "--device", "cpu", "--default-seed", "0",
    ]  # fmt: skip
    assert served_model_name(local) == str(tmp_path)
    hub = ServerSettings(backend="transformers", model="org/m", revision="v2", seed=None)
    assert transformers_command(hub)[:3] == ["transformers", "serve", "org/m@v2"]
    assert served_model_name(hub) == "org/m@v2"
    assert server_command(hub) == transformers_command(hub)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"served_model_name": "alias"}, "no --served-model-name"),
        ({"chat_template": Path("/t.jinja")}, "no --chat-template"),
        ({"tensor_parallel_size": 2}, "tensor_parallel_size"),
        ({"pipeline_parallel_size": 2}, "pipeline_parallel_size"),
    ],
)
def test_transformers_refuses_what_it_cannot_honour(overrides: dict, message: str):
    with pytest.raises(ValueError, match=message):
        transformers_command(ServerSettings(backend="transformers", model="org/m", **overrides))


def test_from_settings_resolves_port_zero(tmp_path: Path):
    server = ModelServer.from_settings(ServerSettings(model="org/m", port=0), log_dir=tmp_path)
    port = int(server.command[server.command.index("--port") + 1])
    assert port > 0
    assert server.base_url == f"http://127.0.0.1:{port}/v1"
    assert server.health_url == f"http://127.0.0.1:{port}/health"
    assert server.model_name == "org/m"
    assert Path(server.command[0]).name == "vllm"  # the venv's console script if there is one
    assert server.log_path == tmp_path / "vllm-serve.log"


# ---- tiny model: cache placement and safety (no build, no torch) ------------------------------


def test_tiny_model_reuses_a_matching_build_in_the_cache_dir(tmp_path: Path):
    folder = tiny_model_dir(tmp_path)
    assert folder == tmp_path / "models" / "tiny-random-llama"
    folder.mkdir(parents=True)
    fingerprint = TinyModelSpec().fingerprint()
    (folder / MARKER).write_text(json.dumps({"fingerprint": fingerprint}))
    model = build_tiny_model(tmp_path)
    assert (model.path, model.built, model.fingerprint) == (folder, False, fingerprint)
    assert os.fspath(model) == str(folder)
    assert TinyModelSpec(num_hidden_layers=3).fingerprint() != fingerprint


def test_tiny_model_never_overwrites_a_foreign_folder(tmp_path: Path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        build_tiny_model(dest=tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


# ---- lifecycle with a fake server process ---------------------------------------------------


def fake_server(
    tmp_path: Path,
    *flags: str,
    timeout_s: float = 20.0,
    grace_s: float = 5.0,
    env: dict[str, str] | None = None,
) -> ModelServer:
    port = free_port()
    return ModelServer(
        [sys.executable, str(FAKE), "--port", str(port), *flags],
        base_url=f"http://127.0.0.1:{port}/v1",
        health_url=f"http://127.0.0.1:{port}/health",
        model_name="fake",
        log_path=tmp_path / "logs" / "serve.log",
        startup_timeout_s=timeout_s,
        stop_grace_s=grace_s,
        poll_interval_s=0.1,
        env=env,
    )


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody has reaped yet (dead all the same)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_starts_when_healthy_and_stops_cleanly(tmp_path: Path):
    server = fake_server(tmp_path, "--healthy-after", "0.8")
    async with server:
        assert server.running and server.pid is not None
        assert server.startup_s is not None and server.startup_s >= 0.8
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.health_url)).status_code == 200
        pid = server.pid
    assert not server.running and server.returncode is not None
    assert gone(pid)
    assert server.log_tail().splitlines()[-1] == "fake server log line 79"
    await server.stop()  # idempotent


async def test_dies_at_start_raises_with_log_tail(tmp_path: Path):
    server = fake_server(tmp_path, "--die-at-start")
    with pytest.raises(ServerExitedError) as err:
        await server.start()
    message = str(err.value)
    assert "exited with code 3" in message
    assert "CUDA out of memory (fake)" in message
    assert "fake server log line 79" in message
    assert "fake server log line 20" not in message  # only the last 50 lines


async def test_never_healthy_times_out_and_is_stopped(tmp_path: Path):
    server = fake_server(tmp_path, "--never-healthy", timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(ServerStartTimeoutError) as err:
        await server.start()
    assert time.monotonic() - started >= 1.5
    assert "not healthy" in str(err.value) and "fake server log line 79" in str(err.value)
    assert server.returncode is not None and gone(server.pid)


async def test_sigterm_ignored_then_killed_with_its_children(tmp_path: Path):
    server = fake_server(tmp_path, "--ignore-sigterm", "--spawn-child", grace_s=0.5)
    await server.start()
    child = int(re.search(r"child pid (\d+)", server.log_path.read_text()).group(1))
    assert not gone(child)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started >= 0.5
    assert server.returncode == -9
    assert "ignoring SIGTERM" in server.log_tail()
    for _ in range(50):  # the child is reaped by init shortly after SIGKILL
        if gone(child):
            break
        time.sleep(0.05)
    assert gone(child)


async def test_missing_executable_is_a_clear_error(tmp_path: Path):
    server = ModelServer(
        ["/nonexistent/vllm", "serve", "m"],
        base_url="http://127.0.0.1:1/v1",
        health_url="http://127.0.0.1:1/health",
        model_name="m",
        log_path=tmp_path / "serve.log",
    )
    with pytest.raises(ServerExitedError, match="/nonexistent/vllm"):
        await server.start()


# ---- the server dies with its evaluator, whatever kills the evaluator -------------------------

# An evaluator in miniature: starts a (fake) server that spawns a worker of its own, says where they
# are, and waits to be killed; nothing of it gets to run a `finally` or an `__aexit__`.
_EVALUATOR = """
import asyncio, sys
from pathlib import Path
from nejumi_eval.runtime.serve import ModelServer, free_port

async def main():
    port = free_port()
    server = ModelServer(
        [sys.executable, sys.argv[1], "--port", str(port), "--spawn-child"],
        base_url=f"http://127.0.0.1:{port}/v1", health_url=f"http://127.0.0.1:{port}/health",
        model_name="fake", log_path=Path(sys.argv[2]), startup_timeout_s=60, stop_grace_s=2,
        poll_interval_s=0.1,
    )
    await server.start()
    print(server.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_server_group_dies_with_its_evaluator(tmp_path: Path, sig: signal.Signals):
    """SIGKILL (kill -9, the OOM killer) skips every cleanup in the evaluator; SIGTERM's default
    action as well (no handler in this evaluator). Either way the server, and the worker it
    spawned, must not live on (issue 17: a `transformers serve` left running under init)."""
    log_path = tmp_path / "serve.log"
    evaluator = subprocess.Popen(
        [sys.executable, "-c", _EVALUATOR, str(FAKE), str(log_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    pgid: int | None = None
    try:
        assert evaluator.stdout is not None
        line = evaluator.stdout.readline()  # after the server is healthy
        assert line.strip().isdigit(), f"the evaluator did not start its server: {log_path.read_text()}"
        pgid = int(line)
        worker = int(re.search(r"child pid (\d+)", log_path.read_text()).group(1))
        members = group_members(pgid)
        assert pgid in members and worker in members, members
        assert any(str(FAKE) in cmdline(pid) for pid in members)

        evaluator.send_signal(sig)
        assert evaluator.wait(timeout=60) == -sig
        left = wait_group_gone(pgid)
        assert not left, f"outlived the evaluator: {[cmdline(pid) for pid in left]}"
        assert "parent gone" in log_path.read_text()
    finally:
        evaluator.kill()
        evaluator.wait()
        for pid in group_members(pgid) if pgid is not None else []:  # no leftovers for later tests
            os.kill(pid, signal.SIGKILL)


# ---- a temporary folder the server can bind Unix sockets in ------------------------------------


def _deep(tmp_path: Path) -> Path:
    """A TMPDIR as deep as a test cluster pod's sandbox (~105 characters): too deep for
    multiprocessing's ``<tmp>/pymp-XXXXXXXX/listener-XXXXXXXX`` in a Unix socket's 107 bytes."""
    deep = tmp_path / ("sandbox-" + "x" * max(0, 100 - len(str(tmp_path)))) / "tmp"
    deep.mkdir(parents=True)
    return deep


def test_a_short_tmpdir_is_left_alone(tmp_path: Path):
    assert socket_safe_tmpdir({"TMPDIR": "/tmp"}) == ("/tmp", None)
    assert socket_safe_tmpdir({"TMP": "/var/tmp"}) == ("/var/tmp", None)


def test_a_deep_tmpdir_is_reached_through_a_short_symlink(tmp_path: Path):
    deep = _deep(tmp_path)
    short, holder = socket_safe_tmpdir({"TMPDIR": str(deep)}, scratch=str(tmp_path))
    assert holder is not None and Path(holder).parent == tmp_path and short == str(Path(holder) / "tmp")
    assert len(str(deep)) > MAX_TMPDIR_CHARS
    assert Path(short).is_symlink() and Path(short).resolve() == deep.resolve()
    (Path(short) / "f").write_text("x")
    assert (deep / "f").read_text() == "x"  # the files stay where the environment put them


async def test_a_server_under_a_deep_tmpdir_can_bind_unix_sockets(tmp_path: Path):
    """issue 17 §3: `transformers serve` 5.x under a pod sandbox's TMPDIR hung every request
    (``AF_UNIX path too long`` when handing it to its model's process), and the operator's
    end-to-end test waited 420 s for a tiny evaluation. The server now sees a short TMPDIR."""
    deep = _deep(tmp_path)
    server = fake_server(tmp_path, "--unix-socket-in-tmpdir", env={"TMPDIR": str(deep)})
    async with server:
        log = server.log_path.read_text()
        bound = re.search(r"unix socket bound at (\S+)", log).group(1)
        assert len(bound) < 108 and Path(bound).parent.parent.resolve() == deep.resolve(), log
        holder = server._tmp_holder
        assert holder is not None and Path(holder).is_dir()
    assert not Path(holder).exists() and deep.is_dir()  # only the symlink's folder goes
