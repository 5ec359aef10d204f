"""MT-bench-jp `neo` protocol (benchmarks/mtbench/protocol-mtbench.md): data pins and checks, generation
settings, the exact judge messages, the rating parse and aggregation."""

from __future__ import annotations

import json
import random
import shutil
import stat
from pathlib import Path

import pytest

from nejumi_eval.benchmarks.mtbench import (
    CATEGORIES,
    JUDGE_DEFAULTS,
    MTBenchDataError,
    aggregate,
    default_mirror,
    generation_params,
    judge_messages,
    judge_prompt_name,
    load_judge_prompts,
    load_questions,
    load_variant,
    overall,
    parse_rating,
    postprocess_answer,
    summarize,
    turn1_messages,
    turn2_messages,
    uses_reference,
    variant_files,
)
from nejumi_eval.benchmarks.mtbench.data import parse_judge_prompts, parse_questions, parse_references

REFERENCE_CATEGORIES = {"math", "reasoning", "coding"}


@pytest.fixture(scope="module")
def mirror() -> Path:
    path = default_mirror()
    if not path.is_dir():
        pytest.fail(f"MT-bench mirror not found at {path}; set NEJUMI_MTBENCH_MIRROR")
    return path


@pytest.fixture(scope="module")
def neo(mirror: Path):
    return load_variant("neo", mirror)


# ---- §2 data files ------------------------------------------------------------------------------

FC = "fastchat/llm_judge/data/japanese_mt_bench/"
STABILITY = "Stability-AI/FastChat"
NEO_COMMIT = "5d4f13a4731388ffe1453c459c357d863d87037a"
HEAD_COMMIT = "e37eb28ee490480f6f4989274ed47c55f7dfce82"
JUDGE_FILE = (
    "nejumi_judge_prompt_v1/judge_prompts.jsonl",
    "swallow-llm/swallow-evaluation",
    "c5c0114ad2d4e0307aa2826ff80dab3314b98602",
    "fastchat/fastchat/llm_judge/data/judge_prompts.jsonl",
    "6381e563489c9e06dcf6415f8c7e46f02df3d767261529e2a1a76df3da24ba5e",
)
# The §2 table, row by row: (local path, repo, commit, upstream path, sha256).
SECTION_2 = {
    "neo": {
        "questions": (
            "stability_5d4f13a/question_full.jsonl",
            STABILITY,
            NEO_COMMIT,
            FC + "question_full.jsonl",
            "4ee861355679a95903beb3962ec413f5e2f676182b7e2ac0f5c5b0d4611bc94b",
        ),
        "references": (
            "stability_5d4f13a/reference_answer/gpt-4.jsonl",
            STABILITY,
            NEO_COMMIT,
            FC + "reference_answer/gpt-4.jsonl",
            "0631685c4ebc66390970588b658e4d19047fafb0a00ec1d841616686c07b0d6b",
        ),
        "judge_prompts": JUDGE_FILE,
    },
    "head": {
        "questions": (
            "stability_jp-stable_e37eb28/question_full.jsonl",
            STABILITY,
            HEAD_COMMIT,
            FC + "question_full.jsonl",
            "8f56c8bd5ff93d2120409bc8f77f0020e673c74548c9637f2aace12a323834e5",
        ),
        "references": (
            "stability_jp-stable_e37eb28/reference_answer/base-gpt4o-with-human-annotation.jsonl",
            STABILITY,
            HEAD_COMMIT,
            FC + "reference_answer/base-gpt4o-with-human-annotation.jsonl",
            "8ea6c0b82073908f94b57f67918de5f11286e1dd7334b366ecf47a2c9b774996",
        ),
        "judge_prompts": JUDGE_FILE,
    },
}


@pytest.mark.parametrize("variant", ["neo", "head"])
def test_variant_files_match_the_section_2_table(variant: str) -> None:
    chosen = variant_files(variant)
    assert {
        role: (f.path, f.repo, f.commit, f.upstream_path, f.sha256) for role, f in chosen.items()
    } == SECTION_2[variant]
    _, repo, commit, upstream, _ = SECTION_2[variant]["questions"]
    assert chosen["questions"].url == f"https://raw.githubusercontent.com/{repo}/{commit}/{upstream}"


