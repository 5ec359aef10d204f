"""llm-jp-eval "jaster" (profile `neo`): the stable API other tools call.

- `load(dataset, split)`: prepared records of one split, in protocol order.
- `score(dataset, metric, golds, raw_preds, max_num_samples=100)`: raw outputs in, score out.
- `rollup(scores)`: `<dataset>_<metric>` scores in; NLI QA RC MC EL FA MR and AVG out.

The modules behind it: `datasets` (the 16 declarations), `convert`/`wiki` (raw → records),
`prepare` (fetch, verify, cache), `scoring` (metrics, selection, roll-up), `benchmark` (the run).
"""

from nejumi_eval.jaster.prepare import load
from nejumi_eval.jaster.scoring import rollup, score

__all__ = ["load", "rollup", "score"]
