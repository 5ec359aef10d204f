"""The 12 raw sources of jaster: their SOURCE.json manifests as models, and fetching them.

The manifests (``manifests/<source>.json``) are byte copies of ``shared/datasets/raw/<source>/
SOURCE.json``; they are the single record of pinned commits and hashes (protocol-jaster.md §2).
Their shapes differ by source, so ``SourceManifest.files()`` turns each into plain ``RemoteFile``
rows for the generic fetcher. Only the files the converters read are fetched (LICENSE files are
not).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path, PurePosixPath

import httpx
from pydantic import BaseModel, ConfigDict

from nejumi_eval.runtime.client.retry import RetryPolicy
from nejumi_eval.runtime.fetch import (
    DOWNLOAD_TIMEOUT,
    MIRROR_ENV,
    DataError,
    RemoteFile,
    download,
    extract_zip_members,
    fetch_files,
    rewrite_url,
    verify_folder,
)

SOURCES = (
    "jamp",
    "janli",
    "jnli",
    "jsem",
    "jsick",
    "jemhopqa",
    "niilc",
    "jsquad",
    "jcommonsenseqa",
    "chabsa",
    "mawps",
    "wiki",
)
RAW_GITHUB = "https://raw.githubusercontent.com/"
CHABSA_DIR = "chABSA-dataset"
CHABSA_ZIP = "chABSA-dataset.zip"


class MissingFile(BaseModel):
    """A file the offline mirror leaves out (JGLUE train files over 4 MiB)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    local_file: str
    download_url: str
    expected_git_blob_sha1: str
    reason: str


class SourceManifest(BaseModel):
    """The fields of one SOURCE.json that acquisition needs; the rest is provenance, kept as extras."""

    model_config = ConfigDict(extra="allow", frozen=True)

    dataset: str
    upstream_repo: str
    commit: str | None = None
    equivalent_tag_commit: str | None = None
    paths: dict[str, str]
    sha256: dict[str, str]
    git_blob_sha1: dict[str, str] = {}
    per_file_download_url: dict[str, str] = {}
    missing_files: list[MissingFile] = []
    llm_jp_eval_urls_as_written: list[str] = []
    filenames: list[str] = []
    """jsem only: the XML files in the order the converter reads them."""

    def _pinned(self, url: str) -> str:
        # JGLUE: the manifest's commit is a former `main` tip; the protocol pins the byte-identical
        # tag v1.1.0 commit instead (§2.2), which stays reachable now that `main` dropped the files.
        if self.equivalent_tag_commit and self.commit:
            return url.replace(f"/{self.commit}/", f"/{self.equivalent_tag_commit}/", 1)
        return url

    def files(self) -> list[RemoteFile]:
        """The raw files the converters read, each with its pinned URL and expected hash."""
        if self.dataset == "chabsa":
            return [
                RemoteFile(name=name, url=self.chabsa_zip_url, sha256=digest)
                for name, digest in sorted(self.sha256.items())
                if _is_chabsa_json(PurePosixPath(name))
            ]
        if self.dataset == "wiki":
            base = f"{RAW_GITHUB}{self.upstream_repo}/{self.commit}/"
            return [
                RemoteFile(name=local, url=f"{base}{upstream}", sha256=self.sha256[local])
                for upstream, local in self.paths.items()
            ]
        files = [
            RemoteFile(name=name, url=self._pinned(url), sha256=self.sha256[name])
            for name, url in self.per_file_download_url.items()
        ]
        files += [
            RemoteFile(
                name=m.local_file,
                url=self._pinned(m.download_url),
                sha256=self.sha256.get(m.local_file),
                git_blob_sha1=None if m.local_file in self.sha256 else m.expected_git_blob_sha1,
                mirror_optional=True,
            )
            for m in self.missing_files
        ]
        return files

    @property
    def chabsa_zip_url(self) -> str:
        """The official, unversioned zip (no commit exists for chABSA; its members are hash-checked)."""
        return self.llm_jp_eval_urls_as_written[0]

    def fingerprint_items(self) -> dict[str, str]:
        """name → pinned hash of every file in use; what the prepared records depend on."""
        return {f.name: f.sha256 or f"git-blob-sha1:{f.git_blob_sha1}" for f in self.files()}


@functools.cache
def load_manifest(source: str) -> SourceManifest:
    if source not in SOURCES:
        raise DataError(f"unknown jaster raw source {source!r}; known: {', '.join(SOURCES)}")
    path = resources.files("nejumi_eval.benchmarks.jaster").joinpath("manifests", f"{source}.json")
    return SourceManifest.model_validate(json.loads(path.read_text("utf-8")))


