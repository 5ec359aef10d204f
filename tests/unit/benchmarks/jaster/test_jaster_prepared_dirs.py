"""`$NEJUMI_PREPARED_DIRS`: read-only roots of prepared jaster data, searched before the cache.

A hit there is served as stored (no raw file is fetched, no converter runs, nothing is written);
an entry that is absent, corrupt or of another fingerprint falls through to preparing into the
writable cache, and the read-only roots stay byte-for-byte as they were.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.contract import CACHE_ENV, PREPARED_DIRS_ENV
from nejumi_eval.benchmarks.jaster import datasets as registry
from nejumi_eval.benchmarks.jaster import prepare as prep
from nejumi_eval.benchmarks.jaster.datasets import DATASETS
from nejumi_eval.benchmarks.jaster.prepare import load, prepare, prepared_roots

CHEAP = ("jamp", "mawps", "niilc")
SPLITS = ("train", "dev", "test")
WIKI = ("wiki_reading", "wiki_ner", "wiki_dependency", "wiki_pas", "wiki_coreference")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (a read-only root must not change at all)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def entry(root: Path, dataset: str) -> Path:
    (path,) = (root / "jaster" / "prepared" / dataset).glob("*.json")
    return path


@pytest.fixture(scope="module")
def root_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache root holding CHEAP prepared from the mirror (as the image build or a PVC job does)."""
    a = tmp_path_factory.mktemp("prepared-a")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(a))
        mp.delenv(PREPARED_DIRS_ENV, raising=False)
        report = prepare(CHEAP, progress=False)
    assert not any(r.cached for r in report.datasets.values())
    return a


@pytest.fixture()
def cache_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    b = tmp_path / "cache-b"
    b.mkdir()
    monkeypatch.setenv(CACHE_ENV, str(b))
    return b


def records_of(root: Path, names: tuple[str, ...]) -> dict[str, dict[str, list[dict[str, str]]]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root))
        mp.delenv(PREPARED_DIRS_ENV, raising=False)
        return {n: {s: load(n, s) for s in SPLITS} for n in names}


