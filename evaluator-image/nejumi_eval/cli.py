"""`nejumi-eval`: run an evaluation, or work with a benchmark's data and predictions by hand.

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

from nejumi_eval.api.v1alpha1.contract import EXIT_INTERRUPTED, JOIN_GROUP_FLAG
from nejumi_eval.api.v1alpha1.stages import STAGE_FLAG, Stage
from nejumi_eval.errors import EXIT_BUG, EXIT_INFRA, EXIT_OK, InputError, classify, unwrap
from nejumi_eval.report.text import print_json

# ---- run ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from nejumi_eval.api.v1alpha1.spec import load_spec
    from nejumi_eval.api.v1alpha1.summary import Summary
    from nejumi_eval.demo import embedded_default_spec
    from nejumi_eval.group_leader import lead_group, leading
    from nejumi_eval.pipeline import join_group, run
    from nejumi_eval.report.progress import ProgressPublisher

    if args.join_group and args.stage != Stage.SERVE.value:
        serve = f"{STAGE_FLAG} {Stage.SERVE.value}"
        raise InputError(f"{JOIN_GROUP_FLAG} joins a serving group: only with {serve}")
    if args.spec_env:
        if args.config:
            raise InputError("give either a config file or --spec-env, not both")
        spec = _spec_from_env(args.spec_env)
    else:
        spec = load_spec(args.config) if args.config else embedded_default_spec(model=args.model)
    model_given = bool(args.model and (args.config or args.spec_env))
    if model_given:
        # Validated with the other command-line values (`_apply_command_line`), as if written in the
        # config: `--model=--trust-remote-code` is refused by model.name's rules, not deep in the run.
        spec.model.name = args.model
    if args.workspace:
        spec.workspace.path = args.workspace
    real_judge = args.judge_endpoint or args.judge_model or args.judge_api_key_env
    if real_judge and args.synthetic_judge:
        raise InputError("--synthetic-judge rates by a fixed rule: give it alone, not with --judge-*")
    if real_judge or args.synthetic_judge:
        _set_judges(spec, args)
    if args.summary:
        spec.summary_path = args.summary
    if args.results_uri:  # the endpoint, region and keys: the standard AWS variables
        spec.results.uri = args.results_uri
    spec = _apply_command_line(spec, args, changed=model_given or bool(args.results_uri))
    if args.join_group:
        join_group(spec)  # never returns: this process becomes the worker's server
    stage = Stage(args.stage)

    def attempt() -> Summary:
        summary = run(spec, progress=not args.quiet, stage=stage)
        print(summary.to_json() if args.json else _human_summary(summary))
        return summary

    if (group := leading(stage, os.environ)) is not None:  # it must not just end: `group_leader`
        return lead_group(spec, group, attempt, ProgressPublisher.from_env())
    summary = attempt()
    return EXIT_OK if summary.status == "completed" else EXIT_INFRA


def _apply_command_line(spec, args: argparse.Namespace, changed: bool = False):
    """`--limit` and each benchmark's own run options, then — when they or an earlier flag
    (`changed`) set something — the whole spec validated again (a command-line value gets the same
    checks and messages as the same field in a config)."""
    from nejumi_eval.api.v1alpha1.spec import parse_spec
    from nejumi_eval.benchmarks import registry
    from nejumi_eval.benchmarks.base import HasRunOptions

    touched = changed or args.limit is not None
    for name, section in spec.benchmarks.sections().items():
        if args.limit is not None:
            section.limit(args.limit)
        bench = registry.get(name)
        if isinstance(bench, HasRunOptions):
            touched |= bool(bench.apply_run_options(section, args))
    if not touched:
        return spec
    _mark_written(spec)
    return parse_spec(spec.model_dump(mode="json", by_alias=True, exclude_unset=True), source="command line")


def _mark_written(model) -> bool:
    """Mark every section holding a value set on the command line as written, up to the spec (a
    flag that sets `workspace.path` in a config without `workspace` must survive the re-parse of
    the spec as written). True when `model` holds such a value."""
    from pydantic import BaseModel

    written = bool(model.model_fields_set)
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, dict):
            value = list(value.values())
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, BaseModel) and _mark_written(child):
                model.model_fields_set.add(name)
                written = True
    return written


def _set_judges(spec, args: argparse.Namespace) -> None:
    """The --judge-* flags (or --synthetic-judge) configure the judge of every benchmark that has one."""
    from nejumi_eval.api.v1alpha1.spec import JudgeSpec

    for section in spec.benchmarks.sections().values():
        if "judge" not in type(section).model_fields:
            continue
        if args.synthetic_judge:
            section.judge = JudgeSpec(synthetic=True)
            continue
        old = section.judge if section.judge and not section.judge.synthetic else JudgeSpec()
        section.judge = JudgeSpec(
            model=args.judge_model or old.model,
            endpoint=args.judge_endpoint or old.endpoint,
            api_key_env=args.judge_api_key_env or old.api_key_env,
            api_key_secret_ref=old.api_key_secret_ref,
            concurrency=old.concurrency,
        )


def _spec_from_env(name: str):
    """The spec as JSON (or YAML) in environment variable `name` (how the operator passes it)."""
    import yaml

    from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec

    text = os.environ.get(name)
    if not text:
        raise ConfigError(f"${name}: environment variable is not set or empty")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"${name}: not valid JSON/YAML: {exc}") from None
    return parse_spec(data, source=f"${name}")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cost_line(cost) -> str:
    """`cost: GPU-s held 240 (0.17 USD) · busy 95.2 · model tokens 1,200 + 300 · judge tokens 9,000 +
    800 = 0.3180 USD`: prompt + completion; a figure that is unknown (held GPU-seconds outside the
    cluster, a judge without a price) is left out or named, never shown as 0."""
    parts = []
    if cost.gpu_seconds_held is not None:
        held = f"GPU-s held {cost.gpu_seconds_held:,.0f}"
        if cost.gpu_cost is not None and cost.currency:
            held += f" ({cost.gpu_cost:.2f} {cost.currency})"
        parts.append(held)
    if cost.gpu_seconds_busy is not None:
        parts.append(f"GPU-s busy {cost.gpu_seconds_busy:,.1f}")
    parts.append(f"model tokens {cost.model_prompt_tokens:,} + {cost.model_completion_tokens:,}")
    judge = f"judge tokens {cost.judge_prompt_tokens:,} + {cost.judge_completion_tokens:,}"
    if cost.judge_cost is not None:
        judge += f" = {cost.judge_cost:.4f} {cost.currency or ''}".rstrip()
    elif cost.unpriced:
        judge += f" (no price for {', '.join(cost.unpriced)} in $NEJUMI_PRICING)"
    return "cost: " + " · ".join([*parts, judge])


def _human_summary(summary) -> str:
    from nejumi_eval.api.v1alpha1.formula import OVERALL
    from nejumi_eval.benchmarks import registry

    if summary.stage:  # a stage before the last: no scores yet
        took = summary.runtime_seconds.get("total")
        return f"model: {summary.model}\nstage {summary.stage}: {summary.status}" + (
            f" in {took:.1f} s" if took is not None else ""
        )
    lines = [f"model: {summary.model}"]
    for name, b in summary.benchmarks.items():
        title = registry.get(name).title
        if not b.scored:
            failed = name in (summary.error or "")
            why = "it did not finish (see the error below)" if failed else "no judge configured"
            lines.append(f"{title}: not scored ({why}); outputs saved")
            continue
        flags = "  [degraded]" if b.degraded else ""
        counts = f"  (failed requests: {b.failures}, invalid: {b.invalid})" if b.failures or b.invalid else ""
        avg = "null (incomplete)" if b.avg is None else f"{b.avg:.4f}"
        if b.synthetic_judge:
            flags += "  [synthetic judge]"
        if b.capped:
            flags += "  [capped]"
        lines.append(f"{title}: {avg}{flags}{counts}")
        if b.categories:
            lines.append("  " + "  ".join(f"{k}={_score(v)}" for k, v in b.categories.items()))
        if b.capped:
            lines.append("  (capped: fewer samples or tokens than the protocol; a smoke test, not a score)")
        if b.synthetic_judge:
            lines.append("  (synthetic judge: ratings by a fixed rule, not a real judge's; not a score)")
    if summary.overall is not None:
        marks = [
            m
            for m, on in (
                ("degraded", summary.degraded),
                ("capped", summary.capped),
                ("synthetic judge", summary.synthetic_judge),
            )
            if on
        ]
        note = f"  [{', '.join(marks)}]" if marks else ""
        smoke = (
            "  (a smoke test, not a leaderboard score)" if summary.capped or summary.synthetic_judge else ""
        )
        lines.append(f"{OVERALL.name}: {summary.overall:.4f}{note}{smoke}")
    for name, b in summary.benchmarks.items():
        if b.scores:  # per dataset, also for subset runs whose average is null
            lines.append(_scores_table(registry.get(name).title, b.scores))
    if summary.cost is not None:
        lines.append(_cost_line(summary.cost))
    lines.append(f"results: {summary.results_dir}")
    if summary.results is not None:
        stored = summary.results
        if stored.stored:
            lines.append(f"stored: {stored.uri} (manifest {stored.manifest_sha256})")
        else:
            lines.append(f"NOT stored in {stored.uri}: {stored.error}")
            lines.append("  rerun the same command on the same workspace to store them (answers are cached)")
    if summary.wandb_run_path:
        lines.append(f"W&B run: {summary.wandb_run_path}")
        if os.path.isdir(summary.wandb_run_path):  # offline: a run folder to upload later
            lines.append(f"  upload it with: wandb sync {summary.wandb_run_path}")
    if summary.error:
        lines.append(f"error: {summary.error}")
    return "\n".join(lines)


def _scores_table(title: str, scores: dict[str, float]) -> str:
    """A per-dataset table (rich, plain text when not on a terminal)."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: per dataset", title_justify="left", show_edge=False)
    table.add_column("dataset_metric")
    table.add_column("score", justify="right")
    for key, value in scores.items():
        table.add_row(key, f"{value:.4f}")
    buffer = io.StringIO()
    Console(file=buffer, width=80, force_terminal=False, color_system=None).print(table)
    return buffer.getvalue().rstrip()


