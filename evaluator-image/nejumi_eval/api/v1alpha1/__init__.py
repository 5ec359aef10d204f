"""API version v1alpha1 of nejumi.wandb.ai: everything the operator, the evaluator and the
leaderboard exchange, in one versioned home (kubebuilder's `api/<group>/<version>/`).

- `names`: group, version, kind, plural, the labels on what the operator creates.
- `spec`: the NejumiEvaluation spec (also `nejumi-eval run`'s config), with its CEL rules (`cel`);
  `jaster_tasks.json`, the protocol's task table (its dataset names are the spec's enum).
- `status`, `conditions`: the status model, condition types, reasons and phases.
- `summary`: what an evaluation reports (the pod's termination message); `progress`: its live
  progress report; `contract`: exit codes, env names and the pod's workspace mount; `cost`: the
  price table and what an evaluation cost (GPU-seconds held and busy, tokens, judge and GPU cost).
- `formula` (+ `overall.json`): Overall, as data.
- `crd`: the CRD generator (`python -m nejumi_eval.api.v1alpha1.crd`).

It imports nothing from the benchmarks, runtime, leaderboard or operator: a plugin benchmark's spec
section comes in through a hook (`spec.use_plugin_sections`). Light on purpose (pydantic, pyyaml,
cel-python): the operator imports it and nothing else of the evaluator.
"""
