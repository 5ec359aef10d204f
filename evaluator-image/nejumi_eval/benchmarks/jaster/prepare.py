"""Prepared jaster records: fetch + verify raw files, convert, cache, and serve one split at a time.

Prepared records are cached as JSON under ``<cache>/jaster/prepared/<dataset>/<fingerprint>.json``.
The fingerprint covers what determines the records: the pinned hashes of the raw files in use, the
converter's source text and this module's record format. A warm cache therefore needs neither the
network, the mirror nor the converters, and a changed manifest or converter can never be served a
stale file.

``$NEJUMI_PREPARED_DIRS`` names read-only roots laid out like the cache (the evaluator image's baked
copy, a shared PVC), searched first: an entry there is used only when its name and contents carry
the fingerprint computed here, so a pod holding a GPU never parses a corpus another pod (or the
image build) already prepared. Nothing is ever written into them; a miss is prepared into the cache.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm import tqdm

from nejumi_eval.api.v1alpha1.contract import PREPARED_DIRS_ENV
from nejumi_eval.benchmarks.jaster.datasets import DATASETS, JasterDataset
from nejumi_eval.benchmarks.jaster.sources import fetch_source, load_manifest, mirror_absent
from nejumi_eval.errors import InputError
from nejumi_eval.runtime.fetch import MIRROR_ENV, DataError, cache_root, mirror_root
from nejumi_eval.runtime.files import atomic_write_bytes

SPLITS = ("train", "dev", "test")
RECORD_FORMAT = "jaster-prepared-1"
"""Bump when the layout of a prepared record (fields, id scheme) changes."""

log = logging.getLogger(__name__)


class SplitUnavailable(DataError):
    """The split cannot be built from the raw files at hand (e.g. JNLI/JSQuAD dev offline)."""


class PreparedDataset(BaseModel):
    """What the cache stores for one dataset."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    fingerprint: str
    splits: dict[str, list[dict[str, str]]]
    unavailable: dict[str, str] = {}
    """split → why it cannot be built here."""


class DatasetReport(BaseModel):
    dataset: str
    source: str
    counts: dict[str, int]
    unavailable: dict[str, str]
    cached: bool
    seconds: float


class PrepareReport(BaseModel):
    datasets: dict[str, DatasetReport]
    seconds: float
    cache_dir: Path
    mirror: Path | None

    @property
    def dev_unavailable(self) -> list[str]:
        """Datasets whose dev split is unavailable (protocol §9 ``dev_unavailable``)."""
        return [name for name, r in self.datasets.items() if "dev" in r.unavailable]


class UnknownDataset(InputError, DataError):
    """A dataset name that is not one of the 16: bad input (exit 2), not a data problem.

    It stays a ``DataError`` too, so callers that catch data errors around ``load`` still see it.
    """


def known_datasets_hint(name: object) -> str:
    """`` (did you mean 'jamp'?); known: jamp, janli, …`` for an unknown dataset name."""
    close = difflib.get_close_matches(name, DATASETS, n=1) if isinstance(name, str) else []
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{suggestion}; known: {', '.join(DATASETS)}"


def _dataset(name: str) -> JasterDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDataset(f"unknown jaster dataset {name!r}{known_datasets_hint(name)}") from None


