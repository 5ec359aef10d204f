"""MT-bench-jp data files: which file each variant reads, sha256 pinning, and the §3 load-time checks.

A file is used only after its bytes match the sha256 pinned in the mirror manifest (copied into
the package as `nejumi_eval/benchmarks/mtbench/manifests/SOURCE.json`), and only after the records pass
the checks of protocol-mtbench.md §3: a silently different question or reference set would give
scores that look comparable and are not.

The folder argument is a folder laid out like `shared/datasets/mt_bench_ja`. `default_mirror`
finds one: `$NEJUMI_MTBENCH_MIRROR`, the `mt_bench_ja` folder beside `$NEJUMI_DATA_MIRROR`, or else
the pinned files downloaded (sha256-checked) by the shared fetch module into the cache.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nejumi_eval.benchmarks.mtbench.protocol import CATEGORIES, PROTOCOL, category_rule
from nejumi_eval.runtime.files import DigestMismatch
from nejumi_eval.runtime.files import read_verified as _read_pinned

if TYPE_CHECKING:
    from nejumi_eval.runtime.client.retry import RetryPolicy

MIRROR_ENV = "NEJUMI_MTBENCH_MIRROR"
SOURCE = "mt_bench_ja"
QUESTION_COUNT = sum(len(rule.question_ids) for rule in PROTOCOL.categories.values())


class MTBenchDataError(ValueError):
    """A data file is missing, differs from its pinned sha256, or fails a §3 check. Always fatal."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Question(_Record):
    question_id: int
    category: str
    turns: Annotated[list[str], Field(min_length=2, max_length=2)]

    @field_validator("category")
    @classmethod
    def _known_category(cls, category: str) -> str:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
        return category


class Choice(_Record):
    index: int
    turns: list[str]


class Reference(_Record):
    question_id: int
    answer_id: str
    model_id: str
    choices: Annotated[list[Choice], Field(min_length=1)]
    tstamp: float

    @property
    def turns(self) -> list[str]:
        """The reference turns; only `choices[0]` is ever read (§3)."""
        return self.choices[0].turns


class JudgePrompt(_Record):
    name: str
    type: str
    system_prompt: str
    prompt_template: str
    output_format: str
    category: str
    description: str


class DataFile(_Record):
    """One pinned file: where it sits in the mirror and where it comes from upstream (§2)."""

    path: str
    repo: str
    commit: str
    upstream_path: str
    sha256: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.upstream_path}"


class MTBenchData(_Record):
    variant: str
    files: dict[str, DataFile]
    questions: list[Question]
    references: dict[int, Reference]
    judge_prompts: dict[str, JudgePrompt]


@cache
def _manifest() -> dict[str, DataFile]:
    source = files("nejumi_eval.benchmarks.mtbench").joinpath("manifests", "SOURCE.json")
    entries = json.loads(source.read_text(encoding="utf-8"))["files"]
    return {entry["path"]: DataFile.model_validate(entry) for entry in entries}


def _data_file(path: str) -> DataFile:
    try:
        return _manifest()[path]
    except KeyError:
        raise MTBenchDataError(f"{path} is not in the mtbench SOURCE.json manifest") from None


def variant_files(variant: str = "neo") -> dict[str, DataFile]:
    """The three files a variant reads, keyed `questions`, `references`, `judge_prompts`."""
    try:
        chosen = PROTOCOL.variants[variant]
    except KeyError:
        known = ", ".join(PROTOCOL.variants)
        raise ValueError(f"unknown MT-bench variant {variant!r}; known variants: {known}") from None
    return {
        "questions": _data_file(chosen.questions),
        "references": _data_file(chosen.references),
        "judge_prompts": judge_prompt_file(chosen.judge_prompts),
    }


def judge_prompt_file(prompt_set: str = "neo") -> DataFile:
    """The file of a judge-prompt set (`neo` → nejumi_judge_prompt_v1)."""
    try:
        return _data_file(PROTOCOL.judge_prompt_sets[prompt_set])
    except KeyError:
        known = ", ".join(PROTOCOL.judge_prompt_sets)
        raise ValueError(f"unknown judge prompt set {prompt_set!r}; known sets: {known}") from None


def default_mirror() -> Path:
    """The folder to read: `$NEJUMI_MTBENCH_MIRROR`, else `mt_bench_ja` beside the jaster mirror
    (`$NEJUMI_DATA_MIRROR/../mt_bench_ja`), else every pinned file downloaded into the cache."""
    if os.environ.get(MIRROR_ENV):
        return Path(os.environ[MIRROR_ENV]).expanduser()
    from nejumi_eval.runtime.fetch import mirror_root

    jaster_mirror = mirror_root()
    if jaster_mirror is not None and (jaster_mirror.parent / SOURCE).is_dir():
        return jaster_mirror.parent / SOURCE
    return _downloaded()


@cache
def _downloaded() -> Path:
    return download_pinned()


