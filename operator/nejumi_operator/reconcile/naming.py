"""Names and labels of what the operator creates for an evaluation: stable (creation is idempotent)
and valid whatever the evaluation's name (≤253 characters) — long names are cut and hashed."""

from __future__ import annotations

import hashlib
import re

from nejumi_eval.api.v1alpha1.names import LABEL_EVALUATION

MAX_NAME = 63
"""Names the operator makes end up in label values (a Job's in its pods' job-name label): ≤63."""


def short(text: str, limit: int) -> str:
    """`text` if it fits, else a prefix plus a stable hash (still a DNS label)."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: limit - 9].rstrip('-.')}-{digest}"


def label_value(name: str) -> str:
    """A resource name as a label value (≤63 characters, alphanumeric at both ends)."""
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", short(name, MAX_NAME))


def labels(name: str) -> dict[str, str]:
    """The labels of an evaluation's Job and pods."""
    value = label_value(name)
    return {
        "app.kubernetes.io/name": "nejumi-evaluator",
        "app.kubernetes.io/instance": value,
        "app.kubernetes.io/component": "evaluation",
        "app.kubernetes.io/part-of": "nejumi",
        "app.kubernetes.io/managed-by": "nejumi-operator",
        LABEL_EVALUATION: value,
    }
