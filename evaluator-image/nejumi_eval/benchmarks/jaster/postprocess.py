"""Turning a raw model output and a gold answer into the strings that are compared (§6).

Only the text before the first blank line (``"\\n\\n"``) counts, so a model may add an explanation
after a blank line; nothing is stripped or case-folded, so stray whitespace around an answer costs
points, as upstream llm-jp-eval v1.3.0 does. Truncation comes before NFKC, so a blank line is
exactly two LF characters in the raw output (``"\\r\\n\\r\\n"`` is not one).
"""

from __future__ import annotations

import unicodedata


def postprocess_output(raw_output: str) -> str:
    """The prediction: NFKC of everything before the first blank line."""
    return unicodedata.normalize("NFKC", raw_output.split("\n\n")[0])


def normalize_gold(output: str) -> str:
    """The gold answer: NFKC of the dataset output, untruncated."""
    return unicodedata.normalize("NFKC", output)
