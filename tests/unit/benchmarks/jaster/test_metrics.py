"""Post-processing and metrics (protocol-jaster.md §6, §7), gotchas pinned one by one.

char_f1 is checked against the reference it must reproduce: fuzzywuzzy 0.18.0
``fuzz.token_sort_ratio`` running on the python-Levenshtein backend.
"""

from __future__ import annotations

import random
import sys
import unicodedata
from fractions import Fraction

import pytest
from fuzzywuzzy import fuzz
from fuzzywuzzy.StringMatcher import StringMatcher

from nejumi_eval.benchmarks.jaster.metrics import (
    char_f1,
    exact_match,
    set_f1,
    token_sort_process,
    token_sort_ratio,
)
from nejumi_eval.benchmarks.jaster.postprocess import normalize_gold, postprocess_output
from nejumi_eval.benchmarks.jaster.scoring import score, score_sample

RANDOM_PAIRS = 6000


# --- the reference itself ------------------------------------------------------------------------


def test_reference_fuzzywuzzy_runs_on_python_levenshtein_not_difflib() -> None:
    import fuzzywuzzy
    import Levenshtein

    assert fuzzywuzzy.__version__ == "0.18.0"
    assert fuzz.SequenceMatcher is StringMatcher
    assert "difflib" not in fuzz.SequenceMatcher.__module__
    assert StringMatcher(None, "abc", "abd").ratio() == Levenshtein.ratio("abc", "abd")
    # A pair on which the two backends disagree: difflib's greedy blocks give 67, the LCS gives 80.
    assert fuzz.token_sort_ratio("abbcaba", "abbabcca") == 80


# --- char_f1 == fuzzywuzzy over many strings -----------------------------------------------------

_POOLS = [
    "あいうえおかきくけこがぎぐげごぱぴぷぺぽゃゅょっー",  # hiragana (incl. voiced, small)
    "アイウエオカキクケコガギグゲゴヴャュョッー",  # katakana
    "東京大阪名古屋徳川家康日本語質問回答文章",  # kanji
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
    "".join(chr(c) for c in range(0x80, 0x100)),  # Latin-1 supplement: deleted by fuzzywuzzy
    "!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~",
    "、。「」『』・…（）：？！〜―",  # Japanese punctuation
    "ＡＢＣｘｙｚ０１２３＿－＞",  # full-width
    "ｱｲｳｶﾞﾊﾟｰ",  # half-width katakana
    "  \t\n\r\u3000\u00a0\u2028\x1c",  # whitespace, incl. Unicode-only whitespace
    "ΑΒΓαβγДЖЯдбяİıßẞǅ\u0301\u3099①③½²",  # case oddities, combining marks, compatibility chars
]


def _random_string(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return ""
    pools = rng.sample(_POOLS, rng.randint(1, 4))
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 24)))


def _mutated(rng: random.Random, text: str) -> str:
    """A near copy: similar strings exercise the middle of the score range, not just 0."""
    chars = list(text)
    for _ in range(rng.randint(0, 4)):
        op = rng.randrange(4)
        position = rng.randint(0, len(chars))
        if op == 0:
            chars.insert(position, rng.choice(rng.choice(_POOLS)))
        elif op == 1 and chars:
            del chars[min(position, len(chars) - 1)]
        elif op == 2:
            chars.insert(position, " ")
        else:
            chars = [c.upper() if rng.random() < 0.3 else c for c in chars]
    text = "".join(chars)
    tokens = text.split(" ")
    rng.shuffle(tokens)
    return " ".join(tokens) if rng.random() < 0.5 else text


def _random_pairs() -> list[tuple[str, str]]:
    rng = random.Random(20240901)
    pairs = []
    for _ in range(RANDOM_PAIRS):
        a = _random_string(rng)
        b = _mutated(rng, a) if rng.random() < 0.6 else _random_string(rng)
        pairs.append((a, b))
    return pairs


