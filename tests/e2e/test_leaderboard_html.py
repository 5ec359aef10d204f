"""The HTML leaderboard in a real headless Chromium, opened from file:// with no network.

Needs the Debian packages `chromium`, `chromium-driver` and `fonts-noto-cjk` (Japanese glyphs)
and the `selenium` package (`make browser` installs them; `make test` depends on it). Without the
browser these tests fail, naming what is missing: a page nobody opened is not tested.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.cli import main
from tests.fixtures.leaderboard_results import DATASETS, ratings, write_results

CATEGORY_OF = {d: c for c, members in task_table().categories.items() for d in members}
SAMPLES = 10


def profile(**share: float):
    """Per category the share of samples answered right (the first ones): distinct radar shapes."""
    return lambda dataset, i: float(i < round(share.get(CATEGORY_OF[dataset], 0.3) * SAMPLES))


def mt_profile(base: int, **by_category: int):
    return lambda category, q, turn: by_category.get(category, base)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("lb-ws")
    kw = {"samples": SAMPLES, "questions": 3}
    write_results(
        ws, "org/alpha-7b", jaster=profile(NLI=0.9, QA=0.6), mtbench=mt_profile(8, math=4), runtime=1800, **kw
    )
    write_results(
        ws,
        "org/beta-13b",
        jaster=profile(RC=1.0, MC=0.8),
        mtbench=mt_profile(7, coding=9),
        runtime=3600,
        **kw,
    )
    write_results(
        ws,
        "org/beta-13b-rerun",
        jaster=profile(RC=1.0, MC=0.8),
        mtbench=mt_profile(7, coding=9),
        runtime=3500,
        **kw,
    )
    write_results(ws, "org/gamma-1b", jaster=profile(FA=0.7), mtbench=mt_profile(3), runtime=400, **kw)
    write_results(ws, "org/smoke", jaster=profile(), mtbench=ratings(10), capped=True, **kw)
    out = ws / "board.html"
    assert main(["leaderboard", str(ws), "--html", str(out), "--json", str(ws / "board.json")]) == 0
    return out


@pytest.fixture
def loaded(browser: webdriver.Chrome, page: Path) -> webdriver.Chrome:
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
    browser.get_log("browser")  # start each test with an empty console log
    return browser


def board(page: Path) -> dict:
    return json.loads((page.parent / "board.json").read_text(encoding="utf-8"))


def row_models(driver: webdriver.Chrome) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#ranking tbody tr')]"
        ".map(r => window.nejumiLeaderboard.board.entries.find(e => e.id === r.dataset.entry).model)"
    )


def radar_traces(driver: webdriver.Chrome, benchmark: str) -> list[dict]:
    return driver.execute_script(
        f"return document.getElementById('radar-{benchmark}').data"
        ".map(t => ({name: t.name, r: t.r, theta: t.theta}))"
    )


def tick(driver: webdriver.Chrome, model: str, on: bool) -> None:
    entry = next(
        e
        for e in driver.execute_script("return window.nejumiLeaderboard.board.entries")
        if e["model"] == model
    )
    box = driver.find_element(By.CSS_SELECTOR, f'#ranking input[data-entry="{entry["id"]}"]')
    if box.is_selected() != on:
        box.click()


def test_opens_offline_without_errors(loaded: webdriver.Chrome, page: Path) -> None:
    browser = loaded
    browser.get(page.as_uri())  # again: `loaded` emptied the console log this test reads
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
    assert browser.execute_script("return typeof Plotly") == "object"
    # nothing was fetched: every script and datum is inside the file
    assert browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)") == []
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    # the ranking: ranked models of the main group, best first; the capped run only on request
    assert row_models(browser) == [e["model"] for e in board(page)["entries"] if e["state"] == "ranked"]
    assert "org/smoke" not in row_models(browser)
    browser.find_element(By.ID, "show-all").click()
    assert "org/smoke" in row_models(browser)


def test_the_ranks_column_shows_each_rank_interval(loaded: webdriver.Chrome, page: Path) -> None:
    """Beside `#`: the ranks each model takes across the resamples (`1–2`), as the board's JSON has
    them; sorting by it puts the best lower end first; the note says at which confidence."""
    browser = loaded
    ranked = [e for e in board(page)["entries"] if e["state"] == "ranked"]
    assert all(e["rank_interval"] for e in ranked)

    def text(ri: dict) -> str:
        return str(ri["low"]) if ri["low"] == ri["high"] else f"{ri['low']}–{ri['high']}"

    keys = browser.execute_script(
        "return [...document.querySelectorAll('#ranking thead th')].map(th => th.dataset.key)"
    )
    assert keys[1:4] == ["rank", "ranks", "model"]
    cells = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#ranking tbody tr')]"
        ".map(r => [r.dataset.entry, r.querySelector('td[data-key=\"ranks\"]').textContent]))"
    )
    assert cells == {e["id"]: text(e["rank_interval"]) for e in ranked}
    browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="ranks"]').click()
    by_ranks = sorted(
        ranked, key=lambda e: (e["rank_interval"]["low"], e["rank_interval"]["high"], e["rank"])
    )
    assert row_models(browser) == [e["model"] for e in by_ranks]
    note = browser.find_element(By.CSS_SELECTOR, "#ranking-section p.note:not(#group-note)").text
    assert "ranks: the ranks a model takes in the central 95% of the bootstrap resamples" in note


def test_selecting_models_changes_the_radar_charts(loaded: webdriver.Chrome, page: Path) -> None:
    browser = loaded
    ranked = [e for e in board(page)["entries"] if e["state"] == "ranked"]
    assert [t["name"] for t in radar_traces(browser, "jaster")] == [e["model"] for e in ranked[:3]]
    last = ranked[-1]
    tick(browser, last["model"], True)
    tick(browser, ranked[0]["model"], False)
    names = [t["name"] for t in radar_traces(browser, "jaster")]
    assert names == [e["model"] for e in ranked[1:3]] + [last["model"]]
    assert [t["name"] for t in radar_traces(browser, "mtbench")] == names
    # the trace is the entry's category scores, closed back to the first category
    trace = radar_traces(browser, "jaster")[-1]
    categories = last["benchmarks"]["jaster"]["categories"]
    assert trace["theta"] == [*categories, next(iter(categories))]
    assert trace["r"][:-1] == pytest.approx(list(categories.values()))
    mt = radar_traces(browser, "mtbench")[-1]
    assert mt["r"][:-1] == pytest.approx(list(last["benchmarks"]["mtbench"]["categories"].values()))


def test_clicking_a_header_sorts_the_rows(loaded: webdriver.Chrome, page: Path) -> None:
    browser = loaded
    ranked = [e for e in board(page)["entries"] if e["state"] == "ranked"]
    header = browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="jaster:FA"]')
    header.click()
    by_fa = sorted(ranked, key=lambda e: -e["benchmarks"]["jaster"]["categories"]["FA"])
    assert row_models(browser)[0] == by_fa[0]["model"] == "org/gamma-1b"
    assert (
        browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="jaster:FA"]').get_attribute("aria-sort")
        == "descending"
    )
    browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="jaster:FA"]').click()
    assert row_models(browser)[-1] == "org/gamma-1b"
    browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="runtime"]').click()
    by_runtime = [e["model"] for e in sorted(ranked, key=lambda e: -e["runtime_seconds"])]
    assert row_models(browser) == by_runtime
    browser.find_element(By.CSS_SELECTOR, '#ranking th[data-key="model"]').click()
    assert row_models(browser) == sorted(e["model"] for e in ranked)


def test_drilldown_filters_by_dataset_and_searches(loaded: webdriver.Chrome, page: Path) -> None:
    browser = loaded
    assert browser.execute_script("return window.nejumiLeaderboard.state.questions") is None  # lazy
    browser.find_element(By.CSS_SELECTOR, "#drilldown > summary").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#dd-list article.question"))
    total = 16 * SAMPLES + 8 * 3
    assert browser.find_element(By.ID, "dd-count").text.startswith(f"{total} of {total}")
    Select(browser.find_element(By.ID, "dd-benchmark")).select_by_value("jaster")
    Select(browser.find_element(By.ID, "dd-stratum")).select_by_value("jsquad")
    cards = browser.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
    assert len(cards) == SAMPLES
    assert {c.get_attribute("data-stratum") for c in cards} == {"jsquad"}
    first = cards[0]
    assert "jsquad" in first.find_element(By.CSS_SELECTOR, "pre.prompt").text
    assert first.find_element(By.CSS_SELECTOR, "pre.gold").text == "東京0"
    answers = first.find_elements(By.CSS_SELECTOR, ".answer")
    assert len(answers) == 3  # one per selected model, with its output and metric values
    assert all("score" in a.find_element(By.CSS_SELECTOR, ".metrics").text for a in answers)
    search = browser.find_element(By.ID, "dd-search")
    search.send_keys("問題7")
    WebDriverWait(browser, 5).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dd-list article.question")) == 1
    )
    assert (
        browser.find_element(By.CSS_SELECTOR, "#dd-list article.question").get_attribute("data-id")
        == "jsquad-test-7"
    )
    search.clear()
    search.send_keys("x")  # clear() fires no input event
    search.clear()
    Select(browser.find_element(By.ID, "dd-stratum")).select_by_value("")
    Select(browser.find_element(By.ID, "dd-benchmark")).select_by_value("mtbench")
    Select(browser.find_element(By.ID, "dd-stratum")).select_by_value("math")
    cards = browser.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
    assert len(cards) == 3 and {c.get_attribute("data-stratum") for c in cards} == {"math"}
    ratings_shown = [r.text for r in cards[0].find_elements(By.CSS_SELECTOR, ".rating")]
    assert len(ratings_shown) == 2 * 3  # two turns × three selected models
    alpha = next(e["id"] for e in board(page)["entries"] if e["model"] == "org/alpha-7b")
    turns = cards[0].find_elements(By.CSS_SELECTOR, f'.answer[data-entry="{alpha}"]')
    assert len(turns) == 2  # alpha rated 4 on math, both turns, the judgment shown with it
    assert [t.find_element(By.CSS_SELECTOR, ".rating").text for t in turns] == ["rating 4", "rating 4"]
    assert "Rating: [[4]]" in turns[0].find_element(By.CSS_SELECTOR, "pre.judgment").text


def test_two_selected_models_get_the_paired_verdict(loaded: webdriver.Chrome) -> None:
    browser = loaded
    for model in ("org/alpha-7b", "org/gamma-1b", "org/beta-13b", "org/beta-13b-rerun"):
        tick(browser, model, False)
    assert "exactly two" in browser.find_element(By.ID, "verdict").text
    tick(browser, "org/beta-13b", True)
    tick(browser, "org/beta-13b-rerun", True)
    row = browser.find_element(By.CSS_SELECTOR, '#verdict tr[data-metric="Overall"]')
    assert "not distinguishable from noise" in row.text  # the same answers twice
    tick(browser, "org/beta-13b-rerun", False)
    tick(browser, "org/gamma-1b", True)
    row = browser.find_element(By.CSS_SELECTOR, '#verdict tr[data-metric="Overall"]')
    assert row.find_elements(By.TAG_NAME, "td")[-1].text == "distinguishable"


def test_charts_are_drawn_and_japanese_is_rendered(loaded: webdriver.Chrome) -> None:
    browser = loaded
    radar = browser.find_element(By.ID, "radar-jaster")
    browser.execute_script("arguments[0].scrollIntoView()", radar)

    def coloured_share() -> float:
        """Share of the chart's pixels that are coloured (trace fills; the grid is grey)."""
        width, height, pixels = decode_png(radar.screenshot_as_png)
        return sum(1 for r, g, b in pixels if max(r, g, b) - min(r, g, b) > 15) / (width * height)

    drawn = coloured_share()
    assert drawn > 0.03, f"radar chart looks blank: {drawn:.2%} coloured pixels"
    for e in browser.execute_script("return window.nejumiLeaderboard.state.selected.slice()"):
        browser.execute_script("window.nejumiLeaderboard.select(arguments[0], false)", e)
    assert coloured_share() < drawn / 5  # the measure sees the traces, not the frame
    points = browser.execute_script(
        "return document.querySelectorAll('#scatter .scatterlayer .point').length"
    )
    assert points == 4

    browser.find_element(By.CSS_SELECTOR, "#drilldown > summary").click()
    prompt = WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#dd-list pre.prompt")
    )
    assert "以下は、タスクを説明する指示" in prompt.text
    assert prompt.size["width"] > 0 and prompt.size["height"] > 0
    # Glyphs, not tofu: two different kanji in the page's font must not render identically
    # (missing glyphs all draw as the same box), and neither may be blank.
    shots = []
    for char in ("東", "京"):
        span = browser.execute_script(
            "const s = document.createElement('span'); s.textContent = arguments[0];"
            "s.style.cssText = 'font-size:48px;line-height:1;display:inline-block;"
            "background:#fff;color:#000';"
            "document.body.prepend(s); return s;",
            char,
        )
        shots.append(decode_png(span.screenshot_as_png))
        browser.execute_script("arguments[0].remove()", span)
    (w1, h1, p1), (_, _, p2) = shots
    assert w1 > 20 and h1 > 20
    dark1 = {i for i, px in enumerate(p1) if sum(px) < 300}
    dark2 = {i for i, px in enumerate(p2) if sum(px) < 300}
    assert len(dark1) > 30 and len(dark2) > 30
    assert dark1 != dark2