def forbid_preparing(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> None:
    """Any fetch of raw files or converter call fails the test."""

    def boom(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("prepared data was rebuilt although a read-only root holds it")

    monkeypatch.setattr(prep, "fetch_source", boom)
    monkeypatch.setattr(prep, "_build", boom)
    for name in names:
        monkeypatch.setitem(DATASETS, name, DATASETS[name].model_copy(update={"convert": boom}))


def test_prepared_roots_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(PREPARED_DIRS_ENV, raising=False)
    assert prepared_roots() == []
    monkeypatch.setenv(PREPARED_DIRS_ENV, os.pathsep.join([str(tmp_path / "x"), "", str(tmp_path / "y")]))
    assert prepared_roots() == [tmp_path / "x", tmp_path / "y"]


def test_read_only_root_serves_without_converting_or_writing(
    root_a: Path, cache_b: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = records_of(root_a, CHEAP)
    before = snapshot(root_a)
    monkeypatch.setenv(PREPARED_DIRS_ENV, str(root_a))
    forbid_preparing(monkeypatch, CHEAP)
    report = prepare(CHEAP, progress=False)
    assert all(r.cached for r in report.datasets.values())
    assert {n: {s: load(n, s) for s in SPLITS} for n in CHEAP} == expected
    assert report.datasets["jamp"].counts == {s: len(expected["jamp"][s]) for s in SPLITS}
    assert snapshot(root_a) == before
    assert list(cache_b.iterdir()) == []  # nothing prepared, downloaded or staged in the cache


def test_later_roots_are_searched_too(
    root_a: Path, cache_b: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(PREPARED_DIRS_ENV, os.pathsep.join([str(tmp_path / "absent"), str(root_a)]))
    forbid_preparing(monkeypatch, ("jamp",))
    assert load("jamp", "test") == records_of(root_a, ("jamp",))["jamp"]["test"]
    assert list(cache_b.iterdir()) == []


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _other_fingerprint(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(path.stem.encode(), b"0" * len(path.stem), 1))


def _other_dataset(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b'"dataset":"jamp"', b'"dataset":"janli"', 1))


def _stale_name(path: Path) -> None:
    path.rename(path.with_name("0" * len(path.stem) + ".json"))  # another version's entry only


def _too_few_test_records(path: Path) -> None:
    doc = prep.PreparedDataset.model_validate_json(path.read_bytes())
    doc.splits["test"] = doc.splits["test"][:3]
    path.write_bytes(doc.model_dump_json().encode())


@pytest.mark.parametrize(
    "damage", [_corrupt, _other_fingerprint, _other_dataset, _stale_name, _too_few_test_records]
)
def test_unusable_entry_falls_back_to_preparing_into_the_cache(
    damage,
    root_a: Path,
    cache_b: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    expected = records_of(root_a, ("jamp",))["jamp"]
    bad = tmp_path_factory.mktemp("prepared-bad")
    target = bad / "jaster" / "prepared" / "jamp" / entry(root_a, "jamp").name
    target.parent.mkdir(parents=True)
    target.write_bytes(entry(root_a, "jamp").read_bytes())
    damage(target)
    before = snapshot(bad)
    monkeypatch.setenv(PREPARED_DIRS_ENV, str(bad))
    report = prepare(["jamp"], progress=False)
    assert report.datasets["jamp"].cached is False
    assert {s: load("jamp", s) for s in SPLITS} == expected
    assert entry(cache_b, "jamp").read_bytes() == entry(root_a, "jamp").read_bytes()
    assert snapshot(bad) == before  # the read-only root is never repaired or written


def test_an_entry_prepared_from_other_raw_files_is_not_used(
    cache_b: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """jnli prepared from the mirror (JGLUE train/dev absent) is keyed apart from jnli prepared with
    every raw file, so a pod downloading the full data never takes the mirror's copy for its own."""
    root = tmp_path / "mirror-prepared"
    monkeypatch.setenv(CACHE_ENV, str(root))
    prepare(["jnli"], progress=False)
    monkeypatch.setenv(CACHE_ENV, str(cache_b))
    monkeypatch.setenv(PREPARED_DIRS_ENV, str(root))
    ds = DATASETS["jnli"]
    mirror_fp, online_fp = prep.fingerprint(ds, prep.mirror_root()), prep.fingerprint(ds, None)
    assert mirror_fp != online_fp
    assert prep._from_prepared_roots(ds, mirror_fp) is not None
    assert prep._from_prepared_roots(ds, online_fp) is None


def test_wiki_corpus_is_never_parsed_with_a_read_only_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wiki = pytest.importorskip("nejumi_eval.benchmarks.jaster.wiki")

    def fake(raw: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
        return {
            task: {
                split: [
                    {"id": f"{task}-{split}-{i}", "input": f"{task} {i}", "output": "x"} for i in range(200)
                ]
                for split in SPLITS
            }
            for task in WIKI
        }

    def parse_fails(raw: Path) -> None:
        raise AssertionError("the KNP corpus was parsed although a read-only root holds it")

    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.delenv(PREPARED_DIRS_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(a))
    monkeypatch.setattr(wiki, "convert_wiki", fake)
    registry._wiki_corpus.cache_clear()
    try:
        prepare(WIKI, progress=False)
        expected = {n: load(n, "test") for n in WIKI}
        before = snapshot(a)
        monkeypatch.setattr(wiki, "convert_wiki", parse_fails)
        registry._wiki_corpus.cache_clear()
        monkeypatch.setenv(CACHE_ENV, str(b))
        monkeypatch.setenv(PREPARED_DIRS_ENV, str(a))
        report = prepare(WIKI, progress=False)
        assert all(r.cached for r in report.datasets.values())
        assert {n: load(n, "test") for n in WIKI} == expected
        assert snapshot(a) == before and not b.exists()
    finally:
        registry._wiki_corpus.cache_clear()
