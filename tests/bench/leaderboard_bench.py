"""`make bench` figures for the HTML leaderboard: how big and how slow the page gets with many models.

Not a test: nothing here asserts on a timing. For N synthetic models (default 10 and 100), each
with full per-question tables (16 jaster datasets × 120 samples + 8 MT-bench categories × 10
questions × 2 turns = 2,080 rows, 2,000 drill-down questions; `tests/fixtures/leaderboard_results`
writes them in the layout `nejumi-eval run` writes), it measures:

- build: reading the results folders, placing the board with 1,000 bootstrap resamples and every
  paired comparison (`compare.build`), and rendering + writing the page (`html.write_html`);
- the page's size;
- interactive: headless Chromium (`/usr/bin/chromium` via selenium) from `driver.get(file://…)`
  until the document is complete, the page's JS has run (`window.nejumiLeaderboard`) and the
  ranking table has every ranked row; also the browser's own `domInteractive` and `loadEventEnd`;
- drill-down: from the click that opens it until its first question cards are rendered, then
  ticking one more model (answers decoded for it on demand) until its answers are shown.

    python -m tests.bench.leaderboard_bench                  # 10 and 100 models
    python -m tests.bench.leaderboard_bench --models 10,50 --resamples 200

Figures go to stdout as a table and to `.cache/bench/leaderboard.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".cache" / "bench" / "leaderboard.json"
SAMPLES = 120  # per jaster dataset
QUESTIONS = 10  # per MT-bench category


def _jaster(k: int):
    """Model k answers a share of each dataset right that depends on k and the dataset."""

    def score(dataset: str, i: int) -> float:
        share = 0.2 + 0.6 * ((k * 37 + zlib.crc32(dataset.encode())) % 100) / 100
        return float(((i * 7919 + k * 104729) % 1000) / 1000 < share)

    return score


def _mtbench(k: int):
    def rating(category: str, q: int, turn: int) -> int:
        return 1 + (k * 3 + q * 5 + turn + zlib.crc32(category.encode())) % 10

    return rating


def write_models(root: Path, n: int) -> list[Path]:
    from datetime import timedelta

    from tests.fixtures.leaderboard_results import T0, write_results

    return [
        write_results(
            root,
            f"org/model-{k:03d}",
            started=T0 + timedelta(minutes=k),
            jaster=_jaster(k),
            mtbench=_mtbench(k),
            samples=SAMPLES,
            questions=QUESTIONS,
            runtime=600 + 37 * k,
            verbose=True,
        )
        for k in range(n)
    ]


def build(root: Path, html_path: Path, resamples: int) -> dict[str, Any]:
    from nejumi_eval.leaderboard import compare, html, sources

    t0 = time.perf_counter()
    evaluations = sources.from_results_folders([root])
    for evaluation in evaluations:
        _ = evaluation.questions
    t1 = time.perf_counter()
    board = compare.build(evaluations, resamples=resamples)
    t2 = time.perf_counter()
    html.write_html(board, html_path)
    t3 = time.perf_counter()
    rows = sum(len(q.rows) for e in evaluations for q in e.questions.values())
    return {
        "models": len(evaluations),
        "ranked": len(board.leaderboard.ranked()),
        "question_rows": rows,
        "comparisons": len(board.leaderboard.comparisons),
        "read_s": round(t1 - t0, 2),
        "board_s": round(t2 - t1, 2),
        "render_s": round(t3 - t2, 2),
        "build_s": round(t3 - t0, 2),
        "html_bytes": html_path.stat().st_size,
    }


def browser() -> Any:
    from tests.support.browser import headless_chromium

    return headless_chromium("--enable-precise-memory-info", page_load_timeout=300, in_test=False)


def in_browser(driver: Any, html_path: Path, ranked: int, repeat: int) -> dict[str, Any]:
    """Best of `repeat` page loads (a fresh navigation each time), then the drill-down once."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> bool:
        return bool(
            d.execute_script(
                "return document.readyState === 'complete' && !!window.nejumiLeaderboard && "
                "document.querySelectorAll('#ranking tbody tr').length === arguments[0]",
                ranked,
            )
        )

    loads = []
    for _ in range(repeat):
        driver.get("about:blank")
        t0 = time.perf_counter()
        driver.get(html_path.as_uri())
        WebDriverWait(driver, 300, poll_frequency=0.01).until(ready)
        wall = time.perf_counter() - t0
        nav = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return {dom: n.domInteractive, load: n.loadEventEnd};"
        )
        loads.append((wall, nav["dom"] / 1000, nav["load"] / 1000))
    wall, dom, load = min(loads)
    heap = driver.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : null")

    t0 = time.perf_counter()
    driver.find_element(By.CSS_SELECTOR, "#drilldown > summary").click()
    WebDriverWait(driver, 300, poll_frequency=0.01).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#dd-list article.question .answer")
    )
    drill = time.perf_counter() - t0
    # one more model ticked: its answers appear in the open drill-down
    extra = driver.execute_script(
        "const lb = window.nejumiLeaderboard;"
        "return lb.board.entries"
        ".filter(e => e.state === 'ranked' && !lb.state.selected.includes(e.id)).pop().id;"
    )
    t0 = time.perf_counter()
    driver.execute_script("window.nejumiLeaderboard.select(arguments[0], true)", extra)
    WebDriverWait(driver, 300, poll_frequency=0.01).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#dd-list .answer[data-entry="{extra}"]')
    )
    tick = time.perf_counter() - t0
    heap_after = driver.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : null")
    return {
        "interactive_s": round(wall, 3),
        "dom_interactive_s": round(dom, 3),
        "load_event_s": round(load, 3),
        "drilldown_s": round(drill, 3),
        "tick_in_drilldown_s": round(tick, 3),
        "js_heap_mb": round(heap / 2**20, 1) if heap else None,
        "js_heap_after_drilldown_mb": round(heap_after / 2**20, 1) if heap_after else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="10,100", help="comma-separated model counts (default 10,100)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="page loads per size (best is kept)")
    parser.add_argument("--keep", metavar="DIR", help="keep the results folders and pages in DIR")
    args = parser.parse_args(argv)
    os.environ.setdefault("NEJUMI_DATA_MIRROR", str(REPO.parent / "shared" / "datasets" / "raw"))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lb-bench-"))
    results = []
    driver = browser()
    try:
        for n in (int(x) for x in args.models.split(",")):
            root = work / f"models-{n}"
            if not root.exists():
                write_models(root, n)
            figures = build(root, work / f"board-{n}.html", args.resamples)
            figures.update(in_browser(driver, work / f"board-{n}.html", figures["ranked"], args.repeat))
            results.append(figures)
            print(json.dumps(figures), flush=True)
    finally:
        driver.quit()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    header = ("models", "html MB", "build s", "interactive s", "drill-down s", "tick s")
    print("  ".join(f"{h:>13}" for h in header))
    for r in results:
        cells = (
            r["models"],
            f"{r['html_bytes'] / 2**20:.1f}",
            r["build_s"],
            r["interactive_s"],
            r["drilldown_s"],
            r["tick_in_drilldown_s"],
        )
        print("  ".join(f"{c:>13}" for c in cells))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "resamples": args.resamples,
        "results": results,
    }
    OUT.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
