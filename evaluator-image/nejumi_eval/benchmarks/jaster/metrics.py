"""The jaster per-sample metrics exactly as upstream llm-jp-eval v1.3.0 computes them (§7).

All functions take an already post-processed prediction and gold (see ``postprocess``) and return a
per-sample score in [0, 1]; dataset scores are means of these.

``char_f1`` is fuzzywuzzy 0.18.0 ``fuzz.token_sort_ratio`` / 100, which upstream runs with the
python-Levenshtein backend. fuzzywuzzy is unmaintained and GPL, so it is reproduced here on top of
rapidfuzz, which is what python-Levenshtein (>= 0.20) itself calls. The unit tests compare the two
over thousands of strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rapidfuzz.distance import Indel

# fuzzywuzzy's `asciidammit` (force_ascii=True, the token_sort_ratio default) deletes exactly the
# Latin-1 range U+0080-U+00FF; other non-ASCII characters (Japanese included) are kept.
_LATIN1_DELETE = dict.fromkeys(range(0x80, 0x100))
# fuzzywuzzy compiles r"(?ui)\W"; on `str` the flags change nothing (checked over every code point
# in the tests), so the plain pattern is used.
_NON_WORD = re.compile(r"\W")


def token_sort_process(text: str) -> str:
    """fuzzywuzzy's ``_process_and_sort(text, force_ascii=True)``.

    The order of the steps matters and is fuzzywuzzy's: delete Latin-1, replace every non-word
    character with a space, lower-case, strip, split on whitespace, sort by code point, join with
    one space.
    """
    cleaned = _NON_WORD.sub(" ", text.translate(_LATIN1_DELETE)).lower().strip()
    return " ".join(sorted(cleaned.split()))


def token_sort_ratio(a: str, b: str) -> int:
    """fuzzywuzzy 0.18.0 ``fuzz.token_sort_ratio`` with the python-Levenshtein backend, as an int 0-100.

    After processing: equal strings (both empty included) score 100, exactly one empty scores 0.
    Otherwise the similarity is ``1 - indel_distance / (len(a) + len(b))`` computed in double
    precision in that form, as python-Levenshtein's ``ratio`` does; the algebraically equal
    ``2 * LCS / (len(a) + len(b))`` rounds differently at some exact .5 ties (e.g. LCS 17 of 80).
    Rounding is Python's ``round`` (half to even) of ``100 * ratio``, as fuzzywuzzy's ``intr``.
    """
    a, b = token_sort_process(a), token_sort_process(b)
    if a == b:
        return 100
    if not a or not b:
        return 0
    ratio = 1.0 - Indel.distance(a, b) / (len(a) + len(b))
    return round(100 * ratio)


def exact_match(pred: str, gold: str) -> float:
    """1.0 when the strings are identical code point for code point, else 0.0."""
    return 1.0 if pred == gold else 0.0


def char_f1(pred: str, gold: str) -> float:
    """The token-sorted edit similarity upstream calls char_f1; a multiple of 0.01."""
    return token_sort_ratio(pred, gold) / 100


def set_f1(pred: str, gold: str) -> float:
    """F1 of the predicted line **set** against the gold line **list** (deliberately asymmetric).

    Duplicate predicted lines count once; a duplicate gold line is a second item that one hit can
    never both cover, so it lowers recall. Empty lines are items too.
    """
    pred_items = {line.strip() for line in pred.split("\n")}
    gold_items = [line.strip() for line in gold.split("\n")]
    hits = sum(1 for item in pred_items if item in gold_items)
    precision = hits / len(pred_items)
    recall = hits / len(gold_items)
    if precision + recall == 0:
        return 0.0
    return 2 * (precision * recall) / (precision + recall)


METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "char_f1": char_f1,
    "set_f1": set_f1,
}
