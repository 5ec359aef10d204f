"""Prompt templates and rendering (protocol-jaster.md §4)."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

from nejumi_eval.benchmarks.jaster.prompts import (
    DEFAULT_TEMPLATE,
    PromptTemplate,
    get_template,
    render,
    template_names,
)

DOC_DEFAULT_TEXT = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
    "\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n"
)

TASKS = json.loads(
    resources.files("nejumi_eval.api.v1alpha1").joinpath("jaster_tasks.json").read_text("utf-8")
)

# Recorded with every run; a change here means the template text changed and needs a new name.
RECORDED_SHA256 = {
    "alpaca-ja-v1.3.0": "70d4d4c3ea1aa3ae64aacf20e67bc4275874a1d9566d77a07628b46dc8bdc2d7",
    "alpaca-v1.1.x": "3a4a613f82aaac61f4ee02674198a6a73861d851f14f43dbc69b9f1b1a367eb3",
    "neo-config-comment": "fb3b320111c353ebc67563b752036ed55b0b8ac8859444b7825877a1cec9dc62",
}


def test_default_is_alpaca_ja_v1_3_0_with_the_docs_exact_text() -> None:
    template = get_template()
    assert DEFAULT_TEMPLATE == "alpaca-ja-v1.3.0"
    assert template.name == "alpaca-ja-v1.3.0"
    assert template.text == DOC_DEFAULT_TEXT
    # The colons after 指示/入力/応答 are ASCII, not full-width.
    assert "### 指示:\n" in template.text and "：" not in template.text


def test_known_names_and_recorded_hashes() -> None:
    assert template_names() == ["alpaca-ja-v1.3.0", "alpaca-v1.1.x", "neo-config-comment"]
    for name, digest in RECORDED_SHA256.items():
        template = get_template(name)
        assert template.sha256 == digest
        assert template.sha256 == hashlib.sha256(template.text.encode("utf-8")).hexdigest()


def test_other_templates_come_from_their_tasks_json_keys() -> None:
    assert get_template("alpaca-v1.1.x").text == (
        "以下はタスクを説明する指示と、追加の背景情報を提供する入力の組み合わせです。要求を適切に満たす回答を書いてください。"
        "\n### 指示\n{instruction}\n\n\n### 入力：\n{input}\n### 回答：\n"
    )
    assert get_template("neo-config-comment").text == (
        "以下はタスクを説明する指示と、追加の背景情報を提供する入力の組み合わせです。要求を適切に満たす回答を書いてください。"
        "\n### 指示：\n{instruction}\n### 入力：\n{input}\n### 回答：\n"
    )


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"alpaca-ja-v1\.3\.0, alpaca-v1\.1\.x, neo-config-comment"):
        get_template("alpaca-ja")


def test_jcommonsenseqa_prompt_written_out() -> None:
    instruction = TASKS["tasks"]["jcommonsenseqa"]["instruction"]
    sample_input = "質問：主に子ども向けのものは？\n選択肢：0.世界,1.写真集,2.絵本,3.論文,4.図鑑"
    expected = (
        "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n"
        "\n"
        "### 指示:\n"
        "質問と回答の選択肢を入力として受け取り、選択肢から回答を選択してください。なお、回答は選択肢の番号（例：0）"
        "でするものとします。 回答となる数値をint型で返し、他には何も含めないことを厳守してください。\n"
        "\n"
        "### 入力:\n"
        "質問：主に子ども向けのものは？\n"
        "選択肢：0.世界,1.写真集,2.絵本,3.論文,4.図鑑\n"
        "\n"
        "### 応答:\n"
    )
    assert render(get_template(), instruction, sample_input) == expected


def test_substitution_is_single_pass_and_literal() -> None:
    template = get_template()
    # Substituted text is never re-scanned: placeholders inside the values stay literal.
    prompt = render(template, "指示 {input}", "入力 {instruction} {input}")
    assert "### 指示:\n指示 {input}\n\n### 入力:\n入力 {instruction} {input}\n\n" in prompt
    # Replacement is plain text: no regex escapes or format specs are interpreted.
    prompt = render(template, r"\1 \g<0> {0}", r"\n {}")
    assert "### 指示:\n" + r"\1 \g<0> {0}" + "\n\n### 入力:\n" + r"\n {}" + "\n\n" in prompt


def test_nothing_is_added_around_the_template() -> None:
    template = PromptTemplate(name="bare", text="{instruction}|{input}", sha256="-")
    assert render(template, "A", "B") == "A|B"
    assert render(template, "", "") == "|"
