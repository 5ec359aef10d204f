"""`python -m tests.fixtures.openai_stub`: the echo stub as a server a person can point a run at."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_serves_models_and_completions_until_terminated() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fixtures.openai_stub",
            "--port",
            str(port),
            "--model",
            "m1",
            "--delay",
            "0.2",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once it listens; "" if it died
        base_url = f"http://127.0.0.1:{port}/v1"
        assert base_url in banner, (banner, proc.stderr.read() if proc.poll() is not None else "")
        models = _get(f"{base_url}/models")
        assert [m["id"] for m in models["data"]] == ["m1"]
        start = time.monotonic()
        completion = _post(f"{base_url}/completions", {"model": "m1", "prompt": "hello", "max_tokens": 4})
        assert time.monotonic() - start >= 0.2  # --delay
        assert completion["choices"][0]["text"] == "echo:hello"
        assert completion["model"] == "m1"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_a_port_in_use_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tests.fixtures.openai_stub", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
