"""The results of record in an S3-compatible object store: one client with its typed errors
(`store`), the evaluator's upload (`upload`) and the readers' side (`reading`). The layout itself is
API: `nejumi_eval.api.v1alpha1.results`. boto3 (the `eval` extra) is imported only when a store is
used."""
