"""`nejumi-eval jaster …`: prepare the data and score a predictions file by hand."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from nejumi_eval.errors import EXIT_OK, InputError


def _print_json(doc: object) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))


def cmd_prepare(args: argparse.Namespace) -> int:
    from nejumi_eval.benchmarks.jaster.prepare import prepare

    report = prepare(args.datasets or None, progress=not args.quiet)
    for name, r in report.datasets.items():
        counts = " ".join(f"{s}={n}" for s, n in r.counts.items())
        missing = f"  unavailable: {', '.join(r.unavailable)}" if r.unavailable else ""
        print(f"{name:18} {counts}{missing}{'  (cached)' if r.cached else ''}")
    print(f"prepared {len(report.datasets)} datasets in {report.seconds:.2f}s; cache: {report.cache_dir}")
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    """Score a predictions file: JSON Lines of {"dataset", "index", "output"} (see README)."""
    from nejumi_eval.benchmarks.jaster.datasets import DATASETS
    from nejumi_eval.benchmarks.jaster.prepare import load
    from nejumi_eval.benchmarks.jaster.scoring import rollup, score, select

    preds: dict[str, dict[int, str]] = defaultdict(dict)
    with open(args.predictions, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                dataset, index, output = row["dataset"], int(row["index"]), row["output"]
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(
                    f'{args.predictions}:{lineno}: expected {{"dataset", "index", "output"}}: {exc}'
                ) from None
            if dataset not in DATASETS:
                raise InputError(f"{args.predictions}:{lineno}: unknown dataset {dataset!r}")
            if not isinstance(output, str):
                raise InputError(f"{args.predictions}:{lineno}: output must be a string")
            preds[dataset][index] = output
    scores: dict[str, float] = {}
    for dataset, by_index in preds.items():
        golds = [r["output"] for r in select(dataset, "test", load(dataset, "test"))]
        missing = [i for i in range(len(golds)) if i not in by_index]
        if missing:
            raise InputError(
                f"{dataset}: predictions missing for test indices {missing[:10]}"
                f"{' …' if len(missing) > 10 else ''} (the first {len(golds)} test samples are scored)"
            )
        metric = DATASETS[dataset].metric
        raw = [by_index[i] for i in range(len(golds))]
        scores[f"{dataset}_{metric}"] = score(dataset, metric, golds, raw, max_num_samples=len(golds))
    doc = {"scores": scores, "categories": rollup(scores)}
    if args.out:
        Path(args.out).write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    _print_json(doc)
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    jaster = sub.add_parser("jaster", help="jaster data and scoring").add_subparsers(
        dest="jaster", required=True
    )
    prep = jaster.add_parser("prepare", help="download/verify raw data and build every split")
    prep.add_argument("datasets", nargs="*", help="dataset names (default: all 16)")
    prep.set_defaults(func=cmd_prepare)
    sc = jaster.add_parser("score", help="score a predictions file (JSON Lines)")
    sc.add_argument("predictions")
    sc.add_argument("--out", help="also write the scores here (JSON)")
    sc.set_defaults(func=cmd_score)
