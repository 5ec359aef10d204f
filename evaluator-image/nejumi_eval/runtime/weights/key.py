"""The cache key: a resolved source's content, as a relative folder name under the cache root.

- hf: `hf/<org>--<name>/<commit sha>`. The Hub's spelling of the id and the commit the revision
  named when resolved: `hf://org/name`, `hf://org/name@main` and `hf://org/name@<that commit>` share
  one entry, and a tag moved to another commit is another key (old weights are never served for it).
  `--` cannot occur in a Hub id, so the folder name maps back to exactly one repository.
- s3: `s3/<sha256>` of the sorted listing `(name, size, digest or ETag)`: the same files under two
  buckets or prefixes share one entry; a changed object is another key.
- pvc: `pvc/<claim>/<path>`: the folder itself (nothing is copied, so the key only names it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from nejumi_eval.runtime.weights.resolved import WeightFile


def hf_key(repo: str, commit: str) -> str:
    return f"hf/{repo.replace('/', '--')}/{commit}"


def s3_key(files: Iterable[WeightFile]) -> str:
    listing = sorted((f.name, f.size, f.identity) for f in files)
    text = json.dumps(listing, separators=(",", ":"), ensure_ascii=False)
    return f"s3/{hashlib.sha256(text.encode('utf-8')).hexdigest()}"


def pvc_key(claim: str, path: str) -> str:
    return f"pvc/{claim}/{path}".rstrip("/")