def test_token_sort_ratio_matches_fuzzywuzzy_on_random_strings() -> None:
    pairs = _random_pairs()
    mismatches = [(a, b) for a, b in pairs if token_sort_ratio(a, b) != fuzz.token_sort_ratio(a, b)]
    assert mismatches == []
    # The pairs span the whole range, so the equality is not only about 0 and 100.
    assert len({fuzz.token_sort_ratio(a, b) for a, b in pairs}) > 80


def test_token_sort_ratio_matches_fuzzywuzzy_after_postprocessing() -> None:
    """The metric really sees NFKC'd, truncated strings; compare on those too."""
    for raw, gold in _random_pairs()[:2000]:
        pred, gold = postprocess_output(raw), normalize_gold(gold)
        assert char_f1(pred, gold) == fuzz.token_sort_ratio(pred, gold) / 100


def test_processing_matches_fuzzywuzzy_for_every_code_point() -> None:
    every_char = " ".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    assert token_sort_process(every_char) == fuzz._process_and_sort(every_char, force_ascii=True)


def _exact_ties(max_lensum: int) -> list[tuple[int, int]]:
    """Every (LCS, lensum) where 100·2·LCS/lensum is exactly k + 0.5."""
    return [
        (lcs, lensum)
        for lensum in range(2, max_lensum + 1)
        for lcs in range(1, lensum // 2 + 1)
        if Fraction(200 * lcs, lensum).denominator == 2
    ]


def test_exact_half_ties_round_like_the_backend() -> None:
    """At 100·ratio = k + 0.5 the last bit of the double decides: fuzzywuzzy's backend computes
    ``1 - distance/lensum`` and rounds half to even, and so must we, at every such tie."""
    ties = _exact_ties(800)
    assert len(ties) > 500
    # The algebraically equal 2·LCS/lensum form rounds some of these the other way.
    doc_form = [round(100 * (2 * lcs / lensum)) for lcs, lensum in ties]
    backend_form = [round(100 * (1 - (lensum - 2 * lcs) / lensum)) for lcs, lensum in ties]
    assert doc_form != backend_form
    for lcs, lensum in ties:
        half = lensum // 2
        a = "a" * lcs + "b" * (half - lcs)
        b = "a" * lcs + "c" * (lensum - half - lcs)
        assert token_sort_ratio(a, b) == fuzz.token_sort_ratio(a, b), (lcs, lensum)


def test_tie_examples_pinned() -> None:
    # 2/16 = 0.125 exactly: 12.5 rounds half to even -> 12 (half-up would give 13).
    assert token_sort_ratio("a" + "b" * 7, "a" + "c" * 7) == 12
    # LCS 17 of 80: 1 - 46/80 = 0.42500000000000004 -> 43, although 2*17/80 = 0.425 -> 42.
    assert token_sort_ratio("a" * 17 + "b" * 23, "a" * 17 + "c" * 23) == 43


def test_char_f1_empty_cases() -> None:
    assert char_f1("", "") == 1.0
    assert char_f1("。", "") == 1.0  # both process to empty
    assert char_f1("", "東京") == 0.0
    assert char_f1("東京", "!!") == 0.0


# --- §6 post-processing --------------------------------------------------------------------------


def test_postprocess_keeps_text_before_first_blank_line_without_strip() -> None:
    assert postprocess_output("neutral\n\n理由：前提から…") == "neutral"
    assert postprocess_output(" neutral \nmore") == " neutral \nmore"
    assert postprocess_output("\n\nneutral") == ""
    assert postprocess_output("Neutral") == "Neutral"  # no case folding


def test_crlf_crlf_is_not_a_blank_line() -> None:
    assert postprocess_output("entailment\r\n\r\n理由") == "entailment\r\n\r\n理由"
    assert score_sample("jamp", "entailment\r\n\r\n理由", "entailment").exact == 0
    assert postprocess_output("entailment\r\n\nx") == "entailment\r"


def test_truncation_then_nfkc() -> None:
    assert postprocess_output("ｅｎｔａｉｌｍｅｎｔ\n\nＸ") == "entailment"


# --- Gotchas (§7), one assertion each ------------------------------------------------------------


def test_gotcha_trailing_newline_breaks_exact_match() -> None:
    assert score_sample("jnli", "contradiction\n", "contradiction").exact == 0


def test_gotcha_blank_line_then_explanation_does_not_break_exact_match() -> None:
    row = score_sample("jnli", "neutral\n\n理由…", "neutral")
    assert row.pred == "neutral"
    assert row.exact == 1
    assert row.score == 1.0


@pytest.mark.parametrize("raw", [" neutral", "\nneutral", "\n\nneutral", "　neutral"])
def test_gotcha_leading_space_or_newline_always_fails(raw: str) -> None:
    assert score_sample("jsick", raw, "neutral").exact == 0


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("ｅｎｔａｉｌｍｅｎｔ", "entailment"),  # full-width letters
        ("１２３", "123"),  # full-width digits
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana
        ("ｶﾞ", "ガ"),  # half-width voiced katakana composes
        ("③", "3"),
        ("（株）", "(株)"),
        ("質問：", "質問:"),
        ("A－＞B", "A->B"),
        ("徳川\u3000家康", "徳川 家康"),  # U+3000 -> space
    ],
)
def test_gotcha_nfkc_folds(raw: str, folded: str) -> None:
    assert postprocess_output(raw) == folded
    assert normalize_gold(raw) == folded  # both sides


