"""The HTML leaderboard's cost, in a real headless Chromium: the `GPU-h` and `judge cost` columns
(`—` where unknown, never 0, and last whichever way they are sorted) and the runtime scatter's
second axis (GPU-hours held or the judge's cost against Overall: an evaluation whose figure is
unknown has no point there, and the note says how many)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from nejumi_eval.cli import main
from tests.fixtures.leaderboard_results import ratings, write_results

PRICED = {"gpuSecondsHeld": 7200.0, "gpuSecondsBusy": 3000.0, "currency": "USD", "judgeCost": 1.26}
CHEAP = {"gpuSecondsHeld": 1800.0, "gpuSecondsBusy": 900.0, "currency": "USD", "judgeCost": 0.3}
UNPRICED = {"gpuSecondsBusy": 600.0, "currency": "USD", "unpriced": ["gpt-4o"]}  # a local run, unpriced judge


def constant(value: float) -> Callable[[str, int], float]:
    return lambda dataset, i: value


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("lb-cost")
    kw = {"samples": 4, "questions": 2}
    write_results(ws, "org/priced", jaster=constant(0.9), mtbench=ratings(8), runtime=3000, cost=PRICED, **kw)
    write_results(ws, "org/cheap", jaster=constant(0.7), mtbench=ratings(6), runtime=1000, cost=CHEAP, **kw)
    write_results(
        ws, "org/unpriced", jaster=constant(0.5), mtbench=ratings(5), runtime=900, cost=UNPRICED, **kw
    )
    write_results(
        ws, "org/old", jaster=constant(0.3), mtbench=ratings(3), runtime=800, **kw
    )  # no cost record
    out = ws / "board.html"
    assert main(["leaderboard", str(ws), "--resamples", "50", "--html", str(out)]) == 0
    return out


@pytest.fixture
def loaded(browser: webdriver.Chrome, page: Path) -> webdriver.Chrome:
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
    return browser


def rows(driver: webdriver.Chrome, key: str) -> list[tuple[str, str]]:
    """(model, the text of its cell in column `key`), in the table's row order."""
    pairs = driver.execute_script(
        "return [...document.querySelectorAll('#ranking tbody tr')].map(r => ["
        "window.nejumiLeaderboard.board.entries.find(e => e.id === r.dataset.entry).model,"
        f"r.querySelector('td[data-key=\"{key}\"]').textContent])"
    )
    return [(model, text) for model, text in pairs]


def column(driver: webdriver.Chrome, key: str) -> dict[str, str]:
    return dict(rows(driver, key))


def order(driver: webdriver.Chrome, key: str) -> list[str]:
    return [model for model, _ in rows(driver, key)]


def scatter(driver: webdriver.Chrome) -> list[dict]:
    script = "return document.getElementById('scatter').data.map(t => [t.xaxis, t.x, t.customdata])"
    return [{"xaxis": a, "x": x, "models": m} for a, x, m in driver.execute_script(script)]


def test_cost_columns_show_what_is_known_and_a_dash_for_the_rest(loaded: webdriver.Chrome) -> None:
    browser = loaded
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    assert column(browser, "gpu_hours") == {
        "org/priced": "2.00",
        "org/cheap": "0.50",
        "org/unpriced": "—",
        "org/old": "—",
    }
    assert column(browser, "judge_cost") == {
        "org/priced": "1.26 USD",
        "org/cheap": "0.30 USD",
        "org/unpriced": "—",
        "org/old": "—",
    }

    def header() -> Any:  # the table is drawn again on every sort: find the header each time
        return browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="gpu_hours"]')

    header().click()  # cheapest first, the unknown ones last
    assert order(browser, "gpu_hours")[:2] == ["org/cheap", "org/priced"]
    header().click()  # and last the other way round too: an unknown is not a 0
    assert order(browser, "gpu_hours")[:2] == ["org/priced", "org/cheap"]
    assert set(order(browser, "gpu_hours")[2:]) == {"org/unpriced", "org/old"}


def test_the_runtime_scatter_has_a_cost_axis_without_made_up_points(loaded: webdriver.Chrome) -> None:
    browser = loaded
    runtime, cost = scatter(browser)
    assert runtime["xaxis"] == "x" and sorted(runtime["x"]) == [800, 900, 1000, 3000]
    assert cost["xaxis"] == "x2" and dict(zip(cost["models"], cost["x"], strict=True)) == {
        "org/priced": 2.0,
        "org/cheap": 0.5,
    }
    title = browser.execute_script("return document.getElementById('scatter').layout.xaxis2.title.text")
    assert title == "GPU-hours held"
    note = browser.find_element(By.ID, "scatter-note").text
    assert "2 evaluation(s) without a known GPU-hours held" in note
    Select(browser.find_element(By.ID, "scatter-cost")).select_by_value("judge_cost")
    _, cost = scatter(browser)
    assert dict(zip(cost["models"], cost["x"], strict=True)) == {"org/priced": 1.26, "org/cheap": 0.3}
    title = browser.execute_script("return document.getElementById('scatter').layout.xaxis2.title.text")
    assert title == "judge cost (USD)"
    points = browser.execute_script(
        "return document.querySelectorAll('#scatter .scatterlayer .point').length"
    )
    assert points == 4 + 2  # every evaluation on the left, the two with a judge cost on the right
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
