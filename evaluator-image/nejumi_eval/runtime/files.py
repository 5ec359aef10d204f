"""Files written whole or not at all, and files checked against a pinned hash: the one place for both.

Stdlib only: the operator image imports parts of this package.

- Atomic writes: bytes go to a uniquely named temp file beside the target, which is renamed onto
  the target only once complete (and vetted), and removed otherwise. A reader, a killed run or a
  second process writing the same file never sees a partial file; two writers never share a temp.
- Digests: sha256, or the git blob SHA-1 (``"blob <len>\\0" + content``) for files whose manifest
  has only what git knows.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

DigestKind = Literal["sha256", "git blob SHA-1"]
SHA256: DigestKind = "sha256"
GIT_BLOB_SHA1: DigestKind = "git blob SHA-1"

_CHUNK = 1 << 20


# ---- atomic writes -----------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_writer(path: Path, *, verify: Callable[[Path], None] | None = None) -> Iterator[BinaryIO]:
    """A binary handle on a fresh temp file beside ``path``; renamed onto ``path`` on a clean exit.

    After the block the handle is closed and ``verify(temp_path)`` (if given) may inspect the
    complete file and raise to refuse it. On any exception, from the block or from ``verify``,
    the temp file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, out = _create_temp(path)
    try:
        with out:
            yield out
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename, so readers never see a partial file."""
    with atomic_writer(path) as out:
        out.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _create_temp(path: Path) -> tuple[Path, BinaryIO]:
    """A new, exclusively created ``.<name>.<pid>.<random>.part`` beside ``path`` (umask permissions)."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.part")
        try:
            return tmp, tmp.open("xb")
        except FileExistsError:  # pragma: no cover - 48 random bits just collided
            continue


# ---- digests -----------------------------------------------------------------------------------


def file_digest(path: Path, kind: DigestKind = SHA256) -> str:
    """Hex digest of the file at ``path``, read in chunks."""
    if kind == SHA256:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    sha1 = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha1.update(chunk)
    return sha1.hexdigest()


def bytes_digest(data: bytes, kind: DigestKind = SHA256) -> str:
    """Hex digest of ``data``, as ``file_digest`` would give for a file holding it."""
    if kind == SHA256:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class DigestMismatch(ValueError):
    """A file's bytes do not hash to the pinned value."""

    def __init__(self, path: Path, kind: DigestKind, actual: str, expected: str) -> None:
        super().__init__(f"{path} has {kind} {actual}, but {expected} is pinned")
        self.path, self.kind, self.actual, self.expected = path, kind, actual, expected


def read_verified(path: Path, expected: str, kind: DigestKind = SHA256) -> bytes:
    """The bytes of ``path``, read once and returned only if they hash to ``expected``.

    Raises ``OSError`` if the file cannot be read and ``DigestMismatch`` if it differs.
    """
    data = path.read_bytes()
    actual = bytes_digest(data, kind)
    if actual != expected:
        raise DigestMismatch(path, kind, actual, expected)
    return data
