"""The shared file helpers: atomic writes (temp file + rename) and pinned-hash digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nejumi_eval.runtime.files import (
    GIT_BLOB_SHA1,
    SHA256,
    DigestMismatch,
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    bytes_digest,
    file_digest,
    read_verified,
)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_creates_parents_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    atomic_write_bytes(target, b"one")
    atomic_write_text(target, "zwei ✓\n")
    assert target.read_text(encoding="utf-8") == "zwei ✓\n"
    assert listing(target.parent) == ["out.json"]


def test_atomic_write_has_ordinary_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "plain"
    reference.write_bytes(b"")
    atomic_write_bytes(tmp_path / "atomic", b"x")
    assert (tmp_path / "atomic").stat().st_mode == reference.stat().st_mode  # umask, not mkstemp's 0600


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"), atomic_writer(target) as out:
        out.write(b"half of the new")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert listing(tmp_path) == ["out.bin"]


def test_verify_sees_the_complete_temp_file_and_can_refuse_it(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    seen: list[bytes] = []

    def refuse(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp != target
        seen.append(tmp.read_bytes())
        raise ValueError("wrong bytes")

    with pytest.raises(ValueError, match="wrong bytes"), atomic_writer(target, verify=refuse) as out:
        out.write(b"abc")
        out.write(b"def")
    assert seen == [b"abcdef"]
    assert listing(tmp_path) == []

    with atomic_writer(target, verify=lambda tmp: seen.append(tmp.read_bytes())) as out:
        out.write(b"good")
    assert target.read_bytes() == b"good" and seen[-1] == b"good"


def test_two_writers_of_one_file_never_share_a_temp(tmp_path: Path) -> None:
    target = tmp_path / "memo.json"
    with atomic_writer(target) as first, atomic_writer(target) as second:
        assert first.name != second.name
        first.write(b"first")
        second.write(b"second")
    assert target.read_bytes() in (b"first", b"second")
    assert listing(tmp_path) == ["memo.json"]


# ---- digests -----------------------------------------------------------------------------------


def test_digests_of_files_and_bytes_agree(tmp_path: Path) -> None:
    data = b"line\n" * 300_000  # more than one read chunk
    path = tmp_path / "data"
    path.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert file_digest(path) == file_digest(path, SHA256) == bytes_digest(data) == sha256
    assert file_digest(path, GIT_BLOB_SHA1) == bytes_digest(data, GIT_BLOB_SHA1) == blob


def test_read_verified_returns_bytes_or_names_the_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"{}\n")
    good = hashlib.sha256(b"{}\n").hexdigest()
    assert read_verified(path, good) == b"{}\n"
    with pytest.raises(DigestMismatch) as err:
        read_verified(path, "0" * 64)
    assert (err.value.path, err.value.kind, err.value.actual, err.value.expected) == (
        path,
        SHA256,
        good,
        "0" * 64,
    )
    assert str(path) in str(err.value) and good in str(err.value)
    with pytest.raises(OSError):
        read_verified(tmp_path / "absent", good)