def _module_digest(module: str) -> str:
    """sha256 of a module's source, located without importing it (the wiki converter is heavy)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise DataError(f"converter module {module} is not installed")
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


def fingerprint(ds: JasterDataset, mirror_dir: Path | None) -> str:
    manifest = load_manifest(ds.source)
    absent = {f.name for f in mirror_absent(ds.source, mirror_dir)}
    key = {
        "format": RECORD_FORMAT,
        "dataset": ds.name,
        "converter": _module_digest(ds.converter_module),
        "files": {k: v for k, v in manifest.fingerprint_items().items() if k not in absent},
        "file_order": manifest.filenames,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _build(
    ds: JasterDataset, fp: str, mirror_dir: Path | None, cache_dir: Path, progress: bool
) -> PreparedDataset:
    raw = fetch_source(ds.source, mirror_dir=mirror_dir, cache_dir=cache_dir, progress=progress)
    converted = ds.convert(raw)
    absent = mirror_absent(ds.source, mirror_dir)
    unavailable: dict[str, str] = {}
    for split in SPLITS:
        if split in converted:
            continue
        if not absent:
            raise DataError(
                f"{ds.name}: the converter produced no {split} split although every raw file is present"
            )
        names = ", ".join(f"{f.name} (git blob SHA-1 {f.git_blob_sha1})" for f in absent)
        unavailable[split] = (
            f"it is built from {names}, which the data mirror {mirror_dir}/{ds.source} leaves out "
            f"(manifest missing_files). Unset {MIRROR_ENV} on a machine with network access to download "
            "it, or add the file to the mirror."
        )
    minimum = ds.task.neo_test_samples_scored
    if len(converted.get("test", [])) < minimum:
        raise DataError(
            f"{ds.name}: the test split has {len(converted.get('test', []))} samples, fewer than the "
            f"{minimum} the protocol scores; the raw files or the converter are wrong"
        )
    splits = {
        split: [
            {"id": s.get("id") or f"{ds.name}-{split}-{i}", "input": s["input"], "output": s["output"]}
            for i, s in enumerate(converted[split])
        ]
        for split in SPLITS
        if split in converted
    }
    return PreparedDataset(dataset=ds.name, fingerprint=fp, splits=splits, unavailable=unavailable)


def prepared_roots() -> list[Path]:
    """``$NEJUMI_PREPARED_DIRS`` (``os.pathsep``-separated), read at call time; empty when unset."""
    value = os.environ.get(PREPARED_DIRS_ENV) or ""
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part]


def _prepared_path(root: Path, ds: JasterDataset, fp: str) -> Path:
    """Where a cache root (writable or read-only) keeps the records of ``ds`` with fingerprint ``fp``."""
    return root / "jaster" / "prepared" / ds.name / f"{fp}.json"


def _from_prepared_roots(ds: JasterDataset, fp: str) -> PreparedDataset | None:
    """The first usable entry for (``ds``, ``fp``) in the read-only roots, or None; reads only.

    An entry is usable when it parses and names this dataset and fingerprint; anything else (a
    truncated copy, a file renamed from another version) is skipped with a warning, never trusted.
    """
    for root in prepared_roots():
        path = _prepared_path(root, ds, fp)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("%s: cannot read %s (%s); skipping it", ds.name, path, err)
            continue
        try:
            prepared = PreparedDataset.model_validate_json(data)
        except ValidationError as err:
            log.warning("%s: %s is not a prepared dataset (%s); skipping it", ds.name, path, err)
            continue
        minimum = ds.task.neo_test_samples_scored
        if (
            prepared.dataset != ds.name
            or prepared.fingerprint != fp
            or len(prepared.splits.get("test", [])) < minimum
        ):
            log.warning("%s: %s does not hold the records of fingerprint %s; skipping it", ds.name, path, fp)
            continue
        log.debug("%s: prepared records from the read-only root %s", ds.name, root)
        return prepared
    return None


def _prepared(ds: JasterDataset, *, progress: bool = False) -> tuple[PreparedDataset, bool]:
    """(prepared records, whether they came from a read-only root or the cache)."""
    cache_dir, mirror_dir = cache_root(), mirror_root()
    fp = fingerprint(ds, mirror_dir)
    if (shared := _from_prepared_roots(ds, fp)) is not None:
        return shared, True
    path = _prepared_path(cache_dir, ds, fp)
    if path.is_file():
        return PreparedDataset.model_validate_json(path.read_bytes()), True
    prepared = _build(ds, fp, mirror_dir, cache_dir, progress)
    atomic_write_bytes(path, prepared.model_dump_json().encode())
    return prepared, False


def load(dataset: str, split: str) -> list[dict[str, str]]:
    """The prepared records of one split, in protocol order: ``id``, ``instruction``, ``input``, ``output``.

    Prepared records are read from ``$NEJUMI_PREPARED_DIRS`` or ``$NEJUMI_CACHE_DIR`` when there;
    otherwise raw files come from ``$NEJUMI_DATA_MIRROR`` when set, else from the pinned URLs (cached
    under ``$NEJUMI_CACHE_DIR``). Raises ``SplitUnavailable`` when the split cannot be built from the raw
    files at hand, and ``DataError`` for anything wrong with them.
    """
    ds = _dataset(dataset)
    if split not in SPLITS:
        raise DataError(f"{dataset}: unknown split {split!r}; splits are {', '.join(SPLITS)}")
    prepared, _ = _prepared(ds)
    if split in prepared.unavailable:
        raise SplitUnavailable(f"{dataset}: the {split} split is unavailable: {prepared.unavailable[split]}")
    return [{**r, "instruction": ds.instruction} for r in prepared.splits[split]]


def prepare(datasets: Iterable[str] | None = None, progress: bool = True) -> PrepareReport:
    """Prepare (or find cached) every split of ``datasets`` (default: all 16) and report on them."""
    names = list(DATASETS) if datasets is None else list(datasets)
    chosen = [_dataset(n) for n in names]
    start = time.perf_counter()
    reports: dict[str, DatasetReport] = {}
    for ds in tqdm(chosen, desc="prepare jaster", unit="dataset", disable=not progress):
        t0 = time.perf_counter()
        prepared, cached = _prepared(ds, progress=progress)
        reports[ds.name] = DatasetReport(
            dataset=ds.name,
            source=ds.source,
            counts={split: len(records) for split, records in prepared.splits.items()},
            unavailable=prepared.unavailable,
            cached=cached,
            seconds=time.perf_counter() - t0,
        )
    return PrepareReport(
        datasets=reports, seconds=time.perf_counter() - start, cache_dir=cache_root(), mirror=mirror_root()
    )
