"""One NejumiLeaderboard computed: `python -m nejumi_eval.leaderboard.compute`, run by the operator
as a child process (request on stdin, result on stdout; both `api.v1alpha1.leaderboard` models).

Why a child process: a board of a hundred evaluations reads a few hundred objects and draws a
thousand bootstrap resamples of each; in the operator's own process that memory would stay
(Python rarely returns it) and the CPU would hold the GIL its event loop needs. Here the operator
bounds the child's memory and time, and gets everything back when it exits.

What it does is what `nejumi-eval leaderboard --cluster … s3://…` does, on the evaluations the
leaderboard selects: list them through the API (one list per namespace read; the selector is
applied here, so an evaluation that exists but no longer matches is told apart from a deleted one),
read each one's stored results (`cluster.evaluations_from_objects`: the manifest's digest checked
against the status), add the deleted members that stay (`keepDeleted`), place and bootstrap them
(`compare.build`), project the board onto the status (`standing`), and write the page and the
board's JSON to the store, unless the stored page already shows this board (its metadata names
the board's digest).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import sys
import time
import traceback
from typing import Any

from nejumi_eval.api.v1alpha1.leaderboard import (
    BOARD_FILE,
    COMPUTE_CACHE_DIR_ENV,
    COMPUTE_CACHE_MIB_ENV,
    COMPUTE_ERROR_PREFIX,
    COMPUTE_MEMORY_ENV,
    MAX_MEMBERS,
    PAGE_FILE,
    ComputeRequest,
    ComputeResult,
    LeaderboardStatus,
    Member,
    PageStatus,
)
from nejumi_eval.api.v1alpha1.results import Location
from nejumi_eval.leaderboard import compare
from nejumi_eval.leaderboard.cluster import (
    Resource,
    api_client,
    evaluations_from_objects,
    list_resources,
)
from nejumi_eval.leaderboard.sources import Evaluation, from_sources
from nejumi_eval.leaderboard.standing import build_options, standing
from nejumi_eval.storage.cache import ObjectCache
from nejumi_eval.storage.store import ObjectStore, StoreError

log = logging.getLogger(__name__)


def _selected(request: ComputeRequest, client: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """The evaluations the selector matches, and the keys of every evaluation that exists."""
    selector = request.spec.selector
    objects, existing = [], set()
    for namespace in request.namespaces:
        for obj in list_resources(client, namespace):
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", namespace)
            existing.add(f"{meta['namespace']}/{meta.get('name')}")
            if meta.get("deletionTimestamp"):
                continue
            if selector is None or selector.matches(meta.get("labels")):
                objects.append(obj)
    return objects, existing


def _members(objects: list[dict[str, Any]]) -> dict[str, Member]:
    """Matched evaluations whose results are stored (what keeps them on the board once deleted)."""
    out = {}
    for obj in objects:
        try:
            res = Resource.model_validate(obj)
        except ValueError:
            continue
        stored = res.status.results
        if stored is not None and stored.stored:
            out[res.key] = Member(
                evaluation=res.key,
                model=res.spec.model.name,
                uri=stored.uri,
                manifest_sha256=stored.manifest_sha256,
            )
    return out


def _deleted(
    request: ComputeRequest, existing: set[str], store: ObjectStore
) -> list[tuple[Member, Evaluation]]:
    """The members of the last computation whose resources are gone, read from the store."""
    from nejumi_eval.leaderboard.store_source import load_stored

    out = []
    for member in request.members:
        if member.evaluation in existing or not request.spec.keep_deleted:
            continue
        try:
            evaluation, digest = load_stored(store, member.uri, entry_id=member.evaluation)
            evaluation.questions  # noqa: B018  (read now: a store error is this member's)
        except (StoreError, ValueError) as exc:
            log.warning("deleted evaluation %s: %s not readable: %s", member.evaluation, member.uri, exc)
            continue
        if member.manifest_sha256 and digest != member.manifest_sha256:
            evaluation.entry.warnings.append(
                f"the manifest in {member.uri} ({digest}) is not the one last seen ({member.manifest_sha256})"
            )
        evaluation.entry.source = f"NejumiEvaluation {member.evaluation} (deleted; {member.uri})"
        evaluation.entry.provenance.details["resource"] = member.evaluation
        evaluation.entry.provenance.details["deleted"] = True
        out.append((member.model_copy(update={"deleted": True}), evaluation))
    return out


def board_digest(board: compare.Board) -> str:
    """What the board says, not when: `generated_at` left out, so an unchanged board has the same."""
    doc = board.leaderboard.model_dump(mode="json", exclude={"generated_at"})
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _publish(
    board: compare.Board, request: ComputeRequest, store: ObjectStore, digest: str
) -> tuple[PageStatus | None, str | None]:
    """The page and the board's JSON under the publish URI (skipped when the board is unchanged)."""
    if request.publish_uri is None:
        return None, None
    from nejumi_eval.leaderboard import html

    base = Location.parse(request.publish_uri)
    folder = f"{base.prefix.rstrip('/')}/" if base.prefix else ""
    page_key, json_key = f"{folder}{PAGE_FILE}", f"{folder}{BOARD_FILE}"
    page_uri, json_uri = f"s3://{base.bucket}/{page_key}", f"s3://{base.bucket}/{json_key}"
    try:
        # The page says which board it shows: the same one is not written again (one HEAD).
        stored = store.metadata(base.bucket, page_key) or {}
        if stored.get("board-digest") == digest and stored.get("page-bytes", "").isdigit():
            return PageStatus(
                uri=page_uri, json_uri=json_uri, bytes=int(stored["page-bytes"]), published=True
            ), None
        page = html.render(board, title=request.spec.title or request.name).encode("utf-8")
        board_json = board.leaderboard.model_dump_json(indent=2).encode("utf-8")
        meta = {"board-digest": digest}
        store.put(base.bucket, json_key, board_json, metadata=meta, content_type="application/json")
        page_meta = {**meta, "page-bytes": str(len(page))}
        store.put(base.bucket, page_key, page, metadata=page_meta, content_type="text/html; charset=utf-8")
    except StoreError as exc:
        return PageStatus(uri=page_uri, json_uri=json_uri, bytes=0, published=False), str(exc)
    return PageStatus(uri=page_uri, json_uri=json_uri, bytes=len(page), published=True), None


