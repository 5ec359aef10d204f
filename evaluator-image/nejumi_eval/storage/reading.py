"""The readers' side of the results of record: find the complete evaluations under a prefix (those
with a manifest) and read their objects, each checked against the manifest's size and sha256.

A prefix without a manifest is an upload that has not finished (or failed): it is not an
evaluation. An object whose bytes are not the manifest's is being replaced (a rerun of the same key
uploads before it writes its new manifest): it is refused, never read as part of the old result.
Reading needs only read permission (GetObject, ListBucket).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from nejumi_eval.api.v1alpha1.results import MANIFEST, Location, Manifest, manifest_digest, sha256_hex
from nejumi_eval.storage.store import ObjectStore, StoreError


class NotAsManifested(StoreError):
    """An object differs from what the manifest lists (missing, another size or sha256)."""


@dataclass
class StoredEvaluation:
    """One complete evaluation in the store: its location, its manifest and the manifest's digest."""

    store: ObjectStore
    location: Location
    manifest: Manifest
    digest: str

    def read(self, name: str) -> bytes | None:
        """Object `name` (a path the manifest lists), verified; None when the manifest has none."""
        listed = self.manifest.object(name)
        if listed is None:
            return None
        cache = self.store.cache
        if cache is not None and (kept := cache.get(listed.sha256, listed.size)) is not None:
            return kept  # the very object the manifest lists (by its sha256), read before
        key = self.location.object_key(name)
        data = self.store.get(self.location.bucket, key)
        if len(data) != listed.size or sha256_hex(data) != listed.sha256:
            raise NotAsManifested(
                f"s3://{self.location.bucket}/{key} is not the object its manifest lists "
                "(being replaced by a new upload?)"
            )
        if cache is not None:
            cache.put(listed.sha256, data)
        return data

    def json(self, name: str) -> dict[str, Any]:
        data = self.read(name)
        doc = json.loads(data) if data is not None else {}
        return doc if isinstance(doc, dict) else {}

    def table(self, name: str) -> list[dict[str, Any]] | None:
        data = self.read(f"{name}.jsonl")
        if data is None:
            return None
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def open_evaluation(store: ObjectStore, location: Location) -> StoredEvaluation:
    """The evaluation at exactly `location` (its manifest read and parsed)."""
    data = store.get(location.bucket, location.object_key(MANIFEST))
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise StoreError(f"{location.uri}{MANIFEST} is not a results manifest: {exc}") from None
    return StoredEvaluation(store, location, manifest, manifest_digest(data))


def find_evaluations(store: ObjectStore, location: Location) -> list[Location]:
    """The complete evaluations at or under `location`: every prefix holding a manifest."""
    base = f"{location.prefix}/" if location.prefix else ""
    found = []
    for key in store.keys(location.bucket, base):
        if key == f"{base}{MANIFEST}" or key.endswith(f"/{MANIFEST}"):
            found.append(Location(location.bucket, key[: -len(MANIFEST)].rstrip("/")))
    return sorted(found, key=lambda loc: loc.prefix)
