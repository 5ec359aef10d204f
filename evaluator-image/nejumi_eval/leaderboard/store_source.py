"""The results store as a leaderboard source: `nejumi-eval leaderboard s3://bucket/prefix`.

Every evaluation with a manifest at or under the prefix is read (a prefix without one is an upload
that never finished: not an evaluation), each object checked against its manifest. The per-question
tables are read too, in parallel, since ranking needs them for the intervals: a board of a hundred
models is a few hundred small GETs, and their latency, not their size, is what it costs.
Credentials, endpoint and region come from the standard AWS variables; read permission is enough.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from nejumi_eval.api.v1alpha1.results import Location
from nejumi_eval.errors import InputError
from nejumi_eval.leaderboard.sources import Evaluation, NoResultsError, load_results, parse_time
from nejumi_eval.storage.reading import StoredEvaluation, find_evaluations, open_evaluation
from nejumi_eval.storage.store import ObjectStore, StoreError

log = logging.getLogger(__name__)

WORKERS = 16


def is_store_uri(path: str) -> bool:
    return str(path).startswith("s3://")


def evaluation_from_store(stored: StoredEvaluation, entry_id: str) -> Evaluation:
    """One stored evaluation (scores from its summary, provenance from its run record)."""
    manifest = stored.manifest
    evaluation = load_results(
        stored,
        entry_id=entry_id,
        source=stored.location.uri,
        started=lambda run: parse_time(run.get("started_at")) or parse_time(manifest.created_at),
    )
    evaluation.entry.provenance.details["results"] = stored.location.uri
    return evaluation


def load_stored(store: ObjectStore, uri: str, entry_id: str | None = None) -> tuple[Evaluation, str]:
    """The evaluation at exactly `uri` and its manifest's digest (raises StoreError, ValueError)."""
    location = Location.parse(uri)
    stored = open_evaluation(store, location)
    return evaluation_from_store(stored, entry_id or location.prefix), stored.digest


def from_store(uri: str, store: ObjectStore | None = None) -> list[Evaluation]:
    """Every complete evaluation at or under `uri`, questions read. An unreadable one is skipped
    with a warning; an unreachable store or refused credentials raise (exit 3 / 2)."""
    try:
        base = Location.parse(uri)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    store = store or ObjectStore()
    locations = find_evaluations(store, base)
    if not locations:
        raise NoResultsError(
            f"no results in {base.uri}: no manifest.json at or under it (an evaluation's results are "
            "complete only once its manifest is written)"
        )

    def load(location: Location) -> Evaluation | None:
        relative = location.prefix[len(base.prefix) :].strip("/") if base.prefix else location.prefix
        try:
            evaluation = evaluation_from_store(open_evaluation(store, location), relative or location.prefix)
            evaluation.questions  # noqa: B018  (read now, in this thread: ranking needs them all)
        except (StoreError, ValueError, ValidationError) as exc:
            log.warning("skipping %s: %s", location.uri, exc)
            return None
        return evaluation

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        evaluations = [e for e in pool.map(load, locations) if e is not None]
    if not evaluations:
        raise NoResultsError(f"results found in {base.uri}, but none is readable (see the warnings)")
    return evaluations