def test_gotcha_nfkc_applies_to_gold_too() -> None:
    assert score_sample("jemhopqa", "(株)東京", "（株）東京").exact == 1
    assert score_sample("jemhopqa", "か\u3099", "が").exact == 1  # composed by NFKC on both sides


@pytest.mark.parametrize("dash", ["\u2212", "\u2010"])
def test_gotcha_minus_and_hyphen_are_not_folded(dash: str) -> None:
    assert unicodedata.normalize("NFKC", dash) == dash
    assert score_sample("janli", f"non{dash}entailment", "non-entailment").exact == 0
    assert score_sample("janli", "non-entailment", "non-entailment").exact == 1


def test_gotcha_char_f1_space_inside_answer() -> None:
    assert score_sample("jemhopqa", "徳川 家康", "徳川家康").char_f1 == 0.44
    assert score_sample("jemhopqa", "徳川 家康", "徳川家康").score == 0.44


@pytest.mark.parametrize(
    ("pred", "gold"),
    [("名古屋,東京,大阪", "東京,大阪,名古屋"), ("NO。", "NO"), ("。", "、"), ("Yes", "YES")],
)
def test_gotcha_char_f1_ignores_case_punctuation_and_order(pred: str, gold: str) -> None:
    assert score_sample("niilc", pred, gold).char_f1 == 1.0


def test_gotcha_chabsa_items_after_a_blank_line_are_lost() -> None:
    gold = "売上高 positive\n営業利益 negative"
    row = score_sample("chabsa", "売上高 positive\n\n営業利益 negative", gold)
    assert row.pred == "売上高 positive"
    assert round(row.score, 3) == 0.667
    assert row.set_f1 == pytest.approx(2 / 3)


def test_gotcha_wiki_ner_gold_is_one_line_so_set_f1_is_all_or_nothing() -> None:
    gold = "トヨタ（組織名） 名古屋（地名） 2020年（日付表現）"
    assert score_sample("wiki_ner", gold, gold).score == 1.0
    assert score_sample("wiki_ner", "名古屋（地名） トヨタ（組織名） 2020年（日付表現）", gold).score == 0.0
    assert score_sample("wiki_ner", "トヨタ（組織名）\n名古屋（地名）\n2020年（日付表現）", gold).score == 0.0


def test_gotcha_duplicate_gold_line_caps_recall() -> None:
    assert set_f1("a", "a\na") == pytest.approx(2 / 3)
    assert round(set_f1("a", "a\na"), 3) == 0.667


def test_gotcha_predicted_duplicates_cost_nothing() -> None:
    assert set_f1("a\na\nb\nb", "a\nb") == 1.0


