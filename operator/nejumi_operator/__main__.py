"""`python -m nejumi_operator [--namespace NS ...]`: run the operator (kopf, standalone).

Settings come from the environment (see nejumi_operator.settings). The liveness endpoint listens on
loopback unless told otherwise: the chart's Deployment passes `--liveness=http://0.0.0.0:<port>/healthz`
so that the kubelet's probes (sent to the pod's IP) reach it.
"""

from __future__ import annotations

import argparse
import sys

import kopf

DEFAULT_LIVENESS = "http://127.0.0.1:8080/healthz"
"""Loopback: run outside a cluster, the operator opens no port to the network."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nejumi-operator", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--namespace", action="append", default=[], help="watch only these (repeat)")
    parser.add_argument(
        "--liveness",
        default=DEFAULT_LIVENESS,
        help=f"liveness endpoint URL (default {DEFAULT_LIVENESS}; empty: none)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    import nejumi_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose)
    kopf.run(
        standalone=True,  # no peering: every replica may act on every evaluation (guarded writes)
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
        # what kopf will watch, for the size of its connection pool (handlers.login)
        memo=kopf.Memo(namespaces=tuple(args.namespace)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
