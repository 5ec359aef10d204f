"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import headless_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Japanese UI) for the HTML leaderboard's tests, quit after the module."""
    driver = headless_chromium("--lang=ja")
    try:
        yield driver
    finally:
        driver.quit()