def cmd_list(args: argparse.Namespace) -> int:
    """What can be run: benchmarks with their datasets, metrics, categories, templates, variants."""
    from nejumi_eval.benchmarks import registry
    from nejumi_eval.benchmarks.base import Describes

    docs = {}
    for name in registry.names():
        bench = registry.get(name)
        docs[name] = bench.describe() if isinstance(bench, Describes) else {"benchmark": name}
    if args.json:
        print_json(docs)
        return EXIT_OK
    for name, doc in docs.items():
        bench = registry.get(name)
        print(f"== {name} ({bench.title})")
        print(
            bench.format_description(doc)
            if isinstance(bench, Describes)
            else json.dumps(doc, ensure_ascii=False, indent=2)
        )
        print()
    return EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    from nejumi_eval.api.v1alpha1.spec import EvaluationSpec

    print_json(EvaluationSpec.model_json_schema(by_alias=True))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from nejumi_eval import __version__

    parser = argparse.ArgumentParser(prog="nejumi-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or step lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"nejumi-eval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an evaluation (no config: the embedded default, a tiny model)")
    run.add_argument("config", nargs="?", help="evaluation YAML (or a NejumiEvaluation manifest)")
    run.add_argument(
        "--spec-env", metavar="VAR", help="read the spec (JSON) from this env var, not a file (operator)"
    )
    run.add_argument("--model", help="model id or path (overrides the config's model.name)")
    run.add_argument("--workspace", help="workspace folder (cache + results)")
    run.add_argument("--summary", help="write the compact JSON summary here")
    run.add_argument(
        "--results-uri",
        metavar="s3://BUCKET[/PREFIX]",
        help="also store the results in this S3-compatible store, under <model>/<time>/ (endpoint, "
        "region and keys: $AWS_ENDPOINT_URL, $AWS_REGION, $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, "
        "$AWS_CA_BUNDLE)",
    )
    run.add_argument("--judge-endpoint", help="MT-bench judge: OpenAI-compatible base URL (…/v1)")
    run.add_argument("--judge-model", "--judge", help="the judge's model (default gpt-4-0613)")
    run.add_argument(
        "--judge-api-key-env",
        help="env var holding the judge's API key (default: $NEJUMI_JUDGE_API_KEY, then $OPENAI_API_KEY "
        "for the OpenAI API)",
    )
    run.add_argument(
        "--synthetic-judge",
        action="store_true",
        help="rate MT-bench with the built-in synthetic judge (a fixed rule; a smoke test, marked as such)",
    )
    run.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="smoke test: at most N samples (questions per category) per dataset; results are marked capped",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument(
        STAGE_FLAG,
        choices=[s.value for s in Stage],
        default=Stage.RUN.value,
        help="run one stage on a shared workspace (the operator's pods): fetch (data, weights, checks), "
        "serve (serve and generate only), judge (answers from the cache; judge, score, report); "
        "default run: everything",
    )
    run.add_argument(
        JOIN_GROUP_FLAG,
        action="store_true",
        help="a worker pod of a model served across nodes (with --stage serve, in a LeaderWorkerSet group): "
        "run vllm serve --headless, joining the group's leader, and evaluate nothing",
    )
    run.set_defaults(func=cmd_run)

    from nejumi_eval.benchmarks import registry
    from nejumi_eval.benchmarks.base import HasCommands, HasRunOptions

    for name in registry.names():  # each benchmark's own `run` options (e.g. jaster's --datasets)
        bench = registry.get(name)
        if isinstance(bench, HasRunOptions):
            bench.add_run_options(run)

    for name in registry.names():  # each benchmark's own subcommands (e.g. `jaster prepare`)
        bench = registry.get(name)
        if isinstance(bench, HasCommands):
            bench.add_commands(sub)

    listing = sub.add_parser(
        "list", help="benchmarks, datasets (metric, category, samples), templates, variants"
    )
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(func=cmd_list)

    schema = sub.add_parser("schema", help="print the evaluation spec's JSON schema")
    schema.set_defaults(func=cmd_schema)

    from nejumi_eval.leaderboard.command import add_command as add_leaderboard

    add_leaderboard(sub)
    return parser


GLOBAL_FLAGS = ("-q", "--quiet", "-v", "--verbose")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Global flags are accepted after the subcommand too (`nejumi-eval run -q`), as users type them.
    argv = [a for a in argv if a in GLOBAL_FLAGS] + [a for a in argv if a not in GLOBAL_FLAGS]
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the cache", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `nejumi-eval list | head`: the reader has what it wanted
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # classified below; bugs re-raise with their traceback
        code = classify(exc)
        if code == EXIT_BUG:
            raise
        print(f"nejumi-eval: {unwrap(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
