"""The leaderboard: `nejumi-eval leaderboard`, which ranks many evaluations with bootstrap confidence
intervals (Overall itself is part of the API: `nejumi_eval.api.v1alpha1.formula`).

- `sources`: evaluations from results folders; `cluster`: from NejumiEvaluation resources;
  `wandb_source`: from W&B runs (online or offline run folders).
- `questions`: per-question data per benchmark. `bootstrap`: intervals and paired comparisons.
- `compare`: what is ranked, excluded or superseded, and which evaluations are comparable.
- `render`: terminal table, CSV, JSON. `html` (+ `page/`): the self-contained HTML page.
- `wandb_report`: the Nejumi W&B report built in code (wandb-workspaces). `diff`: two evaluations
  question by question (improved, regressed, flipped per dataset).
- `server`: the read-only HTTP server of the cluster's NejumiLeaderboards (the chart's
  `leaderboard.server`): an index, and each page streamed from the store.
- `command`: the CLI subcommand. `model`: the boundary types (the JSON output's schema).
"""