@pytest.mark.parametrize("variant", ["neo", "head"])
def test_loads_each_variant_from_the_mirror(mirror: Path, variant: str) -> None:
    data = load_variant(variant, mirror)
    assert data.variant == variant
    assert [q.question_id for q in data.questions] == list(range(1, 81))
    assert sorted(data.references) == list(range(1, 81))
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(
        data.judge_prompts
    )


def test_head_rewords_40_questions(mirror: Path) -> None:
    neo, head = load_questions("neo", mirror), load_questions("head", mirror)
    assert sum(a.turns != b.turns for a, b in zip(neo, head, strict=True)) == 40


def test_unknown_variant_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"unknown MT-bench variant 'tail'; known variants: neo, head"):
        variant_files("tail")


def _writable_copy(mirror: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "mirror"
    shutil.copytree(mirror, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return copy


@pytest.mark.parametrize("role", ["questions", "references", "judge_prompts"])
def test_a_corrupted_file_fails_naming_it(mirror: Path, tmp_path: Path, role: str) -> None:
    copy = _writable_copy(mirror, tmp_path)
    target = copy / variant_files("neo")[role].path
    target.write_bytes(target.read_bytes().replace(b"\n", b"\r\n", 1))
    with pytest.raises(MTBenchDataError, match=f"{target}: sha256 .* differs from the pinned"):
        load_variant("neo", copy)


def test_a_missing_file_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(MTBenchDataError, match=f"{tmp_path}/nejumi_judge_prompt_v1/judge_prompts.jsonl"):
        load_judge_prompts("neo", tmp_path)


def test_the_environment_names_the_default_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEJUMI_MTBENCH_MIRROR", str(tmp_path))
    assert default_mirror() == tmp_path


# ---- §3 load-time checks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def question_lines(mirror: Path) -> list[dict]:
    path = mirror / variant_files("neo")["questions"].path
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def reference_lines(mirror: Path) -> list[dict]:
    path = mirror / variant_files("neo")["references"].path
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _edited(records: list[dict], index: int, **changes: object) -> list[dict]:
    return [{**r, **changes} if i == index else r for i, r in enumerate(records)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda qs: qs[:-1], "79 questions, expected 80"),
        (lambda qs: [*qs, qs[0]], "81 questions, expected 80"),
        (lambda qs: _edited(qs, 1, question_id=1), r"duplicate question_id \[1\]"),
        (lambda qs: _edited(qs, 0, turns=["only one"]), "at least 2 items"),
        (lambda qs: _edited(qs, 0, turns=["a", "b", "c"]), "at most 2 items"),
        (lambda qs: _edited(qs, 0, category="math"), "question 1 is 'math', outside"),
        (lambda qs: _edited(qs, 0, category="poetry"), "unknown category 'poetry'"),
        (
            lambda qs: _edited(qs, 0, question_id=81),
            r"question 81 is 'coding', outside that category's ids 1-10",
        ),
    ],
)
def test_question_checks_catch_a_broken_file(question_lines: list[dict], edit, message: str) -> None:
    with pytest.raises(MTBenchDataError, match=message):
        parse_questions(_jsonl(edit(question_lines)), "questions.jsonl")


def test_question_checks_pass_the_real_file(question_lines: list[dict]) -> None:
    assert len(parse_questions(_jsonl(question_lines), "questions.jsonl")) == 80


@pytest.mark.parametrize("question_id", [1, 35, 50])
def test_reference_checks_need_every_reference_question(
    reference_lines: list[dict], question_id: int
) -> None:
    kept = [r for r in reference_lines if r["question_id"] != question_id]
    with pytest.raises(MTBenchDataError, match=f"refs.jsonl: no reference for .* question {question_id}"):
        parse_references(_jsonl(kept), "refs.jsonl")


def test_reference_checks_need_two_turns(reference_lines: list[dict]) -> None:
    index = next(i for i, r in enumerate(reference_lines) if r["question_id"] == 31)
    choices = [{"index": 0, "turns": ["one turn only"]}]
    with pytest.raises(MTBenchDataError, match="reference for question 31 has 1 turns, expected 2"):
        parse_references(_jsonl(_edited(reference_lines, index, choices=choices)), "refs.jsonl")