def test_gotcha_leading_newline_adds_an_empty_item() -> None:
    precision, recall = 2 / 3, 1.0  # pred items {"", "a", "b"}, gold list ["a", "b"]
    assert set_f1("\na\nb", "a\nb") == 2 * precision * recall / (precision + recall)
    assert set_f1("a\nb\n", "a\nb") == pytest.approx(0.8)


@pytest.mark.parametrize(("raw", "gold"), [("12.0", "12"), ("1,000", "1000"), (".25", "0.25"), ("7個", "7")])
def test_gotcha_mawps_is_compared_as_strings(raw: str, gold: str) -> None:
    assert score_sample("mawps", raw, gold).exact == 0


def test_gotcha_mawps_full_width_digits_pass() -> None:
    assert score_sample("mawps", "１２", "12").exact == 1
    assert score_sample("mawps", "０.２５", "0.25").exact == 1


def test_gotcha_set_f1_zero_is_float_zero() -> None:
    value = set_f1("x", "a\nb")
    assert value == 0
    assert isinstance(value, float)


# --- §7 definitions ------------------------------------------------------------------------------


def test_exact_match_is_code_point_equality() -> None:
    assert exact_match("が", "が") == 1.0
    assert exact_match("か\u3099", "が") == 0.0  # metric itself does no normalisation
    assert exact_match("Neutral", "neutral") == 0.0


def test_set_f1_strips_each_item() -> None:
    assert set_f1(" a \n\tb", "a\nb ") == 1.0
    assert set_f1("a\nx", "a\nb") == pytest.approx(0.5)


def test_char_f1_per_sample_values_are_hundredths() -> None:
    for a, b in _random_pairs()[:500]:
        value = char_f1(a, b)
        assert value == round(value * 100) / 100


def test_sample_row_fields() -> None:
    row = score_sample("jemhopqa", "ＹＥＳ\n\n理由", "YES")
    assert (row.pred, row.gold, row.exact, row.char_f1, row.set_f1, row.score) == (
        "YES",
        "YES",
        1,
        1.0,
        None,
        1.0,
    )
    row = score_sample("chabsa", "A positive", "A positive\nB negative")
    assert row.set_f1 == row.score == pytest.approx(2 / 3)
    assert row.exact == 0
    assert row.char_f1 == token_sort_ratio("A positive", "A positive\nB negative") / 100


# --- dataset scores ------------------------------------------------------------------------------


def test_score_is_the_mean_over_the_first_max_num_samples() -> None:
    golds = ["entailment"] * 3 + ["neutral"] * 2
    raw = ["entailment\n\nbecause", "neutral", "entailment", "neutral", "x"]
    assert score("jamp", "exact_match", golds, raw) == 3 / 5
    assert score("jamp", "exact_match", golds, raw, max_num_samples=4) == 3 / 4
    assert score("jemhopqa", "char_f1", ["徳川家康", "東京"], ["徳川 家康", "東京"]) == pytest.approx(0.72)


def test_score_mean_is_exact() -> None:
    """statistics.mean (exact sum, one rounding) as upstream; a plain float sum would drift."""
    golds, raw = ["a" + "b" * 9] * 10, ["a" + "c" * 9] * 10  # char_f1 0.1 each
    assert sum([0.1] * 10) / 10 != 0.1
    assert score("jsquad", "char_f1", golds, raw) == 0.1
    assert score("wiki_ner", "set_f1", ["a"] * 10, ["a"] * 10, max_num_samples=20) == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "exact_match", ["a"], ["a"]), "unknown jaster dataset 'nope'"),
        (("jamp", "char_f1", ["a"], ["a"]), "jamp is scored with exact_match, not 'char_f1'"),
        (("jamp", "accuracy", ["a"], ["a"]), "not 'accuracy'"),
        (("jamp", "exact_match", ["a", "b"], ["a"]), "2 golds but 1 predictions"),
        (("jamp", "exact_match", [], []), "no samples"),
    ],
)
def test_score_rejects_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score(*args)
