"""The weights library's pure parts: storageUri forms, cache keys, digests (git blob SHA-1 as git
computes it), the Hub's failures as typed errors, the entry lock between processes, progress
reports, and pvc:// folders served in place."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.errors import EXIT_CONFIG, EXIT_INFRA, classify
from nejumi_eval.runtime.client.retry import Retry
from nejumi_eval.runtime.weights import (
    CacheLockTimeout,
    HfSource,
    PvcSource,
    ResolvedSource,
    S3Source,
    WeightFile,
    WeightsDigestMismatch,
    WeightsSourceError,
    WeightsUnavailable,
    fetch,
    model_source,
    parse_storage_uri,
    resolve,
)
from nejumi_eval.runtime.weights.hub import retry_or_raise, select_files
from nejumi_eval.runtime.weights.key import hf_key, s3_key
from nejumi_eval.runtime.weights.lock import EntryLock
from nejumi_eval.runtime.weights.progress import Progress, ProgressMonitor
from nejumi_eval.runtime.weights.resolved import check_name
from nejumi_eval.runtime.weights.verify import verify_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"

# ---- storageUri forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "revision", "source"),
    [
        ("hf://org/name", None, HfSource("org/name")),
        ("hf://org/name", "v2", HfSource("org/name", "v2")),
        ("hf://gpt2@main", None, HfSource("gpt2", "main")),
        ("hf://org/name@refs/pr/1", None, HfSource("org/name", "refs/pr/1")),
        ("s3://bucket/models/m", None, S3Source("bucket", "models/m/")),
        ("s3://bucket/models/m/", None, S3Source("bucket", "models/m/")),
        ("s3://bucket", None, S3Source("bucket", "")),
        ("s3://bucket/", None, S3Source("bucket", "")),
        ("pvc://models", None, PvcSource("models", "")),
        ("pvc://models/llm-jp//3 (1.8b)/", None, PvcSource("models", "llm-jp/3 (1.8b)")),
    ],
)
def test_the_three_forms_parse(uri: str, revision: str | None, source: Any) -> None:
    assert parse_storage_uri(uri, revision=revision) == source


@pytest.mark.parametrize(
    ("uri", "revision", "message"),
    [
        ("hf://org/name@v1", "v1", "the revision is written once"),
        ("s3://bucket/m/", "v1", "model.revision applies to hf:// only"),
        ("gs://bucket/m/", None, "model.storageUri must be hf://org/name[@revision]"),
        ("hf://org/a--b", None, "model.storageUri must be"),
        ("hf://a/b/c", None, "model.storageUri must be"),
        ("pvc://models/../etc", None, "model.storageUri must be"),
        ("s3://b/m/", None, "model.storageUri must be"),
    ],
)
def test_other_uris_are_refused_as_configuration(uri: str, revision: str | None, message: str) -> None:
    with pytest.raises(WeightsSourceError) as err:
        parse_storage_uri(uri, revision=revision)
    assert message in str(err.value) and classify(err.value) == EXIT_CONFIG


def test_what_a_model_loads() -> None:
    def model(**fields: Any) -> Any:
        return parse_spec({"model": {"name": "m", **fields}}).model

    assert model_source(model(storageUri="hf://org/name", revision="v2")) == HfSource("org/name", "v2")
    assert model_source(model(name="served", storageUri="s3://models/x/")) == S3Source("models", "x/")
    assert model_source(model(name="org/name", revision="v3")) == HfSource("org/name", "v3")  # the Hub id
    assert model_source(model(name="/models/local")) is None
    assert model_source(model(name="./local", source="transformers")) is None
    api = {"source": "openai-compatible", "endpoint": "http://x/v1"}
    assert model_source(model(name="gpt-4o", **api)) is None


# ---- cache keys --------------------------------------------------------------------------------


def test_a_hub_key_is_the_repository_and_the_commit() -> None:
    assert hf_key("org/name", COMMIT) == f"hf/org--name/{COMMIT}"
    assert hf_key("gpt2", COMMIT) == f"hf/gpt2/{COMMIT}"


def test_an_s3_key_is_the_listing_whatever_its_order_bucket_or_prefix() -> None:
    a = WeightFile("config.json", 10, sha256="a" * 64)
    b = WeightFile("model.safetensors", 1000, etag="9b2cf535f27731c974343645a3985328")
    assert s3_key([a, b]) == s3_key([b, a])
    assert s3_key([a, b]).startswith("s3/") and len(s3_key([a, b])) == 3 + 64
    changed = [
        [a, WeightFile("model.safetensors", 1001, etag=b.etag)],  # size
        [a, WeightFile("model.safetensors", 1000, etag="0" * 32)],  # a new upload
        [a, WeightFile("model.safetensors", 1000, sha256="b" * 64)],  # a recorded digest
        [a, WeightFile("other.safetensors", 1000, etag=b.etag)],  # a name
        [a],
    ]
    assert len({s3_key([a, b]), *(s3_key(files) for files in changed)}) == 1 + len(changed)


def test_listed_names_stay_inside_the_folder() -> None:
    assert check_name("sub/tokenizer.json", "s3://b/") == "sub/tokenizer.json"
    for bad in ("../x", "/etc/passwd", "a/../../x", "a//b", "./a", ""):
        with pytest.raises(WeightsSourceError):
            check_name(bad, "s3://bucket/m/")


def test_a_repository_with_safetensors_is_not_downloaded_in_other_formats() -> None:
    files = tuple(
        WeightFile(n, 1, git_blob_sha1="0" * 40)
        for n in (
            "pytorch_model.bin",
            "model.safetensors",
            "config.json",
            "original/consolidated.pth",
            "x.py",
        )
    )
    assert [f.name for f in select_files(files)] == ["config.json", "model.safetensors", "x.py"]
    only_bin = tuple(f for f in files if not f.name.endswith(".safetensors"))
    assert len(select_files(only_bin)) == len(only_bin)


# ---- digests -----------------------------------------------------------------------------------


def test_a_git_file_is_checked_by_its_blob_sha1_as_git_computes_it(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    verify_file(
        "hf://org/m@c",
        WeightFile("config.json", 6, git_blob_sha1="ce013625030ba8dba906f756967f9e9ca394464a"),
        path,
    )
    with pytest.raises(WeightsDigestMismatch) as err:
        verify_file("hf://org/m@c", WeightFile("config.json", 6, git_blob_sha1="0" * 40), path)
    assert (
        err.value.kind == "git blob SHA-1" and err.value.actual == "ce013625030ba8dba906f756967f9e9ca394464a"
    )


def test_a_mismatch_names_the_source_the_file_and_both_digests(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    actual = hashlib.sha256(b"weights").hexdigest()
    verify_file("s3://models/m/", WeightFile("model.safetensors", 7, sha256=actual), path)
    with pytest.raises(WeightsDigestMismatch) as err:
        verify_file("s3://models/m/", WeightFile("model.safetensors", 7, sha256="f" * 64), path)
    message = str(err.value)
    assert all(s in message for s in ("s3://models/m/", "model.safetensors", "f" * 64, actual, "sha256"))
    assert classify(err.value) == EXIT_INFRA
    with pytest.raises(WeightsDigestMismatch, match="has size 7, but the source lists 8"):
        verify_file("s3://models/m/", WeightFile("model.safetensors", 8, etag="e"), path)
    verify_file("s3://models/m/", WeightFile("model.safetensors", 7, etag="e"), path)  # size only


# ---- the Hub's failures ------------------------------------------------------------------------


def _hub_error(cls_name: str, status: int) -> Exception:
    import httpx2
    from huggingface_hub import errors

    request = httpx2.Request("GET", "http://hub.test/api/models/org/m")
    return getattr(errors, cls_name)("failed", response=httpx2.Response(status, request=request))


@pytest.mark.parametrize(
    ("cls_name", "status", "message"),
    [
        (
            "GatedRepoError",
            401,
            "the model is gated on http://hub.test and no token is set: set model.hfTokenSecretRef",
        ),
        ("RepositoryNotFoundError", 401, "no such model on http://hub.test, or it is private or gated"),
        ("RevisionNotFoundError", 404, "no such revision on http://hub.test"),
        ("HfHubHTTPError", 403, "refused access (HTTP 403) and no token is set: set model.hfTokenSecretRef"),
    ],
)
def test_what_the_spec_must_change_is_a_configuration_error(
    cls_name: str, status: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(WeightsSourceError) as err:
        retry_or_raise(_hub_error(cls_name, status), "hf://org/m", "http://hub.test")
    assert message in str(err.value) and str(err.value).startswith("hf://org/m: ")
    assert classify(err.value) == EXIT_CONFIG


def test_a_token_without_access_is_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with pytest.raises(WeightsSourceError) as err:
        retry_or_raise(_hub_error("GatedRepoError", 403), "hf://org/m", "http://hub.test")
    assert "the token in $HF_TOKEN has no access" in str(err.value) and "hf_secret" not in str(err.value)


def test_what_may_heal_is_retried_and_the_rest_is_infrastructure() -> None:
    import httpx2
    from huggingface_hub import errors

    assert retry_or_raise(_hub_error("HfHubHTTPError", 503), "u", "e") == Retry("HTTP 503", None)
    refused = httpx2.ConnectError("refused")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert retry_or_raise(refused, "u", "e").unreachable
    assert not retry_or_raise(httpx2.ReadTimeout("slow"), "u", "e").unreachable
    for exc in (_hub_error("HfHubHTTPError", 400), errors.OfflineModeIsEnabled("offline")):
        with pytest.raises(WeightsUnavailable) as err:
            retry_or_raise(exc, "u", "e")
        assert classify(err.value) == EXIT_INFRA
    with pytest.raises(KeyError):  # a bug is raised as it is
        retry_or_raise(KeyError("x"), "u", "e")


# ---- the entry lock ----------------------------------------------------------------------------


def _hold(path: str, conn: Any) -> None:
    lock = EntryLock(Path(path))
    assert lock.try_acquire()
    conn.send("held")
    conn.recv()  # until killed


def test_one_process_holds_an_entry_and_a_dead_holder_releases_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    holder = ctx.Process(target=_hold, args=(str(tmp_path / ".lock"), theirs))
    holder.start()
    try:
        assert ours.poll(60) and ours.recv() == "held"
        lock = EntryLock(tmp_path / ".lock")
        assert not lock.try_acquire()
        with pytest.raises(CacheLockTimeout) as err:
            lock.acquire(0.05, what="hf://org/m@c", poll_s=0.01)
        message = str(err.value)
        assert "hf://org/m@c" in message and "locked by another process" in message
        assert f"pid {holder.pid}" in message and classify(err.value) == EXIT_INFRA
    finally:
        os.kill(holder.pid or 0, signal.SIGKILL)  # dies without releasing: the kernel does
        holder.join(60)
    lock.acquire(60, what="hf://org/m@c", poll_s=0.01)
    lock.release()


# ---- progress ----------------------------------------------------------------------------------


def test_progress_is_reported_at_the_start_and_at_the_end(tmp_path: Path) -> None:
    reports: list[Progress] = []
    (tmp_path / "part").write_bytes(b"x" * 10)
    with ProgressMonitor("hf://org/m@c", 30, lambda: [tmp_path], reports.append, interval_s=3600):
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "rest").write_bytes(b"y" * 20)
    assert [(p.done_bytes, p.total_bytes, p.waiting) for p in reports] == [(10, 30, False), (30, 30, False)]
    assert reports[0].uri == "hf://org/m@c"


# ---- pvc:// ------------------------------------------------------------------------------------


def test_a_pvc_folder_is_served_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "mnt" / "models" / "llm-jp" / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "sub" / "model.safetensors").write_bytes(b"w" * 100)
    resolved = resolve("pvc://models/llm-jp/m", pvc_mount=tmp_path / "mnt")
    assert resolved.key == "pvc/models/llm-jp/m" and resolved.local_path == folder
    assert [(f.name, f.size) for f in resolved.files] == [("config.json", 2), ("sub/model.safetensors", 100)]
    cached = fetch(resolved, tmp_path / "cache")
    assert cached.path == folder and cached.bytes_downloaded == 0 and cached.bytes_from_cache == 102
    assert not (tmp_path / "cache").exists()  # nothing copied, nothing locked


def test_a_pvc_folder_that_is_not_there_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(WeightsSourceError) as err:
        resolve("pvc://models/m", pvc_mount=tmp_path)
    assert "pvc://models/m" in str(err.value) and "is claim models mounted" in str(err.value)


def test_a_resolved_source_is_pinned() -> None:
    resolved = ResolvedSource(
        HfSource("org/m", "main"), hf_key("Org/M", COMMIT), (), revision=COMMIT, repo="Org/M"
    )
    assert resolved.uri == f"hf://Org/M@{COMMIT}" and resolved.total_bytes == 0 and resolved.copied
