"""The five jaster wiki_* tasks, built from the KNP files of WikipediaAnnotatedCorpus v1.1.0.

protocol-jaster.md §3.1 is the specification; every rule below cites the term it implements
("Text A", "Text B", "span text", ...). The rules follow llm-jp-eval v1.3.0's wiki processors,
which read the corpus through `rhoknp` 1.6.0, so the same library and its notions of phrases,
entities and predicate-argument structures are used here.

All five tasks come from one corpus, so each document is parsed once and yields one sample per
task. Parsing is the slow part (about 1800 documents), which is why it can run in a process pool:
documents are independent, and `Executor.map` keeps the results in file-name order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from rhoknp import BasePhrase, Document, Morpheme, Sentence
from rhoknp.cohesion import EndophoraArgument
from rhoknp.props import NamedEntityCategory

TASKS = ("wiki_reading", "wiki_ner", "wiki_dependency", "wiki_pas", "wiki_coreference")
SPLITS = ("train", "dev", "test")

# A sentence whose comment holds this marker is the content of a parenthesis that KNP cut out of
# the previous sentence; its comment also says which brackets and where (Text B puts it back).
_PAREN_SENTENCE = "括弧始"
_PAREN_REMOVED = "括弧削除"
_PAREN_PLACE = re.compile(r"括弧始:(\S+) 括弧終:(\S+) 括弧位置:(\d+)")

# wiki_reading spells capital letters out by name.
_LETTER_NAMES = {
    "A": "えー",
    "B": "びー",
    "C": "しー",
    "D": "でぃー",
    "E": "いー",
    "F": "えふ",
    "G": "じー",
    "H": "えいち",
    "I": "あい",
    "J": "じぇー",
    "K": "けー",
    "L": "える",
    "M": "えむ",
    "N": "えぬ",
    "O": "おー",
    "P": "ぴー",
    "Q": "きゅー",
    "R": "あーる",
    "S": "えす",
    "T": "てぃー",
    "U": "ゆー",
    "V": "ぶい",
    "W": "だぶりゅー",
    "X": "えっくす",
    "Y": "わい",
    "Z": "ぜっと",
}
_SPACES = (" ", "\u3000")

_NE_LABELS = {
    NamedEntityCategory.ORGANIZATION: "組織名",
    NamedEntityCategory.PERSON: "人名",
    NamedEntityCategory.LOCATION: "地名",
    NamedEntityCategory.ARTIFACT: "固有物名",
    NamedEntityCategory.DATE: "日付表現",
    NamedEntityCategory.TIME: "時刻表現",
    NamedEntityCategory.MONEY: "金額表現",
    NamedEntityCategory.PERCENT: "割合表現",
}

# Order matters: it is the order of the arguments on a wiki_pas line.
_PAS_CASES = ("ガ", "デ", "ト", "ニ", "ヘ", "ヲ", "カラ", "ガ２", "マデ", "ヨリ")
_PAS_CASE_LABELS = {"ガ２": "ガ"}

_FUNCTION_POS = ("助詞", "特殊", "判定詞")
_PREDICATE_TRAILING_POS = ("助詞", "特殊")

Record = dict[str, str]


def convert_wiki(raw_dir: Path, *, splits: Sequence[str] = SPLITS) -> dict[str, dict[str, list[Record]]]:
    """Build the wiki_* records: task → split → `{"id", "input", "output"}` in protocol order.

    `raw_dir` holds `id/<split>.id` and `<split>/<id>.knp`. Documents are taken in ascending
    file-name order (not id-list order, §3.1); a sample whose output is blank is dropped. `splits`
    exists so that tests can skip the large train split.
    """
    files = [(split, path) for split in splits for path in _split_files(raw_dir, split)]
    samples = _convert_files([path for _, path in files])
    records: dict[str, dict[str, list[Record]]] = {task: {split: [] for split in splits} for task in TASKS}
    for (split, path), per_task in zip(files, samples, strict=True):
        for task, (input_text, output_text) in per_task.items():
            if output_text.strip():
                records[task][split].append(
                    {"id": f"{task}-{split}-{path.stem}", "input": input_text, "output": output_text}
                )
    return records


def _split_files(raw_dir: Path, split: str) -> list[Path]:
    """The split's KNP files, sorted by file name; a listed id without its file is an error."""
    ids = (raw_dir / "id" / f"{split}.id").read_text(encoding="utf-8").split()
    paths = [raw_dir / split / f"{doc_id}.knp" for doc_id in ids]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"wiki {split}: {len(missing)} listed documents missing, e.g. {missing[0]}")
    return sorted(paths, key=lambda path: path.name)