def test_references_of_other_categories_are_not_required(reference_lines: list[dict]) -> None:
    kept = [
        r for r in reference_lines if r["question_id"] in range(1, 11) or r["question_id"] in range(31, 51)
    ]
    assert len(parse_references(_jsonl(kept), "refs.jsonl")) == 30


def test_judge_prompt_checks_need_the_four_single_prompts(mirror: Path) -> None:
    path = mirror / variant_files("neo")["judge_prompts"].path
    prompts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    kept = [p for p in prompts if p["name"] != "single-math-v1-multi-turn"]
    with pytest.raises(MTBenchDataError, match=r"judge prompts \['single-math-v1-multi-turn'\] missing"):
        parse_judge_prompts(_jsonl(kept), "prompts.jsonl")


# ---- §4 answer generation -----------------------------------------------------------------------

TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}


@pytest.mark.parametrize("category", sorted(TEMPERATURES))
def test_sampling_table(category: str) -> None:
    params = generation_params(category)
    assert params.temperature == TEMPERATURES[category]
    assert params.max_new_tokens == 1024
    assert params.top_p == 1.0
    assert params.seed == (0 if TEMPERATURES[category] > 0 else None)


def test_categories_are_the_eight_alphabetical() -> None:
    assert tuple(sorted(TEMPERATURES)) == CATEGORIES


def test_unknown_category_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown MT-bench category 'poetry'"):
        generation_params("poetry")


def test_conversation_turns() -> None:
    question = {"question_id": 71, "category": "writing", "turns": ["q1", "q2"]}
    assert turn1_messages(question) == [{"role": "user", "content": "q1"}]
    assert turn2_messages(question, "") == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "q2"},
    ]


def test_postprocess_strips_and_removes_special_tokens() -> None:
    assert postprocess_answer("\n　 答え {x}  \n") == "答え {x}"
    assert postprocess_answer(" 答え</s><|im_end|>\n", ["</s>", "<|im_end|>", ""]) == "答え"
    assert postprocess_answer("   ") == ""


def test_judge_defaults() -> None:
    assert (
        JUDGE_DEFAULTS.model,
        JUDGE_DEFAULTS.temperature,
        JUDGE_DEFAULTS.max_tokens,
        JUDGE_DEFAULTS.n,
    ) == (
        "gpt-4-0613",
        0.0,
        2048,
        1,
    )
    assert JUDGE_DEFAULTS.max_calls == 3


# ---- §5.1/§5.2 judge messages -------------------------------------------------------------------

JAPANESE = (
    "The expected language is Japanese. Responses in languages other than Japanese will incur score "
    "deductions unless specifically required. Failure to use Japanese at all will result in the lowest "
    "evaluation. However, using Japanese is not mandatory when providing only Python scripts or "
    "calculation results, where Japanese is not essential. Additionally, your explanation of judgement "
    "should be in Japanese. "
)
RATE = (
    "After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly "
    'following this format: "[[rating]]", for example: "Rating: [[5]]".'
)
JUDGE = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
)
GENERAL = (
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, "
    "creativity, and level of detail of the response. "
)
MATH = (
    "Your evaluation should consider correctness and helpfulness. You will be given a reference answer "
    "and the assistant's answer. "
)
BEGIN = "Begin your evaluation by providing a short explanation. Be as objective as possible. "
COMPARE = (
    "Begin your evaluation by comparing the assistant's answer with the reference answer. "
    "Identify and correct any mistakes. Be as objective as possible. "
)


def conversation(q1: str, a1: str, q2: str, a2: str) -> str:
    return (
        "<|The Start of Assistant A's Conversation with User|>\n\n"
        f"### User:\n{q1}\n\n### Assistant A:\n{a1}\n\n### User:\n{q2}\n\n### Assistant A:\n{a2}\n\n"
        "<|The End of Assistant A's Conversation with User|>"
    )


