"""Every downloaded file checked against what its source lists, before the entry is marked complete.

- Hub files stored with LFS (the weights): sha256, against the Hub's LFS sha256.
- Hub files kept in git (config.json, tokenizer files): the git blob SHA-1 the Hub reports,
  computed as git does (sha1(b"blob <size>\\0" + content)).
- s3 objects: sha256 against the recorded `x-amz-meta-sha256` (what `nejumi_eval.storage.upload`
  writes); an object without one is checked by size only (its ETag names it in the cache key, but is
  not a digest of its bytes: multipart uploads and SSE-KMS objects have other ETags).

The digests are `nejumi_eval.runtime.files`' (the data fetcher's), read in chunks.
"""

from __future__ import annotations

from pathlib import Path

from nejumi_eval.runtime.files import GIT_BLOB_SHA1, SHA256, DigestKind, file_digest
from nejumi_eval.runtime.weights.errors import WeightsDigestMismatch
from nejumi_eval.runtime.weights.resolved import WeightFile


def expected_digest(file: WeightFile) -> tuple[DigestKind, str] | None:
    """The digest `file`'s bytes must have, if its source lists one."""
    if file.sha256:
        return SHA256, file.sha256
    if file.git_blob_sha1:
        return GIT_BLOB_SHA1, file.git_blob_sha1
    return None


def verify_file(uri: str, file: WeightFile, path: Path) -> None:
    """Raise `WeightsDigestMismatch` (naming `uri`, the file, expected and actual) unless the file at
    `path` has `file`'s size and digest."""
    size = path.stat().st_size
    if size != file.size:
        raise WeightsDigestMismatch(uri, file.name, "size", str(file.size), str(size))
    expected = expected_digest(file)
    if expected is None:
        return
    kind, digest = expected
    actual = file_digest(path, kind)
    if actual != digest:
        raise WeightsDigestMismatch(uri, file.name, kind, digest, actual)