def _convert_files(paths: list[Path]) -> list[dict[str, tuple[str, str]]]:
    """Convert every file, in a process pool when more than one CPU is available; order is kept."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cpus, len(paths))
    if workers <= 1:
        return [_convert_file(path) for path in paths]
    # spawn, not fork: callers (the run pipeline) hold threads, and forking a threaded process can
    # deadlock the children (nor forkserver: its socket path breaks under a long $TMPDIR).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_convert_file, paths, chunksize=max(1, len(paths) // (workers * 8))))


def _convert_file(path: Path) -> dict[str, tuple[str, str]]:
    """Parse one KNP file and return (input, output) per task (module level so a pool can pickle it)."""
    with _quiet_rhoknp():
        document = Document.from_knp(path.read_text(encoding="utf-8"))
        return convert_document(document)


@contextmanager
def _quiet_rhoknp() -> Iterator[None]:
    """Silence rhoknp's per-tag warnings while parsing.

    The corpus makes rhoknp warn about 1,700 times: `<rel>` tags whose target text or index does not
    fit, and named entities whose text matches no morpheme span (rhoknp drops those). Upstream read
    the same files with the same library, so this is the protocol's data, not an error of this
    conversion; on stderr the warnings would only bury real messages.
    """
    logger = logging.getLogger("rhoknp")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def convert_document(document: Document) -> dict[str, tuple[str, str]]:
    """One document's (input, output) for each of the five tasks, before the blank-output filter."""
    kept = [sentence for sentence in document.sentences if _PAREN_SENTENCE not in sentence.misc_comment]
    text_a = "".join(sentence.text for sentence in kept)
    text_b = _text_with_parentheses(document.sentences)
    return {
        "wiki_reading": (text_a, _reading(kept)),
        "wiki_ner": (text_b, _named_entities(document)),
        "wiki_dependency": (text_a, _dependencies(kept)),
        "wiki_pas": (text_b, _predicate_arguments(document)),
        "wiki_coreference": _coreference(kept),
    }


def _text_with_parentheses(sentences: list[Sentence]) -> str:
    """Text B: each sentence marked 括弧削除 gets the next sentence back inside its brackets.

    Only the sentence right after it is re-inserted; a second parenthesis of the same sentence
    stays a sentence of its own, without brackets: §3.1 consumes one sentence per 括弧削除.
    """
    texts = []
    walk = iter(sentences)
    for sentence in walk:
        text = sentence.text
        if _PAREN_REMOVED in sentence.misc_comment:
            inner = next(walk, None)
            place = _PAREN_PLACE.search(inner.misc_comment) if inner is not None else None
            if inner is None or place is None:
                raise ValueError(f"{sentence.sid}: 括弧削除 is not followed by a 括弧始 sentence")
            opening, closing, offset = place[1], place[2], int(place[3])
            text = text[:offset] + opening + inner.text + closing + text[offset:]
        texts.append(text)
    return "".join(texts)


def _reading(sentences: list[Sentence]) -> str:
    return "".join(_morpheme_reading(morpheme) for sentence in sentences for morpheme in sentence.morphemes)


def _morpheme_reading(morpheme: Morpheme) -> str:
    """A morpheme's reading in hiragana, with capital letters spelt out by name."""
    if morpheme.reading in _SPACES and morpheme.text not in _SPACES:
        return ""
    reading = morpheme.reading.split("/", 1)[0]  # "にっぽん/にほん": the first reading
    if reading and all(char in _LETTER_NAMES for char in reading):
        return "".join(_LETTER_NAMES[char] for char in reading)
    return reading


