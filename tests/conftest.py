"""Session-wide test settings shared by every test folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.s3 import S3Server

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


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[S3Server]:
    """A real S3 server (versitygw, `make versitygw-bin`) over a folder in this test's tmp_path:
    random root keys, no bucket and no other user yet, stopped after the test. A missing binary
    fails the test (no skip): a store suite that skipped itself would report green untested."""
    from tests.support.s3 import S3Server, VersitygwMissing

    problem = None
    try:
        server = S3Server(tmp_path / "s3")  # finds the binary
    except VersitygwMissing as exc:
        problem = str(exc)
    if problem:  # outside the except block, so the report shows only the message
        pytest.fail(problem, pytrace=False)
    try:
        server.start()  # a StartupError carries versitygw's log
        yield server
    finally:
        server.stop()