# Answers that would break any substitution that re-scans, trims, escapes or reads backslashes.
A1 = "  一つ目 {answer} {question_2} {ref_answer_1} \\1 \\g<0> {{x}} {}\n"
A2 = "\n二つ目 {answer_1} {question_1} {0}  "
Q_BRACES = {"question_id": 71, "category": "writing", "turns": ["書いて {answer}", "直して {answer_2}"]}
Q_MATH = {"question_id": 31, "category": "math", "turns": ["計算して {ref_answer_2} ", "\n続けて {answer_1}"]}
REF = [" 参照一 {question_1}\n", "参照二 {answer_2}\n\n"]


def test_turn1_general_message_exact() -> None:
    q1 = Q_BRACES["turns"][0]
    user = (
        f"[Instruction]\n{JUDGE}to the user question displayed below. {GENERAL}"
        f"{BEGIN}{JAPANESE}{RATE}"
        f"\n\n[Question]\n{q1}\n\n[The Start of Assistant's Answer]\n{A1}\n[The End of Assistant's Answer]"
    )
    assert judge_messages(Q_BRACES, [A1, A2], 1) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": user},
    ]


def test_turn1_math_message_exact() -> None:
    q1 = Q_MATH["turns"][0]
    user = (
        f"[Instruction]\n{JUDGE}to the user question displayed below. {MATH}{COMPARE}{JAPANESE}{RATE}"
        f"\n\n[Question]\n{q1}\n\n[The Start of Reference Answer]\n{REF[0]}\n[The End of Reference Answer]"
        f"\n\n[The Start of Assistant's Answer]\n{A1}\n[The End of Assistant's Answer]"
    )
    assert judge_messages(Q_MATH, [A1, A2], 1, REF) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": user},
    ]


def test_turn2_general_message_exact() -> None:
    q1, q2 = Q_BRACES["turns"]
    system = (
        f"{JUDGE}to the user question displayed below. {GENERAL}"
        "You evaluation should focus on the assistant's answer to the second user question. "
        f"{BEGIN}{JAPANESE}{RATE}\n\n"
    )
    assert judge_messages(Q_BRACES, [A1, A2], 2) == [
        {"role": "system", "content": system},
        {"role": "user", "content": conversation(q1, A1, q2, A2)},
    ]


def test_turn2_math_message_exact() -> None:
    q1, q2 = Q_MATH["turns"]
    system = (
        f"{JUDGE}to the user question. {MATH}"
        "You evaluation should focus on the assistant's answer to the second question. "
        f"{COMPARE}{JAPANESE}{RATE}\n\n"
    )
    user = (
        "<|The Start of Reference Answer|>\n\n"
        f"### User:\n{q1}\n\n### Reference answer:\n{REF[0]}\n\n"
        f"### User:\n{q2}\n\n### Reference answer:\n{REF[1]}\n\n"
        "<|The End of Reference Answer|>\n\n\n" + conversation(q1, A1, q2, A2)
    )
    assert judge_messages(Q_MATH, [A1, A2], 2, REF) == [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]


@pytest.mark.parametrize(
    ("category", "turn", "name"),
    [
        *[(c, 1, "single-v1") for c in ("writing", "roleplay", "extraction", "stem", "humanities")],
        *[
            (c, 2, "single-v1-multi-turn")
            for c in ("writing", "roleplay", "extraction", "stem", "humanities")
        ],
        *[(c, 1, "single-math-v1") for c in ("math", "reasoning", "coding")],
        *[(c, 2, "single-math-v1-multi-turn") for c in ("math", "reasoning", "coding")],
    ],
)
def test_judge_prompt_table(category: str, turn: int, name: str) -> None:
    assert judge_prompt_name(category, turn) == name
    assert uses_reference(category) == (category in REFERENCE_CATEGORIES)