def _named_entities(document: Document) -> str:
    """`{text}（{label}）` for every entity of the whole document on one line, OPTIONAL left out."""
    return " ".join(
        f"{entity.text}（{_NE_LABELS[entity.category]}）"
        for entity in document.named_entities
        if entity.category != NamedEntityCategory.OPTIONAL
    )


def _dependencies(sentences: list[Sentence]) -> str:
    return "\n".join(
        f"{phrase.text} -> {phrase.parent.text}"
        for sentence in sentences
        for phrase in sentence.phrases
        if phrase.parent is not None
    )


def _predicate_arguments(document: Document) -> str:
    """One line per predicate with arguments: `{predicate} {case}：{argument} ...`."""
    lines = []
    for pas in document.pas_list:
        own_phrase = pas.predicate.phrase
        arguments = "".join(
            f" {_PAS_CASE_LABELS.get(case, case)}：{_span_text(argument.base_phrase)}"
            for case in _PAS_CASES
            for argument in pas.get_arguments(case, relax=False)
            if isinstance(argument, EndophoraArgument) and argument.phrase != own_phrase
        )
        predicate = _strip_morphemes(own_phrase.morphemes, _FUNCTION_POS, _PREDICATE_TRAILING_POS)
        if predicate and arguments:
            lines.append(predicate + arguments)
    return "\n".join(lines)


def _coreference(kept: list[Sentence]) -> tuple[str, str]:
    """Coreference chains of the document rebuilt from the kept sentences (Text A).

    Rebuilding matters: rhoknp then derives the entities without the parenthetical sentences,
    so chains through a parenthesis are cut exactly as upstream cut them.
    """
    rebuilt = Document.from_sentences(kept)
    groups: dict[tuple[int, ...], list[BasePhrase]] = {}
    for base_phrase in rebuilt.base_phrases:
        if not base_phrase.entities:
            continue
        members = groups.setdefault(tuple(sorted(entity.eid for entity in base_phrase.entities)), [])
        if base_phrase not in members:
            members.append(base_phrase)
    output = "\n".join(
        " ".join(_span_text(member) for member in members) for members in groups.values() if len(members) >= 2
    )
    return rebuilt.text, output


def _span_text(base_phrase: BasePhrase) -> str:
    """A base phrase widened to its dependents inside its phrase, without function words at the ends.

    A base phrase alone is often a fragment ("議会" of "アメリカ議会図書館"); the contiguous
    neighbours that depend on it give the mention as a reader would name it.
    """
    siblings = base_phrase.phrase.base_phrases
    anchor = siblings.index(base_phrase)
    end = anchor + 1
    while end < len(siblings) and _depends_on(siblings[end], base_phrase):
        end += 1
    start = anchor
    while start > 0 and _depends_on(siblings[start - 1], base_phrase):
        start -= 1
    morphemes = [morpheme for member in siblings[start:end] for morpheme in member.morphemes]
    return _strip_morphemes(morphemes, _FUNCTION_POS, _FUNCTION_POS)


def _depends_on(candidate: BasePhrase, head: BasePhrase) -> bool:
    """Whether `candidate` is a descendant of `head` in its sentence's dependency tree.

    Walks up the parent indices rather than down `children`: rhoknp recomputes `children` by
    comparing every base phrase of the sentence, which made span texts the slowest step.
    """
    base_phrases = head.sentence.base_phrases
    index = candidate.index
    for _ in base_phrases:  # bounded: a malformed cycle cannot loop forever
        if index == head.index:
            return True
        if index == -1:
            return False
        parent = base_phrases[index].parent_index
        if parent is None:
            return False
        index = parent
    return False


def _strip_morphemes(
    morphemes: list[Morpheme], leading_pos: tuple[str, ...], trailing_pos: tuple[str, ...]
) -> str:
    """Concatenate the morphemes without leading/trailing ones of the given POS, or all if none remain."""
    start, end = 0, len(morphemes)
    while start < end and morphemes[start].pos in leading_pos:
        start += 1
    while end > start and morphemes[end - 1].pos in trailing_pos:
        end -= 1
    return "".join(morpheme.text for morpheme in morphemes[start:end] or morphemes)
