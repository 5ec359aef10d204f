"""The results of record in an S3-compatible store: where an evaluation's objects go and how a
reader knows they are complete. Part of the API: the evaluator writes this layout, the leaderboard
(`nejumi-eval leaderboard s3://…`, `--cluster`) and anything else a platform team builds read it.

    s3://<bucket>/<prefix>/                     `results.uri`
      <key>/                                    one evaluation: `cluster_key` or `local_key`
        started.json                            written by preflight (proves the key may write)
        summary.json, run.json, <table>.jsonl   the results folder as it is on the workspace
        manifest.json                           written last: every object above with size, sha256

A reader takes an evaluation as complete only through its manifest, and takes an object only when
its size and sha256 are the manifest's: an upload cut short (no manifest yet) or one being replaced
(objects newer than the manifest) is never read as a result. Objects carry their sha256 as user
metadata (`x-amz-meta-sha256`), so a retried upload skips what is already there.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.names import API_VERSION

MANIFEST = "manifest.json"
"""Written last, after every object it lists."""
STARTED = "started.json"
"""Written by the evaluator's preflight: the key is writable, an evaluation started there."""
SHA256_METADATA = "sha256"
"""User metadata key (`x-amz-meta-sha256`) of an uploaded object: its hex sha256."""
MANIFEST_KIND: Final = "NejumiResults"

_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


@dataclass(frozen=True)
class Location:
    """A bucket and a key prefix (no leading or trailing slash; "" is the bucket's root)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, uri: str) -> Location:
        match = _URI.match(uri.strip())
        if match is None:
            raise ValueError(f"{uri!r} is not an s3://bucket[/prefix] URI")
        return cls(match["bucket"], (match["prefix"] or "").strip("/"))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"

    def child(self, key: str) -> Location:
        """The location `key` below this one."""
        parts = [p for p in (self.prefix, key.strip("/")) if p]
        return Location(self.bucket, "/".join(parts))

    def object_key(self, name: str) -> str:
        """The S3 key of object `name` (a relative path) under this prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name


def cluster_key(namespace: str, name: str, generation: int) -> str:
    """An evaluation's key in the cluster: a retried or preempted pod of the same generation writes
    the same objects again; a new generation never overwrites the result of an older one."""
    return f"{namespace}/{name}/{generation}"


def local_key(model_slug: str, stamp: str) -> str:
    """A local run's key: the model (as its results folder is named) and its UTC start stamp."""
    return f"{model_slug}/{stamp}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ManifestObject(_Camel):
    path: str = Field(description="Relative to the evaluation's prefix (summary.json, run.json, …).")
    size: int = Field(ge=0, description="Bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class EvaluationRef(_Camel):
    """The NejumiEvaluation the results are of (absent for a local run)."""

    namespace: str
    name: str
    generation: int
    uid: str | None = None


class Manifest(_Camel):
    """What a complete evaluation under a key consists of."""

    api_version: str = API_VERSION
    kind: Literal["NejumiResults"] = MANIFEST_KIND
    key: str = Field(description="The evaluation's key under results.uri.")
    model: str
    status: str = Field(description="The summary's status: completed or failed.")
    created_at: str = Field(description="When the manifest was written (UTC, ISO 8601).")
    evaluation: EvaluationRef | None = None
    objects: list[ManifestObject]

    def to_bytes(self) -> bytes:
        return (self.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n").encode()

    def object(self, path: str) -> ManifestObject | None:
        return next((o for o in self.objects if o.path == path), None)


def manifest_digest(data: bytes) -> str:
    """How a status names a manifest: `sha256:<hex>` of its bytes as stored."""
    return f"sha256:{sha256_hex(data)}"
