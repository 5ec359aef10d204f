"""W&B runs as a leaderboard source: a project online (`--wandb-project ENTITY/PROJECT`, through
`wandb.Api()`) or offline run folders (`--wandb-dir DIR`, the `run-<id>.wandb` files `wandb` writes
in offline mode, e.g. under `<results>/wandb/`).

A run is what `report.wandb_log.WandbRun` logged for one evaluation: its config is the results
folder's `run.json` without the timeline (so provenance, and with it the protocol groups, are the
same as a results folder's), its summary holds every score as `<benchmark>/<key>` plus Overall and
the flags, and its tables carry the same names and rows as the folder's `*.jsonl` files
(`leaderboard_table` and each benchmark's own, named by its `Reading.tables`). So a run becomes the
summary the results folder would have held, and each benchmark's per-question reader reads its
tables unchanged: a W&B run gets intervals and drill-down like a results folder.

Reading offline runs needs no network and no W&B account. `wandb` 0.31 ships no reader for its
transaction log, so `read_records` decodes the framing (LevelDB-log blocks) itself and the records
with the library's own protobuf (`wandb.proto.wandb_internal_pb2.Record`).
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary, Summary
from nejumi_eval.benchmarks import registry
from nejumi_eval.errors import InfrastructureError, InputError
from nejumi_eval.leaderboard.questions import read_questions
from nejumi_eval.leaderboard.sources import Evaluation, entry_from_summary, from_sources, parse_time

log = logging.getLogger(__name__)

JOB_TYPE = "evaluation"
"""`WandbRun` opens every evaluation's run with this job type; other runs of a project are not ours."""
_FLAGS = ("AVG", "degraded", "capped", "synthetic_judge")
_COUNTERS = ("failures", "invalid")

Tables = Callable[[str], list[dict[str, Any]] | None]


@dataclass
class RunData:
    """What one W&B run offers, whichever way it was read."""

    id: str
    source: str  # `entity/project/id` online, the run folder offline
    name: str | None
    state: str  # finished, failed, crashed, running, …
    config: dict[str, Any]
    summary: dict[str, Any]
    tables: Tables
    started_at: datetime | None = None
    url: str | None = None
    job_type: str | None = None


# ---- offline transaction log --------------------------------------------------------------------

_BLOCK = 32768
_HEADER = 7  # crc32 (4) + length (2) + type (1); the file's own header is 7 bytes too
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> Iterator[Any]:
    """The `wandb_internal_pb2.Record`s of one `run-<id>.wandb` file, in order.

    The file is `:W&B` + magic 0xBEE1 + version 0, then 32 KiB blocks of chunks (crc, length,
    type: full, first, middle, last); a record is the payloads of its chunks joined. A file cut
    short (the run still writing, or killed) ends at its last whole record."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise InputError(f"{path} is not a W&B run file (no :W&B header)")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - (pos % _BLOCK)
        if left < _HEADER:  # the block's trailer: too small for a chunk header
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        end = pos + _HEADER + length
        if end > len(data):
            return
        payload = data[pos + _HEADER : end]
        pos = end
        if kind in (_FULL, _FIRST):
            pending = payload
        elif kind in (_MIDDLE, _LAST):
            pending += payload
        else:
            raise InputError(f"{path}: unknown chunk type {kind} at byte {pos}")
        if kind in (_FULL, _LAST):
            record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf: no stubs
            record.ParseFromString(pending)
            yield record
            pending = b""


def _set_nested(doc: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    for key in keys[:-1]:
        child = doc.get(key)
        if not isinstance(child, dict):
            child = doc[key] = {}
        doc = child
    doc[keys[-1]] = value


def read_offline_run(run_dir: str | Path) -> RunData:
    """One offline run folder (`offline-run-<time>-<id>/`): its run record, config, final
    summary, exit code, and its tables from `files/media/table/`."""
    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise InputError(f"{run_dir} holds no run-*.wandb file")
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    run_id, name, job_type, started, exit_code = logs[0].stem.removeprefix("run-"), None, None, None, None
    for record in read_records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            run_id, name, job_type = run.run_id or run_id, run.display_name or None, run.job_type or None
            if run.HasField("start_time"):
                started = run.start_time.ToDatetime(tzinfo=UTC)
            for item in run.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                keys = list(item.nested_key) or [item.key]
                _set_nested(summary, keys, json.loads(item.value_json))
            for item in record.summary.remove:
                summary.pop(item.key, None)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    files = run_dir / "files"

    def tables(table: str) -> list[dict[str, Any]] | None:
        ref = summary.get(table)
        if not isinstance(ref, dict) or "path" not in ref:
            return None
        path = files / ref["path"]
        return _rows(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None

    state = "running" if exit_code is None else ("finished" if exit_code == 0 else "failed")
    return RunData(
        id=run_id,
        source=str(run_dir),
        name=name,
        state=state,
        config=config,
        summary=summary,
        tables=tables,
        started_at=started,
        job_type=job_type,
    )


def find_offline_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders at or under `paths` (a run folder, `<results>/wandb`, a workspace, …)."""
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        logs = [path] if path.is_file() else sorted(path.rglob("run-*.wandb"))
        for log_file in logs:
            folder = log_file.parent.resolve()
            if log_file.name.endswith(".wandb") and folder not in seen:
                seen.add(folder)
                found.append(log_file.parent)
    return found


