"""`nejumi-eval jaster prepare` against a read-only prepared root: everything cached, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from nejumi_eval.cli import main
from nejumi_eval.errors import EXIT_OK


def test_prepare_finds_everything_in_a_read_only_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    monkeypatch.delenv("NEJUMI_PREPARED_DIRS", raising=False)
    monkeypatch.setenv("NEJUMI_CACHE_DIR", str(shared))  # fill the shared root, as a PVC job would
    assert main(["-q", "jaster", "prepare", "jamp", "jnli", "mawps"]) == EXIT_OK
    cold = capsys.readouterr().out
    assert "(cached)" not in cold
    files = sorted(p.relative_to(shared) for p in shared.rglob("*") if p.is_file())
    shared.chmod(0o555)  # read-only to the evaluator pods that mount it
    try:
        monkeypatch.setenv("NEJUMI_CACHE_DIR", str(cache))
        monkeypatch.setenv("NEJUMI_PREPARED_DIRS", str(shared))
        assert main(["-q", "jaster", "prepare", "jamp", "jnli", "mawps"]) == EXIT_OK
    finally:
        shared.chmod(0o755)
    warm = capsys.readouterr().out
    lines = [line for line in warm.splitlines() if line.split()[0] in ("jamp", "jnli", "mawps")]
    assert len(lines) == 3 and all(line.endswith("(cached)") for line in lines), warm
    assert [line.removesuffix("  (cached)") for line in lines] == cold.splitlines()[:3]
    assert sorted(p.relative_to(shared) for p in shared.rglob("*") if p.is_file()) == files
    assert not cache.exists()
