"""`make bench` figures for the results store: what storing results costs an evaluation, and what
building the leaderboard from the store costs beside building it from local folders.

Not a test: nothing here asserts on a timing. Against a real S3 server on loopback (versitygw,
`make versitygw-bin`), with full per-question results (16 jaster datasets × 120 samples + 8 MT-bench
categories × 10 questions × 2 turns = 2,080 rows per evaluation, `tests/fixtures/leaderboard_results`
writes them in the layout `nejumi-eval run` writes), it measures, in one run:

- upload: one evaluation's results folder stored (objects + manifest), its bytes and seconds, as a
  share of the evaluation's recorded wall time; and the same upload again (idempotent: nothing
  written);
- the board for N models (default 100): from the store (list, manifests, verified objects) and
  from the same results as local folders, each to the first byte of the HTML page (read, place
  with 1,000 bootstrap resamples and every paired comparison, render) and to the page written.

    python -m tests.bench.store_bench               # 100 models
    python -m tests.bench.store_bench --models 20 --resamples 200

Figures go to stdout and to `.cache/bench/store.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.leaderboard_bench import write_models

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".cache" / "bench" / "store.json"
BUCKET = "results"


def _board(read: Callable[[], list[Any]], html_path: Path, resamples: int) -> dict[str, float]:
    from nejumi_eval.leaderboard import compare, html

    t0 = time.perf_counter()
    evaluations = read()
    for evaluation in evaluations:
        _ = evaluation.questions
    t1 = time.perf_counter()
    board = compare.build(evaluations, resamples=resamples)
    page = html.render(board)
    t2 = time.perf_counter()
    html_path.write_text(page, encoding="utf-8")
    t3 = time.perf_counter()
    return {
        "models": len(evaluations),
        "read_s": round(t1 - t0, 2),
        "first_byte_s": round(t2 - t0, 2),
        "total_s": round(t3 - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)

    from nejumi_eval.api.v1alpha1.results import Location
    from nejumi_eval.api.v1alpha1.summary import Summary
    from nejumi_eval.leaderboard import sources
    from nejumi_eval.leaderboard.store_source import from_store
    from nejumi_eval.storage.store import ObjectStore
    from nejumi_eval.storage.upload import upload
    from tests.support.s3 import running_s3

    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        work = Path(tmp)
        folders = write_models(work / "local", args.models)
        with running_s3(work / "s3") as s3:
            s3.make_bucket(BUCKET)
            os.environ.update(s3.env())
            store = ObjectStore()

            first = folders[0]
            wall = Summary.model_validate_json((first / "summary.json").read_text()).runtime_seconds["total"]
            t0 = time.perf_counter()
            stored = upload(
                store, first, Location(BUCKET, "one/model-000"), model="org/model-000", status="completed"
            )
            upload_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = upload(
                store, first, Location(BUCKET, "one/model-000"), model="org/model-000", status="completed"
            )
            again_s = time.perf_counter() - t0
            assert stored.stored and again.stored and again.uploaded == 0

            t0 = time.perf_counter()
            for k, folder in enumerate(folders):
                upload(
                    store,
                    folder,
                    Location(BUCKET, f"board/model-{k:03d}"),
                    model=f"org/model-{k:03d}",
                    status="completed",
                )
            upload_all_s = time.perf_counter() - t0

            from_local = _board(
                lambda: sources.from_results_folders([work / "local"]), work / "local.html", args.resamples
            )
            from_s3 = _board(lambda: from_store(f"s3://{BUCKET}/board"), work / "store.html", args.resamples)

    figures = {
        "upload": {
            "objects": stored.objects,
            "bytes": stored.bytes,
            "seconds": round(upload_s, 3),
            "share_of_evaluation": round(upload_s / wall, 5),
            "evaluation_wall_s": wall,
            "again_seconds": round(again_s, 3),
            "again_written": again.uploaded,
            f"all_{args.models}_seconds": round(upload_all_s, 2),
        },
        "board_from_folders": from_local,
        "board_from_store": from_s3,
        "store_vs_folders_first_byte": round(
            from_s3["first_byte_s"] / max(from_local["first_byte_s"], 1e-9), 2
        ),
        "store_vs_folders_total": round(from_s3["total_s"] / max(from_local["total_s"], 1e-9), 2),
    }
    print(json.dumps(figures, indent=2))
    u = figures["upload"]
    print(
        f"upload: {u['objects']} objects, {u['bytes'] / 2**20:.1f} MiB in {u['seconds']:.2f} s = "
        f"{100 * u['share_of_evaluation']:.3f}% of the evaluation's {wall:.0f} s; "
        f"again: {u['again_seconds']:.2f} s, {u['again_written']} written"
    )
    print(
        f"board of {args.models}: from the store {from_s3['first_byte_s']} s to the first byte, "
        f"{from_s3['total_s']} s in all; "
        f"from folders {from_local['first_byte_s']} s / {from_local['total_s']} s "
        f"(store/folders: {figures['store_vs_folders_first_byte']}× / {figures['store_vs_folders_total']}×)"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "resamples": args.resamples,
        "results": figures,
    }
    OUT.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
