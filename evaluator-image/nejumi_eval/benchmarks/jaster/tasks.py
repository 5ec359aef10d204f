"""The jaster task table (`nejumi_eval/api/v1alpha1/jaster_tasks.json`: protocol data, versioned with
the API, whose dataset names it also gives the spec): one source of truth for what the protocol fixes per
dataset (instruction, output length, metric, category, labels, test samples scored), the 7
categories and the prompt templates. Parsed once per process; every module reads it from here.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field

from nejumi_eval.api.v1alpha1.spec import JASTER_TASKS


class JasterTask(BaseModel):
    """One row of the task table (the fields the product uses; provenance fields are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    category: str
    instruction: str
    output_length: int = Field(gt=0, description="max new tokens")
    metrics: list[str] = Field(min_length=1, max_length=1)
    score_key: str
    labels: list[str] | None = None
    neo_test_samples_scored: int = Field(
        gt=0, description="test samples scored; the test split needs as many"
    )


class TaskTable(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    tasks: dict[str, JasterTask]
    categories: dict[str, list[str]]
    prompt_templates: dict[str, str]
    evaluation_defaults_neo: dict[str, int | str]


@cache
def task_table() -> TaskTable:
    text = resources.files("nejumi_eval.api.v1alpha1").joinpath(JASTER_TASKS).read_text("utf-8")
    return TaskTable.model_validate(json.loads(text))
