"""A source resolved: the exact files it is made of now, each with its size and digest.

What `resolve` returns and `fetch` downloads. The files and the pinned revision are what the source
*is* at the time it was asked (a tag or a branch may move later; the commit it named then does not),
so everything downstream (the cache key, verification) is about content, not about a spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nejumi_eval.runtime.weights.errors import WeightsSourceError
from nejumi_eval.runtime.weights.source import HfSource, PvcSource, Source


@dataclass(frozen=True)
class WeightFile:
    """One file of a source; `name` is its path inside the folder (POSIX separators)."""

    name: str
    size: int
    sha256: str | None = None
    """Hub LFS files (the Hub's sha256), s3 objects with a recorded sha256 (`x-amz-meta-sha256`)."""
    git_blob_sha1: str | None = None
    """Hub files kept in git itself: sha1(b"blob <size>\\0" + content), as git names a blob."""
    etag: str | None = None
    """An s3 object without a recorded sha256: its ETag, an identity only (see `s3.resolve_s3`)."""

    @property
    def identity(self) -> str:
        """What names this content in a listing: its digest, else its ETag, else nothing (pvc)."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.git_blob_sha1:
            return f"git-blob-sha1:{self.git_blob_sha1}"
        return f"etag:{self.etag}" if self.etag else ""


@dataclass(frozen=True)
class ResolvedSource:
    source: Source
    """As written (with model.revision applied)."""
    key: str
    """The cache entry's name (`key.py`): the same content, however spelled, has the same key."""
    files: tuple[WeightFile, ...]
    revision: str | None = None
    """hf: the commit sha the revision named when resolved."""
    repo: str | None = None
    """hf: the repository id as the Hub spells it."""
    endpoint: str | None = None
    """hf: the Hub's URL; s3: the store's (for messages)."""
    local_path: Path | None = None
    """pvc: the folder itself (nothing is copied)."""

    @property
    def uri(self) -> str:
        """The source, pinned: `hf://org/name@<commit>`; s3:// and pvc:// as written."""
        if isinstance(self.source, HfSource):
            return f"hf://{self.repo or self.source.repo}@{self.revision}"
        return self.source.uri

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def copied(self) -> bool:
        """Whether `fetch` copies the files into the cache (hf, s3), or serves them in place (pvc)."""
        return not isinstance(self.source, PvcSource)


def check_name(name: str, uri: str) -> str:
    """`name` if it is a plain relative path inside the folder (not absolute, no '.' or '..', no '//'),
    else `WeightsSourceError`: a listed name never writes outside the entry."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or path.as_posix() != name:
        raise WeightsSourceError(f"{uri}: the file name {name!r} is not a path inside the folder; refused")
    return name
