"""Weights & Biases: one run per evaluation, a view of the results folder.

Tables and scores are logged only after the results folder is complete: W&B is never their only
copy, so a W&B failure (no network, bad key, quota) is reported and the run still succeeds.
Offline mode needs no network and leaves a run folder under `<results>/wandb/` for `wandb sync`.
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
    return wandb.Table(columns=list[str | int](columns), data=data)


def _cell(value: Any) -> Any:
    """W&B tables take scalars; nested values (message lists, usage) go in as JSON text."""
    import json

    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return value


SMOKE_TEST_PROJECT = "nejumi-smoke-tests"
"""Where a capped or synthetic-judge run goes unless `wandb.project` is set explicitly: smoke tests
never land in the leaderboard project by default."""
SMOKE_TEST_GROUP = "smoke-test"


class WandbRun:
    """One evaluation = one W&B run: opened when the evaluation starts (so its start, end and
    runtime are the evaluation's), given the tables and scores when they exist, finished at the end.

    The id is the evaluation's (`run_id`): a rerun of the same evaluation resumes the same run
    instead of creating a duplicate. Nothing here raises: W&B is a view of the results folder,
    so a failure is kept in `error` and reported, and the evaluation goes on.
    """

    def __init__(self) -> None:
        self.run: Any = None
        self.error: str | None = None
        self.mode: str = "offline"

    @classmethod
    def open(
        cls,
        spec: WandbSpec,
        run_dir: Path,
        *,
        run_id: str,
        name: str,
        config: Mapping[str, Any],
        smoke_test: bool,
        tags: list[str],
    ) -> WandbRun:
        out = cls()
        if not spec.enabled:
            return out
        out.mode = spec.mode
        project = spec.project
        if smoke_test and "project" not in spec.model_fields_set:
            project = SMOKE_TEST_PROJECT
        try:
            # The SDK's own chatter ("Detected [openai] in use…") is noise in an evaluation's output.
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            out.run = wandb.init(
                entity=spec.entity,
                project=project,
                name=spec.run_name or name,
                id=run_id,
                resume="allow",
                dir=str(run_dir),
                mode=spec.mode,
                config=dict(config),
                job_type="evaluation",
                group=SMOKE_TEST_GROUP if smoke_test else None,
                tags=tags or None,
                reinit="create_new",
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
            )
        except Exception as exc:  # W&B must never lose an evaluation
            log.warning("W&B run could not start (results stay in %s): %s", run_dir, exc)
            out.error = f"{type(exc).__name__}: {exc}"
        return out

    def publish(
        self,
        tables: Mapping[str, list[dict[str, Any]]],
        scalars: Mapping[str, float | int | str | None],
        config: Mapping[str, Any],
    ) -> None:
        if self.run is None:
            return
        try:
            self.run.config.update(dict(config), allow_val_change=True)
            self.run.log({name: _table(rows) for name, rows in tables.items() if rows})
            self.run.summary.update({k: v for k, v in scalars.items() if v is not None})
        except Exception as exc:
            log.warning("W&B logging failed (results are safe in the results folder): %s", exc)
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self, failed: bool = False) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=1 if failed else 0)
        except Exception as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"

    @property
    def path(self) -> str | None:
        """`entity/project/id` online; offline, the run folder `wandb sync` accepts."""
        if self.run is None or self.error:
            return None
        if self.mode == "online":
            return f"{self.run.entity}/{self.run.project}/{self.run.id}"
        return str(Path(self.run.dir).parent)  # run.dir is …/offline-run-…/files

    @property
    def sync_command(self) -> str | None:
        return f"wandb sync {self.path}" if self.mode == "offline" and self.path else None
