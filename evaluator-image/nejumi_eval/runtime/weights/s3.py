"""s3:// — a folder of weights in an S3-compatible store, through the results store's client
(`nejumi_eval.storage.store.ObjectStore`: endpoint, region and keys from $AWS_ENDPOINT_URL,
$AWS_REGION, $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY, as for the results).

Resolve: list the prefix (each object's size and ETag), then read each object's recorded sha256
(`x-amz-meta-sha256`, what `nejumi_eval.storage.upload` writes). An object with one is verified
against it after download. An object without one is named by its ETag and size: the cache key still
changes when the object does (a new upload is a new ETag), but the bytes are checked by size only;
an ETag is not a digest in general (multipart uploads, SSE-KMS), so it is never compared with one.

Download: boto3's managed transfer (`ObjectStore.download`: large objects in parallel ranged GETs,
boto3's own retries). Failures: refused key or missing bucket → `WeightsSourceError`; a store that
cannot be reached or fails → `WeightsUnavailable`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nejumi_eval.api.v1alpha1.results import SHA256_METADATA
from nejumi_eval.runtime.weights.errors import WeightsSourceError, WeightsUnavailable
from nejumi_eval.runtime.weights.key import s3_key
from nejumi_eval.runtime.weights.resolved import ResolvedSource, WeightFile, check_name
from nejumi_eval.runtime.weights.source import S3Source
from nejumi_eval.storage.store import ObjectStore, StoreError, StoreRefused

WEIGHTS_CREDENTIALS = "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY where the weights are fetched"
HEAD_WORKERS = 8
"""Objects whose metadata is read at once while resolving."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


def weights_store() -> ObjectStore:
    """The store client for weights (the environment's endpoint and keys)."""
    return ObjectStore(credentials=WEIGHTS_CREDENTIALS)


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """The store's typed errors as the weights' (the store's message kept: it names the object)."""
    try:
        yield
    except StoreRefused as exc:
        raise WeightsSourceError(f"model.storageUri {uri}: {exc}") from exc
    except StoreError as exc:
        raise WeightsUnavailable(f"model.storageUri {uri}: {exc}") from exc


def resolve_s3(source: S3Source, *, store: ObjectStore | None = None) -> ResolvedSource:
    """The objects under `source`'s prefix (folder markers left out), sizes and digests."""
    store = store or weights_store()
    with store_errors(source.uri):
        listed = [o for o in store.objects(source.bucket, source.prefix) if not o.key.endswith("/")]
        if not listed:
            raise WeightsSourceError(
                f"model.storageUri {source.uri}: no objects under it at {store.settings.where}"
            )
        with ThreadPoolExecutor(max_workers=min(HEAD_WORKERS, len(listed))) as pool:
            metadata = list(pool.map(lambda o: store.metadata(source.bucket, o.key) or {}, listed))
    files = []
    for obj, meta in zip(listed, metadata, strict=True):
        name = check_name(obj.key[len(source.prefix) :], source.uri)
        sha256 = meta.get(SHA256_METADATA, "").lower()
        if _SHA256.fullmatch(sha256):
            files.append(WeightFile(name, obj.size, sha256=sha256))
        else:
            files.append(WeightFile(name, obj.size, etag=obj.etag.strip('"')))
    return ResolvedSource(
        source=source,
        key=s3_key(files),
        files=tuple(sorted(files, key=lambda f: f.name)),
        endpoint=store.settings.where,
    )


def download_s3_file(resolved: ResolvedSource, file: WeightFile, folder: Path, store: ObjectStore) -> None:
    """`file` of `resolved` into `folder`/name."""
    source = resolved.source
    assert isinstance(source, S3Source)
    dest = folder / file.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with store_errors(source.uri):
        store.download(source.bucket, source.prefix + file.name, dest)