def test_token_charts_without_token_data_say_so(loaded: webdriver.Chrome, page: Path) -> None:
    """These evaluations record no usage: the charts' places say there is no token data, and no
    empty axes are drawn (tests/e2e/test_leaderboard_html_diff.py draws them with data)."""
    assert all(not any((e.get("usage") or {}).values()) for e in board(page)["entries"])
    for chart, what in (("judge-tokens", "Judge tokens"), ("model-tokens", "Model tokens")):
        text = loaded.execute_script(f"return document.getElementById('{chart}').textContent")
        assert text.startswith(what) and "no token data" in text, text
        drawn = loaded.execute_script(f"return document.querySelectorAll('#{chart} .main-svg').length")
        assert drawn == 0, chart


def test_a_group_without_provenance_says_what_is_missing(tmp_path: Path, browser: webdriver.Chrome) -> None:
    """Issue 16: evaluations ranked apart only for lack of a protocol record are not called
    measured differently; the group control and its note say what is missing."""
    for name in ("org/a", "org/b"):
        write_results(tmp_path, name, jaster=profile(), mtbench=ratings(5))
    bare = write_results(tmp_path, "org/bare", jaster=profile(QA=0.9), mtbench=ratings(4))
    (bare / "run.json").unlink()
    out = tmp_path / "board.html"
    assert main(["leaderboard", str(tmp_path), "--html", str(out)]) == 0
    browser.get(out.as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
    group = Select(browser.find_element(By.ID, "group"))
    missing = "has no provenance (no protocol record: no run record)"
    assert [o.text for o in group.options] == ["A (main)", f"B — {missing}"]
    group.select_by_value("B")
    assert row_models(browser) == ["org/bare"]
    note = browser.find_element(By.ID, "group-note").text
    assert note == f"Group B {missing}; its ranks are its own."


def test_a_real_run_is_shown_question_by_question(tmp_path: Path, browser: webdriver.Chrome) -> None:
    """The page over a results folder the real pipeline wrote (a stub model echoing prompts, a
    scripted judge rating 6), so the drill-down reads the product's tables, not the fixture's."""
    from nejumi_eval.api.v1alpha1.spec import parse_spec
    from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
    from nejumi_eval.pipeline import run
    from tests.fixtures.openai_stub import StubServer
    from tests.fixtures.scripted_judge import ScriptedJudge

    questions = {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}
    with StubServer(model="stub-echo") as model, ScriptedJudge(questions, default="評価: [[6]]") as judge:
        spec = {
            "model": {
                "name": "stub-echo",
                "source": "openai-compatible",
                "endpoint": model.base_url,
                "mode": "completion",
            },
            "benchmarks": {
                "jaster": {"testSamples": 2, "devSamples": 1},
                "mtbench": {
                    "questionsPerCategory": 1,
                    "judge": {"model": "gpt-4-0613", "endpoint": judge.base_url, "apiKeyEnv": None},
                },
            },
            "workspace": {"path": str(tmp_path)},
            "wandb": {"enabled": False},
        }
        summary = run(parse_spec(spec), progress=False)
    assert summary.status == "completed"
    out = tmp_path / "real.html"
    assert (
        main(
            [
                "leaderboard",
                str(tmp_path),
                "--include-all",
                "--html",
                str(out),
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["warnings"] == []  # the per-question tables reproduce the recorded scores
    (entry,) = doc["entries"]
    assert entry["overall"] == pytest.approx(summary.overall)
    assert entry["benchmarks"]["jaster"]["questions"] == 2 * len(DATASETS)

    browser.get(out.as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.nejumiLeaderboard"))
    browser.find_element(By.CSS_SELECTOR, "#drilldown > summary").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#dd-list article.question"))
    Select(browser.find_element(By.ID, "dd-benchmark")).select_by_value("jaster")
    Select(browser.find_element(By.ID, "dd-stratum")).select_by_value("jcommonsenseqa")
    cards = browser.find_elements(By.CSS_SELECTOR, "#dd-list article.question")
    assert len(cards) == 2
    assert cards[0].find_element(By.CSS_SELECTOR, "pre.prompt").text.rstrip().endswith("### 応答:")
    assert cards[0].find_element(By.CSS_SELECTOR, ".answer pre.output").text.startswith("echo:")
    Select(browser.find_element(By.ID, "dd-benchmark")).select_by_value("mtbench")
    card = browser.find_element(By.CSS_SELECTOR, "#dd-list article.question")
    assert [r.text for r in card.find_elements(By.CSS_SELECTOR, ".rating")] == ["rating 6", "rating 6"]


# ---- a minimal PNG decoder (Pillow is not a dependency) ------------------------------------------


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's
    screenshots are)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + predictor) & 0xFF
        pixels.extend((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, bpp))
        previous = line
    return width, height, pixels


def test_png_decoder_reads_what_zlib_wrote() -> None:
    """The decoder itself, on a PNG built here with every filter type."""
    width, rows = 3, [(0, b"\x10\x20\x30" * 3), (1, b"\x01\x02\x03" * 3), (2, b"\x05" * 9), (4, b"\x00" * 9)]
    raw = b"".join(bytes([kind]) + line for kind, line in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    w, h, pixels = decode_png(png)
    assert (w, h) == (3, 4)
    assert pixels[:3] == [(0x10, 0x20, 0x30)] * 3
    assert pixels[3:6] == [(1, 2, 3), (2, 4, 6), (3, 6, 9)]  # sub: running sum
    assert pixels[6:9] == [(6, 7, 8), (7, 9, 11), (8, 11, 14)]  # up: + row above
    assert pixels[9:12] == pixels[6:9]  # paeth of zeros: the row above
