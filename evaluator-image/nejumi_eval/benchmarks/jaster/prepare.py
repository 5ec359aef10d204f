"""Prepared jaster records: fetch + verify raw files, convert, cache, and serve one split at a time.

Prepared records are cached as JSON under ``<cache>/jaster/prepared/<dataset>/<fingerprint>.json``.
The fingerprint covers what determines the records: the pinned hashes of the raw files in use, the
converter's source text and this module's record format. A warm cache therefore needs neither the
network, the mirror nor the converters, and a changed manifest or converter can never be served a
stale file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from tqdm import tqdm

from nejumi_eval.benchmarks.jaster.datasets import DATASETS, JasterDataset
from nejumi_eval.benchmarks.jaster.sources import fetch_source, load_manifest, mirror_absent
from nejumi_eval.runtime.fetch import MIRROR_ENV, DataError, cache_root, mirror_root, write_atomic

SPLITS = ("train", "dev", "test")
RECORD_FORMAT = "jaster-prepared-1"
"""Bump when the layout of a prepared record (fields, id scheme) changes."""


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


def _dataset(name: str) -> JasterDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown jaster dataset {name!r}; known: {', '.join(DATASETS)}") from None


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


def _prepared(ds: JasterDataset, *, progress: bool = False) -> tuple[PreparedDataset, bool]:
    """(prepared records, whether they came from the cache)."""
    cache_dir, mirror_dir = cache_root(), mirror_root()
    fp = fingerprint(ds, mirror_dir)
    path = cache_dir / "jaster" / "prepared" / ds.name / f"{fp}.json"
    if path.is_file():
        return PreparedDataset.model_validate_json(path.read_bytes()), True
    prepared = _build(ds, fp, mirror_dir, cache_dir, progress)
    write_atomic(path, prepared.model_dump_json().encode())
    return prepared, False


def load(dataset: str, split: str) -> list[dict[str, str]]:
    """The prepared records of one split, in protocol order: ``id``, ``instruction``, ``input``, ``output``.

    Raw files come from ``$NEJUMI_DATA_MIRROR`` when set, else from the pinned URLs (cached under
    ``$NEJUMI_CACHE_DIR``). Raises ``SplitUnavailable`` when the split cannot be built from the raw
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
