"""Whose is an object? The operator recognises what it made by the owner reference it put on it
(the evaluation's UID), never by name alone.

Names are predictable (`<evaluation>-g1`, `-evaluator`, `-progress`, `-workspace`), so anyone who may
create objects in the namespace can make one first (name squatting), and after a delete + re-create
of the same evaluation (`kubectl replace --force`, Argo CD `Replace=true`, Flux `force`) the deleted
one's objects are still there until the garbage collector removes them. Taking either as one's own
would run the pod as someone else's ServiceAccount, write someone else's ConfigMap, or report
another run's outcome. So an existing object of the expected name is one of:

- `OURS`: its owner references name this evaluation's UID: use it (a retried handler, a restart);
- `COLLECTING`: being deleted, or owned by an evaluation of the same name with another UID (a deleted
  predecessor: names are unique, so that one is gone): wait, the garbage collector removes it;
- `FOREIGN`: anything else (no owner, another owner): never used, written or read for status.

A workspace PVC kept with `workspace.retain` has no owner reference by design; it is taken as `OURS`
only when the spec asks for a retained workspace and the PVC carries the operator's labels for this
evaluation (what the operator put on it when it made it).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND


class Claim(StrEnum):
    OURS = "ours"
    COLLECTING = "collecting"
    FOREIGN = "foreign"


def _evaluation_refs(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        ref
        for ref in meta.get("ownerReferences") or []
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
    ]


def owned_by(obj: Mapping[str, Any] | None, uid: str) -> bool:
    """Whether `obj` names the evaluation with UID `uid` among its owners."""
    meta = (obj or {}).get("metadata") or {}
    return any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or [])


def claim(
    existing: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    *,
    unowned_labels: Mapping[str, str] | None = None,
) -> tuple[Claim, str]:
    """How `existing` (an object of a name the operator needs) relates to `evaluation`, and a short
    description of its owner for messages. `unowned_labels`: labels that make an object with no
    owner ours (a retained workspace PVC), None: an unowned object is foreign."""
    meta = existing.get("metadata") or {}
    ev_meta = evaluation.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    if owned_by(existing, str(ev_meta.get("uid"))):
        return Claim.OURS, "this evaluation"
    if meta.get("deletionTimestamp"):
        return Claim.COLLECTING, "being deleted"
    same_name = [r for r in _evaluation_refs(meta) if r.get("name") == ev_meta.get("name")]
    if same_name and len(same_name) == len(refs):
        return Claim.COLLECTING, f"a deleted {KIND} {ev_meta.get('name')} (uid {same_name[0].get('uid')})"
    if not refs:
        labels = meta.get("labels") or {}
        if unowned_labels is not None and all(labels.get(k) == v for k, v in unowned_labels.items()):
            return Claim.OURS, "a retained workspace of this evaluation's name"
        return Claim.FOREIGN, "no owner"
    owners = ", ".join(f"{r.get('kind')} {r.get('name')}" for r in refs)
    return Claim.FOREIGN, f"owned by {owners}"


def owner_reference(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The owner reference the operator puts on what it makes for `evaluation` (as kopf's
    `append_owner_reference` does): collected with it, operator or not."""
    meta = evaluation.get("metadata") or {}
    return {
        "apiVersion": evaluation.get("apiVersion") or API_VERSION,
        "kind": evaluation.get("kind") or KIND,
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }
