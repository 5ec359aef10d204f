"""The versioned API shared by the operator and the evaluator (kubebuilder's `api/<version>/`)."""
