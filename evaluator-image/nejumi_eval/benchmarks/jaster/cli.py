"""`nejumi-eval jaster …`: prepare the data and score a predictions file by hand."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from nejumi_eval.errors import EXIT_OK, InputError
from nejumi_eval.report.text import print_json


def cmd_prepare(args: argparse.Namespace) -> int:
    from nejumi_eval.benchmarks.jaster.prepare import prepare

    report = prepare(args.datasets or None, progress=not args.quiet)
    for name, r in report.datasets.items():
        counts = " ".join(f"{s}={n}" for s, n in r.counts.items())
        missing = f"  unavailable: {', '.join(r.unavailable)}" if r.unavailable else ""
        print(f"{name:18} {counts}{missing}{'  (cached)' if r.cached else ''}")
    print(f"prepared {len(report.datasets)} datasets in {report.seconds:.2f}s; cache: {report.cache_dir}")
    return EXIT_OK


_KEYS = '{"dataset", "index", "output"}'


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _describe(value: object) -> str:
    """``a string "5"``, ``a number 5.7``, ``a boolean true``, ``null``: a value as the file has it."""
    if value is None:
        return "null"
    text = json.dumps(value, ensure_ascii=False)
    return f"{_json_type(value)} {text if len(text) <= 40 else text[:39] + '…'}"


def read_predictions(path: str) -> tuple[dict[str, dict[int, str]], dict[str, int]]:
    """Parse a predictions file strictly: ``({dataset: {index: output}}, {dataset: first line})``.

    Every line (blank lines aside) must be a JSON object with a known ``dataset``, an integer
    ``index`` in the dataset's scored range and a string ``output``; each (dataset, index) once.
    Anything else is an ``InputError`` naming ``file:line`` and what was expected.
    """
    from nejumi_eval.benchmarks.jaster.datasets import DATASETS
    from nejumi_eval.benchmarks.jaster.prepare import known_datasets_hint

    preds: dict[str, dict[int, str]] = defaultdict(dict)
    seen: dict[tuple[str, int], int] = {}
    first_line: dict[str, int] = {}
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the predictions file: {exc.strerror or exc}") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    for lineno, raw_line in enumerate(data.split(b"\n"), 1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not UTF-8 text ({exc.reason})") from None
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{where}: not valid JSON ({exc}); expected an object {_KEYS}") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected an object {_KEYS}, got {_json_type(row)}")
        absent = [key for key in ("dataset", "index", "output") if key not in row]
        if absent:
            raise InputError(f"{where}: expected {_KEYS}: missing {', '.join(map(repr, absent))}")
        dataset, index, output = row["dataset"], row["index"], row["output"]
        if not isinstance(dataset, str):
            raise InputError(f"{where}: dataset must be a string, got {_json_type(dataset)}")
        if dataset not in DATASETS:
            raise InputError(f"{where}: unknown dataset {dataset!r}{known_datasets_hint(dataset)}")
        n = DATASETS[dataset].task.neo_test_samples_scored
        if type(index) is not int:
            raise InputError(
                f"{where}: index must be a JSON integer 0..{n - 1} for {dataset}, got {_describe(index)}"
            )
        if not 0 <= index < n:
            raise InputError(
                f"{where}: index {index} is out of range for {dataset}: expected 0..{n - 1} "
                f"(the first {n} test samples are scored)"
            )
        if not isinstance(output, str):
            raise InputError(f"{where}: output must be a string, got {_json_type(output)}")
        if (dataset, index) in seen:
            raise InputError(
                f"{where}: duplicate prediction for {dataset} index {index} "
                f"(first on line {seen[dataset, index]}); expected each index once"
            )
        seen[dataset, index] = lineno
        first_line.setdefault(dataset, lineno)
        preds[dataset][index] = output
    if not preds:
        raise InputError(f"{path}: no predictions; expected JSON Lines of {_KEYS}")
    return dict(preds), first_line


def cmd_score(args: argparse.Namespace) -> int:
    """Score a predictions file: JSON Lines of {"dataset", "index", "output"} (see README)."""
    from nejumi_eval.benchmarks.jaster.datasets import DATASETS
    from nejumi_eval.benchmarks.jaster.prepare import load
    from nejumi_eval.benchmarks.jaster.scoring import rollup, score, select

    preds, first_line = read_predictions(args.predictions)
    scores: dict[str, float] = {}
    for dataset in DATASETS:  # registry order, whatever order the file has
        if dataset not in preds:
            continue
        by_index = preds[dataset]
        golds = [r["output"] for r in select(dataset, "test", load(dataset, "test"))]
        missing = [i for i in range(len(golds)) if i not in by_index]
        if missing:
            raise InputError(
                f"{args.predictions}:{first_line[dataset]}: {dataset}: predictions missing for test "
                f"indices {missing[:10]}{' …' if len(missing) > 10 else ''} "
                f"(the first {len(golds)} test samples are scored; expected indices 0..{len(golds) - 1})"
            )
        metric = DATASETS[dataset].metric
        raw = [by_index[i] for i in range(len(golds))]
        scores[f"{dataset}_{metric}"] = score(dataset, metric, golds, raw, max_num_samples=len(golds))
    missing_datasets = [name for name in DATASETS if name not in preds]
    doc = {
        "scores": scores,
        "categories": rollup(scores),
        "partial": bool(missing_datasets),
        "missing_datasets": missing_datasets,
    }
    if missing_datasets and not args.partial:
        print(
            f"nejumi-eval: warning: the roll-up is incomplete: {len(preds)} of {len(DATASETS)} datasets "
            f"scored (missing: {', '.join(missing_datasets)}), so AVG and the categories they belong to "
            "are null; pass --partial to score a subset on purpose",
            file=sys.stderr,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print_json(doc)
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
    sc.add_argument(
        "--partial",
        action="store_true",
        help="score only the datasets present (each must still be complete); the output is flagged "
        '"partial": true with "missing_datasets", AVG null',
    )
    sc.set_defaults(func=cmd_score)
