"""hf:// weights through the real huggingface_hub over HTTP, against the Hub double
(tests.fixtures.hub_server): resolved to a commit, downloaded once into a plain folder vLLM loads,
every file verified; spellings of one commit share an entry, a moved tag never serves old weights;
gated, missing and unreachable models, and corrupted bytes, fail with typed errors naming the source.
Also the `vllm serve` stand-in (tests.fixtures.served_model) downloading a Hub id as vLLM does."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nejumi_eval.errors import EXIT_CONFIG, EXIT_INFRA, classify
from nejumi_eval.runtime.client.retry import RetryPolicy
from nejumi_eval.runtime.weights import (
    Progress,
    WeightsDigestMismatch,
    WeightsSourceError,
    WeightsUnavailable,
    fetch,
    resolve,
)
from nejumi_eval.runtime.weights.cache import COMPLETE, LOCK, WEIGHTS, entry_dir
from tests.fixtures.hub_server import HubServer, git_blob_sha1, model_folder, point_huggingface_hub_at
from tests.support.paths import REPO

QUICK = RetryPolicy(initial_delay_s=0.01, max_delay_s=0.02, unreachable_backoff_s=0.02)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        point_huggingface_hub_at(server, monkeypatch, tmp_path / "hf-home")
        yield server


def _repo(tmp_path: Path, name: str = "repo", **kwargs: int) -> Path:
    folder = model_folder(tmp_path / name, **kwargs)
    (folder / "pytorch_model.bin").write_bytes(b"the same weights, in another format")
    return folder


def test_a_model_is_downloaded_once_verified_as_a_plain_folder(hub: HubServer, tmp_path: Path) -> None:
    repo = _repo(tmp_path, weights_bytes=512 * 1024)
    commit = hub.add_repo("llm-jp/tiny", repo)
    resolved = resolve("hf://llm-jp/tiny")
    assert resolved.key == f"hf/llm-jp--tiny/{commit}" and resolved.uri == f"hf://llm-jp/tiny@{commit}"
    by_name = {f.name: f for f in resolved.files}
    assert sorted(by_name) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    weights = (repo / "model.safetensors").read_bytes()
    assert by_name["model.safetensors"].sha256 == hashlib.sha256(weights).hexdigest()
    assert by_name["config.json"].git_blob_sha1 == git_blob_sha1((repo / "config.json").read_bytes())

    reports: list[Progress] = []
    cached = fetch(resolved, tmp_path / "cache", progress=reports.append)
    assert cached.bytes_downloaded == resolved.total_bytes and cached.bytes_from_cache == 0
    assert cached.files == 4 and cached.path == entry_dir(tmp_path / "cache", resolved) / WEIGHTS
    # What `vllm serve <path>` loads: the files alone, as in the repository (no .cache, no .bin).
    assert sorted(p.name for p in cached.path.iterdir()) == sorted(by_name)
    for name in by_name:
        assert (cached.path / name).read_bytes() == (repo / name).read_bytes()
    assert hub.served["llm-jp/tiny/pytorch_model.bin"] == 0
    marker = json.loads((cached.path.parent / COMPLETE).read_text(encoding="utf-8"))
    assert marker["uri"] == resolved.uri and len(marker["files"]) == 4
    assert reports[0].done_bytes < reports[-1].done_bytes == reports[-1].total_bytes == resolved.total_bytes

    served = hub.bytes_served
    again = fetch(resolve("hf://llm-jp/tiny@main"), tmp_path / "cache")  # another evaluation
    assert again.path == cached.path and again.bytes_downloaded == 0
    assert again.bytes_from_cache == resolved.total_bytes and hub.bytes_served == served


def test_spellings_of_one_commit_share_an_entry_and_a_moved_tag_does_not(
    hub: HubServer, tmp_path: Path
) -> None:
    first = hub.add_repo("org/m", _repo(tmp_path, "v1", seed=1), refs=("main", "v1.0"))
    spellings = ["hf://org/m", "hf://org/m@main", "hf://org/m@v1.0", f"hf://org/m@{first}"]
    assert {resolve(uri).key for uri in spellings} == {f"hf/org--m/{first}"}
    assert resolve("hf://org/m", revision="v1.0").key == f"hf/org--m/{first}"  # model.revision
    old = fetch(resolve("hf://org/m@v1.0"), tmp_path / "cache")

    second = hub.add_repo("org/m", _repo(tmp_path, "v2", seed=2), refs=("main", "v1.0"))  # retagged
    hub.reset_counters()
    new = fetch(resolve("hf://org/m@v1.0"), tmp_path / "cache")
    assert new.key == f"hf/org--m/{second}" != old.key and new.bytes_downloaded > 0
    assert (new.path / "config.json").read_bytes() == (tmp_path / "v2" / "config.json").read_bytes()
    assert (old.path / "config.json").read_bytes() == (tmp_path / "v1" / "config.json").read_bytes()
    pinned = fetch(resolve(f"hf://org/m@{first}"), tmp_path / "cache")  # the old commit, still whole
    assert pinned.path == old.path and pinned.bytes_downloaded == 0


def test_a_gated_model_needs_a_token_with_access(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("meta/gated", _repo(tmp_path), gated_token="hf_right")
    resolved = resolve("hf://meta/gated")  # its listing is public, as on the Hub
    with pytest.raises(WeightsSourceError) as err:
        fetch(resolved, tmp_path / "cache", retry=QUICK)
    message = str(err.value)
    assert "hf://meta/gated@" in message and hub.endpoint in message and "gated" in message
    assert "no token is set" in message and "model.hfTokenSecretRef" in message
    assert classify(err.value) == EXIT_CONFIG

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(WeightsSourceError) as err:
        fetch(resolved, tmp_path / "cache", retry=QUICK)
    assert "the token in $HF_TOKEN has no access" in str(err.value) and "hf_wrong" not in str(err.value)
    entry = entry_dir(tmp_path / "cache", resolved)
    assert sorted(p.name for p in entry.iterdir()) == [LOCK]  # nothing half-filled is kept

    monkeypatch.setenv("HF_TOKEN", "hf_right")
    assert fetch(resolved, tmp_path / "cache").bytes_downloaded == resolved.total_bytes


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("hf://org/missing", "hf://org/missing: no such model on"),
        ("hf://org/m@v9", "hf://org/m@v9: no such revision on"),
    ],
)
def test_a_model_or_revision_that_is_not_there_is_a_configuration_error(
    hub: HubServer, tmp_path: Path, uri: str, message: str
) -> None:
    hub.add_repo("org/m", _repo(tmp_path))
    with pytest.raises(WeightsSourceError) as err:
        resolve(uri, retry=QUICK)
    assert message in str(err.value) and classify(err.value) == EXIT_CONFIG


def test_corrupted_bytes_are_never_marked_complete(hub: HubServer, tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    hub.add_repo("org/m", repo, corrupt=("model.safetensors",))
    resolved = resolve("hf://org/m")
    expected = next(f.sha256 for f in resolved.files if f.name == "model.safetensors")
    with pytest.raises(WeightsDigestMismatch) as err:
        fetch(resolved, tmp_path / "cache")
    assert (err.value.file, err.value.expected) == ("model.safetensors", expected)
    assert err.value.actual != expected and resolved.uri in str(err.value)
    assert classify(err.value) == EXIT_INFRA
    entry = entry_dir(tmp_path / "cache", resolved)
    assert sorted(p.name for p in entry.iterdir()) == [LOCK]

    hub.add_repo("org/m", repo)  # the Hub serves the right bytes again
    cached = fetch(resolved, tmp_path / "cache")
    assert (cached.path / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_or_offline_hub_is_an_infrastructure_error(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(WeightsUnavailable) as err:
        resolve("hf://org/m", retry=QUICK)
    assert "hf://org/m" in str(err.value) and "after 2 attempts" in str(err.value)
    assert classify(err.value) == EXIT_INFRA

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailable, match="HF_HUB_OFFLINE is set"):
        resolve("hf://org/m", retry=QUICK)


def _wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else proc.returncode
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("the stand-in never became healthy")


def test_the_vllm_stand_in_downloads_a_hub_id_as_vllm_does(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/served", _repo(tmp_path))
    for offline, served in (("0", 5), ("1", 0)):  # every file (no filter here), then the cache alone
        port = _closed_port()
        hub.reset_counters()
        argv = [sys.executable, "-m", "tests.fixtures.served_model", "serve", "org/served"]
        env = {**os.environ, "HF_HUB_OFFLINE": offline, "NEJUMI_STUB_LATENCY_S": "0"}
        proc = subprocess.Popen([*argv, "--port", str(port)], cwd=REPO, env=env, stderr=subprocess.PIPE)
        try:
            _wait_healthy(proc, port)
            models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()
            assert models["data"][0]["id"] == "org/served"
        finally:
            proc.terminate()
            proc.wait(30)
        assert hub.files_served == served
    assert any((tmp_path / "hf-home" / "hub").glob("models--org--served/snapshots/*/model.safetensors"))
