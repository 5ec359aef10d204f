"""hf:// — a Hugging Face Hub repository, through huggingface_hub ($HF_ENDPOINT and $HF_TOKEN honoured).

Resolve: one `HfApi.model_info(files_metadata=True)` call gives the commit the revision names now
and each file's size and digest (the LFS sha256, or the git blob id of a file kept in git).
Download: `hf_hub_download` of each file *at that commit* into a plain folder (`local_dir`), so a
branch or tag moved meanwhile changes nothing; huggingface_hub's own bookkeeping in that folder
(`.cache/huggingface/`) is removed before the folder is published (`tidy`).

Which files: all of the repository's, except other frameworks' weights (`*.bin`, `*.pth`, `*.gguf`…)
when it has safetensors at its root, which is what vLLM and transformers load then: a repository
shipping both formats is not downloaded twice.

Failures, each with the URI and the Hub's URL (never the token):
- no such repository or revision, gated or private without a token that has access → `WeightsSourceError`;
- connection errors, timeouts, 408/429/5xx → retried (`runtime.client.retry`'s policy, one loop), then
  `WeightsUnavailable`; so is `HF_HUB_OFFLINE` (nothing is asked) and a full disk (nothing is retried).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from tqdm import tqdm

from nejumi_eval.api.v1alpha1.contract import HF_TOKEN_ENV
from nejumi_eval.runtime.client.retry import (
    Retry,
    RetryPolicy,
    is_retryable_status,
    parse_retry_after,
    retry_sync,
)
from nejumi_eval.runtime.weights.errors import WeightsSourceError, WeightsUnavailable
from nejumi_eval.runtime.weights.key import hf_key
from nejumi_eval.runtime.weights.resolved import ResolvedSource, WeightFile, check_name
from nejumi_eval.runtime.weights.source import HfSource

SKIPPED_WITH_SAFETENSORS = (
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".ot",
    ".onnx",
    ".onnx_data",
    ".gguf",
    ".tflite",
)
"""Weights in other formats, left out of a repository that has `*.safetensors` at its root."""
HF_BOOKKEEPING = PurePosixPath(".cache/huggingface")
"""What `hf_hub_download(local_dir=…)` writes beside the files (metadata, locks, partial files)."""
TOKEN_REMEDY = (
    "set model.hfTokenSecretRef to a Secret holding a token with access (for a gated model, accept "
    "its terms on the Hub with that account first)"
)


def hub_endpoint() -> str:
    """$HF_ENDPOINT read now (tests and mirrors set it), else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_hf(source: HfSource, *, retry: RetryPolicy | None = None) -> ResolvedSource:
    """The commit `source`'s revision names now and the files to fetch, with sizes and digests."""
    from huggingface_hub import HfApi

    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint)

    def attempt(_: int) -> Any:
        try:
            return api.model_info(source.repo, revision=source.revision, files_metadata=True)
        except Exception as exc:
            return retry_or_raise(exc, source.uri, endpoint)

    info = retry_sync(retry or RetryPolicy(), attempt, exhausted=_exhausted(source.uri, endpoint))
    if not info.sha:
        raise WeightsUnavailable(f"{source.uri}: {endpoint} named no commit for the revision")
    files = select_files(tuple(_file(sibling, source.uri) for sibling in info.siblings or ()))
    if not files:
        raise WeightsSourceError(f"{source.uri}: the repository on {endpoint} has no files")
    return ResolvedSource(
        source=source,
        key=hf_key(info.id, info.sha),
        files=files,
        revision=info.sha,
        repo=info.id,
        endpoint=endpoint,
    )


def _file(sibling: Any, uri: str) -> WeightFile:
    name = check_name(sibling.rfilename, uri)
    if sibling.lfs is not None:
        return WeightFile(name, int(sibling.lfs.size), sha256=sibling.lfs.sha256)
    if sibling.size is None or not sibling.blob_id:
        raise WeightsUnavailable(f"{uri}: the Hub listed {name} without its size or digest")
    return WeightFile(name, int(sibling.size), git_blob_sha1=sibling.blob_id)


def select_files(files: tuple[WeightFile, ...]) -> tuple[WeightFile, ...]:
    """Every file, less other formats' weights when safetensors are at the root (sorted by name)."""
    if any("/" not in f.name and f.name.endswith(".safetensors") for f in files):
        files = tuple(f for f in files if not f.name.endswith(SKIPPED_WITH_SAFETENSORS))
    return tuple(sorted(files, key=lambda f: f.name))


