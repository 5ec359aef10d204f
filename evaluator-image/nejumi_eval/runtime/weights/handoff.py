"""The weights between stages: which model folder the server loads, and under which identity.

When the weights go through the cache (`uses_cache`: `model.storageUri`, or a shared model cache
mounted at `$NEJUMI_MODEL_CACHE_DIR` for a Hub model served by vLLM), the fetch stage (or the one
pod of a run without stages) resolves and fetches them (`fetch_for`), and records what it got in
the workspace (`record`); the serve stage reads that record (`recorded`) and serves the folder
under the model's own name (`--served-model-name model.name`), offline. The record's `key` names
the content (a commit, an object listing's digest): the response cache keys the model's answers by
it, so weights replaced at the same URI are never answered from another content's cache.

Without the cache (a Hub model and no shared cache; a local folder; transformers), the server loads
`model.name` as before: vLLM downloads a Hub model into `HF_HOME` itself (the fetch stage downloads
it there first).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from nejumi_eval.api.v1alpha1.contract import MODEL_CACHE_ENV, WEIGHTS_PVC_MOUNT
from nejumi_eval.api.v1alpha1.spec import ConfigError, EvaluationSpec, ModelSource
from nejumi_eval.runtime.files import atomic_write_text

RECORD = Path("stages") / "weights.json"
"""Relative to the workspace."""
CACHE_IN_WORKSPACE = Path(".cache") / "weights"
"""The cache root without a shared cache (`$NEJUMI_MODEL_CACHE_DIR` unset): the workspace's own."""


@dataclass(frozen=True)
class Handoff:
    path: str
    """The folder the server loads."""
    uri: str
    """The source, pinned (`hf://org/name@<commit>`, `s3://…`, `pvc://…`)."""
    key: str
    """The content's cache key: the served model's identity in the response cache."""
    bytes_downloaded: int = 0
    bytes_from_cache: int = 0


def uses_cache(spec: EvaluationSpec) -> bool:
    """Whether the server loads the weights from the cache: vLLM, with a `model.storageUri`, or a
    Hub model when a shared model cache is mounted."""
    from nejumi_eval.runtime.weights.source import model_source

    m = spec.model
    if m.source != ModelSource.VLLM or model_source(m) is None:
        return False
    return bool(m.storage_uri or os.environ.get(MODEL_CACHE_ENV))


def cache_root(workspace: Path) -> Path:
    return Path(os.environ.get(MODEL_CACHE_ENV) or workspace / CACHE_IN_WORKSPACE)


def fetch_for(spec: EvaluationSpec, workspace: Path) -> Handoff:
    """Resolve the model's source and fetch it into the cache (once per content, under its lock,
    verified); recorded in the workspace for the stages after this one."""
    from nejumi_eval.runtime.weights import fetch, model_source, resolve

    source = model_source(spec.model)
    if source is None:
        raise ConfigError(f"model: {spec.model.name} has no source to fetch")
    cached = fetch(resolve(source, pvc_mount=Path(WEIGHTS_PVC_MOUNT)), cache_root(workspace))
    handoff = Handoff(
        path=str(cached.path),
        uri=cached.uri,
        key=cached.key,
        bytes_downloaded=cached.bytes_downloaded,
        bytes_from_cache=cached.bytes_from_cache,
    )
    record(workspace, handoff)
    return handoff


def record(workspace: Path, handoff: Handoff) -> None:
    path = workspace / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(handoff), indent=2) + "\n")


def recorded(workspace: Path, need_folder: bool = True) -> Handoff | None:
    """What the fetch stage recorded (None: nothing, the weights do not go through the cache).
    With `need_folder`, a record whose folder is gone (a cache emptied since) is an error, not a
    silent download."""
    path = workspace / RECORD
    if not path.is_file():
        return None
    handoff = Handoff(**json.loads(path.read_text(encoding="utf-8")))
    if need_folder and not Path(handoff.path).is_dir():
        from nejumi_eval.runtime.weights import WeightsUnavailable

        raise WeightsUnavailable(
            f"the weights of {handoff.uri} are not at {handoff.path} any more (the model cache was "
            "emptied after the fetch stage): evaluate again to fetch them"
        )
    return handoff
