"""The evaluator's side of the results of record: preflight's write check, and the upload of a
results folder in the layout of `nejumi_eval.api.v1alpha1.results` (objects first, manifest last).

Idempotent: an object already stored with the same sha256 (its `x-amz-meta-sha256`) is not sent
again, and a manifest equal to the one stored is not rewritten; so a retried or preempted pod, or a
rerun after a failed upload, writes what changed and nothing twice. A store lost during the upload
is retried with backoff (`BACKOFF_S`); after that the results stay in the workspace and the summary
says they were not stored (`StoredResults.error`), never that they were.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from nejumi_eval.api.v1alpha1.contract import POD_NAME_ENV, RESULTS_KEY_ENV
from nejumi_eval.api.v1alpha1.results import (
    MANIFEST,
    SHA256_METADATA,
    STARTED,
    EvaluationRef,
    Location,
    Manifest,
    ManifestObject,
    local_key,
    manifest_digest,
    sha256_hex,
)
from nejumi_eval.api.v1alpha1.spec import EvaluationSpec
from nejumi_eval.api.v1alpha1.summary import StoredResults, Summary
from nejumi_eval.storage.store import ObjectStore, StoreRefused, StoreUnreachable

log = logging.getLogger(__name__)

BACKOFF_S = (2.0, 4.0, 8.0, 16.0)
"""Pauses between whole-upload attempts after the store was lost (each attempt also retries every
request itself, boto3's standard mode): about half a minute before giving up."""
WORKERS = 8
ERROR_MAX = 500
"""An error kept in the summary (the termination message has 4 KB for everything)."""


class Destination:
    """One run's prefix in the results store (`results.uri` + its key) and the store."""

    def __init__(self, spec: EvaluationSpec, location: Location, evaluator: str | None = None) -> None:
        self.spec = spec
        self.location = location
        self.evaluator = evaluator
        self.store = ObjectStore(spec.results)

    def check(self) -> None:
        """Preflight: the key may write. Fails fast (two tries, a short connect timeout)."""
        quick = ObjectStore(self.spec.results, attempts=2, connect_timeout=3.0)
        started = {
            "startedAt": datetime.now(UTC).isoformat(),
            "model": self.spec.model.name,
            "evaluator": self.evaluator,
            "pod": os.environ.get(POD_NAME_ENV),
        }
        check_writable(quick, self.location, started)

    def upload(self, folder: Path, summary: Summary) -> StoredResults:
        return upload(
            self.store,
            folder,
            self.location,
            model=summary.model,
            status=summary.status,
            evaluation=evaluation_ref(os.environ.get(RESULTS_KEY_ENV)),
        )


def destination(
    spec: EvaluationSpec, model_slug: str, stamp: str, evaluator: str | None = None
) -> Destination | None:
    """Where this run's results of record go (None: `results.uri` unset, the workspace only). The
    key is the operator's (`$NEJUMI_RESULTS_KEY`: namespace/name/generation), else model/time."""
    if not spec.results.uri:
        return None
    key = os.environ.get(RESULTS_KEY_ENV) or local_key(model_slug, stamp)
    return Destination(spec, Location.parse(spec.results.uri).child(key), evaluator)


def evaluation_ref(key: str | None) -> EvaluationRef | None:
    """The NejumiEvaluation behind an operator's key (namespace/name/generation), else None."""
    parts = (key or "").split("/")
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        return None
    return EvaluationRef(namespace=parts[0], name=parts[1], generation=int(parts[2]))


def check_writable(store: ObjectStore, location: Location, started: Mapping[str, object]) -> None:
    """Preflight: write `started.json` under the evaluation's key. One request proves the store is
    reachable, the credentials are accepted, the bucket exists and the key may write there (a key
    that may only write its prefix passes; a bucket-level call would not)."""
    data = (json.dumps(started, ensure_ascii=False, indent=2) + "\n").encode()
    store.put(location.bucket, location.object_key(STARTED), data)


def folder_objects(folder: Path) -> list[tuple[ManifestObject, Path]]:
    """The results folder's files (not its subfolders: the W&B offline run is W&B's), sorted."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in (MANIFEST, STARTED):
            data = path.read_bytes()
            out.append((ManifestObject(path=path.name, size=len(data), sha256=sha256_hex(data)), path))
    return out


def upload(
    store: ObjectStore,
    folder: Path,
    location: Location,
    *,
    model: str,
    status: str,
    evaluation: EvaluationRef | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> StoredResults:
    """Store the results folder under `location`; never raises for the store's sake (the run's
    scores stand whether or not they were stored): the result says stored or why not."""
    pauses = list(BACKOFF_S)
    while True:
        try:
            return _upload_once(store, folder, location, model=model, status=status, evaluation=evaluation)
        except StoreUnreachable as exc:
            if not pauses:
                tries = len(BACKOFF_S) + 1
                return StoredResults(
                    uri=location.uri, error=f"{exc} (gave up after {tries} attempts)"[:ERROR_MAX]
                )
            pause = pauses.pop(0)
            log.warning("results upload: %s; again in %.0f s", exc, pause)
            sleep(pause)
        except StoreRefused as exc:
            return StoredResults(uri=location.uri, error=str(exc)[:ERROR_MAX])


def _upload_once(
    store: ObjectStore,
    folder: Path,
    location: Location,
    *,
    model: str,
    status: str,
    evaluation: EvaluationRef | None,
) -> StoredResults:
    objects = folder_objects(folder)
    listed = [o for o, _ in objects]
    manifest_key = location.object_key(MANIFEST)
    stored_manifest = _stored_manifest(store, location)
    if stored_manifest is not None and stored_manifest[0].objects == listed:
        data = stored_manifest[1]  # every object is the same: nothing to write
        return _stored(location, listed, data, uploaded=0)
    if stored_manifest is not None:
        # The objects are about to change: a reader must not pair the old manifest with them.
        store.delete(location.bucket, manifest_key)

    def send(item: tuple[ManifestObject, Path]) -> int:
        obj, path = item
        key = location.object_key(obj.path)
        if (store.metadata(location.bucket, key) or {}).get(SHA256_METADATA) == obj.sha256:
            return 0
        store.put(location.bucket, key, path.read_bytes(), metadata={SHA256_METADATA: obj.sha256})
        return 1

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        uploaded = sum(pool.map(send, objects))
    manifest = Manifest(
        key=location.prefix,
        model=model,
        status=status,
        created_at=datetime.now(UTC).isoformat(),
        evaluation=evaluation,
        objects=listed,
    )
    data = manifest.to_bytes()
    store.put(location.bucket, manifest_key, data, metadata={SHA256_METADATA: sha256_hex(data)})
    return _stored(location, listed, data, uploaded=uploaded + 1)


def _stored_manifest(store: ObjectStore, location: Location) -> tuple[Manifest, bytes] | None:
    """The manifest stored under `location`, if there is one and the key may read it."""
    try:
        data = store.get_if_exists(location.bucket, location.object_key(MANIFEST))
    except StoreRefused as exc:
        if exc.code == "NoSuchBucket":
            raise
        return None  # a key that may only write: upload everything (idempotent all the same)
    if data is None:
        return None
    try:
        return Manifest.model_validate_json(data), data
    except ValueError:
        return None


def _stored(
    location: Location, objects: list[ManifestObject], manifest: bytes, uploaded: int
) -> StoredResults:
    return StoredResults(
        uri=location.uri,
        stored=True,
        manifest_sha256=manifest_digest(manifest),
        objects=len(objects),
        bytes=sum(o.size for o in objects),
        uploaded=uploaded,
    )