class _Quiet(tqdm):
    """No progress bars from huggingface_hub: `progress.ProgressMonitor` reports for the whole fetch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("name", None)
        super().__init__(*args, **{**kwargs, "disable": True})


def download_hf_file(
    resolved: ResolvedSource, file: WeightFile, folder: Path, *, retry: RetryPolicy | None = None
) -> None:
    """`file` of `resolved` (at its commit) into `folder`/name; failures as in the module docstring."""
    from huggingface_hub import hf_hub_download

    endpoint = resolved.endpoint or hub_endpoint()

    def attempt(_: int) -> Retry | None:
        try:
            hf_hub_download(
                resolved.repo or "",
                file.name,
                revision=resolved.revision,
                local_dir=folder,
                cache_dir=folder / HF_BOOKKEEPING / "hub",  # never another cache's copy: all from the Hub
                endpoint=endpoint,
                tqdm_class=_Quiet,
            )
        except Exception as exc:
            return retry_or_raise(exc, f"{resolved.uri} ({file.name})", endpoint)
        return None

    retry_sync(
        retry or RetryPolicy(), attempt, exhausted=_exhausted(f"{resolved.uri} ({file.name})", endpoint)
    )


def tidy(folder: Path) -> None:
    """Remove huggingface_hub's bookkeeping from a downloaded folder (and `.cache` if left empty)."""
    shutil.rmtree(folder / HF_BOOKKEEPING, ignore_errors=True)
    with contextlib.suppress(OSError):
        (folder / HF_BOOKKEEPING.parent).rmdir()


def retry_or_raise(exc: Exception, what: str, endpoint: str) -> Retry:
    """A Hub failure as the retry loop takes it: `Retry` if it may heal, else the typed error."""
    import httpx2
    from huggingface_hub import errors as hx

    token = "the token in $HF_TOKEN has no access" if os.environ.get(HF_TOKEN_ENV) else "no token is set"
    if isinstance(exc, hx.GatedRepoError):
        raise WeightsSourceError(
            f"{what}: the model is gated on {endpoint} and {token}: {TOKEN_REMEDY}"
        ) from None
    if isinstance(exc, hx.RevisionNotFoundError):
        raise WeightsSourceError(
            f"{what}: no such revision on {endpoint} (check the URI's @revision or model.revision)"
        ) from None
    if isinstance(exc, hx.RepositoryNotFoundError | hx.DisabledRepoError):
        raise WeightsSourceError(
            f"{what}: no such model on {endpoint}, or it is private or gated and {token}: check the "
            f"id, or {TOKEN_REMEDY}"
        ) from None
    if isinstance(exc, hx.HFValidationError):
        raise WeightsSourceError(f"{what}: not a Hugging Face model id or revision ({exc})") from None
    if isinstance(exc, hx.OfflineModeIsEnabled):
        raise WeightsUnavailable(
            f"{what}: HF_HUB_OFFLINE is set, so {endpoint} is not asked: unset it where weights are fetched"
        ) from None
    if isinstance(exc, hx.HfHubHTTPError) and getattr(exc, "response", None) is not None:
        status = exc.response.status_code
        if status in (401, 403):
            raise WeightsSourceError(
                f"{what}: {endpoint} refused access (HTTP {status}) and {token}: {TOKEN_REMEDY}"
            ) from None
        if is_retryable_status(status):
            return Retry(f"HTTP {status}", parse_retry_after(exc.response.headers))
        raise WeightsUnavailable(f"{what}: {endpoint} answered HTTP {status}") from None
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        raise WeightsUnavailable(f"{what}: no space left on the cache volume ({exc})") from None
    if isinstance(exc, httpx2.TransportError | OSError):  # hf's LocalEntryNotFoundError wraps a lost HEAD
        return Retry(_root_cause(exc), unreachable=_unreachable(exc))
    raise exc


def _exhausted(what: str, endpoint: str) -> Any:
    def exhausted(attempts: int, failure: Retry) -> NoReturn:
        raise WeightsUnavailable(
            f"{what}: {endpoint} could not be read after {attempts} attempts ({failure.reason}); "
            "check the network (and $HF_ENDPOINT), then retry"
        )

    return exhausted


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in out:
        out.append(cause)
        cause = cause.__cause__ or cause.__context__
    return out


def _root_cause(exc: BaseException) -> str:
    root = _chain(exc)[-1]
    return f"{type(root).__name__}: {root}"[:300]


def _unreachable(exc: BaseException) -> bool:
    """The host is not there (no such name, connection refused): retried only briefly."""
    return any(isinstance(e, socket.gaierror | ConnectionRefusedError) for e in _chain(exc))
