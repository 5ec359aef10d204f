"""The HTML leaderboard's "compare two evaluations" section and token charts, in a real headless
Chromium from file:// (as tests/e2e/test_leaderboard_html.py: Debian `chromium`, `chromium-driver`,
`fonts-noto-cjk`; Python `selenium`).

The page holds a model evaluated twice (`write_rerun`: known flipped questions) among others;
the counts the page computes in JS are checked against the fixture and against `leaderboard.diff`
(the CLI's `--diff --json`) for another pair, so the two implementations cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from nejumi_eval.benchmarks.mtbench.protocol import PROTOCOL
from nejumi_eval.cli import main
from tests.fixtures.leaderboard_results import (
    RERUN_FLIPS,
    RERUN_MODEL,
    RERUN_USAGE,
    write_rerun,
    write_results,
)

SAMPLES, QUESTIONS = 10, 3
A_ID, B_ID = "rerun-7b-20261031T090000Z", "rerun-7b-20261101T090000Z"
ALPHA, GAMMA = "alpha-7b-20261101T090000Z", "gamma-1b-20261101T090000Z"
USAGE = {
    ALPHA: {"prompt_tokens": 50_000, "completion_tokens": 20_000, "judge_tokens": 60_000},
    GAMMA: {"prompt_tokens": 45_000, "completion_tokens": 9_000, "judge_tokens": 40_000},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("lb-diff")
    kw = {"samples": SAMPLES, "questions": QUESTIONS}
    write_rerun(ws, **kw)
    write_results(
        ws,
        "org/alpha-7b",
        jaster=lambda d, i: float(i % 3 != 0 or i == 0),  # 9 of 10 differ from gamma's
        mtbench=lambda c, q, t: 8 if c != "math" else 4,
        usage=USAGE[ALPHA],
        **kw,
    )
    write_results(
        ws,
        "org/gamma-1b",
        jaster=lambda d, i: float(i % 3 == 0),
        mtbench=lambda c, q, t: 3 + q + t,
        usage=USAGE[GAMMA],
        **kw,
    )
    assert (
        main(["leaderboard", str(ws), "--html", str(ws / "board.html"), "--json", str(ws / "board.json")])
        == 0
    )
    return ws


@pytest.fixture
def loaded(browser: webdriver.Chrome, workspace: Path) -> webdriver.Chrome:
    browser.get((workspace / "board.html").as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
    browser.get_log("browser")
    return browser


def open_diff(driver: webdriver.Chrome) -> None:
    driver.find_element(By.CSS_SELECTOR, "#diff > summary").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#diff-table tbody tr"))


def pick(driver: webdriver.Chrome, a: str, b: str) -> None:
    Select(driver.find_element(By.ID, "diff-a")).select_by_value(a)
    Select(driver.find_element(By.ID, "diff-b")).select_by_value(b)
    WebDriverWait(driver, 10).until(
        lambda d: (
            f"({a})" in d.find_element(By.ID, "diff-sides").text
            and f"({b})" in d.find_element(By.ID, "diff-sides").text
        )
    )


def counts(driver: webdriver.Chrome) -> dict[tuple[str, str], dict[str, int]]:
    """(benchmark, stratum; "" for the total) → the table's shared/improved/regressed/unchanged."""
    return {
        (r["b"], r["s"]): {k: int(v) for k, v in r["cells"].items()}
        for r in driver.execute_script(
            "return [...document.querySelectorAll('#diff-table tbody tr')].map(r => ({b: r.dataset.benchmark,"
            " s: r.dataset.stratum, cells: Object.fromEntries([...r.querySelectorAll('td[data-col]')]"
            ".map(td => [td.dataset.col, td.textContent])) }))"
        )
    }


def flipped(driver: webdriver.Chrome) -> list[tuple[str, str, str, str]]:
    return [
        (
            li.get_attribute("data-benchmark"),
            li.get_attribute("data-stratum"),
            li.get_attribute("data-id"),
            li.get_attribute("data-dir"),
        )
        for li in driver.find_elements(By.CSS_SELECTOR, "#diff-flipped li")
    ]


def expected_flips() -> list[tuple[str, str, str, str]]:
    out = []
    for (bench, stratum), ids in RERUN_FLIPS.items():
        for direction in ("improved", "regressed"):
            out.extend((bench, stratum, qid, direction) for qid in ids[direction])
    return out