@pytest.mark.parametrize("turn", [1, 2])
@pytest.mark.parametrize("category", sorted(TEMPERATURES))
def test_judge_messages_for_every_category_match_fastchat(neo, category: str, turn: int) -> None:
    """Against FastChat's own construction: `prompt_template.format(**fields)` (it does not re-scan
    substituted text either), on a real question and reference of each category."""
    question = next(q for q in neo.questions if q.category == category)
    reference = neo.references[question.question_id].turns
    prompt = neo.judge_prompts[judge_prompt_name(category, turn)]
    q1, q2 = question.turns
    fields = (
        {"question": q1, "answer": A1, "ref_answer_1": reference[0]}
        if turn == 1
        else {"question_1": q1, "answer_1": A1, "question_2": q2, "answer_2": A2}
        | {"ref_answer_1": reference[0], "ref_answer_2": reference[1]}
    )
    messages = judge_messages(question.model_dump(), [A1, A2], turn, reference)
    assert messages == [
        {"role": "system", "content": prompt.system_prompt},
        {"role": "user", "content": prompt.prompt_template.format(**fields)},
    ]
    # The reference reaches the judge for math, reasoning and coding only.
    assert (reference[0] in messages[1]["content"]) == (category in REFERENCE_CATEGORIES)
    if category not in REFERENCE_CATEGORIES:
        assert messages == judge_messages(question.model_dump(), [A1, A2], turn)


def test_multi_turn_system_prompts_keep_the_typo_and_trailing_newlines(neo) -> None:
    for name in ("single-v1-multi-turn", "single-math-v1-multi-turn"):
        system = neo.judge_prompts[name].system_prompt
        assert "You evaluation should focus" in system
        assert system.endswith('"Rating: [[5]]".\n\n')


def test_a_reference_category_without_reference_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"question 31 \(math\) is judged against a reference"):
        judge_messages(Q_MATH, [A1, A2], 1)
    with pytest.raises(ValueError, match="two reference turns"):
        judge_messages(Q_MATH, [A1, A2], 2, REF[:1])


def test_unknown_prompt_set_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown judge prompt set 'english'; known sets: neo"):
        judge_messages(Q_BRACES, [A1, A2], 1, prompt_set="english")


@pytest.mark.parametrize(("answers", "turn"), [([A1], 1), ([A1, A2], 3), ([A1, A2], 0)])
def test_bad_turn_or_answers_are_errors(answers: list[str], turn: int) -> None:
    with pytest.raises(ValueError):
        judge_messages(Q_BRACES, answers, turn)


# ---- §5.3 rating parse --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("judgment", "rating"),
    [
        ("Rating: [[7]]", 7),
        ("Rating: [[7.5]]", 7.5),
        ("Rating: [[8.]]", 8.0),
        ("評価: [[08]]", 8),
        ("評価: [[８]]", 8),
        ("評価: ［［８］］", 8),
        ("評価: [[٨]]", 8),
        ("[[0]]", None),
        ("[[11]]", None),
        ("[[100]]", None),
        ("[[5]] と思いましたが [[6]]", 5),
        ("[1] を参照。評価: [[6]]", 6),
        ("See [2] for details.", 2),
        ("[[ 8 ]]", None),
        ("[[8/10]]", None),
        ("[[-3]]", None),
        ("[[5, 6]]", None),
        ("[[1e3]]", None),
        ("[[rating]]", None),
        ("[[評価]]", None),
        # Beyond the table, from the rules above it:
        ("", None),
        ("評価は 7 です", None),
        ("[[11]] ではなく [3]", None),  # an out-of-range first match: no later match is tried
        ("[[12]] [[7]]", None),
        ("[[10]]", 10),
        ("[[1]]", 1),
        ("[[10.5]]", None),
        ("[[0.9]]", None),
        ("[[٧.٥]]", 7.5),
        ("[[" + "0" * 5000 + "9]]", 9),
        ("[[" + "9" * 5000 + "]]", None),
    ],
)
def test_parse_rating(judgment: str, rating: float | None) -> None:
    parsed = parse_rating(judgment)
    assert parsed == rating
    assert type(parsed) is type(rating)  # int without ".", float with it


def test_parse_rating_never_raises() -> None:
    rng = random.Random(0)
    alphabet = "[]［］()0123456789０１２３４５６７８９٠١٢٣٤٥٦٧٨٩۸৮.．,-+e/ 評価\n\u2028"
    for _ in range(5000):
        text = "".join(
            rng.choice(alphabet) if rng.random() < 0.9 else chr(rng.randrange(0x110000))
            for _ in range(rng.randrange(0, 40))
        )
        rating = parse_rating(text)
        assert rating is None or 1 <= rating <= 10


