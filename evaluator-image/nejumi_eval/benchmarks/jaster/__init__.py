"""llm-jp-eval "jaster" (profile `neo`): the stable API other tools call.

- `load(dataset, split)`: prepared records of one split, in protocol order.
- `score(dataset, metric, golds, raw_preds, max_num_samples=100)`: raw outputs in, score out.
- `rollup(scores)`: `<dataset>_<metric>` scores in; NLI QA RC MC EL FA MR and AVG out.

The modules behind it: `datasets` (the 16 declarations), `convert`/`wiki` (raw → records),
`prepare` (fetch, verify, cache), `scoring` (metrics, selection, roll-up), `benchmark` (the run).

Importing this package is cheap (its names load on first use): the spec module reads the task
table from here, and the operator imports the spec.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "rollup", "score"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from nejumi_eval.benchmarks.jaster.prepare import load

        return load
    if name in ("rollup", "score"):
        from nejumi_eval.benchmarks.jaster import scoring

        return getattr(scoring, name)
    raise AttributeError(name)
