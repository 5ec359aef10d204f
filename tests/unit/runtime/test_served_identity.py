"""The cache identity of a served model: backend + what it serves, a local folder by content."""

from __future__ import annotations

import os
from pathlib import Path

from nejumi_eval.runtime.client import AnswerSource, cache_key
from nejumi_eval.runtime.serve import identity
from nejumi_eval.runtime.serve.identity import folder_sha256, served_source


def _model(folder: Path, weights: bytes = b"\x00" * 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"n_layer": 1}', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def _key(source: AnswerSource) -> str:
    return cache_key(source=source, endpoint="/completions", body={"model": "m", "prompt": "p"})


def test_a_rebuilt_local_model_misses(tmp_path: Path):
    folder = _model(tmp_path / "tiny")
    before = served_source(backend="transformers", model=str(folder), revision=None)
    assert before.content_sha256 and before.model is None  # named by content, not by path
    # the same bytes elsewhere are the same model
    moved = served_source(backend="transformers", model=str(_model(tmp_path / "copy")), revision=None)
    assert _key(moved) == _key(before)
    # rebuilt with other weights: every key changes
    _model(folder, weights=b"\x01" * 64)
    after = served_source(backend="transformers", model=str(folder), revision=None)
    assert _key(after) != _key(before)
    # a new file counts too
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert served_source(backend="transformers", model=str(folder), revision=None) != after


def test_hub_ids_are_named_with_revision_backend_and_output_settings(tmp_path: Path):
    base = served_source(backend="vllm", model="org/m", revision="abc")
    assert base.model == "org/m" and base.content_sha256 is None
    assert _key(base) != _key(served_source(backend="vllm", model="org/m", revision="def"))
    assert _key(base) != _key(served_source(backend="transformers", model="org/m", revision="abc"))
    assert _key(base) != _key(served_source(backend="vllm", model="org/m", revision="abc", dtype="float16"))
    assert _key(base) == _key(served_source(backend="vllm", model="org/m", revision="abc", dtype="auto"))
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}", encoding="utf-8")
    with_template = served_source(backend="vllm", model="org/m", revision="abc", chat_template=template)
    template.write_text("{{ messages[0] }}", encoding="utf-8")
    edited = served_source(backend="vllm", model="org/m", revision="abc", chat_template=template)
    assert len({_key(base), _key(with_template), _key(edited)}) == 3


def test_folder_digests_are_remembered_until_a_file_changes(tmp_path: Path, monkeypatch):
    folder = _model(tmp_path / "m")
    memo = tmp_path / "cache" / "folder-hashes.json"
    hashed: list[str] = []
    real = identity.file_sha256
    monkeypatch.setattr(identity, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    first = folder_sha256(folder, memo)
    assert sorted(hashed) == ["config.json", "model.safetensors"]
    hashed.clear()
    assert folder_sha256(folder, memo) == first and hashed == []  # nothing read again
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x02" * 64)
    os.utime(weights, ns=(1, 1))  # even a rewrite that keeps the size is seen by its mtime
    second = folder_sha256(folder, memo)
    assert hashed == ["model.safetensors"] and second != first
