"""The NejumiEvaluation kopf operator."""