def compute(
    request: ComputeRequest, *, client: Any = None, store: ObjectStore | None = None
) -> ComputeResult:
    """The board of one leaderboard (module docstring). `client`/`store`: to reuse ones held."""
    started = time.monotonic()
    spec = request.spec
    store = store or ObjectStore()
    if store.cache is None and os.environ.get(COMPUTE_CACHE_DIR_ENV):
        mib = float(os.environ.get(COMPUTE_CACHE_MIB_ENV) or 1024)
        store.cache = ObjectCache(os.environ[COMPUTE_CACHE_DIR_ENV], int(mib * 2**20))
    if client is None:
        client, _ = api_client()
    objects, existing = _selected(request, client)
    live = evaluations_from_objects(objects, store=store)
    members = _members(objects)
    deleted = _deleted(request, existing, store)
    evaluations = from_sources([live, [e for _, e in deleted]])
    phases = {Resource.model_validate(o).key: (o.get("status") or {}).get("phase") or "" for o in objects}

    def resolve(ref: str) -> str:
        return ref if "/" in ref else f"{request.namespace}/{ref}"

    if evaluations:
        board = compare.build(evaluations, **build_options(spec))
        deleted_ids = {m.evaluation for m, _ in deleted}
        status = standing(board, spec, phases=phases, deleted=deleted_ids, resolve=resolve)
        digest = board_digest(board)
        page, publish_error = _publish(board, request, store, digest)
        if not status.top:
            status.message = (
                "no evaluation ranked yet"
                if spec.protocol is None
                else f"no ranked evaluation in protocol group {spec.protocol}"
            )
    else:
        status = LeaderboardStatus(
            message="no evaluation matches the selector in " + ", ".join(request.namespaces)
        )
        digest, page, publish_error = "", None, None
    kept = [*members.values(), *(m for m, _ in deleted)]
    status.members = sorted(kept, key=lambda m: m.evaluation)[:MAX_MEMBERS]
    status.page = page
    status.digest = digest or None
    if store.cache is not None:
        store.cache.trim()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return ComputeResult(
        status=status,
        digest=digest,
        evaluations=len(evaluations),
        seconds=time.monotonic() - started,
        bytes_read=store.bytes_read,
        bytes_from_cache=store.cache.bytes_hit if store.cache is not None else 0,
        peak_rss_mib=peak,
        publish_error=publish_error,
    )


def _limit_memory() -> None:
    """The MiB the operator allows (its data segment, RLIMIT_DATA). Over it an allocation fails
    (MemoryError) and the operator says so in the status, instead of the kernel killing the
    operator's pod for the child's sake."""
    raw = os.environ.get(COMPUTE_MEMORY_ENV)
    if raw:
        limit = int(float(raw) * 2**20)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def main() -> int:
    _limit_memory()
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        request = ComputeRequest.model_validate_json(sys.stdin.buffer.read())
        result = compute(request)
    except MemoryError:
        raise  # the operator names the limit
    except Exception as exc:
        traceback.print_exc()
        said = " ".join(str(exc).split())
        print(f"{COMPUTE_ERROR_PREFIX}{type(exc).__name__}: {said}", file=sys.stderr)
        return 1
    sys.stdout.write(result.model_dump_json(by_alias=True))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
