"""`nejumi-eval`: run an evaluation, or work with jaster data and predictions by hand.

Exit codes tell the caller (a person, CI, the operator reading a Job) what kind of failure it was:
0 completed, 2 bad configuration or input, 3 infrastructure (data, model server, endpoint),
1 anything unexpected (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path

from nejumi_eval.errors import EXIT_BUG, EXIT_INFRA, EXIT_OK, InputError, classify


def _print_json(doc: object) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))


# ---- jaster ---------------------------------------------------------------------------------


def cmd_jaster_prepare(args: argparse.Namespace) -> int:
    from nejumi_eval.jaster.prepare import prepare

    report = prepare(args.datasets or None, progress=not args.quiet)
    for name, r in report.datasets.items():
        counts = " ".join(f"{s}={n}" for s, n in r.counts.items())
        missing = f"  unavailable: {', '.join(r.unavailable)}" if r.unavailable else ""
        print(f"{name:18} {counts}{missing}{'  (cached)' if r.cached else ''}")
    print(f"prepared {len(report.datasets)} datasets in {report.seconds:.2f}s; cache: {report.cache_dir}")
    return EXIT_OK


def cmd_jaster_score(args: argparse.Namespace) -> int:
    """Score a predictions file: JSON Lines of {"dataset", "index", "output"} (see README)."""
    from nejumi_eval.jaster.datasets import DATASETS
    from nejumi_eval.jaster.prepare import load
    from nejumi_eval.jaster.scoring import rollup, score, select

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


# ---- run ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from nejumi_eval.config import load_spec
    from nejumi_eval.pipeline import embedded_default_spec, run

    if args.spec_env:
        if args.config:
            raise InputError("give either a config file or --spec-env, not both")
        spec = _spec_from_env(args.spec_env)
    else:
        spec = load_spec(args.config) if args.config else embedded_default_spec(model=args.model)
    if args.model and (args.config or args.spec_env):
        spec.model.name = args.model
    if args.workspace:
        spec.workspace.path = args.workspace
    if args.judge_endpoint or args.judge_model:
        from nejumi_eval.config import JudgeSpec

        judge = spec.benchmarks.mtbench.judge or JudgeSpec()
        spec.benchmarks.mtbench.judge = judge.model_copy(
            update={
                "endpoint": args.judge_endpoint or judge.endpoint,
                "model": args.judge_model or judge.model,
                "api_key_env": args.judge_api_key_env or judge.api_key_env,
            }
        )
    if args.summary:
        spec.summary_path = args.summary
    summary = run(spec, progress=not args.quiet)
    print(summary.to_json() if args.json else _human_summary(summary))
    return EXIT_OK if summary.status == "completed" else EXIT_INFRA


def _spec_from_env(name: str):
    """The spec as JSON (or YAML) in environment variable `name` (how the operator passes it)."""
    import yaml

    from nejumi_eval.config import ConfigError, parse_spec

    text = os.environ.get(name)
    if not text:
        raise ConfigError(f"${name}: environment variable is not set or empty")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"${name}: not valid JSON/YAML: {exc}") from None
    return parse_spec(data, source=f"${name}")


def _human_summary(summary) -> str:
    lines = [f"model: {summary.model}"]
    if summary.jaster:
        j = summary.jaster
        avg = "null (incomplete)" if j.avg is None else f"{j.avg:.4f}"
        lines.append(f"jaster AVG: {avg}" + ("  [degraded]" if j.degraded else ""))
        lines.append(
            "  " + "  ".join(f"{k}={'-' if v is None else f'{v:.4f}'}" for k, v in j.categories.items())
        )
        if j.capped:
            lines.append("  (sample cap in effect: a smoke test, not a leaderboard score)")
    if summary.mtbench:
        m = summary.mtbench
        if not m.judged:
            lines.append("MT-bench: not judged (no judge configured); answers saved")
        else:
            avg = "null" if m.avg is None else f"{m.avg:.4f}"
            lines.append(f"MT-bench: {avg}  (invalid judgments: {m.invalid})")
    if summary.overall is not None:
        lines.append(f"Overall: {summary.overall:.4f}" + ("  [degraded]" if summary.degraded else ""))
    lines.append(f"results: {summary.results_dir}")
    if summary.wandb_run_path:
        lines.append(f"W&B run: {summary.wandb_run_path}")
    if summary.error:
        lines.append(f"error: {summary.error}")
    return "\n".join(lines)


def cmd_schema(_args: argparse.Namespace) -> int:
    from nejumi_eval.config import EvaluationSpec

    _print_json(EvaluationSpec.model_json_schema(by_alias=True))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nejumi-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an evaluation (no config: the embedded default, a tiny model)")
    run.add_argument("config", nargs="?", help="evaluation YAML (or a NejumiEvaluation manifest)")
    run.add_argument(
        "--spec-env", metavar="VAR", help="read the spec (JSON) from this env var, not a file (operator)"
    )
    run.add_argument("--model", help="model id or path (overrides the config's model.name)")
    run.add_argument("--workspace", help="workspace folder (cache + results)")
    run.add_argument("--summary", help="write the compact JSON summary here")
    run.add_argument("--judge-endpoint", help="MT-bench judge: OpenAI-compatible base URL (…/v1)")
    run.add_argument("--judge-model", help="MT-bench judge model (default gpt-4-0613)")
    run.add_argument(
        "--judge-api-key-env",
        help="env var holding the judge's API key (default: $NEJUMI_JUDGE_API_KEY, then $OPENAI_API_KEY "
        "for the OpenAI API)",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=cmd_run)

    jaster = sub.add_parser("jaster", help="jaster data and scoring").add_subparsers(
        dest="jaster", required=True
    )
    prep = jaster.add_parser("prepare", help="download/verify raw data and build every split")
    prep.add_argument("datasets", nargs="*", help="dataset names (default: all 16)")
    prep.set_defaults(func=cmd_jaster_prepare)
    sc = jaster.add_parser("score", help="score a predictions file (JSON Lines)")
    sc.add_argument("predictions")
    sc.add_argument("--out", help="also write the scores here (JSON)")
    sc.set_defaults(func=cmd_jaster_score)

    schema = sub.add_parser("schema", help="print the evaluation spec's JSON schema")
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the cache", file=sys.stderr)
        return 130
    except Exception as exc:  # classified below; bugs re-raise with their traceback
        code = classify(exc)
        if code == EXIT_BUG:
            raise
        print(f"nejumi-eval: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
