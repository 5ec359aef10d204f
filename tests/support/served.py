"""A served model on this machine without a GPU: the stub `vllm serve` (tests/fixtures/served_model.py)
on PATH, and a local model folder it serves (what the evaluator's preflight accepts)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.paths import REPO


def model_folder(root: Path, name: str = "stub-model") -> Path:
    """A local "model" the preflight accepts (config.json, a chat template): the stub serves it."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "stub"}', encoding="utf-8")
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m['content'] }}\n{% endfor %}", encoding="utf-8"
    )
    return folder


def stub_vllm(bin_dir: Path) -> Path:
    """`vllm` on the pods' PATH: the stub server, with this checkout importable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "vllm"
    script.write_text(
        f'#!/bin/sh\nPYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" '
        '-m tests.fixtures.served_model "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script
