"""Get pinned raw files, verify them, cache them: the one place the evaluator touches upstream data.

Every benchmark describes its raw files as ``RemoteFile`` rows (local name, pinned URL, expected
hash) built from its manifest; ``fetch_files`` then either reads them from an offline mirror or
downloads them into the cache, and checks every byte against the manifest before anyone parses it.
A file that is missing, unreachable or differs from the manifest is a ``DataError`` that names the
dataset, the file and what to do: the protocol makes a mismatch fatal, never something to skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import httpx
from pydantic import BaseModel, ConfigDict, model_validator
from tqdm import tqdm

from nejumi_eval.api.v1alpha1.contract import CACHE_ENV, EXIT_INFRA
from nejumi_eval.api.v1alpha1.contract import DATA_MIRROR_ENV as MIRROR_ENV
from nejumi_eval.runtime.client.retry import (
    Retry,
    RetryPolicy,
    is_retryable_status,
    parse_retry_after,
    retry_sync,
)
from nejumi_eval.runtime.files import GIT_BLOB_SHA1, SHA256, atomic_writer
from nejumi_eval.runtime.files import file_digest as _digest

DEFAULT_CACHE_DIR = Path("~/.cache/nejumi")

DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DOWNLOAD_WORKERS = 16
DOWNLOAD_REMEDY = f"Check network access, or set {MIRROR_ENV} to a folder holding the raw files."
_CHUNK = 1 << 20


class DataError(RuntimeError):
    """A raw data file could not be obtained or is not the file the manifest pins (exit 3)."""

    nejumi_exit_code = EXIT_INFRA


class RemoteFile(BaseModel):
    """One raw file: where it lives locally, where it comes from, and what its bytes must hash to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Path relative to the source folder (POSIX separators), e.g. ``train/wiki00060003.knp``."""
    url: str
    sha256: str | None = None
    git_blob_sha1: str | None = None
    """Only for files whose manifest has no sha256 yet (``"blob <len>\\0" + content``, as git hashes)."""
    mirror_optional: bool = False
    """The offline mirror leaves this file out on purpose; its absence there is not an error."""

    @model_validator(mode="after")
    def _has_a_hash(self) -> RemoteFile:
        if not (self.sha256 or self.git_blob_sha1):
            raise ValueError(f"{self.name}: a pinned file needs a sha256 or a git blob SHA-1")
        if PurePosixPath(self.name).is_absolute() or ".." in PurePosixPath(self.name).parts:
            raise ValueError(f"{self.name}: file names must stay inside the source folder")
        return self


def cache_root() -> Path:
    """``$NEJUMI_CACHE_DIR`` or ``~/.cache/nejumi``; read at call time so tests can redirect it."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def mirror_root() -> Path | None:
    """``$NEJUMI_DATA_MIRROR`` (a folder laid out like ``shared/datasets/raw``), or None for the network."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def file_digest(path: Path, file: RemoteFile) -> tuple[str, str, str]:
    """(kind, actual, expected) for the hash the manifest gives; sha256 wins over git blob SHA-1."""
    if file.sha256:
        return SHA256, _digest(path, SHA256), file.sha256
    assert file.git_blob_sha1 is not None
    return GIT_BLOB_SHA1, _digest(path, GIT_BLOB_SHA1), file.git_blob_sha1


def verify_file(source: str, path: Path, file: RemoteFile, *, remedy: str) -> None:
    """Raise ``DataError`` unless ``path`` hashes to what the manifest pins for ``file``."""
    kind, actual, expected = file_digest(path, file)
    if actual != expected:
        raise DataError(
            f"{source}: {file.name} at {path} has {kind} {actual}, but the manifest pins {expected}. {remedy}"
        )


def fetch_files(
    source: str,
    files: Sequence[RemoteFile],
    *,
    mirror_dir: Path | None = None,
    cache_dir: Path | None = None,
    url_rewrite: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = False,
    remedy: str = DOWNLOAD_REMEDY,
) -> Path:
    """The folder holding ``files`` of ``source``, every one verified against its manifest hash.

    With ``mirror_dir`` the files are read in place from ``<mirror_dir>/<source>/`` and nothing is
    downloaded; files marked ``mirror_optional`` may be absent there (callers check for them).
    Otherwise they are downloaded into ``<cache_dir>/raw/<source>/`` (default: ``cache_root()``),
    skipping files already cached with the right hash. ``url_rewrite`` maps URL prefixes to
    replacements; it exists so tests can serve the pinned paths from a local server. ``remedy``
    ends the message of a file that cannot be downloaded (what the user can do instead).
    """
    if mirror_dir is not None:
        return _from_mirror(source, files, mirror_dir / source)
    folder = (cache_dir or cache_root()) / "raw" / source
    todo = [f for f in files if not _cached_ok(folder / f.name, f)]
    if todo:
        download_files(
            source, todo, folder, url_rewrite=url_rewrite, retry=retry, progress=progress, remedy=remedy
        )
    return folder


def _from_mirror(source: str, files: Sequence[RemoteFile], folder: Path) -> Path:
    verify_folder(
        source,
        files,
        folder,
        remedy=lambda f: (
            f"Copy the pinned file from {f.url} into the mirror, or unset {MIRROR_ENV} to download it."
        ),
    )
    return folder


def verify_folder(
    source: str, files: Sequence[RemoteFile], folder: Path, *, remedy: Callable[[RemoteFile], str]
) -> None:
    """Check every file of ``files`` in ``folder``; absent ``mirror_optional`` files are skipped."""
    for file in files:
        path = folder / file.name
        if not path.is_file():
            if file.mirror_optional:
                continue
            raise DataError(f"{source}: {file.name} is missing from {folder}. {remedy(file)}")
        verify_file(source, path, file, remedy=remedy(file))


def _cached_ok(path: Path, file: RemoteFile) -> bool:
    if not path.is_file():
        return False
    _, actual, expected = file_digest(path, file)
    return actual == expected


def rewrite_url(url: str, url_rewrite: Mapping[str, str] | None) -> str:
    for prefix, replacement in (url_rewrite or {}).items():
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


def download_files(
    source: str,
    files: Sequence[RemoteFile],
    folder: Path,
    *,
    url_rewrite: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = False,
    remedy: str = DOWNLOAD_REMEDY,
) -> None:
    """Download ``files`` into ``folder`` in parallel; each lands under its name only once verified."""
    policy = retry or RetryPolicy()
    limits = httpx.Limits(max_connections=DOWNLOAD_WORKERS, max_keepalive_connections=DOWNLOAD_WORKERS)
    with (
        httpx.Client(timeout=DOWNLOAD_TIMEOUT, limits=limits, follow_redirects=True) as client,
        tqdm(total=len(files), desc=f"download {source}", unit="file", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=min(DOWNLOAD_WORKERS, len(files))) as pool,
    ):

        def one(file: RemoteFile) -> None:
            url = rewrite_url(file.url, url_rewrite)
            download(
                client,
                url,
                folder / file.name,
                policy,
                check=lambda tmp: verify_file(
                    source,
                    tmp,
                    file,
                    remedy=f"Downloaded from {url}. Retry; if it persists the upstream file changed: "
                    "report it, do not edit the manifest hash.",
                ),
                what=f"{source}: {file.name}",
                remedy=remedy,
            )
            bar.update()

        futures = [pool.submit(one, f) for f in files]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # fail fast: the first bad file decides
            raise


def download(
    client: httpx.Client,
    url: str,
    dest: Path,
    policy: RetryPolicy,
    *,
    check: Callable[[Path], None] | None = None,
    what: str,
    remedy: str = DOWNLOAD_REMEDY,
) -> None:
    """Stream ``url`` to ``dest`` atomically (temp file + rename); ``check`` vets the temp file first.

    Timeouts, connection errors and retryable statuses (429, ≥500, ...) are retried per ``policy``.
    A host whose name does not resolve or that refuses connections does not heal in seconds: it is
    retried only within ``policy.unreachable_backoff_s`` (one quick retry by default), so a machine
    without network fails at once. Any other status, or running out of attempts, is a ``DataError``
    naming ``what`` and ``url`` and ending with ``remedy``.
    """

    def attempt(_: int) -> Retry | None:
        try:
            response = _stream_to(client, url, dest, check)
        except httpx.TransportError as err:
            return Retry(repr(err), unreachable=_host_unreachable(err))
        if response.status_code == 200:
            return None
        status = response.status_code
        if not is_retryable_status(status):
            raise DataError(f"{what} could not be downloaded from {url}: HTTP {status}. {remedy}")
        return Retry(f"HTTP {status}", parse_retry_after(response.headers))

    def exhausted(attempts: int, failure: Retry) -> None:
        raise DataError(
            f"{what} could not be downloaded from {url} after {attempts} attempts ({failure.reason}). "
            + remedy
        )

    retry_sync(policy, attempt, exhausted=exhausted)


def _host_unreachable(err: httpx.TransportError) -> bool:
    """Whether ``err`` says the host is not there: its name does not resolve, or it refuses."""
    if not isinstance(err, httpx.ConnectError):
        return False
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, socket.gaierror | ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _stream_to(
    client: httpx.Client, url: str, dest: Path, check: Callable[[Path], None] | None
) -> httpx.Response:
    """One GET; on 200 the body is checked and renamed to ``dest``, otherwise nothing is kept."""
    with client.stream("GET", url) as response:
        if response.status_code == 200:
            with atomic_writer(dest, verify=check) as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
    return response


def extract_zip_members(
    archive: Path, dest: Path, keep: Callable[[PurePosixPath], bool], *, source: str
) -> list[str]:
    """Extract the members ``keep`` accepts (regular files only) into ``dest``; returns their names.

    Each member is written atomically, so an interrupted extraction never leaves a truncated file
    under its final name. Names that would escape ``dest`` are refused.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise DataError(
            f"{source}: {archive} is not a valid zip ({err}). Delete it, fetch it again."
        ) from err
    names: list[str] = []
    with zf:
        for info in zf.infolist():
            member = PurePosixPath(info.filename)
            if info.is_dir() or not keep(member):
                continue
            if member.is_absolute() or ".." in member.parts:
                raise DataError(f"{source}: {archive} member {info.filename} escapes the folder; refused.")
            with atomic_writer(dest / member) as out, zf.open(info) as src:
                shutil.copyfileobj(src, out, _CHUNK)
            names.append(str(member))
    return names