def mirror_absent(source: str, mirror_dir: Path | None) -> list[RemoteFile]:
    """Mirror-optional files of ``source`` that the mirror does not hold (none when online)."""
    if mirror_dir is None:
        return []
    folder = mirror_dir / source
    return [f for f in load_manifest(source).files() if f.mirror_optional and not (folder / f.name).is_file()]


def fetch_source(
    source: str,
    *,
    mirror_dir: Path | None,
    cache_dir: Path,
    url_rewrite: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = False,
) -> Path:
    """The verified raw folder of ``source``: ``<mirror_dir>/<source>`` or ``<cache_dir>/raw/<source>``."""
    manifest = load_manifest(source)
    if source == "chabsa":
        return _fetch_chabsa(
            manifest, mirror_dir=mirror_dir, cache_dir=cache_dir, url_rewrite=url_rewrite, retry=retry
        )
    return fetch_files(
        source,
        manifest.files(),
        mirror_dir=mirror_dir,
        cache_dir=cache_dir,
        url_rewrite=url_rewrite,
        retry=retry,
        progress=progress,
    )


def _is_chabsa_json(member: PurePosixPath) -> bool:
    """Only ``chABSA-dataset/*.json`` members are data (protocol §2.2)."""
    return len(member.parts) == 2 and member.parts[0] == CHABSA_DIR and member.suffix == ".json"


def _fetch_chabsa(
    manifest: SourceManifest,
    *,
    mirror_dir: Path | None,
    cache_dir: Path,
    url_rewrite: Mapping[str, str] | None,
    retry: RetryPolicy | None,
) -> Path:
    """chABSA ships only as an unversioned zip: accept it or its extracted folder, check every JSON.

    The zip itself has no recorded hash, so each extracted ``chABSA-dataset/*.json`` is checked
    against the manifest, and a member the manifest does not know is an error too.
    """
    files = manifest.files()
    folder = cache_dir / "raw" / "chabsa"
    if mirror_dir is not None:
        mirrored = mirror_dir / "chabsa"
        if (mirrored / CHABSA_DIR).is_dir():
            _check_no_unknown_json(mirrored, files)
            return fetch_files("chabsa", files, mirror_dir=mirror_dir)
        if not (mirrored / CHABSA_ZIP).is_file():
            raise DataError(
                f"chabsa: neither {mirrored / CHABSA_DIR}/ nor {mirrored / CHABSA_ZIP} is in the mirror. "
                f"Put the official zip ({manifest.chabsa_zip_url}) or its extracted folder there, "
                f"or unset {MIRROR_ENV} to download it."
            )
        archive = mirrored / CHABSA_ZIP
    else:
        if all((folder / f.name).is_file() for f in files):
            try:
                return _verified_chabsa(folder, files, origin=f"cached in {folder}")
            except DataError:
                pass  # a damaged cache: fetch the zip again and let the fresh files decide
        archive = folder / CHABSA_ZIP
        url = rewrite_url(manifest.chabsa_zip_url, url_rewrite)
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as client:
            download(client, url, archive, retry or RetryPolicy(), what=f"chabsa: {CHABSA_ZIP}")
    extract_zip_members(archive, folder, _is_chabsa_json, source="chabsa")
    return _verified_chabsa(folder, files, origin=f"extracted from {archive}")


def _verified_chabsa(folder: Path, files: list[RemoteFile], *, origin: str) -> Path:
    """Every pinned JSON present with its hash, and no JSON the manifest does not list."""
    remedy = (
        f"The files were {origin}. If the official zip differs from the pinned files, report it; "
        "do not edit the manifest."
    )
    verify_folder("chabsa", files, folder, remedy=lambda _: remedy)
    _check_no_unknown_json(folder, files, remedy=remedy)
    return folder


def _check_no_unknown_json(folder: Path, files: list[RemoteFile], *, remedy: str = "Remove them.") -> None:
    known = {f.name for f in files}
    found = (p.relative_to(folder).as_posix() for p in (folder / CHABSA_DIR).glob("*.json"))
    unknown = sorted(name for name in found if name not in known)
    if unknown:
        raise DataError(
            f"chabsa: {folder / CHABSA_DIR} holds {len(unknown)} JSON file(s) the manifest does not list "
            f"({', '.join(unknown[:3])}); only the pinned chABSA files may be converted. {remedy}"
        )
