"""wiki_* conversion (protocol-jaster.md §3.1).

Two sources of truth: a hand-made KNP document whose every expected string was written from the
rules (not from the code's output), and the real corpus mirror, for the dev/test sizes of §3.1 and
a few documents checked by hand against their KNP files.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from rhoknp import Document

from nejumi_eval.benchmarks.jaster.wiki import TASKS, convert_document, convert_wiki

# S1 loses two parentheses: S2 (re-inserted by Text B at offset 4) and S3 (a second one, which
# Text B leaves as a bare sentence). S4 refers to S1 directly (同国 = 日本, XYZ = ABC) and through
# the parenthetical S2 only (同社 = エービー = 社), a chain that the rebuilt document must not see.
# Its predicate 製品化した carries its arguments out of protocol order, a ガ２, an exophor (ニ),
# an argument inside its own phrase (デ) and one made only of 特殊 morphemes (ト).
HAND_MADE = textwrap.dedent(
    """\
    # S-ID:wiki99999999-00-01 括弧削除
    * 2D
    + 1D
    ABC ABC ABC 名詞 6 組織名 6 * 0 * 0 NIL
    + 3D <NE:ORGANIZATION:ABC社>
    社 しゃ 社 名詞 6 普通名詞 1 * 0 * 0 NIL
    は は は 助詞 9 副助詞 2 * 0 * 0 NIL
    、 、 、 特殊 1 読点 2 * 0 * 0 NIL
    * 2D
    + 3D <NE:LOCATION:日本>
    日本 にっぽん/にほん 日本 名詞 6 地名 4 * 0 * 0 NIL
    の の の 助詞 9 接続助詞 3 * 0 * 0 NIL
    * -1D
    + -1D <rel type="ガ" target="社" sid="wiki99999999-00-01" id="1"/>
    会社 かいしゃ 会社 名詞 6 普通名詞 1 * 0 * 0 NIL
    である である だ 判定詞 4 * 0 判定詞 25 デアル列基本形 15 NIL
    。 。 。 特殊 1 句点 1 * 0 * 0 NIL
    EOS
    # S-ID:wiki99999999-00-02 括弧始:（ 括弧終:） 括弧位置:4
    * 1D
    + 1D
    略称 りゃくしょう 略称 名詞 6 普通名詞 1 * 0 * 0 NIL
    * -1D
    + -1D <rel type="=" target="社" sid="wiki99999999-00-01" id="1"/><NE:ORGANIZATION:エービー>
    エービー えーびー エービー 名詞 6 組織名 6 * 0 * 0 NIL
    EOS
    # S-ID:wiki99999999-00-03 括弧始:（ 括弧終:） 括弧位置:8
    * -1D
    + -1D <NE:LOCATION:東京>
    東京 とうきょう 東京 名詞 6 地名 4 * 0 * 0 NIL
    EOS
    # S-ID:wiki99999999-00-04
    * 5D
    + 6D <rel type="=" target="エービー" sid="wiki99999999-00-02" id="1"/>
    同 どう 同 接頭辞 13 名詞接頭辞 1 * 0 * 0 NIL
    社 しゃ 社 名詞 6 普通名詞 1 * 0 * 0 NIL
    は は は 助詞 9 副助詞 2 * 0 * 0 NIL
    * 5D
    + 6D <rel type="=" target="日本" sid="wiki99999999-00-01" id="2"/>
    同国 どうこく 同国 名詞 6 普通名詞 1 * 0 * 0 NIL
    で で で 助詞 9 格助詞 1 * 0 * 0 NIL
    * 5D
    + 6D <NE:DATE:1日>
    1 いち 1 名詞 6 数詞 7 * 0 * 0 NIL
    日 　 日 接尾辞 14 名詞性名詞助数辞 3 * 0 * 0 NIL
    * 4D
    + 4D
    　 　 　 特殊 1 空白 6 * 0 * 0 NIL
    / / / 特殊 1 記号 5 * 0 * 0 NIL
    　 　 　 特殊 1 空白 6 * 0 * 0 NIL
    * 5D
    + 6D <rel type="=" target="ABC" sid="wiki99999999-00-01" id="0"/><NE:OPTIONAL:XYZ>
    XYZ XYZ XYZ 名詞 6 組織名 6 * 0 * 0 NIL
    を を を 助詞 9 格助詞 1 * 0 * 0 NIL
    * -1D
    + 6D
    製品 せいひん 製品 名詞 6 普通名詞 1 * 0 * 0 NIL
    + -1D {predicate_rels}
    化 か 化 接尾辞 14 名詞性名詞接尾辞 2 * 0 * 0 NIL
    した した する 動詞 2 * 0 サ変動詞 16 タ形 10 NIL
    。 。 。 特殊 1 句点 1 * 0 * 0 NIL
    EOS
    """
).format(
    predicate_rels="".join(
        [
            '<rel type="ヲ" target="XYZ" sid="wiki99999999-00-04" id="4"/>',
            '<rel type="ガ２" target="社" sid="wiki99999999-00-01" id="1"/>',
            '<rel type="ガ" target="同社" sid="wiki99999999-00-04" id="0"/>',
            '<rel type="ニ" target="不特定:人"/>',
            '<rel type="デ" target="製品" sid="wiki99999999-00-04" id="5"/>',
            '<rel type="ト" target="/" sid="wiki99999999-00-04" id="3"/>',
        ]
    )
)

# A one-sentence document without named entities or coreference: it must vanish from wiki_ner and
# wiki_coreference (blank output) and stay in the other three. 達 depends on the base phrase before
# it, the one case where a span widens forward (the corpus never has it, but §3.1 says "forward").
PLAIN = textwrap.dedent(
    """\
    # S-ID:wiki99999998-00-01
    * 1D
    + 2D
    猫 ねこ 猫 名詞 6 普通名詞 1 * 0 * 0 NIL
    + 0D
    達 たち 達 接尾辞 14 名詞性名詞接尾辞 2 * 0 * 0 NIL
    が が が 助詞 9 格助詞 1 * 0 * 0 NIL
    * -1D
    + -1D <rel type="ガ" target="猫" sid="wiki99999998-00-01" id="0"/>
    寝た ねた 寝る 動詞 2 * 0 母音動詞 1 タ形 10 NIL
    。 。 。 特殊 1 句点 1 * 0 * 0 NIL
    EOS
    """
)

TEXT_A = "ABC社は、日本の会社である。同社は同国で1日　/　XYZを製品化した。"
TEXT_B = "ABC社（略称エービー）は、日本の会社である。東京同社は同国で1日　/　XYZを製品化した。"


@pytest.fixture(scope="module")
def hand_made() -> dict[str, tuple[str, str]]:
    return convert_document(Document.from_knp(HAND_MADE))


def test_text_a_drops_parentheses_and_text_b_restores_only_the_next_sentence(hand_made) -> None:
    for task in ("wiki_reading", "wiki_dependency", "wiki_coreference"):
        assert hand_made[task][0] == TEXT_A, task
    for task in ("wiki_ner", "wiki_pas"):
        assert hand_made[task][0] == TEXT_B, task


def test_reading(hand_made) -> None:
    # ABC → letter names; にっぽん/にほん → first reading; 日 read as U+3000 → nothing; a real
    # U+3000 stays; "/" read "/" → empty before the first "/"; the parentheticals are not read.
    expected = (
        "えーびーしーしゃは、にっぽんのかいしゃである。"
        "どうしゃはどうこくでいち　　えっくすわいぜっとをせいひんかした。"
    )
    assert hand_made["wiki_reading"][1] == expected


def test_named_entities_cover_parentheses_skip_optional_and_share_one_line(hand_made) -> None:
    expected = "ABC社（組織名） 日本（地名） エービー（組織名） 東京（地名） 1日（日付表現）"
    assert hand_made["wiki_ner"][1] == expected


def test_dependency_lines_of_kept_sentences(hand_made) -> None:
    expected = [
        "ABC社は、 -> 会社である。",
        "日本の -> 会社である。",
        "同社は -> 製品化した。",
        "同国で -> 製品化した。",
        "1日 -> 製品化した。",
        "　/　 -> XYZを",
        "XYZを -> 製品化した。",
    ]
    assert hand_made["wiki_dependency"][1] == "\n".join(expected)


def test_predicate_arguments(hand_made) -> None:
    # Case order ガ デ ト ニ … ヲ … ガ２; デ (own phrase) and ニ (exophor) dropped; ガ２ written ガ.
    # Predicate: trailing 。 stripped but trailing 判定詞 kept; argument spans: widened to their
    # dependents in the phrase (ABC + 社), edge 助詞/特殊 stripped, all kept when nothing remains (ト).
    expected = ["会社である ガ：ABC社", "製品化した ガ：同社 ト：　/　 ヲ：XYZ ガ：ABC社"]
    assert hand_made["wiki_pas"][1] == "\n".join(expected)


def test_coreference_on_the_rebuilt_document(hand_made) -> None:
    # First-seen order (ABC precedes 日本), span texts; 同社 and 社 were linked only through the
    # parenthetical sentence, so they form no group.
    assert hand_made["wiki_coreference"][1] == "ABC XYZ\n日本 同国"


def test_convert_wiki_orders_by_file_name_filters_blank_outputs_and_names_ids(tmp_path: Path) -> None:
    (tmp_path / "id").mkdir()
    (tmp_path / "id" / "train.id").write_text("")
    (tmp_path / "id" / "dev.id").write_text("")
    (tmp_path / "id" / "test.id").write_text("wiki99999999\nwiki99999998\n")  # not in file-name order
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "wiki99999999.knp").write_text(HAND_MADE, encoding="utf-8")
    (tmp_path / "test" / "wiki99999998.knp").write_text(PLAIN, encoding="utf-8")

    records = convert_wiki(tmp_path)

    assert set(records) == set(TASKS)
    assert all(records[task]["train"] == [] and records[task]["dev"] == [] for task in TASKS)
    ids = {task: [record["id"] for record in records[task]["test"]] for task in TASKS}
    both = ["-test-wiki99999998", "-test-wiki99999999"]
    for task in ("wiki_reading", "wiki_dependency", "wiki_pas"):
        assert ids[task] == [task + suffix for suffix in both]
    for task in ("wiki_ner", "wiki_coreference"):
        assert ids[task] == [task + "-test-wiki99999999"]
    assert records["wiki_pas"]["test"][0] == {
        "id": "wiki_pas-test-wiki99999998",
        "input": "猫達が寝た。",
        "output": "寝た ガ：猫達",
    }


def test_convert_wiki_rejects_a_listed_document_without_its_file(tmp_path: Path) -> None:
    (tmp_path / "id").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / "id" / f"{split}.id").write_text("wiki99999999\n" if split == "dev" else "")
    with pytest.raises(FileNotFoundError, match=r"wiki99999999\.knp"):
        convert_wiki(tmp_path)


# --- the real corpus (dev and test only: train adds ~25 s and has no published size) ---


@pytest.fixture(scope="module")
def corpus(data_mirror: Path) -> dict[str, dict[str, list[dict]]]:
    return convert_wiki(data_mirror / "wiki", splits=("dev", "test"))


def _record(corpus, task: str, split: str, doc_id: str) -> dict:
    (record,) = [r for r in corpus[task][split] if r["id"] == f"{task}-{split}-{doc_id}"]
    return record


@pytest.mark.parametrize(
    ("task", "dev", "test"),
    [
        ("wiki_reading", 100, 200),
        ("wiki_ner", 64, 113),
        ("wiki_dependency", 100, 200),
        ("wiki_pas", 100, 199),
        ("wiki_coreference", 100, 200),
    ],
)
def test_corpus_sizes(corpus, task: str, dev: int, test: int) -> None:
    assert (len(corpus[task]["dev"]), len(corpus[task]["test"])) == (dev, test)


def test_corpus_records_are_in_file_name_order(corpus) -> None:
    for task in TASKS:
        for split in ("dev", "test"):
            ids = [record["id"] for record in corpus[task][split]]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_corpus_document_wiki00280639(corpus) -> None:
    """dev/wiki00280639.knp, read by hand: one sentence plus the parenthetical reading at offset 9."""
    text_a = "アメリカ議会図書館は、アメリカ合衆国の事実上の国立図書館。"
    text_b = "アメリカ議会図書館（アメリカぎかいとしょかん）は、アメリカ合衆国の事実上の国立図書館。"
    expected = {
        "wiki_reading": (
            text_a,
            "あめりかぎかいとしょかんは、あめりかがっしゅうこくのじじつじょうのこくりつとしょかん。",
        ),
        # アメリカ議会図書館 and its reading are tagged OPTIONAL.
        "wiki_ner": (text_b, "アメリカ合衆国（地名）"),
        "wiki_dependency": (
            text_a,
            "アメリカ議会図書館は、 -> 国立図書館。\n"
            "アメリカ合衆国の -> 国立図書館。\n"
            "事実上の -> 国立図書館。",
        ),
        # 館 (ガ) widens to アメリカ議会図書館; ノ？ and 修飾 are not protocol cases.
        "wiki_pas": (text_b, "国立図書館 ガ：アメリカ議会図書館"),
        # アメリカ合衆国 = アメリカ; 館。 =構 館, each widened within its phrase.
        "wiki_coreference": (text_a, "アメリカ アメリカ合衆国\nアメリカ議会図書館 国立図書館"),
    }
    for task, (input_text, output_text) in expected.items():
        record = _record(corpus, task, "dev", "wiki00280639")
        assert (record["input"], record["output"]) == (input_text, output_text), task


def test_corpus_second_parenthesis_stays_a_bare_sentence(corpus) -> None:
    """test/wiki00208466.knp: S1 lost （むけいぶんかいさん） at 6 and （ユネスコ） at 65; only the first
    comes back, the second follows S1 as a sentence of its own."""
    s1 = (
        "無形文化遺産は、民俗文化財、フォークロア、口承伝統などの無形文化財を保護対象とした、"
        "国際連合教育科学文化機関の事業の一つ。"
    )
    rest = (
        "2006年に発効した無形文化遺産の保護に関する条約に基づく。"
        "無形文化遺産に対して、ユネスコの世界遺産は建築物など有形文化財を対象とする。"
        "関係して2001年から3回行われた傑作宣言による90件を引き継いて含まれる。"
    )
    text_b = s1[:6] + "（むけいぶんかいさん）" + s1[6:] + "ユネスコ" + rest
    assert _record(corpus, "wiki_ner", "test", "wiki00208466")["input"] == text_b
    assert _record(corpus, "wiki_pas", "test", "wiki00208466")["input"] == text_b
    assert _record(corpus, "wiki_reading", "test", "wiki00208466")["input"] == s1 + rest


def test_corpus_reading_of_a_slash(corpus) -> None:
    """test/wiki00094695.knp: セーリング / セイリング, where "/" is read "/" → nothing before it."""
    record = _record(corpus, "wiki_reading", "test", "wiki00094695")
    assert record["input"].startswith("セーリング/セイリングあるいは帆走とは、")
    assert record["output"].startswith("せーりんぐせいりんぐあるいははんそうとは、")
