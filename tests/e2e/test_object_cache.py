"""The leaderboard's local copies of stored objects (`nejumi_eval.storage.cache`), against a real S3
server (versitygw): a second reading of the same results reads only the manifest from the store; a
copy that is not the manifested object (corrupted, or a rerun's new object) is never used; the
folder is trimmed to its budget, least recently used first."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.results import MANIFEST, Location
from nejumi_eval.storage.cache import ObjectCache
from nejumi_eval.storage.reading import open_evaluation
from nejumi_eval.storage.store import ObjectStore
from nejumi_eval.storage.upload import upload
from tests.support.s3 import S3Server

BUCKET = "cache-test"


def _results(folder: Path, answer: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text('{"model": "m", "status": "completed"}', encoding="utf-8")
    (folder / "jaster_outputs.jsonl").write_text(
        "".join(f'{{"id": {i}, "output": "{answer}"}}\n' for i in range(500))
    )
    return folder


def _store(s3: S3Server, monkeypatch: pytest.MonkeyPatch, cache: ObjectCache | None) -> ObjectStore:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = ObjectStore()
    store.cache = cache
    return store


def test_a_second_reading_reads_only_the_manifest(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.make_bucket(BUCKET)
    location = Location(BUCKET, "cluster/ns/e/1")
    writer = _store(s3_server, monkeypatch, None)
    stored = upload(writer, _results(tmp_path / "r", "a"), location, model="m", status="completed")
    assert stored.stored, stored

    cache = ObjectCache(tmp_path / "cache", max_bytes=10 * 2**20)
    first = _store(s3_server, monkeypatch, cache)
    evaluation = open_evaluation(first, location)
    table = evaluation.table("jaster_outputs")
    assert table is not None and len(table) == 500 and cache.hits == 0
    manifest_size = len(first.get(BUCKET, location.object_key(MANIFEST)))

    again = _store(s3_server, monkeypatch, ObjectCache(tmp_path / "cache", max_bytes=10 * 2**20))
    assert open_evaluation(again, location).table("jaster_outputs") == table
    assert again.bytes_read == manifest_size and again.cache is not None and again.cache.hits == 1

    # A copy that is not the object (a disk error, a hand edit) is dropped and read from the store.
    (copy,) = [p for p in (tmp_path / "cache").glob("*/*") if p.stat().st_size > 1000]
    copy.write_bytes(copy.read_bytes().replace(b'"a"', b'"b"'))
    third = _store(s3_server, monkeypatch, ObjectCache(tmp_path / "cache", max_bytes=10 * 2**20))
    assert open_evaluation(third, location).table("jaster_outputs") == table
    assert third.bytes_read > manifest_size

    # A rerun stores another object under the same key: its manifest names another sha256, so the
    # old copy is never read for it.
    upload(writer, _results(tmp_path / "r", "c"), location, model="m", status="completed")
    fourth = _store(s3_server, monkeypatch, ObjectCache(tmp_path / "cache", max_bytes=10 * 2**20))
    rows = open_evaluation(fourth, location).table("jaster_outputs")
    assert rows is not None and rows[0]["output"] == "c"


def test_trim_keeps_the_most_recently_used_within_the_budget(tmp_path: Path) -> None:
    import hashlib

    cache = ObjectCache(tmp_path, max_bytes=2500)
    blobs = [bytes([i]) * 1000 for i in range(4)]
    digests = [hashlib.sha256(b).hexdigest() for b in blobs]
    for i, (blob, digest) in enumerate(zip(blobs, digests, strict=True)):
        cache.put(digest, blob)
        stamp = time.time() - 100 + i
        os.utime(tmp_path / digest[:2] / digest, (stamp, stamp))
    assert cache.get(digests[0], 1000) == blobs[0]  # used now: the most recent
    assert cache.trim() == 2000
    kept = {p.name for p in tmp_path.glob("*/*")}
    assert kept == {digests[0], digests[3]}
    assert cache.get(digests[1], 1000) is None
