"""Session-wide test settings shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _default_mirror() -> Path:
    env = os.environ.get("NEJUMI_DATA_MIRROR")
    return Path(env) if env else SHARED / "datasets" / "raw"


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The offline copy of the raw upstream files (laid out like shared/datasets/raw)."""
    path = _default_mirror()
    if not path.is_dir():
        pytest.fail(f"raw-data mirror not found at {path}; set NEJUMI_DATA_MIRROR")
    return path


@pytest.fixture(autouse=True, scope="session")
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the network or the user's caches."""
    os.environ.setdefault("NEJUMI_DATA_MIRROR", str(_default_mirror()))
    os.environ["NEJUMI_CACHE_DIR"] = str(tmp_path_factory.mktemp("nejumi-cache"))
    os.environ["WANDB_MODE"] = "offline"
    os.environ["HF_HUB_OFFLINE"] = "1"
