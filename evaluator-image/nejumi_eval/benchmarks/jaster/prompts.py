"""jaster prompt templates as versioned data (protocol-jaster.md §4).

A template is chosen by name, and the name carries the version: a changed text must get a new name,
so a run that records ``(name, sha256)`` says exactly which prompt its models saw. The texts live in
``jaster_tasks.json`` (``prompt_templates``), the single source of truth for the task table; this
module only names them and renders them.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ConfigDict

from nejumi_eval.benchmarks.jaster.tasks import task_table

DEFAULT_TEMPLATE = "alpaca-ja-v1.3.0"

# Template name -> key under jaster_tasks.json `prompt_templates`.
_TEMPLATE_KEYS: dict[str, str] = {
    "alpaca-ja-v1.3.0": "v1_3_0_default_zero_shot",
    "alpaca-v1.1.x": "v1_1_x_snapshot_default_zero_shot",
    "neo-config-comment": "neo_config_comment_example_zero_shot",
}

# Both placeholders in one pattern, so one `re.sub` pass replaces them and never re-scans the
# substituted text: an input that itself contains "{instruction}" stays literal.
_PLACEHOLDER = re.compile(r"\{(instruction|input)\}")


class PromptTemplate(BaseModel):
    """A named template text and the sha256 (hex, of its UTF-8 bytes) that results record."""

    model_config = ConfigDict(frozen=True)

    name: str
    text: str
    sha256: str


def template_names() -> list[str]:
    """The known template names, default first."""
    return list(_TEMPLATE_KEYS)


def get_template(name: str = DEFAULT_TEMPLATE) -> PromptTemplate:
    """Look a template up by name; an unknown name is an error that lists the known ones."""
    if name not in _TEMPLATE_KEYS:
        raise ValueError(f"unknown prompt template {name!r}; known: {', '.join(template_names())}")
    text = task_table().prompt_templates[_TEMPLATE_KEYS[name]]
    return PromptTemplate(name=name, text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


def render(template: PromptTemplate, instruction: str, input: str) -> str:
    """The exact prompt string: placeholders replaced in a single pass, nothing added around it.

    No few-shot examples, system text or chat template are added (§4); the caller sends this
    string as-is.
    """
    values = {"instruction": instruction, "input": input}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template.text)
