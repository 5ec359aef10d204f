"""`nejumi-eval leaderboard`: rank the evaluations in results folders, with bootstrap intervals."""

from __future__ import annotations

import argparse
import sys

from nejumi_eval.errors import EXIT_OK, InputError

DEFAULT_PATHS = ("workspace",)


def add_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "leaderboard",
        help="rank models from results folders: table, CSV/JSON, self-contained HTML page",
        description="Rank the evaluations found under PATHS (results folders, <workspace>/results, or "
        "workspaces). The latest evaluation of each model is ranked; capped, synthetic-judge and "
        "degraded runs are listed but not ranked unless --include-all; evaluations measured under "
        "different protocols are ranked in separate groups.",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help=f"where to look (default: {' '.join(DEFAULT_PATHS)})"
    )
    parser.add_argument("--csv", metavar="FILE", help="write one row per evaluation as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the whole board as JSON")
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
    parser.add_argument("--title", default="Nejumi leaderboard", help="the HTML page's title")
    parser.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from nejumi_eval.leaderboard import compare, render, sources

    if args.resamples < 0:
        raise InputError(f"--resamples must be 0 or more, got {args.resamples}")
    if args.seed < 0:
        raise InputError(f"--seed must be 0 or more, got {args.seed}")
    evaluations = sources.from_results_folders(args.paths or list(DEFAULT_PATHS))
    board = compare.build(evaluations, include_all=args.include_all, seed=args.seed, resamples=args.resamples)
    width = None if sys.stdout.isatty() else 200
    print(render.terminal(board.leaderboard, width=width))
    written = []
    if args.csv:
        written.append(render.write_csv(board.leaderboard, args.csv))
    if args.json:
        written.append(render.write_json(board.leaderboard, args.json))
    if args.html:
        from nejumi_eval.leaderboard import html

        written.append(html.write_html(board, args.html, title=args.title))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK
