"""The leaderboard: how benchmark scores combine into one number (as data, `overall.json`), and
`nejumi-eval leaderboard`, which ranks many evaluations with bootstrap confidence intervals.

- `formula`: Overall as data. `sources`: evaluations from results folders; `cluster`: from
  NejumiEvaluation resources; `wandb_source`: from W&B runs (online or offline run folders).
- `questions`: per-question data per benchmark. `bootstrap`: intervals and paired comparisons.
- `compare`: what is ranked, excluded or superseded, and which evaluations are comparable.
- `render`: terminal table, CSV, JSON. `html` (+ `page/`): the self-contained HTML page.
- `wandb_report`: the Nejumi W&B report built in code (wandb-workspaces). `diff`: two evaluations
  question by question (improved, regressed, flipped per dataset).
- `command`: the CLI subcommand. `model`: the boundary types (the JSON output's schema).

Importing this package stays light (pydantic only): the run summary and the operator use `OVERALL`.
"""

from nejumi_eval.leaderboard.formula import OVERALL, Formula, Term

__all__ = ["OVERALL", "Formula", "Term"]
