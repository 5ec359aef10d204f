"""The embedded default: a real evaluation with no GPU, cluster, key or network.

`nejumi-eval run` without a config evaluates a tiny random-weight model built offline, served on
CPU by `transformers serve`, on both benchmarks with small caps, and MT-bench is rated by the
deterministic synthetic judge (`demo.synthetic_judge`). Every stage runs for real in a minute or
two; the result is marked capped and synthetic-judge everywhere: a smoke test, never a score.
"""

from __future__ import annotations

import os
import shutil

from nejumi_eval.api.v1alpha1.spec import EvaluationSpec, parse_spec

EMBEDDED_TEST_SAMPLES = 4
EMBEDDED_DEV_SAMPLES = 1
EMBEDDED_QUESTIONS_PER_CATEGORY = 1
EMBEDDED_MAX_NEW_TOKENS = 32


def embedded_default_spec(model: str | None = None) -> EvaluationSpec:
    """The spec `nejumi-eval run` uses without a config.

    No model: the tiny model with small caps (samples, questions, tokens) and the synthetic judge.
    A model id: the full protocol on that model (vLLM when installed, else transformers), not
    judged unless a judge is named (`--judge-model`, or `--synthetic-judge` for a smoke test).
    """
    if model is None:
        from nejumi_eval.runtime.serve.tiny import build_tiny_model

        tiny = build_tiny_model()
        # Absolute: model.name takes a path as /…, ./… or ../… (a relative $NEJUMI_CACHE_DIR is neither).
        return parse_spec(
            {
                "model": {
                    "name": os.path.abspath(tiny.path),
                    "revision": tiny.fingerprint,
                    "source": "transformers",
                },
                "benchmarks": {
                    "jaster": {"testSamples": EMBEDDED_TEST_SAMPLES, "devSamples": EMBEDDED_DEV_SAMPLES},
                    "mtbench": {
                        "questionsPerCategory": EMBEDDED_QUESTIONS_PER_CATEGORY,
                        "judge": {"synthetic": True},
                    },
                },
                "generation": {"concurrency": 8, "maxNewTokensCap": EMBEDDED_MAX_NEW_TOKENS},
                "wandb": {"mode": "offline", "runName": "embedded-default"},
            },
            source="embedded default",
        )
    source = "vllm" if shutil.which("vllm") else "transformers"
    return parse_spec({"model": {"name": model, "source": source}}, source="--model")
