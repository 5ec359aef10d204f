"""API version v1alpha1: the spec (`spec`), the summary (`summary`), exit codes and env names
(`contract`). Light on purpose (pydantic + pyyaml): the operator imports all of it."""
