"""The 16 jaster datasets of profile ``neo`` as data: one declaration each.

A declaration names the dataset, its raw source (a manifest under ``nejumi_eval/benchmarks/jaster/
manifests``) and its converter; everything the protocol fixes per dataset (instruction, output length,
metric, category, labels) comes from the task table ``api/v1alpha1/jaster_tasks.json`` so it is written
down once. Adding a dataset = adding its row to the task table and one ``_declare`` line here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from nejumi_eval.benchmarks.jaster import convert
from nejumi_eval.benchmarks.jaster.tasks import JasterTask, task_table

Converter = Callable[[Path], convert.Splits]


class JasterDataset(BaseModel):
    """Everything needed to prepare and score one dataset."""

    model_config = ConfigDict(frozen=True)

    name: str
    source: str
    convert: Converter
    converter_module: str
    """Module whose source text versions the converter's output (part of the prepared-cache key)."""
    task: JasterTask

    @property
    def instruction(self) -> str:
        return self.task.instruction

    @property
    def metric(self) -> str:
        return self.task.metrics[0]

    @property
    def category(self) -> str:
        return self.task.category

    @property
    def output_length(self) -> int:
        return self.task.output_length


def _declare(
    name: str, source: str, converter: Converter, converter_module: str = convert.__name__
) -> JasterDataset:
    return JasterDataset(
        name=name,
        source=source,
        convert=converter,
        converter_module=converter_module,
        task=task_table().tasks[name],
    )


WIKI_MODULE = "nejumi_eval.benchmarks.jaster.wiki"


@functools.lru_cache(maxsize=1)
def _wiki_corpus(raw: Path) -> dict[str, convert.Splits]:
    """One parse of the corpus serves all five wiki_* datasets (rhoknp parsing is the slow part)."""
    from nejumi_eval.benchmarks.jaster.wiki import convert_wiki  # imported late: rhoknp is only needed here

    return convert_wiki(raw)


def _wiki_task(task: str) -> Converter:
    def converter(raw: Path) -> convert.Splits:
        return _wiki_corpus(raw)[task]

    converter.__name__ = f"wiki_task_{task}"
    return converter


DATASETS: dict[str, JasterDataset] = {
    d.name: d
    for d in (
        _declare("jamp", "jamp", convert.jamp),
        _declare("janli", "janli", convert.janli),
        _declare("jnli", "jnli", convert.jnli),
        _declare("jsem", "jsem", convert.jsem),
        _declare("jsick", "jsick", convert.jsick),
        _declare("jemhopqa", "jemhopqa", convert.jemhopqa),
        _declare("niilc", "niilc", convert.niilc),
        _declare("jsquad", "jsquad", convert.jsquad),
        _declare("jcommonsenseqa", "jcommonsenseqa", convert.jcommonsenseqa),
        _declare("chabsa", "chabsa", convert.chabsa),
        *(
            _declare(task, "wiki", _wiki_task(task), WIKI_MODULE)
            for task in ("wiki_reading", "wiki_ner", "wiki_dependency", "wiki_pas", "wiki_coreference")
        ),
        _declare("mawps", "mawps", convert.mawps),
    )
}
"""In the task table's order (protocol §8 categories list them the same way)."""
