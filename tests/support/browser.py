"""Headless Chromium (Debian's `chromium` + `chromium-driver`, installed by `make browser`) driven by
selenium, for the HTML leaderboard's tests and bench: one place that says how it is started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def headless_chromium(*extra_args: str, page_load_timeout: float = 60, in_test: bool = True) -> Any:
    """A started `webdriver.Chrome` (the caller quits it). A missing browser fails the test (or, out
    of a test, raises), naming what to install: a page nobody opened is not tested."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        why = (
            f"not installed: {', '.join(missing)} "
            "(`make browser`: apt-get install chromium chromium-driver fonts-noto-cjk)"
        )
        if in_test:
            pytest.fail(why, pytrace=False)
        raise RuntimeError(why)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        *extra_args,
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(page_load_timeout)
    return driver
