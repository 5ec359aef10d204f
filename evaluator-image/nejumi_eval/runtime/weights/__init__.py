"""A served model's weights, fetched before any GPU is held: resolved, downloaded once into a shared
cache, verified.

    source = model_source(spec.model)            # model.storageUri, else the Hub id; None: nothing to fetch
    resolved = resolve(source)                   # the commit / listing it is now, every file's digest
    cached = fetch(resolved, cache_root)         # the folder `vllm serve` loads (cached.path)

One module per concept: `source` (the URI forms), `resolved` (a source's files), `key` (the cache
key), `hub` / `s3` / `resolve` (asking the source), `verify` (digests), `lock` (one filler per
entry), `progress` (reports), `cache` (`fetch`), `errors` (the typed errors: exit 2 or 3).
"""

from nejumi_eval.runtime.weights.cache import CachedWeights, fetch
from nejumi_eval.runtime.weights.errors import (
    CacheLockTimeout,
    WeightsDigestMismatch,
    WeightsSourceError,
    WeightsUnavailable,
)
from nejumi_eval.runtime.weights.progress import Progress, ProgressCallback
from nejumi_eval.runtime.weights.resolve import resolve
from nejumi_eval.runtime.weights.resolved import ResolvedSource, WeightFile
from nejumi_eval.runtime.weights.source import (
    HfSource,
    PvcSource,
    S3Source,
    Source,
    model_source,
    parse_storage_uri,
)

__all__ = [
    "CacheLockTimeout",
    "CachedWeights",
    "HfSource",
    "Progress",
    "ProgressCallback",
    "PvcSource",
    "ResolvedSource",
    "S3Source",
    "Source",
    "WeightFile",
    "WeightsDigestMismatch",
    "WeightsSourceError",
    "WeightsUnavailable",
    "fetch",
    "model_source",
    "parse_storage_uri",
    "resolve",
]
