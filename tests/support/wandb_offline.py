"""Read back what `wandb` wrote in offline mode, so tests check the real files.

An offline run is `run-<id>.wandb`: a 7-byte header (`:W&B`, magic 0xBEE1, version 0) followed by
LevelDB-log framed records (32 KiB blocks; each chunk = crc32 (4) + length (2) + type (1)), each
record a `wandb_internal_pb2.Record` protobuf. wandb 0.31 no longer ships a Python reader.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes):
    pos = _HEADER
    while pos + _HEADER <= len(data):
        left = _BLOCK - (pos % _BLOCK)
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        yield kind, data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length


def records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, buf = [], b""
    for kind, payload in _chunks(data):
        if kind == _FULL:
            buf = payload
        elif kind == _FIRST:
            buf = payload
            continue
        elif kind == _MIDDLE:
            buf += payload
            continue
        else:
            buf += payload
        rec = pb.Record()
        rec.ParseFromString(buf)
        out.append(rec)
    return out


def offline_run(root: Path) -> Path:
    runs = sorted(root.rglob("offline-run-*"))
    assert runs, f"no offline W&B run under {root}"
    return runs[-1]


def summary(run_dir: Path) -> dict[str, Any]:
    """The run's final summary values, decoded from the JSON the SDK stores in summary records."""
    (log,) = run_dir.glob("run-*.wandb")
    values: dict[str, Any] = {}
    for rec in records(log):
        if rec.WhichOneof("record_type") == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                values[key] = json.loads(item.value_json)
    return values


def config(run_dir: Path) -> dict[str, Any]:
    (log,) = run_dir.glob("run-*.wandb")
    values: dict[str, Any] = {}
    for rec in records(log):
        if rec.WhichOneof("record_type") == "run":
            for item in rec.run.config.update:
                values[item.key] = json.loads(item.value_json)
        elif rec.WhichOneof("record_type") == "config":
            for item in rec.config.update:
                values[item.key] = json.loads(item.value_json)
    return values


def tables(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Logged tables by name, read from the run's media files."""
    out = {}
    for f in (run_dir / "files" / "media" / "table").glob("*.table.json"):
        name = f.name.rsplit("_", 2)[0]
        out[name] = json.loads(f.read_text())
    return out


def run_record(run_dir: Path) -> pb.RunRecord:
    """The run's identity as the SDK recorded it: id, project, group, tags, start time."""
    (log,) = run_dir.glob("run-*.wandb")
    found = [rec.run for rec in records(log) if rec.WhichOneof("record_type") == "run"]
    assert found, f"no run record in {log}"
    return found[0]