def test_the_rerun_pair_is_compared_question_by_question(loaded: webdriver.Chrome) -> None:
    browser = loaded
    assert browser.execute_script("return window.nejumiLeaderboard.state.questions") is None  # lazy
    # every evaluation is offered, the superseded earlier run too, labelled by model, date, revision
    options = {
        o.get_attribute("value"): o.get_attribute("textContent")
        for o in browser.find_elements(By.CSS_SELECTOR, "#diff-a option")
    }
    assert set(options) == {A_ID, B_ID, ALPHA, GAMMA}
    assert options[A_ID] == f"{RERUN_MODEL} · 2026-10-31 09:00 · rev a1b2c3d4 · superseded"
    open_diff(browser)
    # the default pair: the model evaluated twice, earlier run as A
    assert Select(browser.find_element(By.ID, "diff-a")).first_selected_option.get_attribute("value") == A_ID
    assert Select(browser.find_element(By.ID, "diff-b")).first_selected_option.get_attribute("value") == B_ID
    table = counts(browser)
    strata = [k for k in table if k[1]]
    assert len(strata) == 16 + 8
    for key in strata:
        ids = RERUN_FLIPS.get(key, {"improved": [], "regressed": []})
        assert (table[key]["improved"], table[key]["regressed"]) == (
            len(ids["improved"]),
            len(ids["regressed"]),
        ), key
    assert table[("jaster", "jamp")] == {
        "shared": SAMPLES,
        "improved": 1,
        "regressed": 0,
        "unchanged": SAMPLES - 1,
    }
    assert table[("jaster", "")] == {
        "shared": 16 * SAMPLES,
        "improved": 2,
        "regressed": 2,
        "unchanged": 16 * SAMPLES - 4,
    }
    assert table[("mtbench", "writing")]["shared"] == QUESTIONS - 1  # no valid rating in B: not compared
    assert table[("mtbench", "")] == {
        "shared": 8 * QUESTIONS - 1,
        "improved": 1,
        "regressed": 1,
        "unchanged": 8 * QUESTIONS - 3,
    }
    assert sorted(flipped(browser)) == sorted(expected_flips())

    # a flipped question opens in place: prompt, gold and both answers
    item = browser.find_element(By.CSS_SELECTOR, '#diff-flipped li[data-id="jamp-test-2"]')
    assert item.text == "↑ jaster · jamp · jamp-test-2: 0 → 1"
    item.find_element(By.CSS_SELECTOR, "button.flip").click()
    card = item.find_element(By.CSS_SELECTOR, "article.question")
    assert "jampの問題2" in card.find_element(By.CSS_SELECTOR, "pre.prompt").text
    assert card.find_element(By.CSS_SELECTOR, "pre.gold").text == "東京2"
    answers = {a.get_attribute("data-entry"): a for a in card.find_elements(By.CSS_SELECTOR, ".answer")}
    assert list(answers) == [A_ID, B_ID]
    assert answers[A_ID].find_element(By.CSS_SELECTOR, "pre.output").text == "大阪2"
    assert answers[B_ID].find_element(By.CSS_SELECTOR, "pre.output").text == "東京2"
    assert answers[A_ID].find_element(By.TAG_NAME, "h4").text.startswith("A: " + RERUN_MODEL)
    item.find_element(By.CSS_SELECTOR, "button.flip").click()
    assert item.find_elements(By.CSS_SELECTOR, "article.question") == []  # and closes again

    # MT-bench: each turn's rating of both
    math_id = str(PROTOCOL.categories["math"].first_id)
    item = browser.find_element(
        By.CSS_SELECTOR, f'#diff-flipped li[data-stratum="math"][data-id="{math_id}"]'
    )
    assert item.text.endswith(": 5 → 6")
    item.find_element(By.CSS_SELECTOR, "button.flip").click()
    ratings = [r.text for r in item.find_elements(By.CSS_SELECTOR, ".rating")]
    assert ratings == ["rating 5", "rating 7", "rating 5", "rating 5"]  # turn 1 (A, B), turn 2 (A, B)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_row_filters_the_list_and_swapping_mirrors(loaded: webdriver.Chrome) -> None:
    browser = loaded
    open_diff(browser)
    pick(browser, A_ID, B_ID)
    browser.find_element(
        By.CSS_SELECTOR, '#diff-table tr[data-benchmark="jaster"][data-stratum="mawps"]'
    ).click()
    assert flipped(browser) == [
        ("jaster", "mawps", "mawps-test-1", "regressed"),
        ("jaster", "mawps", "mawps-test-2", "improved"),
    ]
    assert browser.find_element(By.CSS_SELECTOR, "#diff-flipped h3").text.startswith(
        "2 flipped questions in jaster · mawps"
    )
    browser.find_element(By.CSS_SELECTOR, '#diff-table tr.total[data-benchmark="mtbench"]').click()
    assert {f[0] for f in flipped(browser)} == {"mtbench"} and len(flipped(browser)) == 2
    browser.find_element(By.CSS_SELECTOR, "#diff-flipped button.link").click()  # show all
    assert len(flipped(browser)) == len(expected_flips())

    before = counts(browser)
    browser.find_element(By.ID, "diff-swap").click()
    WebDriverWait(browser, 5).until(
        lambda d: d.find_element(By.ID, "diff-sides").text.startswith("A = " + RERUN_MODEL + " · 2026-11-01")
    )
    after = counts(browser)
    assert set(after) == set(before)
    for key, c in before.items():
        assert (after[key]["improved"], after[key]["regressed"]) == (c["regressed"], c["improved"]), key
    same = Select(browser.find_element(By.ID, "diff-b"))
    same.select_by_value(
        Select(browser.find_element(By.ID, "diff-a")).first_selected_option.get_attribute("value")
    )
    assert "same evaluation" in browser.find_element(By.ID, "diff-result").text


