"""A plugin benchmark on the HTML leaderboard, in a real headless Chromium from file:// (as
tests/e2e/test_leaderboard_html.py: Debian `chromium`, `chromium-driver`, `fonts-noto-cjk`;
Python `selenium`).

The toy "echo" benchmark (tests/fixtures/toy_benchmark.py) declares how its table is read back
(`EchoReading`) and nothing else knows it: the board is built by `nejumi-eval leaderboard` in a
process that loads it through `$NEJUMI_BENCHMARKS`, and the page must give it what the built-ins
get: an interval in the ranking, its questions in the drill-down, its flips in the diff of two
evaluations, a row in the paired verdict, and a section in the W&B report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.fixtures.leaderboard_results import T0, ratings, write_results

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "tests.fixtures.toy_benchmark"
WORDS = ("さくら", "ねずみ", "やま", "かわ", "そら", "うみ", "ほし", "つき")
MODEL = "org/echo-7b"
A_ID, B_ID = "echo-7b-20261031T090000Z", "echo-7b-20261101T090000Z"
ALPHA = "alpha-7b-20261101T090000Z"


def echo(*right: int) -> dict[str, float]:
    """Word → 1 for the words at the indices `right`, else 0."""
    return {w: float(i in right) for i, w in enumerate(WORDS)}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`nejumi-eval` with the toy benchmark loaded as a plugin (this process never imports it)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "NEJUMI_BENCHMARKS": PLUGIN,
    }
    return subprocess.run(
        [sys.executable, "-m", "nejumi_eval.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("lb-plugin")
    kw = {"samples": 4, "questions": 2, "mtbench": ratings(6)}
    # one model twice: B lost さくら (regressed) and gained そら (improved)
    write_results(
        ws,
        MODEL,
        started=T0 - timedelta(days=1),
        jaster=lambda d, i: float(i < 2),
        echo=echo(0, 1, 2, 3),
        revision="a1b2c3d4e5f60708",
        **kw,
    )
    write_results(ws, MODEL, jaster=lambda d, i: float(i < 2), echo=echo(1, 2, 3, 4), **kw)
    write_results(ws, "org/alpha-7b", jaster=lambda d, i: float(i < 3), echo=echo(0, 1, 2, 3, 4, 5, 6), **kw)
    proc = cli("leaderboard", str(ws), "--html", str(ws / "board.html"), "--json", str(ws / "board.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws


@pytest.fixture
def loaded(browser: webdriver.Chrome, workspace: Path) -> webdriver.Chrome:
    browser.get((workspace / "board.html").as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
    browser.get_log("browser")
    return browser


def board(workspace: Path) -> dict:
    return json.loads((workspace / "board.json").read_text(encoding="utf-8"))


def test_the_plugin_is_ranked_with_an_interval(loaded: webdriver.Chrome, workspace: Path) -> None:
    entries = {e["id"]: e for e in board(workspace)["entries"]}
    alpha = entries[ALPHA]["benchmarks"]["echo"]
    assert alpha["avg"] == pytest.approx(7 / 8) and alpha["questions"] == len(WORDS)
    assert alpha["ci"] is not None and alpha["ci"]["low"] < 7 / 8 < alpha["ci"]["high"]
    assert board(workspace)["warnings"] == []  # its reader reproduces the recorded score
    browser = loaded
    header = browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="echo"]')
    assert header.text == "echo"
    cell = browser.find_element(By.CSS_SELECTOR, f'#ranking tr[data-entry="{ALPHA}"] td[data-key="echo"]')
    low, high = alpha["ci"]["low"], alpha["ci"]["high"]
    assert cell.find_element(By.CSS_SELECTOR, ".ci").text == f"[{low:.4f}, {high:.4f}]"
    # the paired verdict of two ticked models has a row for it
    for e in browser.execute_script("return window.nejumiLeaderboard.state.selected.slice()"):
        browser.execute_script("window.nejumiLeaderboard.select(arguments[0], false)", e)
    for e in (ALPHA, B_ID):
        browser.execute_script("window.nejumiLeaderboard.select(arguments[0], true)", e)
    row = browser.find_element(By.CSS_SELECTOR, '#verdict tr[data-metric="echo"]')
    assert row.find_elements(By.TAG_NAME, "td")[4].text == str(len(WORDS))  # shared questions
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_plugins_questions_are_in_the_drilldown(loaded: webdriver.Chrome) -> None:
    browser = loaded
    browser.find_element(By.CSS_SELECTOR, "#drilldown > summary").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#dd-list article.question"))
    Select(browser.find_element(By.ID, "dd-benchmark")).select_by_value("echo")
    cards = browser.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
    assert [c.get_attribute("data-id") for c in cards] == list(WORDS)
    first = cards[0]
    assert first.find_element(By.CSS_SELECTOR, "pre.prompt").text == "Repeat: さくら"
    assert first.find_element(By.CSS_SELECTOR, "pre.gold").text == "さくら"
    answers = {a.get_attribute("data-entry"): a for a in first.find_elements(By.CSS_SELECTOR, ".answer")}
    assert answers, "the ticked models' answers"
    for answer in answers.values():
        assert answer.find_element(By.CSS_SELECTOR, "pre.output").text.startswith("echo:")
        assert "score" in answer.find_element(By.CSS_SELECTOR, ".metrics").text


def test_the_plugin_is_diffed_question_by_question(loaded: webdriver.Chrome, workspace: Path) -> None:
    browser = loaded
    browser.find_element(By.CSS_SELECTOR, "#diff > summary").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#diff-table tbody tr"))
    # the default pair: the model evaluated twice, the earlier run as A
    assert Select(browser.find_element(By.ID, "diff-a")).first_selected_option.get_attribute("value") == A_ID
    assert Select(browser.find_element(By.ID, "diff-b")).first_selected_option.get_attribute("value") == B_ID
    total = browser.find_element(By.CSS_SELECTOR, '#diff-table tr.total[data-benchmark="echo"]')
    cells = {
        td.get_attribute("data-col"): td.text for td in total.find_elements(By.CSS_SELECTOR, "td[data-col]")
    }
    assert cells == {"shared": "8", "improved": "1", "regressed": "1", "unchanged": "6"}
    assert "echo: per word: 1 when the output contains it" in browser.find_element(By.ID, "diff-units").text
    total.click()  # only its flips
    flips = [
        (li.get_attribute("data-id"), li.get_attribute("data-dir"))
        for li in browser.find_elements(By.CSS_SELECTOR, "#diff-flipped li")
    ]
    assert sorted(flips) == [("さくら", "regressed"), ("そら", "improved")]
    item = browser.find_element(By.CSS_SELECTOR, '#diff-flipped li[data-id="そら"]')
    assert item.text == "↑ echo · words · そら: 0 → 1"
    item.find_element(By.CSS_SELECTOR, "button.flip").click()
    outputs = [o.text for o in item.find_elements(By.CSS_SELECTOR, ".answer pre.output")]
    assert outputs == ["echo: ?", "echo: Repeat: そら"]  # A, then B
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []

    # the CLI's diff agrees, and says what its unit is
    out = workspace / "diff.json"
    proc = cli("leaderboard", str(workspace), "--diff", A_ID, B_ID, "--resamples", "0", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = next(b for b in json.loads(out.read_text(encoding="utf-8"))["benchmarks"] if b["name"] == "echo")
    assert bench["unit"] == "per word: 1 when the output contains it, else 0"
    assert (bench["total"]["improved"], bench["total"]["regressed"]) == (1, 1)
    assert "word set" in proc.stdout  # the stratum column, as the reader names it


def test_the_w_and_b_report_has_a_section_for_the_plugin() -> None:
    proc = cli("leaderboard", "--wandb-report", "nejumi/neo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "  H1 echo" in lines and "  H2 echo: question by question" in lines
    assert "    WeavePanelSummaryTable echo_output_table" in lines
