"""What jaster evaluates, as data for `nejumi-eval list`: the 16 datasets, the 7 categories and the
prompt templates, read from the task table shipped in the package (no data is downloaded, no
mirror is read, nothing touches the network).

`describe()` is JSON-able (`nejumi-eval list --json`); `format_text(describe())` is the terminal
rendering.
"""

from __future__ import annotations

from typing import Any

from nejumi_eval.benchmarks.jaster.datasets import DATASETS
from nejumi_eval.benchmarks.jaster.prompts import DEFAULT_TEMPLATE, get_template, template_names
from nejumi_eval.benchmarks.jaster.tasks import task_table
from nejumi_eval.report.text import text_table

NAME = "jaster"
PROFILE = "neo"


def describe() -> dict[str, Any]:
    """The jaster catalogue as plain JSON data.

    Keys: `benchmark`, `profile`, `few_shots`, `datasets` (task-table order; each `name`,
    `category`, `metric`, `output_length` = max new tokens, `test_samples` = test samples scored,
    `source` = raw source), `test_samples` (their sum), `categories` (each `name` and `datasets`),
    `prompt_templates` (each `name`, `sha256`, `default`) and `default_prompt_template`.
    """
    table = task_table()
    datasets = [
        {
            "name": name,
            "category": d.category,
            "metric": d.metric,
            "output_length": d.output_length,
            "test_samples": d.task.neo_test_samples_scored,
            "source": d.source,
        }
        for name, d in DATASETS.items()
    ]
    templates = [
        {"name": name, "sha256": get_template(name).sha256, "default": name == DEFAULT_TEMPLATE}
        for name in template_names()
    ]
    return {
        "benchmark": NAME,
        "profile": PROFILE,
        "few_shots": int(table.evaluation_defaults_neo.get("num_few_shots", 0)),
        "datasets": datasets,
        "test_samples": sum(d["test_samples"] for d in datasets),
        "categories": [
            {"name": name, "datasets": list(members)} for name, members in table.categories.items()
        ],
        "prompt_templates": templates,
        "default_prompt_template": DEFAULT_TEMPLATE,
    }


def format_text(doc: dict[str, Any]) -> str:
    """`describe()`'s document as plain-text tables for the terminal."""
    datasets, categories = doc["datasets"], doc["categories"]
    shots = "zero-shot" if doc["few_shots"] == 0 else f"{doc['few_shots']}-shot"
    lines = [
        f"{doc['benchmark']} (profile {doc['profile']}): {len(datasets)} datasets in "
        f"{len(categories)} categories, {shots}, {doc['test_samples']} test samples scored",
        "",
    ]
    lines += text_table(
        ("DATASET", "CATEGORY", "METRIC", "MAX NEW TOKENS", "TEST SAMPLES"),
        [(d["name"], d["category"], d["metric"], d["output_length"], d["test_samples"]) for d in datasets],
        right=(3, 4),
    )
    lines.append("")
    lines += text_table(("CATEGORY", "DATASETS"), [(c["name"], ", ".join(c["datasets"])) for c in categories])
    lines.append("")
    lines += text_table(
        ("PROMPT TEMPLATE", "SHA256", ""),
        [(t["name"], t["sha256"][:12], "(default)" if t["default"] else "") for t in doc["prompt_templates"]],
    )
    return "\n".join(lines) + "\n"