def _rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """A logged `wandb.Table` (`{"columns": [...], "data": [[...], ...]}`) as row dicts."""
    columns = table.get("columns") or []
    return [dict(zip(columns, row, strict=False)) for row in table.get("data") or []]


# ---- run → evaluation ---------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _scalars(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """A benchmark's summary scalars: logged as flat `<name>/<key>` keys (W&B does not nest on
    `/`), read as nested where an export nested them."""
    nested = summary.get(name)
    out = dict(nested) if isinstance(nested, dict) else {}
    prefix = f"{name}/"
    out.update({k[len(prefix) :]: v for k, v in summary.items() if k.startswith(prefix)})
    return out


def _benchmark(name: str, run: RunData, board: dict[str, Any]) -> BenchmarkSummary:
    """One benchmark's summary from the run: AVG and flags as the summary and `leaderboard_table`
    hold them (`<name>_<key>`, what `BenchmarkOutput.leaderboard` reports), finer scores from the
    summary's `<name>/<key>` scalars."""
    record = run.config.get(name) or {}
    prefix = f"{name}_"
    categories = {
        key[len(prefix) :]: _number(value)
        for key, value in board.items()
        if key.startswith(prefix) and key[len(prefix) :] not in _FLAGS
    }
    scalars = _scalars(run.summary, name)
    avg = _number(scalars.get("AVG"))
    if avg is None:
        avg = _number(board.get(f"{name}_AVG"))
    scores = {
        key: number
        for key, value in scalars.items()
        if key not in categories
        and key not in _FLAGS
        and key not in _COUNTERS
        and (number := _number(value)) is not None
    }
    reading = registry.reading(name)
    output = run.summary.get(reading.tables.questions if reading is not None else f"{name}_output_table")
    return BenchmarkSummary(
        scored=bool(record.get("judged", True)),
        avg=avg,
        categories=categories,
        scores=scores,
        samples=int(output.get("nrows", 0)) if isinstance(output, dict) else 0,
        degraded=bool(board.get(f"{name}_degraded", record.get("degraded", False))),
        capped=bool(record.get("capped", False)),
        synthetic_judge=bool(board.get(f"{name}_synthetic_judge", scalars.get("synthetic_judge", False))),
    )


def is_evaluation(run: RunData) -> bool:
    """A run `nejumi-eval run` logged: its job type, or (older runs) the run record in its config."""
    return run.job_type == JOB_TYPE or isinstance(run.config.get("spec"), dict)


