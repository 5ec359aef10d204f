"""`nejumi-eval leaderboard`: rank evaluations with bootstrap intervals, from results folders,
NejumiEvaluation resources and W&B runs; and build the W&B report of a project."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nejumi_eval.errors import EXIT_OK, InputError

DEFAULT_PATHS = ("workspace",)


def add_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "leaderboard",
        help="rank models from results folders, the results store, the cluster or W&B: table, CSV/JSON, "
        "HTML, W&B report",
        description="Rank the evaluations found under PATHS (results folders, <workspace>/results, "
        "workspaces, or s3://bucket/prefix in the results store), on the cluster (--cluster) and in "
        "W&B (--wandb-project, --wandb-dir); with no source given, ./workspace. The latest "
        "evaluation of each model is ranked; capped, "
        "synthetic-judge and degraded runs are listed but not ranked unless --include-all; "
        "unfinished and failed ones are listed, never ranked; evaluations measured under different "
        "protocols are ranked in separate groups.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="results folders, workspaces, or s3://bucket/prefix of the results store (credentials, "
        f"endpoint, region: the standard AWS variables; default: {' '.join(DEFAULT_PATHS)})",
    )
    cluster = parser.add_argument_group("NejumiEvaluation resources")
    cluster.add_argument("--cluster", action="store_true", help="read NejumiEvaluations through the API")
    cluster.add_argument("--namespace", "-n", metavar="NS", help="their namespace (default: the context's)")
    cluster.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    cluster.add_argument(
        "--selector",
        "-l",
        metavar="SELECTOR",
        help="only evaluations with these labels (kubectl's syntax: board=neo,size in (7b,8b)), as a "
        "NejumiLeaderboard's spec.selector selects them",
    )
    cluster.add_argument(
        "--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config, in-cluster"
    )
    cluster.add_argument(
        "--workspace-root",
        metavar="DIR",
        help="local copies of the workspaces, DIR/<namespace>/<name>/, for evaluations whose results "
        "were not stored (each status's results URI is followed first; without either: status scores only)",
    )
    wandb = parser.add_argument_group("W&B runs")
    wandb.add_argument(
        "--wandb-project", action="append", default=[], metavar="ENTITY/PROJECT", help="online (wandb.Api())"
    )
    wandb.add_argument(
        "--wandb-dir", action="append", default=[], metavar="DIR", help="offline run folders at or under DIR"
    )
    report = parser.add_argument_group("W&B report")
    report.add_argument(
        "--wandb-report",
        metavar="ENTITY/PROJECT",
        help="build the Nejumi report over the project's runs and print its outline",
    )
    report.add_argument(
        "--publish", action="store_true", help="save the report to W&B (network, credentials)"
    )
    report.add_argument(
        "--radar-preset", metavar="ID", help="Vega preset of the radar charts (default: nejumi/radar)"
    )
    diff = parser.add_argument_group("two evaluations question by question")
    diff.add_argument(
        "--diff",
        nargs=2,
        metavar=("A", "B"),
        help="instead of the ranking: which questions B scored higher (improved) or lower (regressed) "
        "than A, per dataset / category. A, B: an evaluation id, MODEL (when it has one evaluation) or "
        "MODEL@REF (REF: latest, previous, a start time like 2026-11-01T09:00, a revision prefix); "
        "--json FILE then writes the diff",
    )
    diff.add_argument(
        "--flipped",
        type=int,
        default=None,
        metavar="N",
        help="flipped questions listed per dataset with --diff (default 10; 0: none; --json has all)",
    )
    parser.add_argument("--csv", metavar="FILE", help="write one row per evaluation as CSV")
    parser.add_argument(
        "--json", metavar="FILE", help="write the whole board (with --diff: the diff) as JSON"
    )
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML page (works offline)")
    parser.add_argument(
        "--include-all",
        action="store_true",
        help="rank capped, synthetic-judge and degraded runs too (still marked)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed, 0 or more (default 0)")
    parser.add_argument(
        "--resamples", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000; 0: none)"
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        metavar="C",
        help="of every interval (scores, differences, ranks), above 0.5 and below 1 (default 0.95)",
    )
    parser.add_argument("--title", default=None, help="the HTML page's (and W&B report's) title")
    parser.set_defaults(func=cmd_leaderboard)


def _check(args: argparse.Namespace) -> None:
    if args.resamples < 0:
        raise InputError(f"--resamples must be 0 or more, got {args.resamples}")
    if args.seed < 0:
        raise InputError(f"--seed must be 0 or more, got {args.seed}")
    if not 0.5 < args.confidence < 1:  # as a NejumiLeaderboard's spec.confidence
        raise InputError(f"--confidence must be above 0.5 and below 1, got {args.confidence}")
    cluster_only = [
        flag
        for flag, value in (
            ("--namespace", args.namespace),
            ("--all-namespaces", args.all_namespaces),
            ("--selector", args.selector),
            ("--kubeconfig", args.kubeconfig),
            ("--workspace-root", args.workspace_root),
        )
        if value
    ]
    if cluster_only and not args.cluster:
        raise InputError(f"{', '.join(cluster_only)} only go with --cluster")
    if args.namespace and args.all_namespaces:
        raise InputError("give --namespace or --all-namespaces, not both")
    if (args.publish or args.radar_preset) and not args.wandb_report:
        raise InputError("--publish and --radar-preset only go with --wandb-report")
    if args.flipped is not None and not args.diff:
        raise InputError("--flipped only goes with --diff")
    if args.flipped is not None and args.flipped < 0:
        raise InputError(f"--flipped must be 0 or more, got {args.flipped}")
    if args.diff:
        board_only = [
            flag
            for flag, value in (
                ("--csv", args.csv),
                ("--html", args.html),
                ("--wandb-report", args.wandb_report),
            )
            if value
        ]
        if board_only:
            raise InputError(
                f"--diff prints the difference of two evaluations; {', '.join(board_only)} write the board: "
                "run them without --diff"
            )


def _evaluations(args: argparse.Namespace) -> list[Any]:
    from nejumi_eval.leaderboard import sources
    from nejumi_eval.leaderboard.store_source import from_store, is_store_uri

    collected: list[list[Any]] = []
    stores = [p for p in args.paths if is_store_uri(p)]
    folders = [p for p in args.paths if not is_store_uri(p)]
    others = args.cluster or args.wandb_project or args.wandb_dir or stores
    if folders or not others:
        collected.append(sources.from_results_folders(folders or list(DEFAULT_PATHS)))
    stored = [from_store(uri) for uri in stores]
    if args.cluster:
        from nejumi_eval.leaderboard import cluster

        found = cluster.from_cluster(
            namespace=args.namespace,
            all_namespaces=args.all_namespaces,
            kubeconfig=args.kubeconfig,
            workspace_root=args.workspace_root,
            label_selector=args.selector,
        )
        if not found:
            where = "any namespace" if args.all_namespaces else f"namespace {args.namespace or '(current)'}"
            print(f"no NejumiEvaluation in {where}", file=sys.stderr)
        collected.append(found)
        # `--cluster s3://…`: the live resources and, from the store, those deleted since (a GitOps
        # prune); a resource's stored results are its entry, never a second one.
        followed = {e.entry.provenance.details.get("results") for e in found} - {None}
        stored = [[e for e in s if e.entry.provenance.details.get("results") not in followed] for s in stored]
    collected.extend(stored)
    if args.wandb_project or args.wandb_dir:
        from nejumi_eval.leaderboard import wandb_source

        for project in args.wandb_project:
            collected.append(wandb_source.from_project(project))
        if args.wandb_dir:
            collected.append(wandb_source.from_offline_runs(args.wandb_dir))
    evaluations = sources.from_sources(collected)
    if not evaluations:
        raise sources.NoResultsError("no evaluation found in the sources given")
    return evaluations


def _report(args: argparse.Namespace) -> None:
    from nejumi_eval.leaderboard import wandb_report

    entity, project = wandb_report.split_project(args.wandb_report)
    report = wandb_report.build_report(
        entity,
        project,
        title=args.title or wandb_report.TITLE,
        include_all=args.include_all,
        radar_preset=args.radar_preset or wandb_report.RADAR_PRESET,
    )
    print("\n".join(wandb_report.outline(report)))
    if args.publish:
        print(f"published {wandb_report.publish(report)}")
    else:
        print("not saved: --publish saves it (it needs the W&B API: network and credentials)")


def _diff(args: argparse.Namespace) -> int:
    from nejumi_eval.leaderboard import diff

    evaluations = _evaluations(args)
    a, b = (diff.resolve(ref, evaluations) for ref in args.diff)
    result = diff.compute(a, b, seed=args.seed, resamples=args.resamples, confidence=args.confidence)
    if not result.benchmarks:
        raise InputError(
            f"nothing to compare: {'; '.join(result.warnings) or 'no benchmark shared'} "
            "(the diff needs both evaluations' per-question tables)"
        )
    width = None if sys.stdout.isatty() else 200
    flipped = 10 if args.flipped is None else args.flipped
    print(diff.terminal(result, width=width, flipped=flipped))
    if args.json:
        print(f"wrote {diff.write_json(result, args.json)}", file=sys.stderr)
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    _check(args)
    if args.diff:
        return _diff(args)
    if args.wandb_report and not (args.paths or args.cluster or args.wandb_project or args.wandb_dir):
        _report(args)
        return EXIT_OK

    from nejumi_eval.leaderboard import compare, render

    evaluations = _evaluations(args)
    board = compare.build(
        evaluations,
        include_all=args.include_all,
        confidence=args.confidence,
        seed=args.seed,
        resamples=args.resamples,
    )
    width = None if sys.stdout.isatty() else 200
    without = [
        e.id
        for e in board.leaderboard.entries
        if e.status == "completed" and not board.evaluations[e.id].questions
    ]
    if without:
        print(
            f"note: {len(without)} of {len(board.leaderboard.entries)} evaluations have no per-question "
            "data (listed in the warnings): their scores are shown without a bootstrap interval and "
            "without drill-down"
        )
    print(render.terminal(board.leaderboard, width=width))
    written = []
    if args.csv:
        written.append(render.write_csv(board.leaderboard, args.csv))
    if args.json:
        written.append(render.write_json(board.leaderboard, args.json))
    if args.html:
        from nejumi_eval.leaderboard import html

        written.append(html.write_html(board, args.html, title=args.title or "Nejumi leaderboard"))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if args.wandb_report:
        _report(args)
    return EXIT_OK
