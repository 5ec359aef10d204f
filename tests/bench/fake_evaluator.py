"""A fast stand-in for `nejumi-eval run` in the scale bench (tests/bench/scale.py): the operator's
evaluator command points here (`NEJUMI_OPERATOR_EVALUATOR_COMMAND`), so each Job's pod runs

    python tests/bench/fake_evaluator.py --spec-env NEJUMI_SPEC --summary <termination path>

It sleeps `FAKE_EVALUATOR_SECONDS` (default 1), writes a completed `Summary` (jaster scored, so
scores appear in the evaluation's status) to the `--summary` path and exits 0.

Each of hundreds of pods starts a Python: importing pydantic would cost each ~0.3 s of CPU. So the
bench builds the summary once with the model (:func:`summary_json`) and hands it over in
`FAKE_EVALUATOR_SUMMARY`; the script then imports nothing beyond the standard library. Without
that variable it builds the summary itself, with the same function.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

SUMMARY_ENV = "FAKE_EVALUATOR_SUMMARY"
SECONDS_ENV = "FAKE_EVALUATOR_SECONDS"


def summary_json(model: str) -> str:
    """A completed run's summary, built and serialised with the evaluator's own model."""
    from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, Summary, Usage

    summary = Summary(
        status="completed",
        model=model,
        capped=True,
        benchmarks={
            "jaster": BenchmarkSummary(
                avg=0.5,
                categories={"NLI": 0.5},
                scores={"jamp_exact_match": 0.5},
                samples=2,
                capped=True,
            )
        },
        usage=Usage(prompt_tokens=200, completion_tokens=20, requests_sent=2),
        runtime_seconds={"generate": 1.0, "total": 1.0},
    )
    return summary.to_json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec-env", default="NEJUMI_SPEC")
    parser.add_argument("--summary", required=True, help="where to write the summary JSON")
    args, _ = parser.parse_known_args(argv)
    time.sleep(float(os.environ.get(SECONDS_ENV) or 1.0))
    text = os.environ.get(SUMMARY_ENV)
    if not text:
        spec = json.loads(os.environ.get(args.spec_env) or "{}")
        text = summary_json(str((spec.get("model") or {}).get("name") or "fake-model"))
    with open(args.summary, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
