"""jaster preprocessing on the real mirrored files: counts, labels, concrete records, S90/S80 splits.

The split checks rebuild each split independently of the converters (plain ``str.split`` instead of
line iteration, ElementTree instead of xmltodict, the global ``random`` as upstream used it), so a
converter that drifts from protocol-jaster.md §3 disagrees with them.
"""

from __future__ import annotations

import json
import os
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.benchmarks.jaster import datasets as registry
from nejumi_eval.benchmarks.jaster.datasets import DATASETS, task_table
from nejumi_eval.benchmarks.jaster.prepare import SplitUnavailable, load, prepare
from nejumi_eval.runtime.fetch import DataError

OURS = (
    "jamp",
    "janli",
    "jnli",
    "jsem",
    "jsick",
    "jemhopqa",
    "niilc",
    "jsquad",
    "jcommonsenseqa",
    "chabsa",
    "mawps",
)
WIKI = ("wiki_reading", "wiki_ner", "wiki_dependency", "wiki_pas", "wiki_coreference")

# protocol-jaster.md §3 table (train/dev/test); None = unavailable offline (JGLUE train not mirrored).
COUNTS: dict[str, tuple[int | None, int | None, int]] = {
    "jamp": (8955, 995, 348),
    "janli": (12312, 1368, 720),
    "jnli": (None, None, 2434),
    "jsem": (12667, 1583, 1584),
    "jsick": (4500, 500, 4927),
    "jemhopqa": (953, 106, 120),
    "niilc": (715, 80, 198),
    "jsquad": (None, None, 4442),
    "jcommonsenseqa": (8045, 894, 1119),
    "chabsa": (2572, 321, 322),
    "mawps": (16, 500, 500),
}
SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def records(data_mirror: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
    """Every available split of our 11 datasets, prepared once for the module."""
    assert Path(os.environ["NEJUMI_DATA_MIRROR"]) == data_mirror
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for name in OURS:
        out[name] = {}
        for split, expected in zip(SPLITS, COUNTS[name], strict=True):
            if expected is not None:
                out[name][split] = load(name, split)
    return out


def io(recs: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(r["input"], r["output"]) for r in recs]


def nli(premise: str, hypothesis: str) -> str:
    return f"前提：{premise}\n仮説：{hypothesis}"


def upstream_shuffle(items: list[Any]) -> list[Any]:
    """What llm-jp-eval does: seed the global generator, shuffle in place."""
    state = random.getstate()
    try:
        random.seed(42)
        random.shuffle(items)
    finally:
        random.setstate(state)
    return items


def s90(items: list[Any]) -> tuple[list[Any], list[Any]]:
    items = upstream_shuffle(items)
    return items[: int(len(items) * 0.9)], items[int(len(items) * 0.9) :]


def s80(items: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    items = upstream_shuffle(items)
    a, b = int(len(items) * 0.8), int(len(items) * 0.9)
    return items[:a], items[a:b], items[b:]


def tsv_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")[1:] if line]


# ---- registry ------------------------------------------------------------------------------------


def test_registry_matches_task_table() -> None:
    tasks = task_table().tasks
    assert list(DATASETS) == list(tasks) == [*OURS[:10], *WIKI, "mawps"]
    for name, ds in DATASETS.items():
        assert ds.instruction == tasks[name].instruction
        assert f"{name}_{ds.metric}" == tasks[name].score_key
        assert name in task_table().categories[ds.category]
        assert ds.source == ("wiki" if name.startswith("wiki_") else name)


# ---- counts, ids, labels -------------------------------------------------------------------------


@pytest.mark.parametrize("name", OURS)
def test_counts(records: dict[str, dict[str, list[dict[str, str]]]], name: str) -> None:
    got = tuple(len(records[name][s]) if s in records[name] else None for s in SPLITS)
    assert got == COUNTS[name]


@pytest.mark.parametrize("name", OURS)
def test_record_shape_and_ids(records: dict[str, dict[str, list[dict[str, str]]]], name: str) -> None:
    for split, recs in records[name].items():
        assert [r["id"] for r in recs] == [f"{name}-{split}-{i}" for i in range(len(recs))]
        assert all(set(r) == {"id", "instruction", "input", "output"} for r in recs)
        assert all(r["instruction"] == DATASETS[name].instruction for r in recs)
        assert all(isinstance(r["input"], str) and isinstance(r["output"], str) and r["output"] for r in recs)


@pytest.mark.parametrize("name", [n for n in OURS if task_table().tasks[n].labels])
def test_gold_labels_are_task_labels(records: dict[str, dict[str, list[dict[str, str]]]], name: str) -> None:
    labels = set(task_table().tasks[name].labels or [])
    if name == "chabsa":  # "<target> <polarity>" lines
        golds = {
            line.rsplit(" ", 1)[1]
            for recs in records[name].values()
            for r in recs
            for line in r["output"].split("\n")
        }
    else:
        golds = {r["output"] for recs in records[name].values() for r in recs}
    assert golds == labels


@pytest.mark.parametrize("name", ["jnli", "jsquad"])
@pytest.mark.parametrize("split", ["train", "dev"])
def test_jglue_train_and_dev_are_unavailable_offline(name: str, split: str) -> None:
    with pytest.raises(
        SplitUnavailable, match=rf"^{name}: the {split} split is unavailable: .*train-v1\.1\.json"
    ):
        load(name, split)


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(DataError, match="unknown jaster dataset 'jglue'"):
        load("jglue", "test")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load("jamp", "valid")


# ---- concrete records read by hand from the raw files ------------------------------------------------


def test_first_test_records(records: dict[str, dict[str, list[dict[str, str]]]]) -> None:
    first = {name: (records[name]["test"][0]["input"], records[name]["test"][0]["output"]) for name in OURS}
    assert first["jamp"] == (
        "前提：ボブは選挙に撤回を表明している。\n仮説：ボブは現在選挙に撤回を表明している。",
        "entailment",
    )
    assert first["janli"] == (
        "前提：カップルが学生を追い回した\n仮説：学生をカップルが追い回した",
        "entailment",
    )
    assert first["jnli"] == (
        "前提：時計がついている場所にパブリックマーケットセンターとかかれた看板が設置されています。\n"
        "仮説：屋根の上に看板があり時計もついています。",
        "neutral",
    )
    assert first["jsick"] == (
        "前提：戸外で遊んでいる男の子は一人もおらず、微笑んでいる男性は一人もいない\n"
        "仮説：子供たちのグループが庭で遊んでいて、後ろの方には年を取った男性が立っている",
        "contradiction",
    )
    assert first["jemhopqa"] == (
        "質問：『ダンガンロンパ 希望の学園と絶望の高校生』と『ファイナルファンタジーXIII』、"
        "発売日が早いのはどちらでしょう？",
        "ファイナルファンタジーXIII",
    )
    assert first["niilc"] == ("質問：初めてノート型パソコンを作ったメーカーは？", "東芝")
    assert first["jcommonsenseqa"] == (
        "質問：電子機器で使用される最も主要な電子回路基板の事をなんと言う？\n"
        "選択肢：0.掲示板,1.パソコン,2.マザーボード,3.ハードディスク,4.まな板",
        "2",
    )
    jsquad_input, jsquad_output = first["jsquad"]
    assert jsquad_input.startswith("文章：梅雨 [SEP] 梅雨（つゆ、ばいう）は、北海道と小笠原諸島を除く日本、")
    assert jsquad_input.endswith("雨季の一種である。\n質問：日本で梅雨がないのは北海道とどこか。")
    assert jsquad_output == "小笠原諸島"  # answers[0] only


def test_niilc_answers(records: dict[str, dict[str, list[dict[str, str]]]]) -> None:
    by_input = {r["input"]: r["output"] for recs in records["niilc"].values() for r in recs}
    assert (
        by_input["質問：東海地方に含まれる県はどこ？"]
        == "愛知県、岐阜県、三重県、静岡県,愛知県、岐阜県、三重県"
    )
    # NIILC-ECQA2015-00407-01 ends with an empty <answer/>: dropped from the join.
    stevenson = by_input["質問：ジキルとハイドの作者が書いた小説は他に何がある？"]
    assert stevenson.startswith("宝島,新アラビア夜話,") and stevenson.endswith(
        ",ハーミストンのウエア,虜囚の恋,Familiar Studies of Men and Books"
    )
    # NIILC-ECQA2015-00020-01 answers "-": skipped.
    assert "質問：ビタミンCが一番多く含まれている果物は何？" not in by_input


def test_jsem_premises_are_concatenated(records: dict[str, dict[str, list[dict[str, str]]]]) -> None:
    by_input = {r["input"]: r["output"] for recs in records["jsem"].values() for r in recs}
    # GeneralizedQuantifier.xml jsem_id 15: two <p> scripts joined with no separator.
    key = nli(
        "すべてのイタリア人男性が偉大なテノール歌手になりたがっている。何人かのイタリア人男性は偉大なテノール歌手である。",
        "偉大なテノール歌手になりたがっているイタリア人男性がいる。",
    )
    assert by_input[key] == "yes"


def test_chabsa_outputs(records: dict[str, dict[str, list[dict[str, str]]]]) -> None:
    by_input = {r["input"]: r["output"] for recs in records["chabsa"].values() for r in recs}
    # e00008_ann.json sentence 2 has no opinions: skipped.
    assert not any("きのこ事業を中心として" in i and "おいしさと健康" in i for i in by_input)
    first = next(
        i for i in by_input if i.startswith("文章：当連結会計年度におけるわが国経済は、政府の経済政策や日銀")
    )
    assert by_input[first].split("\n")[:2] == ["わが国経済 neutral", "企業業績 positive"]


# ---- splits rebuilt independently ---------------------------------------------------------------------


def test_jamp_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    rows = [(nli(r[1], r[2]), r[3]) for r in tsv_rows(data_mirror / "jamp" / "train_all.tsv")]
    train, dev = s90(rows)
    assert (io(records["jamp"]["train"]), io(records["jamp"]["dev"])) == (train, dev)
    test = [(nli(r[1], r[2]), r[3]) for r in tsv_rows(data_mirror / "jamp" / "test_2.tsv")]
    assert io(records["jamp"]["test"]) == test


def test_janli_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    rows = tsv_rows(data_mirror / "janli" / "janli.tsv")
    train, dev = s90([(nli(r[1], r[2]), r[3]) for r in rows if r[-1] != "test"])
    test = [(nli(r[1], r[2]), r[3]) for r in rows if r[-1] == "test"]
    assert (io(records["janli"]["train"]), io(records["janli"]["dev"]), io(records["janli"]["test"])) == (
        train,
        dev,
        test,
    )


def test_jsick_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    train, dev = s90([(nli(r[8], r[9]), r[10]) for r in tsv_rows(data_mirror / "jsick" / "train.tsv")])
    test = [(nli(r[8], r[9]), r[10]) for r in tsv_rows(data_mirror / "jsick" / "test.tsv")]
    assert (io(records["jsick"]["train"]), io(records["jsick"]["dev"]), io(records["jsick"]["test"])) == (
        train,
        dev,
        test,
    )


def test_jemhopqa_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    raw = json.loads((data_mirror / "jemhopqa" / "train.json").read_text(encoding="utf-8"))
    train, dev = s90([(f"質問：{q['question']}", q["answer"]) for q in raw])
    assert (io(records["jemhopqa"]["train"]), io(records["jemhopqa"]["dev"])) == (train, dev)


def test_jcommonsenseqa_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    lines = (data_mirror / "jcommonsenseqa" / "train-v1.1.json").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    samples = [
        (
            f"質問：{r['question']}\n選択肢：0.{r['choice0']},1.{r['choice1']},2.{r['choice2']},3.{r['choice3']},4.{r['choice4']}",
            str(r["label"]),
        )
        for r in rows
    ]
    train, dev = s90(samples)
    assert (io(records["jcommonsenseqa"]["train"]), io(records["jcommonsenseqa"]["dev"])) == (train, dev)


def niilc_samples(path: Path) -> list[tuple[str, str]]:
    out = []
    for q in ET.parse(path).getroot().iter("question"):
        answers = ",".join(
            a.text.strip() for a in q.find("answers").iter("answer") if a.text and a.text.strip()
        )
        if answers != "-":
            out.append((f"質問：{q.find('text').text.strip()}", answers))
    return out


def test_niilc_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    train, dev = s90(niilc_samples(data_mirror / "niilc" / "NIILC-ECQA2015_dev.xml"))
    test = niilc_samples(data_mirror / "niilc" / "NIILC-ECQA2015_test.xml")
    assert (io(records["niilc"]["train"]), io(records["niilc"]["dev"]), io(records["niilc"]["test"])) == (
        train,
        dev,
        test,
    )


def test_jsem_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    order = json.loads((data_mirror / "jsem" / "SOURCE.json").read_text(encoding="utf-8"))["filenames"]
    samples = []
    for name in order:
        for problem in ET.parse(data_mirror / "jsem" / f"{name}.xml").getroot().iter("problem"):
            answer = problem.get("answer")
            if answer in ("", "infelicitous", "unacceptable", "weakacceptable"):
                continue
            premise = "".join(p.find("script").text.strip() for p in problem.findall("p"))
            samples.append((nli(premise, problem.find("h").find("script").text.strip()), answer))
    train, dev, test = s80(samples)
    assert (io(records["jsem"]["train"]), io(records["jsem"]["dev"]), io(records["jsem"]["test"])) == (
        train,
        dev,
        test,
    )


def test_chabsa_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    folder = data_mirror / "chabsa" / "chABSA-dataset"
    samples = []
    for name in sorted(p.name for p in folder.iterdir() if p.suffix == ".json"):
        for s in json.loads((folder / name).read_text(encoding="utf-8"))["sentences"]:
            if s["opinions"]:
                samples.append(
                    (
                        f"文章：{s['sentence']}",
                        "\n".join(f"{o['target']} {o['polarity']}" for o in s["opinions"]),
                    )
                )
    train, dev, test = s80(samples)
    assert (io(records["chabsa"]["train"]), io(records["chabsa"]["dev"]), io(records["chabsa"]["test"])) == (
        train,
        dev,
        test,
    )


def test_mawps_split(records: dict[str, dict[str, list[dict[str, str]]]], data_mirror: Path) -> None:
    raw = json.loads((data_mirror / "mawps" / "test.json").read_text(encoding="utf-8"))
    samples = upstream_shuffle([(q["question"][: q["question"].index("\n解答：")], q["answer"]) for q in raw])
    half = len(samples) // 2
    assert (io(records["mawps"]["dev"]), io(records["mawps"]["test"])) == (samples[:half], samples[half:])
    assert all(i.startswith("問題：") and "解答" not in i for i, _ in samples)
    assert io(records["mawps"]["train"])[:2] == [
        (
            "問題：佐藤は16個の青い風船、鈴木は11個の青い風船、高橋は99個の青い風船を持っています。彼らは全部でいくつの青い風船を持っているのでしょう？",
            "126",
        ),
        (
            "問題：明日奈はパンを作りました。彼女は0.325カップの小麦粉と0.125カップの砂糖を使いました。明日奈は小麦粉を砂糖より何カップ多く使いましたか？",
            "0.2",
        ),
    ]


# ---- prepare / cache ---------------------------------------------------------------------------------


def test_prepare_reports_and_warm_cache(records: dict[str, dict[str, list[dict[str, str]]]]) -> None:
    report = prepare(OURS, progress=False)  # already prepared by the `records` fixture
    assert all(r.cached for r in report.datasets.values())
    assert report.dev_unavailable == ["jnli", "jsquad"]
    assert report.datasets["jsem"].counts == {"train": 12667, "dev": 1583, "test": 1584}
    assert set(report.datasets["jnli"].unavailable) == {"train", "dev"}
    prepared = list((report.cache_dir / "jaster" / "prepared" / "jamp").glob("*.json"))
    assert len(prepared) == 1


def test_wiki_datasets_share_one_corpus_parse(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_mirror: Path
) -> None:
    """The five wiki_* declarations call ``convert_wiki`` once between them (its output is faked)."""
    wiki = pytest.importorskip("nejumi_eval.benchmarks.jaster.wiki")
    calls: list[Path] = []

    def fake(raw: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
        calls.append(raw)
        return {
            task: {
                split: [
                    {"id": f"{task}-{split}-doc{i}", "input": f"{task} {i}", "output": "x"}
                    for i in range(200)
                ]
                for split in SPLITS
            }
            for task in WIKI
        }

    monkeypatch.setattr(wiki, "convert_wiki", fake)
    monkeypatch.setenv("NEJUMI_CACHE_DIR", str(tmp_path))  # keep the fake records out of the shared cache
    registry._wiki_corpus.cache_clear()
    try:
        report = prepare(WIKI, progress=False)
        assert calls == [data_mirror / "wiki"]
        assert {n: r.counts["test"] for n, r in report.datasets.items()} == dict.fromkeys(WIKI, 200)
        assert load("wiki_ner", "dev")[1] == {
            "id": "wiki_ner-dev-doc1",
            "input": "wiki_ner 1",
            "output": "x",
            "instruction": DATASETS["wiki_ner"].instruction,
        }
    finally:
        registry._wiki_corpus.cache_clear()


@pytest.mark.slow
def test_all_sixteen_counts() -> None:
    """End to end over the real wiki corpus too (about a minute: rhoknp parses 1817 documents)."""
    report = prepare(progress=False)
    wiki_counts = {n: (r.counts["dev"], r.counts["test"]) for n, r in report.datasets.items() if n in WIKI}
    assert wiki_counts == {
        "wiki_reading": (100, 200),
        "wiki_ner": (64, 113),
        "wiki_dependency": (100, 200),
        "wiki_pas": (100, 199),
        "wiki_coreference": (100, 200),
    }
    for name, (train, dev, test) in COUNTS.items():
        counts = report.datasets[name].counts
        assert (counts.get("train"), counts.get("dev"), counts["test"]) == (train, dev, test)
