"""`resolve`: what a source is made of now. hf:// asks the Hub (`hub.py`), s3:// lists the store
(`s3.py`), pvc:// looks at the mounted folder (here: nothing to ask, nothing to copy)."""

from __future__ import annotations

from pathlib import Path

from nejumi_eval.api.v1alpha1.contract import WEIGHTS_PVC_MOUNT
from nejumi_eval.runtime.client.retry import RetryPolicy
from nejumi_eval.runtime.weights.errors import WeightsSourceError
from nejumi_eval.runtime.weights.hub import resolve_hf
from nejumi_eval.runtime.weights.key import pvc_key
from nejumi_eval.runtime.weights.resolved import ResolvedSource, WeightFile
from nejumi_eval.runtime.weights.s3 import resolve_s3
from nejumi_eval.runtime.weights.source import HfSource, PvcSource, S3Source, Source, parse_storage_uri
from nejumi_eval.storage.store import ObjectStore


def resolve(
    source: Source | str,
    *,
    revision: str | None = None,
    pvc_mount: Path = Path(WEIGHTS_PVC_MOUNT),
    retry: RetryPolicy | None = None,
    store: ObjectStore | None = None,
) -> ResolvedSource:
    """The files `source` (a parsed source, or a storageUri with `revision` = model.revision) is made
    of now, with sizes and digests, and its cache key.

    `pvc_mount`: where claims are mounted (pvc://claim/path is `pvc_mount/claim/path`); `retry`: the
    Hub's retry policy; `store`: the S3 client (default: one from the environment)."""
    if isinstance(source, str):
        source = parse_storage_uri(source, revision=revision)
    if isinstance(source, HfSource):
        return resolve_hf(source, retry=retry)
    if isinstance(source, S3Source):
        return resolve_s3(source, store=store)
    return resolve_pvc(source, pvc_mount)


def resolve_pvc(source: PvcSource, mount: Path) -> ResolvedSource:
    """The folder on the mounted claim, as it is (its files' sizes; no digests, nothing copied)."""
    folder = mount / source.claim / source.path
    if not folder.is_dir():
        raise WeightsSourceError(
            f"model.storageUri {source.uri}: {folder} is not a folder (is claim {source.claim} mounted "
            f"at {mount / source.claim}, and does it hold {source.path or 'the weights'}?)"
        )
    files = tuple(
        WeightFile(p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )
    return ResolvedSource(
        source=source, key=pvc_key(source.claim, source.path), files=files, local_path=folder
    )