# ---- §6 aggregation -----------------------------------------------------------------------------


def _judgments(score: float = 8) -> list[dict]:
    return [
        {"question_id": qid, "category": category, "turn": turn, "score": score}
        for category in CATEGORIES
        for qid in range(10)
        for turn in (1, 2)
    ]


def _invalidate(judgments: list[dict], count: int, reason: str = "no_rating") -> list[dict]:
    return [{**j, "score": -1, "invalid_reason": reason} if i < count else j for i, j in enumerate(judgments)]


def test_aggregate_means_per_category_and_avg() -> None:
    judgments = [
        {**j, "score": float(CATEGORIES.index(j["category"]) + j["turn"])} for j in _judgments()
    ]  # category k: turn 1 scores k+1, turn 2 scores k+2; mean k+1.5
    result = aggregate(judgments)
    assert list(result) == [*CATEGORIES, "AVG"]
    assert [result[c] for c in CATEGORIES] == [k + 1.5 for k in range(8)]
    assert result["AVG"] == pytest.approx(sum(k + 1.5 for k in range(8)) / 8)


def test_aggregate_excludes_invalid_judgments() -> None:
    judgments = _invalidate(_judgments(8), 5)  # five coding judgments invalid
    assert aggregate(judgments)["coding"] == 8
    assert aggregate(judgments)["AVG"] == 8


def test_a_category_without_valid_judgment_is_null() -> None:
    judgments = [{**j, "score": -1} if j["category"] == "math" else j for j in _judgments(6)]
    result = aggregate(judgments)
    assert result["math"] is None
    assert result["AVG"] is None
    assert result["writing"] == 6


def test_aggregate_rejects_scores_outside_the_protocol() -> None:
    with pytest.raises(ValueError, match="1-10 rating or -1"):
        aggregate([{"category": "math", "turn": 1, "score": 0}])


@pytest.mark.parametrize(("n_invalid", "degraded"), [(0, False), (3, False), (4, True)])
def test_degraded_above_two_percent(n_invalid: int, degraded: bool) -> None:
    summary = summarize(_invalidate(_judgments(), n_invalid))
    assert (summary.n_judgments, summary.n_invalid, summary.n_valid) == (160, n_invalid, 160 - n_invalid)
    assert summary.invalid_ratio == n_invalid / 160
    assert summary.degraded is degraded


def test_summarize_reports_turns_reasons_and_failures() -> None:
    judgments = [{**j, "score": 9 if j["turn"] == 1 else 5} for j in _judgments()]
    judgments = _invalidate(judgments, 1, "judge_error")  # coding, turn 1
    judgments = [*judgments[:1], *_invalidate(judgments[1:], 2, "no_rating")]  # coding, turns 2 and 1
    summary = summarize(judgments, n_generation_failures=1)
    assert summary.n_invalid_by_reason == {"no_rating": 2, "judge_error": 1}
    assert summary.n_invalid == 3
    assert (summary.turn1_mean, summary.turn2_mean) == (9, 5)
    assert summary.category_means["coding"] == pytest.approx((9 * 8 + 5 * 9) / 17)
    assert summary.mtbench_score == aggregate(judgments)["AVG"]
    assert summary.degraded  # one generation failure
    assert not summarize(judgments).degraded


def test_summarize_null_score_is_degraded() -> None:
    judgments = [
        {**j, "score": -1, "invalid_reason": "no_rating"} if j["category"] == "stem" else j
        for j in _judgments()
    ]
    summary = summarize(judgments)
    assert summary.mtbench_score is None
    assert summary.category_means["stem"] is None
    assert summary.degraded


def test_summarize_needs_invalid_reasons() -> None:
    with pytest.raises(ValueError, match="invalid_reason"):
        summarize([{**j, "score": -1} for j in _judgments()])


def test_overall() -> None:
    assert overall(0.5, 6.0, False, False) == (pytest.approx(0.55), False)
    assert overall(0.5, 6.0, True, False) == (pytest.approx(0.55), True)
    assert overall(0.5, 6.0, False, True) == (pytest.approx(0.55), True)
    assert overall(None, 6.0, False, False) == (None, False)
    assert overall(0.5, None, False, True) == (None, True)
