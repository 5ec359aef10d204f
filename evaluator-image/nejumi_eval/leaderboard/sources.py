"""Where evaluations come from: each source is one function that yields `Evaluation`s, so ranking
never knows which. Results folders on disk are here (`from_results_folders`); the results store
(s3://…) is in `store_source`, NejumiEvaluation resources in `cluster` (through each status's stored
results, else status scores only) and W&B runs in `wandb_source` (the same tables by name, so the
same per-question data). Every source but W&B reads one evaluation through `load_results`.

An `Evaluation` is an `Entry` (scores, flags, provenance; no placement yet) plus its per-question
data, read lazily: a source that can only offer scores (a NejumiEvaluation's status) gives none,
and its entry is ranked without an interval.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from nejumi_eval.api.v1alpha1.cost import Cost
from nejumi_eval.api.v1alpha1.formula import OVERALL, Formula
from nejumi_eval.api.v1alpha1.summary import Summary, Usage
from nejumi_eval.benchmarks import registry
from nejumi_eval.benchmarks.reading import BenchmarkQuestions, digest, recorded_identity
from nejumi_eval.errors import InputError
from nejumi_eval.leaderboard.model import BenchmarkResult, Entry, Provenance, TokenUsage
from nejumi_eval.leaderboard.questions import read_questions

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
RUN = "run.json"
_FOLDER_TIME = re.compile(r"-(\d{8}T\d{6}Z)$")


class NoResultsError(InputError):
    """No results folder under any of the paths given (exit 2: the input is wrong)."""


@dataclass
class Evaluation:
    """One evaluation as a source offers it."""

    entry: Entry
    load_questions: Callable[[], dict[str, BenchmarkQuestions]] = field(default=dict, repr=False)

    @cached_property
    def questions(self) -> dict[str, BenchmarkQuestions]:
        """Per-benchmark per-question data (bootstrap units, drill-down rows); read on first use."""
        return self.load_questions()


# ---- results folders -------------------------------------------------------------------------


def find_results_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Results folders under `paths`: each path may be a results folder (it has summary.json), a
    folder of them (`<workspace>/results`), or a workspace (`<workspace>/results/*`)."""
    found: list[Path] = []
    seen: set[Path] = set()

    def add(folder: Path) -> None:
        real = folder.resolve()
        if real not in seen:
            seen.add(real)
            found.append(folder)

    for raw in paths:
        path = Path(raw)
        if (path / SUMMARY).is_file():
            add(path)
            continue
        for parent in (path, path / "results"):
            if parent.is_dir():
                for child in sorted(parent.iterdir()):
                    if (child / SUMMARY).is_file():
                        add(child)
    return found


def from_results_folders(paths: Sequence[str | Path]) -> list[Evaluation]:
    """Every readable evaluation under `paths`. A folder that cannot be read is skipped with a
    logged warning: one half-written or foreign folder must not stop the whole board.

    Raises `NoResultsError` naming what was searched when nothing is found."""
    folders = find_results_folders(paths)
    if not folders:
        searched = ", ".join(str(Path(p)) for p in paths) or "(none)"
        raise NoResultsError(
            f"no results found in {searched}: looked for <path>/{SUMMARY}, <path>/*/{SUMMARY} and "
            f"<path>/results/*/{SUMMARY} (run `nejumi-eval run --workspace <path>` first)"
        )
    evaluations: list[Evaluation] = []
    for folder in folders:
        try:
            evaluations.append(load_results_folder(folder))
        except (OSError, ValueError, ValidationError) as exc:
            log.warning("skipping %s: %s", folder, exc)
    if not evaluations:
        raise NoResultsError(f"results folders found in {', '.join(map(str, paths))}, but none is readable")
    return from_sources([evaluations])


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) else {}


