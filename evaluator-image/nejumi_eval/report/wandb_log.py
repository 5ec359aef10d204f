"""Publishing a finished run to Weights & Biases.

Called only after the results folder is complete: W&B is a view of the results, never their only
copy, so a W&B failure (no network, bad key, quota) is reported and the run still succeeds.
Offline mode needs no network and leaves a syncable run under `<dir>/wandb/`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nejumi_eval.api.v1alpha1.spec import WandbSpec

log = logging.getLogger(__name__)


def _table(rows: list[dict[str, Any]]) -> Any:
    import wandb

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    data = [[_cell(row.get(c)) for c in columns] for row in rows]
    return wandb.Table(columns=columns, data=data)


def _cell(value: Any) -> Any:
    """W&B tables take scalars; nested values (message lists, usage) go in as JSON text."""
    import json

    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return value


def publish(
    spec: WandbSpec,
    run_dir: Path,
    tables: Mapping[str, list[dict[str, Any]]],
    scalars: Mapping[str, float | int | str | None],
    config: Mapping[str, Any],
    run_name: str,
    tags: list[str] | None = None,
) -> tuple[str | None, str | None]:
    """Log tables and summary scalars as one W&B run. Returns (run path, error message)."""
    if not spec.enabled:
        return None, None
    try:
        # The SDK's own chatter ("Detected [openai] in use…") is noise in an evaluation's output.
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        run = wandb.init(
            entity=spec.entity,
            project=spec.project,
            name=spec.run_name or run_name,
            dir=str(run_dir),
            mode=spec.mode,
            config=dict(config),
            job_type="evaluation",
            tags=tags or None,
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        try:
            run.log({name: _table(rows) for name, rows in tables.items() if rows})
            run.summary.update({k: v for k, v in scalars.items() if v is not None})
            path = f"{run.entity}/{run.project}/{run.id}" if spec.mode == "online" else run.dir
        finally:
            run.finish()
        return path, None
    except Exception as exc:  # W&B must never lose a finished evaluation
        log.warning("W&B logging failed (results are safe in %s): %s", run_dir, exc)
        return None, f"{type(exc).__name__}: {exc}"
