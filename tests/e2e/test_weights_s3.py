"""s3:// weights against a real S3 server (versitygw): a folder of objects resolved to a listing (a
recorded sha256 where the object has one, else its ETag), downloaded once, verified; the same
objects under another prefix share the entry, a changed object does not; a missing bucket, an empty
folder, a refused key, bytes that are not the recorded sha256 and a store that is gone fail with
typed errors naming the URI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.results import SHA256_METADATA
from nejumi_eval.errors import EXIT_CONFIG, EXIT_INFRA, classify
from nejumi_eval.runtime.weights import (
    WeightsDigestMismatch,
    WeightsSourceError,
    WeightsUnavailable,
    fetch,
    resolve,
)
from nejumi_eval.runtime.weights.cache import LOCK, entry_dir
from nejumi_eval.runtime.weights.s3 import weights_store
from tests.fixtures.hub_server import model_folder
from tests.support.s3 import S3Server

BUCKET = "models"


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    s3_server.make_bucket(BUCKET)
    return s3_server


def _upload(s3: S3Server, folder: Path, prefix: str, *, digests: bool = True) -> None:
    """Each file as an object under `prefix`, with `x-amz-meta-sha256` as the results upload writes it."""
    client = s3.client()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        metadata = {SHA256_METADATA: hashlib.sha256(data).hexdigest()} if digests else {}
        key = f"{prefix}{path.relative_to(folder).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=metadata)


def test_a_folder_is_downloaded_once_and_verified(s3: S3Server, tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m", weights_bytes=300 * 1024)
    _upload(s3, folder, "llm-jp/tiny/")
    s3.client().put_object(Bucket=BUCKET, Key="llm-jp/tiny/sub/", Body=b"")  # a folder marker
    store = weights_store()
    resolved = resolve("s3://models/llm-jp/tiny", store=store)
    assert resolved.key.startswith("s3/") and resolved.uri == "s3://models/llm-jp/tiny/"
    assert [f.name for f in resolved.files] == sorted(p.name for p in folder.iterdir())
    assert all(f.sha256 for f in resolved.files)

    cached = fetch(resolved, tmp_path / "cache", store=store)
    assert cached.bytes_downloaded == resolved.total_bytes == store.bytes_read
    for path in folder.iterdir():
        assert (cached.path / path.name).read_bytes() == path.read_bytes()

    again = fetch(resolve("s3://models/llm-jp/tiny/", store=store), tmp_path / "cache", store=store)
    assert again.path == cached.path and again.bytes_downloaded == 0
    assert store.bytes_read == resolved.total_bytes  # nothing read the second time


def test_the_same_objects_elsewhere_share_an_entry_and_a_changed_one_does_not(
    s3: S3Server, tmp_path: Path
) -> None:
    folder = model_folder(tmp_path / "m")
    _upload(s3, folder, "a/")
    _upload(s3, folder, "copy/of/a/")
    _upload(s3, folder, "etag/", digests=False)
    _upload(s3, folder, "etag-copy/", digests=False)
    assert resolve("s3://models/a/").key == resolve("s3://models/copy/of/a/").key
    assert resolve("s3://models/etag/").key == resolve("s3://models/etag-copy/").key
    assert all(f.etag and not f.sha256 for f in resolve("s3://models/etag/").files)
    before = resolve("s3://models/a/").key
    (folder / "config.json").write_text('{"model_type": "changed"}', encoding="utf-8")
    _upload(s3, folder, "a/")
    _upload(s3, folder, "etag/", digests=False)
    assert resolve("s3://models/a/").key != before
    assert resolve("s3://models/etag/").key != resolve("s3://models/etag-copy/").key

    cached = fetch(resolve("s3://models/etag/"), tmp_path / "cache")  # checked by size
    assert (cached.path / "config.json").read_bytes() == (folder / "config.json").read_bytes()


def test_bytes_that_are_not_the_recorded_sha256_are_never_marked_complete(
    s3: S3Server, tmp_path: Path
) -> None:
    folder = model_folder(tmp_path / "m")
    _upload(s3, folder, "bad/")
    weights = (folder / "model.safetensors").read_bytes()
    other = b"\0" * len(weights)  # the same size, other bytes, the old digest
    s3.client().put_object(
        Bucket=BUCKET,
        Key="bad/model.safetensors",
        Body=other,
        Metadata={SHA256_METADATA: hashlib.sha256(weights).hexdigest()},
    )
    resolved = resolve("s3://models/bad/")
    with pytest.raises(WeightsDigestMismatch) as err:
        fetch(resolved, tmp_path / "cache")
    assert err.value.file == "model.safetensors" and "s3://models/bad/" in str(err.value)
    assert err.value.actual == hashlib.sha256(other).hexdigest()
    assert sorted(p.name for p in entry_dir(tmp_path / "cache", resolved).iterdir()) == [LOCK]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://no-such-bucket/m/", "bucket no-such-bucket does not exist"),
        ("s3://models/empty/", "no objects under it"),
    ],
)
def test_a_bucket_or_folder_that_is_not_there_is_a_configuration_error(
    s3: S3Server, uri: str, message: str
) -> None:
    with pytest.raises(WeightsSourceError) as err:
        resolve(uri)
    assert uri in str(err.value) and message in str(err.value) and classify(err.value) == EXIT_CONFIG


def test_a_refused_key_or_a_store_that_is_gone(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload(s3, model_folder(tmp_path / "m"), "m/")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(WeightsSourceError) as err:
        resolve("s3://models/m/")
    assert "refused the credentials" in str(err.value) and "$AWS_ACCESS_KEY_ID" in str(err.value)
    assert "wrong" not in str(err.value)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.root.secret_key)
    resolved = resolve("s3://models/m/")
    s3.stop()
    with pytest.raises(WeightsUnavailable) as unavailable:
        fetch(resolved, tmp_path / "cache")
    assert "s3://models/m/" in str(unavailable.value) and classify(unavailable.value) == EXIT_INFRA