def test_the_page_counts_as_the_cli_does(loaded: webdriver.Chrome, workspace: Path) -> None:
    """Another pair (two different models, many flips, char-F1 and MT-bench means): the JS table
    equals `nejumi-eval leaderboard --diff A B --json`."""
    out = workspace / "diff.json"
    assert (
        main(["leaderboard", str(workspace), "--diff", ALPHA, GAMMA, "--resamples", "0", "--json", str(out)])
        == 0
    )
    doc = json.loads(out.read_text(encoding="utf-8"))
    expected = {}
    for bench in doc["benchmarks"]:
        for s in [*bench["strata"], {**bench["total"], "stratum": ""}]:
            expected[(bench["name"], s["stratum"])] = {
                k: s[k] for k in ("shared", "improved", "regressed", "unchanged")
            }
    browser = loaded
    open_diff(browser)
    pick(browser, ALPHA, GAMMA)
    assert counts(browser) == expected
    flips = {
        (b["name"], s["stratum"], f["id"])
        for b in doc["benchmarks"]
        for s in b["strata"]
        for f in s["flipped"]
    }
    assert len(flips) > 100
    more = browser.find_element(By.ID, "diff-more")  # a hundred at a time
    assert len(flipped(browser)) == 100
    while more:
        more.click()
        found = browser.find_elements(By.ID, "diff-more")
        more = found[0] if found else None
    assert {f[:3] for f in flipped(browser)} == flips


def test_token_charts_have_a_bar_per_evaluation(loaded: webdriver.Chrome, workspace: Path) -> None:
    browser = loaded
    board = json.loads((workspace / "board.json").read_text(encoding="utf-8"))
    usage = {e["id"]: e["usage"] for e in board["entries"]}
    assert usage[A_ID]["judge_tokens"] == RERUN_USAGE[0]["judge_tokens"] and usage[ALPHA] is not None

    def bars(chart: str) -> list[dict]:
        return browser.execute_script(
            f"return document.getElementById('{chart}').data.map(t => ({{name: t.name, x: t.x, y: t.y,"
            " ids: t.customdata}))"
        )

    ranked = [e["id"] for e in board["entries"] if e["state"] == "ranked"]
    (judge,) = bars("judge-tokens")
    assert len(judge["x"]) == len(ranked) == 3  # one bar per evaluation in the table
    assert judge["y"] == [usage[i]["judge_tokens"] for i in ranked]
    drawn = browser.execute_script("return document.querySelectorAll('#judge-tokens .bars .point').length")
    assert drawn == 3
    prompt, completion = bars("model-tokens")
    assert (prompt["name"], completion["name"]) == ("prompt", "completion")
    assert prompt["y"] == [usage[i]["prompt_tokens"] for i in ranked]
    assert completion["y"] == [usage[i]["completion_tokens"] for i in ranked]

    browser.find_element(By.ID, "show-all").click()  # the superseded run too: its own bar and label
    (judge,) = bars("judge-tokens")
    ids = [e["id"] for e in board["entries"]]
    assert len(judge["x"]) == len(set(judge["x"])) == len(ids) == 4
    assert judge["y"] == [usage[i]["judge_tokens"] for i in ids]
    assert "rerun-7b @2026-10-31 09:00" in judge["x"]
    assert (
        browser.execute_script("return document.querySelectorAll('#judge-tokens .bars .point').length") == 4
    )