def download_pinned(
    cache_dir: Path | None = None,
    url_rewrite: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
) -> Path:
    """Every file both variants read, from its pinned URL into `<cache>/raw/mt_bench_ja/`, sha256-
    checked (the shared fetch module). `url_rewrite` exists for tests (a local server).

    A file that cannot be downloaded is a `DataError` naming its URL and both mirror variables; an
    unreachable host (no network, no DNS) fails within seconds rather than after the full backoff.
    """
    from nejumi_eval.runtime.fetch import MIRROR_ENV as DATA_MIRROR_ENV
    from nejumi_eval.runtime.fetch import RemoteFile, fetch_files

    used = {f.path for name in PROTOCOL.variants for f in variant_files(name).values()}
    pinned = [
        RemoteFile(name=f.path, url=f.url, sha256=f.sha256) for f in _manifest().values() if f.path in used
    ]
    remedy = (
        f"Check network access, or set {MIRROR_ENV} to a folder laid out like shared/datasets/{SOURCE} "
        f"(or {DATA_MIRROR_ENV} to a raw-data mirror with {SOURCE}/ beside it)."
    )
    return fetch_files(
        SOURCE, pinned, cache_dir=cache_dir, url_rewrite=url_rewrite, retry=retry, remedy=remedy
    )


def read_verified(folder: Path, file: DataFile) -> bytes:
    """The file's bytes, only if they match the pinned sha256."""
    path = folder / file.path
    try:
        return _read_pinned(path, file.sha256)
    except OSError as error:
        raise MTBenchDataError(
            f"{path}: cannot read MT-bench data file ({error}); set {MIRROR_ENV}?"
        ) from error
    except DigestMismatch as error:
        raise MTBenchDataError(
            f"{path}: sha256 {error.actual} differs from the pinned {error.expected}; refusing to use it"
        ) from None


_R = TypeVar("_R", bound=_Record)


def _records(text: str, source: str, model: type[_R]) -> list[_R]:
    # split("\n"), not splitlines(): a JSON line may hold a raw U+2028, which splitlines() breaks on.
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(model.model_validate_json(line))
        except ValidationError as error:
            raise MTBenchDataError(f"{source}:{number}: not a valid {model.__name__}: {error}") from error
    return records


def _unique_ids(ids: list[int], source: str) -> None:
    duplicates = sorted(qid for qid, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise MTBenchDataError(f"{source}: duplicate question_id {duplicates}")


def parse_questions(text: str, source: str) -> list[Question]:
    """Question records, checked (§3): 80 in all, unique ids, two turns each (the model), each id in
    its category's range. The ranges partition 1-80 ten by ten, so 80 unique in-range ids are
    exactly 10 per category."""
    questions = _records(text, source, Question)
    if len(questions) != QUESTION_COUNT:
        raise MTBenchDataError(f"{source}: {len(questions)} questions, expected {QUESTION_COUNT}")
    _unique_ids([q.question_id for q in questions], source)
    for question in questions:
        ids = category_rule(question.category).question_ids
        if question.question_id not in ids:
            raise MTBenchDataError(
                f"{source}: question {question.question_id} is {question.category!r}, "
                f"outside that category's ids {ids.start}-{ids.stop - 1}"
            )
    return questions


def parse_references(text: str, source: str) -> dict[int, Reference]:
    """Reference records by question id, checked (§3): unique ids, and a two-turn reference for
    every question of a category judged against one (math, reasoning, coding)."""
    references = _records(text, source, Reference)
    _unique_ids([r.question_id for r in references], source)
    by_id = {reference.question_id: reference for reference in references}
    for category, rule in PROTOCOL.categories.items():
        if not rule.reference:
            continue
        for question_id in rule.question_ids:
            if question_id not in by_id:
                raise MTBenchDataError(f"{source}: no reference for {category} question {question_id}")
            if len(by_id[question_id].turns) != 2:
                raise MTBenchDataError(
                    f"{source}: reference for question {question_id} has "
                    f"{len(by_id[question_id].turns)} turns, expected 2"
                )
    return by_id


def parse_judge_prompts(text: str, source: str) -> dict[str, JudgePrompt]:
    """Judge prompts by name; the four that §5.1 uses must be there."""
    prompts = _records(text, source, JudgePrompt)
    names = [prompt.name for prompt in prompts]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise MTBenchDataError(f"{source}: duplicate judge prompt names {duplicates}")
    by_name = {prompt.name: prompt for prompt in prompts}
    missing = [
        name
        for name in (*PROTOCOL.judge_prompts.plain, *PROTOCOL.judge_prompts.reference)
        if name not in by_name
    ]
    if missing:
        raise MTBenchDataError(f"{source}: judge prompts {missing} missing")
    return by_name


def _verified_text(folder: Path, file: DataFile) -> tuple[str, str]:
    return read_verified(folder, file).decode("utf-8"), str(folder / file.path)


def load_questions(variant: str = "neo", folder: Path | None = None) -> list[Question]:
    return parse_questions(*_verified_text(folder or default_mirror(), variant_files(variant)["questions"]))


def load_references(variant: str = "neo", folder: Path | None = None) -> dict[int, Reference]:
    return parse_references(*_verified_text(folder or default_mirror(), variant_files(variant)["references"]))


def load_judge_prompts(prompt_set: str = "neo", folder: Path | None = None) -> dict[str, JudgePrompt]:
    return parse_judge_prompts(*_verified_text(folder or default_mirror(), judge_prompt_file(prompt_set)))


def load_variant(variant: str = "neo", folder: Path | None = None) -> MTBenchData:
    """Everything a variant reads, verified and checked; `files` is what the run records (§7)."""
    folder = folder or default_mirror()
    chosen = variant_files(variant)
    return MTBenchData(
        variant=variant,
        files=chosen,
        questions=load_questions(variant, folder),
        references=load_references(variant, folder),
        judge_prompts=load_judge_prompts(PROTOCOL.variants[variant].judge_prompts, folder),
    )