def evaluation_from_run(run: RunData) -> Evaluation:
    """The evaluation one run records: the summary its results folder would have held, the
    provenance of its config, and its tables for the per-question data."""
    config = run.config
    boards = run.tables("leaderboard_table") or [{}]
    board = boards[0]
    spec_model = ((config.get("spec") or {}).get("model") or {}).get("name")
    model = (
        (config.get("model") or {}).get("name") or spec_model or board.get("model_name") or run.name or run.id
    )
    names = [k for k, v in config.items() if isinstance(v, dict) and v.get("benchmark") == k]
    started = parse_time(config.get("started_at")) or run.started_at
    ended = parse_time(config.get("ended_at"))
    runtime = {"total": (ended - started).total_seconds()} if started and ended else {}
    recorded = config.get("status")
    summary = Summary(
        status="completed" if recorded == "completed" else "failed",
        model=str(model),
        overall=_number(run.summary.get("Overall")),
        degraded=bool(run.summary.get("degraded", False)),
        capped=bool(run.summary.get("capped", False)),
        synthetic_judge=bool(run.summary.get("synthetic_judge", False)),
        benchmarks={name: _benchmark(name, run, board) for name in names},
        runtime_seconds=runtime,
        wandb_run_path=run.source,
        error=config.get("error"),
    )
    entry = entry_from_summary(summary, config, entry_id=run.id, source=run.source, started_at=started)
    if run.state == "running":
        entry.status = "running"  # no exit record yet (or the process died without one)
    elif recorded not in ("completed", "failed"):
        entry.status = run.state if run.state != "finished" else "failed"  # finished without a report
    entry.provenance.details["wandb_run"] = run.url or run.source
    return Evaluation(entry=entry, load_questions=lambda: read_questions(names, run.tables))


def from_offline_runs(paths: Sequence[str | Path]) -> list[Evaluation]:
    """Every evaluation run under `paths`; a folder that cannot be read is skipped with a warning."""
    folders = find_offline_runs(paths)
    if not folders:
        raise InputError(f"no W&B run folder (run-*.wandb) under {', '.join(map(str, paths))}")
    out = []
    for folder in folders:
        try:
            run = read_offline_run(folder)
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: %s", folder, exc)
            continue
        if is_evaluation(run):
            out.append(evaluation_from_run(run))
        else:
            log.info("skipping %s: not a nejumi-eval run", folder)
    return from_sources([out])


# ---- online -------------------------------------------------------------------------------------


def _online_run(run: Any, cache: Path) -> RunData:
    """A `wandb.apis.public.Run` as `RunData`; its tables are downloaded on first use into `cache`
    (a logged table's path carries its content hash, so a cached file is never stale)."""
    summary = dict(run.summary_metrics or {})
    folder = cache / run.entity / run.project / run.id

    def tables(table: str) -> list[dict[str, Any]] | None:
        ref = summary.get(table)
        if not isinstance(ref, dict) or "path" not in ref:
            return None
        target = folder / ref["path"]
        if not target.is_file():
            try:
                run.file(ref["path"]).download(root=str(folder), replace=True)
            except Exception as exc:  # read lazily, while the board is built: name what failed
                raise InfrastructureError(
                    f"downloading {table} of W&B run {run.entity}/{run.project}/{run.id} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        return _rows(json.loads(target.read_text(encoding="utf-8")))

    return RunData(
        id=run.id,
        source="/".join((run.entity, run.project, run.id)),
        name=run.name,
        state=str(run.state).lower(),
        config=dict(run.config or {}),
        summary=summary,
        tables=tables,
        started_at=parse_time(getattr(run, "created_at", None)),
        url=getattr(run, "url", None),
        job_type=getattr(run, "job_type", None),
    )


def from_project(path: str, *, api: Any = None, cache: str | Path | None = None) -> list[Evaluation]:
    """Every evaluation run of one W&B project (`entity/project`), through `wandb.Api()` (its
    credentials: `WANDB_API_KEY` or `wandb login`). `api` is for callers that hold one."""
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise InputError(f"--wandb-project wants ENTITY/PROJECT, got {path!r}")
    if cache is None:
        from nejumi_eval.runtime.fetch import cache_root

        cache = cache_root() / "wandb"
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        runs = [
            _online_run(r, Path(cache)) for r in api.runs(path, filters={"jobType": JOB_TYPE}, lazy=False)
        ]
    except InputError:
        raise
    except Exception as exc:  # no network, no key, no such project: the SDK raises many kinds
        raise InfrastructureError(f"cannot read W&B project {path}: {type(exc).__name__}: {exc}") from exc
    return from_sources([[evaluation_from_run(r) for r in runs if is_evaluation(r)]])
