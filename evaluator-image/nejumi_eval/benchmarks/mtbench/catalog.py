"""What MT-bench-jp evaluates, as data for `nejumi-eval list`: the variants, the 8 categories and
their questions, the turns, the judge defaults and prompts, read from the protocol table shipped
in the package (`protocol.json`; no question file is downloaded or read, nothing touches the
network).

`describe()` is JSON-able (`nejumi-eval list --json`); `format_text(describe())` is the terminal
rendering.
"""

from __future__ import annotations

from typing import Any

from nejumi_eval.api.v1alpha1.spec import MtbenchSpec
from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES, PROTOCOL
from nejumi_eval.report.text import text_table

NAME = "mtbench"
DEFAULT_VARIANT: str = MtbenchSpec.model_fields["variant"].default
"""The spec's default `benchmarks.mtbench.variant`."""


def describe() -> dict[str, Any]:
    """The MT-bench catalogue as plain JSON data.

    Keys: `benchmark`, `protocol`, `variants` (each `name`, `questions` and `references` = mirror
    paths, `judge_prompts` = judge-prompt set, `default`), `categories` (alphabetical; each `name`,
    `questions` = count, `first_id`, `last_id`, `temperature`, `reference` = judged against a
    reference answer), `questions` (their sum), `turns_per_question`, `generation`
    (`max_new_tokens`, `top_p`, `seed`), `judge` (defaults: `model`, `temperature`, `max_tokens`,
    `n`, `max_calls`) and `judge_prompts` (`plain` and `reference`: the names for turn 1 and 2).
    """
    categories = [
        {
            "name": name,
            "questions": len(rule.question_ids),
            "first_id": rule.first_id,
            "last_id": rule.last_id,
            "temperature": rule.temperature,
            "reference": rule.reference,
        }
        for name, rule in ((name, PROTOCOL.categories[name]) for name in CATEGORIES)
    ]
    variants = [
        {
            "name": name,
            "questions": files.questions,
            "references": files.references,
            "judge_prompts": files.judge_prompts,
            "default": name == DEFAULT_VARIANT,
        }
        for name, files in PROTOCOL.variants.items()
    ]
    prompts = PROTOCOL.judge_prompts
    return {
        "benchmark": NAME,
        "protocol": PROTOCOL.protocol,
        "variants": variants,
        "categories": categories,
        "questions": sum(c["questions"] for c in categories),
        # One judge prompt per turn: the protocol's conversations have as many turns.
        "turns_per_question": len(prompts.plain),
        "generation": PROTOCOL.generation.model_dump(mode="json"),
        "judge": PROTOCOL.judge.model_dump(
            mode="json", include={"model", "temperature", "max_tokens", "n", "max_calls"}
        ),
        "judge_prompts": {"plain": list(prompts.plain), "reference": list(prompts.reference)},
    }


def format_text(doc: dict[str, Any]) -> str:
    """`describe()`'s document as plain-text tables for the terminal."""
    categories, judge, gen = doc["categories"], doc["judge"], doc["generation"]
    lines = [
        f"{doc['benchmark']} (protocol {doc['protocol']}): {doc['questions']} questions in "
        f"{len(categories)} categories, {doc['turns_per_question']} turns each, "
        f"max {gen['max_new_tokens']} new tokens per turn",
        "",
    ]
    lines += text_table(
        ("VARIANT", "QUESTIONS", "REFERENCES"),
        [
            (v["name"] + (" (default)" if v["default"] else ""), v["questions"], v["references"])
            for v in doc["variants"]
        ],
    )
    lines.append("")
    lines += text_table(
        ("CATEGORY", "QUESTIONS", "IDS", "TEMPERATURE", "REFERENCE"),
        [
            (
                c["name"],
                c["questions"],
                f"{c['first_id']}-{c['last_id']}",
                c["temperature"],
                "yes" if c["reference"] else "no",
            )
            for c in categories
        ],
        right=(1, 3),
    )
    lines.append("")
    lines += text_table(
        ("JUDGE", "VALUE"),
        [
            ("model", judge["model"]),
            ("temperature", judge["temperature"]),
            ("max_tokens", judge["max_tokens"]),
            ("prompts", ", ".join(doc["judge_prompts"]["plain"])),
            ("prompts (reference)", ", ".join(doc["judge_prompts"]["reference"])),
        ],
    )
    return "\n".join(lines) + "\n"
