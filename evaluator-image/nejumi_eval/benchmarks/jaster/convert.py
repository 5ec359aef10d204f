"""Raw upstream files → jaster samples, one pure function per dataset (protocol-jaster.md §3).

Each converter takes the verified raw folder of its source and returns split → samples, each sample
``{"input", "output"}`` in protocol order. The rules are upstream llm-jp-eval's, written down in §3;
the shuffles use Python's ``random`` (Mersenne Twister) seeded with 42, exactly as upstream did, so
the same raw bytes always give the same splits. A split whose raw file is absent (JGLUE train files
outside the offline mirror) is left out, and the caller reports it unavailable.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import xmltodict

from nejumi_eval.benchmarks.jaster.sources import CHABSA_DIR, load_manifest

Sample = dict[str, str]
Splits = dict[str, list[Sample]]

SEED = 42


def _sample(input_: str, output: str) -> Sample:
    return {"input": input_, "output": output}


def _nli(premise: str, hypothesis: str) -> str:
    return f"前提：{premise}\n仮説：{hypothesis}"


def _shuffled(samples: Sequence[Sample]) -> list[Sample]:
    """``random.seed(42); random.shuffle(list)`` without touching the global generator."""
    out = list(samples)
    random.Random(SEED).shuffle(out)
    return out


def s90(samples: Sequence[Sample]) -> Splits:
    """Shuffle; train = the first ``int(0.9·n)``, dev = the rest."""
    out = _shuffled(samples)
    cut = int(len(out) * 0.9)
    return {"train": out[:cut], "dev": out[cut:]}


def s80(samples: Sequence[Sample]) -> Splits:
    """Shuffle; train = ``[0, int(0.8n))``, dev = ``[int(0.8n), int(0.9n))``, test = the rest."""
    out = _shuffled(samples)
    a, b = int(len(out) * 0.8), int(len(out) * 0.9)
    return {"train": out[:a], "dev": out[a:b], "test": out[b:]}


def _tsv(path: Path) -> Iterator[list[str]]:
    """Each line without its newline, split on TAB (no quoting); the header line is skipped."""
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            yield line.removesuffix("\n").split("\t")


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _xml(path: Path, force_list: tuple[str, ...]) -> dict[str, Any]:
    """xmltodict as upstream used it: text values whitespace-stripped; ``force_list`` replaces
    upstream's "dict or list" checks."""
    return xmltodict.parse(path.read_text(encoding="utf-8"), force_list=force_list)


def jamp(raw: Path) -> Splits:
    def rows(name: str) -> list[Sample]:
        return [_sample(_nli(r[1], r[2]), r[3]) for r in _tsv(raw / name)]

    return {**s90(rows("train_all.tsv")), "test": rows("test_2.tsv")}


def janli(raw: Path) -> Splits:
    test: list[Sample] = []
    rest: list[Sample] = []
    for r in _tsv(raw / "janli.tsv"):
        (test if r[-1] == "test" else rest).append(_sample(_nli(r[1], r[2]), r[3]))
    return {**s90(rest), "test": test}


def _jglue(raw: Path, read: Any, to_samples: Any) -> Splits:
    """JGLUE sources: test = valid (file order); train S90 when the train file is present."""
    splits: Splits = {"test": to_samples(read(raw / "valid-v1.1.json"))}
    if (raw / "train-v1.1.json").is_file():
        splits.update(s90(to_samples(read(raw / "train-v1.1.json"))))
    return splits


def jnli(raw: Path) -> Splits:
    return _jglue(
        raw,
        lambda p: list(_json_lines(p)),
        lambda rows: [_sample(_nli(r["sentence1"], r["sentence2"]), r["label"]) for r in rows],
    )


def jsquad(raw: Path) -> Splits:
    def samples(data: dict[str, Any]) -> list[Sample]:
        return [
            _sample(f"文章：{p['context']}\n質問：{q['question']}", q["answers"][0]["text"])
            for article in data["data"]
            for p in article["paragraphs"]
            for q in p["qas"]
        ]

    return _jglue(raw, _json, samples)


def jcommonsenseqa(raw: Path) -> Splits:
    def samples(rows: list[dict[str, Any]]) -> list[Sample]:
        return [
            _sample(
                f"質問：{r['question']}\n選択肢：" + ",".join(f"{i}.{r[f'choice{i}']}" for i in range(5)),
                str(r["label"]),
            )
            for r in rows
        ]

    return _jglue(raw, lambda p: list(_json_lines(p)), samples)


JSEM_SKIPPED_ANSWERS = frozenset({"", "infelicitous", "unacceptable", "weakacceptable"})


def jsem(raw: Path) -> Splits:
    samples: list[Sample] = []
    for name in load_manifest("jsem").filenames:
        for problem in _xml(raw / f"{name}.xml", force_list=("problem", "p"))["jsem-dataset"]["problem"]:
            answer = problem["@answer"] or ""
            if answer in JSEM_SKIPPED_ANSWERS:
                continue
            premise = "".join(p["script"] for p in problem["p"])
            samples.append(_sample(_nli(premise, problem["h"]["script"]), answer))
    return s80(samples)


def jsick(raw: Path) -> Splits:
    def rows(name: str) -> list[Sample]:
        return [_sample(_nli(r[8], r[9]), r[10]) for r in _tsv(raw / name)]

    return {**s90(rows("train.tsv")), "test": rows("test.tsv")}


def jemhopqa(raw: Path) -> Splits:
    def rows(name: str) -> list[Sample]:
        return [_sample(f"質問：{r['question']}", r["answer"]) for r in _json(raw / name)]

    return {**s90(rows("train.json")), "test": rows("dev.json")}


def niilc(raw: Path) -> Splits:
    def rows(name: str) -> list[Sample]:
        samples = []
        for q in _xml(raw / name, force_list=("question", "answer"))["questions"]["question"]:
            output = ",".join(a for a in q["answers"]["answer"] if a)
            if output != "-":
                samples.append(_sample(f"質問：{q['text']}", output))
        return samples

    return {**s90(rows("NIILC-ECQA2015_dev.xml")), "test": rows("NIILC-ECQA2015_test.xml")}


def chabsa(raw: Path) -> Splits:
    samples: list[Sample] = []
    for path in sorted((raw / CHABSA_DIR).glob("*.json"), key=lambda p: p.name):
        for sentence in _json(path)["sentences"]:
            pairs = [f"{o['target']} {o['polarity']}" for o in sentence["opinions"]]
            if pairs:
                samples.append(_sample(f"文章：{sentence['sentence']}", "\n".join(pairs)))
    return s80(samples)


MAWPS_QA_DELIMITER = "\n解答："


def mawps(raw: Path) -> Splits:
    """train: the few-shot example files (answer between 答えは and です。); unused in ``neo``.
    dev/test: test.json shuffled, dev = the first ``int(n/2)``, test = the rest."""
    train: list[Sample] = []
    for name in ("zero_shot_example.json", "shot_example.json"):
        for example in _json(raw / name):
            question, answer = example["shot_example"].split(MAWPS_QA_DELIMITER)
            train.append(_sample(question, answer.split("答えは")[1].split("です。")[0]))
    shuffled = _shuffled(
        [_sample(r["question"].split(MAWPS_QA_DELIMITER)[0], r["answer"]) for r in _json(raw / "test.json")]
    )
    half = int(len(shuffled) / 2)
    return {"train": train, "dev": shuffled[:half], "test": shuffled[half:]}
