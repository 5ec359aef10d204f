"""Where a served model's weights come from: `model.storageUri` parsed (KServe's convention).

- `hf://org/name[@revision]`: a Hugging Face Hub repository; without `@revision`, `model.revision`,
  else the default branch.
- `s3://bucket/path/`: a folder of weights in an S3-compatible store.
- `pvc://claim/path`: a folder on a PersistentVolumeClaim the pod mounts at `WEIGHTS_PVC_MOUNT/claim`.

Without `model.storageUri`, a served model named by a Hub id (`model.name: org/name`) comes from
`hf://org/name` too; a local folder and an API model have no source to fetch (`model_source` → None).

The syntax is the spec's (`nejumi_eval.api.v1alpha1.spec`), which the API server checks already;
parsing checks it again so that a URI from anywhere else gets the same verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nejumi_eval.api.v1alpha1.spec import (
    HF_REPO_ID,
    HF_STORAGE_URI,
    LOCAL_MODEL_PATH,
    PVC_STORAGE_URI,
    S3_URI,
    ModelSource,
    ModelSpec,
)
from nejumi_eval.runtime.weights.errors import WeightsSourceError

FORMS = "hf://org/name[@revision], s3://bucket/path/ or pvc://claim/path"


@dataclass(frozen=True)
class HfSource:
    repo: str
    """`org/name` (or `name`) as written."""
    revision: str | None = None
    """A branch, tag or commit; None: the default branch."""

    @property
    def uri(self) -> str:
        return f"hf://{self.repo}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class S3Source:
    bucket: str
    prefix: str
    """The folder: "" (the whole bucket) or a key prefix ending in "/"."""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class PvcSource:
    claim: str
    path: str
    """The folder on the claim, relative, POSIX separators ("" for the claim's root)."""

    @property
    def uri(self) -> str:
        return f"pvc://{self.claim}" + (f"/{self.path}" if self.path else "")


Source = HfSource | S3Source | PvcSource


def parse_storage_uri(uri: str, *, revision: str | None = None) -> Source:
    """The source `uri` names; `revision` (model.revision) applies to an hf:// URI without `@`.

    Raises `WeightsSourceError` for anything but the three forms, or a revision given twice."""
    if _is_hf(uri):
        repo, _, at = uri.removeprefix("hf://").partition("@")
        if at and revision:
            raise WeightsSourceError(
                f"model.storageUri {uri}: the revision is written once (in the URI or in model.revision)"
            )
        return HfSource(repo, at or revision)
    if revision:
        raise WeightsSourceError(f"model.storageUri {uri}: model.revision applies to hf:// only")
    if re.fullmatch(S3_URI, uri):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return S3Source(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")
    if re.fullmatch(PVC_STORAGE_URI, uri):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        segments = [p for p in path.split("/") if p]
        if "." not in segments and ".." not in segments:
            return PvcSource(claim, "/".join(segments))
    raise WeightsSourceError(f"model.storageUri must be {FORMS} (got {uri!r})")


def model_source(model: ModelSpec) -> Source | None:
    """What `model` loads: its storageUri, else its Hub id; None for a local folder or an API."""
    if model.source == ModelSource.OPENAI_COMPATIBLE:
        return None
    if model.storage_uri:
        return parse_storage_uri(model.storage_uri, revision=model.revision)
    if re.fullmatch(LOCAL_MODEL_PATH, model.name) or not re.fullmatch(HF_REPO_ID, model.name):
        return None
    return HfSource(model.name, model.revision)


def _is_hf(uri: str) -> bool:
    """hf://org/name[@revision], with the Hub id's rules a regular expression cannot say."""
    if not re.fullmatch(HF_STORAGE_URI, uri):
        return False
    return not ("--" in uri or ".." in uri or uri.endswith(".git") or ".git@" in uri)