class FolderFiles:
    """A results folder's documents and tables (what `load_results` reads), from disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def json(self, name: str) -> dict[str, Any]:
        return _read_json(self.folder / name)

    def table(self, name: str) -> list[dict[str, Any]] | None:
        path = self.folder / f"{name}.jsonl"
        if not path.is_file():
            return None
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


class ResultsFiles(Protocol):
    """Where one evaluation's results are read from: a folder, or a prefix in the results store
    (`nejumi_eval.storage.reading.StoredEvaluation`, which checks each object against its manifest)."""

    def json(self, name: str) -> dict[str, Any]: ...

    def table(self, name: str) -> list[dict[str, Any]] | None: ...


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as recorded (run.json, a W&B config); naive means UTC; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _started(folder: Path, run: dict[str, Any]) -> datetime:
    """When the evaluation started: run.json, else the folder name's UTC stamp, else its mtime."""
    started = parse_time(run.get("started_at"))
    if started is not None:
        return started
    match = _FOLDER_TIME.search(folder.name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return datetime.fromtimestamp((folder / SUMMARY).stat().st_mtime, tz=UTC)


def load_results_folder(folder: str | Path) -> Evaluation:
    """One results folder: summary.json for scores and flags, run.json for provenance."""
    folder = Path(folder)
    return load_results(
        FolderFiles(folder),
        entry_id=folder.name,
        source=str(folder),
        started=lambda run: _started(folder, run),
    )


def load_results(
    files: ResultsFiles,
    *,
    entry_id: str,
    source: str,
    started: Callable[[dict[str, Any]], datetime | None],
) -> Evaluation:
    """One evaluation's results, wherever they are: the summary for scores and flags, the run record
    for provenance, the per-question tables read on first use. `started(run)`: when it started."""
    summary = Summary.model_validate(files.json(SUMMARY))
    run = files.json(RUN)
    entry = entry_from_summary(summary, run, entry_id=entry_id, source=source, started_at=started(run))
    names = list(entry.benchmarks)
    return Evaluation(entry=entry, load_questions=lambda: read_questions(names, files.table))


# ---- summary + run record → Entry --------------------------------------------------------------


def _identity(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a benchmark's run record that decide whether two scores are comparable: what
    its reader declares (`Reading.identity`), or for a benchmark without one its `protocol` and
    `variant` where recorded."""
    reading = registry.reading(name)
    return reading.identity(record) if reading is not None else recorded_identity(record)


def _details(run: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Provenance recorded for people, not for comparability: each benchmark's own
    (`Reading.details`), then the versions."""
    details: dict[str, Any] = {}
    for name in names:
        record = run.get(name)
        reading = registry.reading(name)
        if isinstance(record, dict) and record and reading is not None:
            details.update(reading.details(record))
    if run.get("versions"):
        details["versions"] = run["versions"]
    return {k: v for k, v in details.items() if v is not None}


def _usage(summary: Summary, run: dict[str, Any]) -> TokenUsage | None:
    """The summary's `usage` where it records one (a results folder's summary.json always does),
    else the run record's (a W&B run's config is the run record), else none: a source that has
    neither (a NejumiEvaluation's status) shows no token counts rather than zeros."""
    if "usage" in summary.model_fields_set:
        recorded = summary.usage
    elif isinstance(run.get("usage"), dict):
        try:
            recorded = Usage.model_validate(run["usage"])
        except ValidationError:
            return None
    else:
        return None
    return TokenUsage.model_validate(recorded.model_dump())


def _cost(summary: Summary, run: dict[str, Any]) -> Cost | None:
    """The summary's cost, else the run record's (a W&B run's config), else none: an evaluation
    from before costs were recorded, or a status without one, shows no cost rather than zeros."""
    if summary.cost is not None:
        return summary.cost
    if isinstance(run.get("cost"), dict):
        try:
            return Cost.model_validate(run["cost"])
        except ValidationError:
            return None
    return None


def entry_from_summary(
    summary: Summary,
    run: dict[str, Any],
    *,
    entry_id: str,
    source: str,
    started_at: datetime | None = None,
    formula: Formula = OVERALL,
) -> Entry:
    """An unplaced entry from a compact summary and, when there is one, the full run record.

    A cluster source without the results folder has only the status scores; it passes a run
    record holding just the model and gets an entry without provenance, which then forms its own
    protocol group. Overall is recomputed with
    the board's formula (the formula is data; a summary written under another formula still ranks
    by this one), and a disagreement with the recorded Overall is kept as a warning."""
    benchmarks: dict[str, BenchmarkResult] = {}
    for name, b in summary.benchmarks.items():
        try:
            title = registry.get(name).title
        except KeyError:
            title = name
        benchmarks[name] = BenchmarkResult(
            title=title,
            avg=b.avg if b.scored else None,
            categories=dict(b.categories),
            scores=dict(b.scores),
            samples=b.samples,
            degraded=b.degraded,
            capped=b.capped,
            synthetic_judge=b.synthetic_judge,
        )
    overall = formula.value({name: b.avg for name, b in benchmarks.items()})
    warnings = []
    if summary.overall is not None and overall is not None and abs(summary.overall - overall) > 1e-9:
        warnings.append(
            f"recorded {formula.name} {summary.overall:.6f} differs from the formula's {overall:.6f}"
        )
    identity = {
        name: _identity(name, run.get(name) or {})
        for name in formula.benchmarks
        if name in summary.benchmarks
    }
    model = run.get("model") or {}
    return Entry(
        id=entry_id,
        source=source,
        model=summary.model,
        revision=model.get("revision"),
        model_source=model.get("source"),
        status=summary.status,
        started_at=started_at,
        ended_at=parse_time(run.get("ended_at")),
        overall=overall,
        benchmarks=benchmarks,
        runtime_seconds=summary.runtime_seconds.get("total"),
        usage=_usage(summary, run),
        cost=_cost(summary, run),
        degraded=summary.degraded,
        capped=summary.capped,
        synthetic_judge=summary.synthetic_judge,
        provenance=Provenance(
            identity=identity,
            details=_details(run, summary.benchmarks),
            key=digest(identity),
            missing=None if any(run.get(name) for name in identity) else "no run record",
        ),
        warnings=warnings,
    )


def from_sources(sources: Iterable[Iterable[Evaluation]]) -> list[Evaluation]:
    """Every evaluation of several sources, with entry ids made unique (two workspaces may both
    hold a folder of the same name)."""
    out: list[Evaluation] = []
    used: set[str] = set()
    for source in sources:
        for evaluation in source:
            base = evaluation.entry.id
            n = 2
            while evaluation.entry.id in used:
                evaluation.entry.id = f"{base}~{n}"
                n += 1
            used.add(evaluation.entry.id)
            out.append(evaluation)
    return out
