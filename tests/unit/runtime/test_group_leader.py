"""A serving group's leader (`nejumi_eval.group_leader`): its attempts counted on the workspace
across the group's recreations, interrupted ones not counted, which outcome is final, the outcome
written to the progress ConfigMap (a local HTTP server stands in for the API server), and the hold
that ends with SIGTERM (a real process, a real signal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest

from nejumi_eval.api.v1alpha1.contract import (
    EXIT_BUG,
    EXIT_CONFIG,
    EXIT_INFRA,
    EXIT_OK,
    GROUP_ATTEMPTS_ENV,
    GROUP_SIZE_ENV,
    LEADER_ADDRESS_ENV,
    WORKER_INDEX_ENV,
)
from nejumi_eval.api.v1alpha1.progress import OUTCOME_KEY, PROGRESS_KEY, StageOutcome
from nejumi_eval.api.v1alpha1.spec import ConfigError, EvaluationSpec, parse_spec
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_eval.cli import main
from nejumi_eval.errors import InfrastructureError
from nejumi_eval.group_leader import ATTEMPTS_RECORD, AttemptRecord, lead_group, leading
from nejumi_eval.pipeline import STAGE_RECORDS, evaluation_id
from nejumi_eval.report.progress import ProgressPublisher
from nejumi_eval.runtime.client.retry import RetryPolicy
from nejumi_eval.runtime.serve import NodeGroup

LEADER = "big-g1-serve-0.big-g1-serve.team-a"
GROUP = NodeGroup(size=2, rank=0, leader_address=LEADER)
POD = "big-g1-serve-0"
TIMEOUT_S = 30
pytestmark = pytest.mark.timeout(120)  # a leader that holds by mistake fails, never hangs


def two_nodes(workspace: Path) -> EvaluationSpec:
    return parse_spec(
        {
            "model": {"name": "org/big", "vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2}},
            "resources": {"gpus": 8, "nodes": 2},
            "workspace": {"path": str(workspace)},
        }
    )


def completed() -> Summary:
    return Summary(status="completed", model="org/big", stage="serve")


def failing(exc: Exception) -> Callable[[], Summary]:
    def attempt() -> Summary:
        raise exc

    return attempt


def record(workspace: Path) -> AttemptRecord:
    return AttemptRecord.model_validate_json((workspace / STAGE_RECORDS / ATTEMPTS_RECORD).read_bytes())


def attempts(n: int | str) -> dict[str, str]:
    return {GROUP_ATTEMPTS_ENV: str(n)}


# ---- a local API server -------------------------------------------------------------------------


class ApiServer:
    """Takes PATCHes of one ConfigMap: answers each with the next of `statuses` (then 200), and
    keeps the ConfigMap's data as a JSON merge patch leaves it."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.patches: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.data: dict[str, str] = {PROGRESS_KEY: "{}"}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/v1/namespaces/team-a/configmaps/big-progress"

    def outcomes(self) -> list[StageOutcome]:
        with self._lock:
            return [StageOutcome.model_validate_json(b["data"][OUTCOME_KEY]) for _, b in self.patches]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api._lock:
                    api.patches.append((dict(self.headers), body))
                    status = api.statuses.pop(0) if api.statuses else 200
                    if status == 200:
                        api.data.update(body["data"])
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        return Handler

    def __enter__(self) -> ApiServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def publisher(url: str, tmp_path: Path) -> ProgressPublisher:
    token = tmp_path / "token"
    token.write_text("the-token\n")
    return ProgressPublisher(url, POD, token, Path(certifi.where()))


# ---- who leads ----------------------------------------------------------------------------------


def test_only_the_serve_stage_s_leader_of_a_group_of_several_nodes_leads() -> None:
    def env(size: int, index: int) -> dict[str, str]:
        return {GROUP_SIZE_ENV: str(size), WORKER_INDEX_ENV: str(index), LEADER_ADDRESS_ENV: LEADER}

    assert leading(Stage.SERVE, env(2, 0)) == GROUP
    assert leading(Stage.SERVE, env(2, 1)) is None  # a worker joins (--join-group)
    assert leading(Stage.SERVE, env(1, 0)) is None  # a group of one: one node
    assert leading(Stage.SERVE, {}) is None
    assert leading(Stage.RUN, env(2, 0)) is None and leading(Stage.JUDGE, env(2, 0)) is None
    assert leading(Stage.SERVE, {GROUP_SIZE_ENV: "2"}) is None  # garbled: the stage's check refuses it


# ---- attempts across the group's recreations ----------------------------------------------------


def test_attempts_are_counted_on_the_workspace_across_restarts_until_the_last_is_final(
    tmp_path: Path,
) -> None:
    spec, runs = two_nodes(tmp_path), []

    def attempt() -> Summary:
        runs.append(1)
        raise InfrastructureError("model server lost a worker")

    for n in (1, 2, 3):  # each call: a new leader pod of a recreated group, the same workspace
        assert lead_group(spec, GROUP, attempt, None, attempts(3)) == EXIT_INFRA
        kept = record(tmp_path)
        assert [a.state for a in kept.attempts] == ["ended"] * n
        assert [a.exit_code for a in kept.attempts] == [EXIT_INFRA] * n
        assert (kept.final is not None) == (n == 3)
    assert kept.final is not None
    assert (kept.final.attempt, kept.final.attempts, kept.final.exit_code) == (3, 3, EXIT_INFRA)
    summary = json.loads(kept.final.summary)
    assert summary["status"] == "failed" and summary["stage"] == "serve"
    assert "lost a worker" in summary["error"]
    # The group recreated once more (a worker's server ended with the leader's): nothing is served again.
    assert lead_group(spec, GROUP, attempt, None, attempts(3)) == EXIT_INFRA
    assert len(runs) == 3 and len(record(tmp_path).attempts) == 3


def test_an_attempt_stopped_by_sigterm_is_recorded_interrupted_and_not_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = two_nodes(tmp_path)

    def terminated() -> Summary:
        os.kill(os.getpid(), signal.SIGTERM)  # the group deleted: its pods get SIGTERM
        time.sleep(TIMEOUT_S)
        raise AssertionError("SIGTERM did not stop the attempt")

    before = signal.getsignal(signal.SIGTERM)
    assert lead_group(spec, GROUP, terminated, None, attempts(2)) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the handler was the leader's alone
    assert "SIGTERM" in capsys.readouterr().err
    assert [a.state for a in record(tmp_path).attempts] == ["interrupted"]
    assert lead_group(spec, GROUP, failing(InfrastructureError("x")), None, attempts(2)) == EXIT_INFRA
    kept = record(tmp_path)
    assert [a.state for a in kept.attempts] == ["interrupted", "ended"]
    assert kept.final is None  # attempt 1 of 2: the interrupted one did not count


def test_a_hard_killed_attempt_is_counted(tmp_path: Path) -> None:
    spec = two_nodes(tmp_path)
    path = tmp_path / STAGE_RECORDS / ATTEMPTS_RECORD
    killed = {"pod": POD, "startedAt": datetime.now(UTC).isoformat(), "state": "started"}
    doc = {"evaluationId": evaluation_id(spec), "group": LEADER, "attempts": [killed]}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    assert lead_group(spec, GROUP, failing(InfrastructureError("x")), None, attempts(2)) == EXIT_INFRA
    kept = record(tmp_path)
    assert kept.final is not None and kept.final.attempt == 2  # the killed one was attempt 1


def test_attempts_that_all_started_and_never_ended_use_the_budget_up(tmp_path: Path) -> None:
    spec = two_nodes(tmp_path)
    path = tmp_path / STAGE_RECORDS / ATTEMPTS_RECORD
    killed = {"pod": POD, "startedAt": datetime.now(UTC).isoformat(), "state": "started"}
    doc = {"evaluationId": evaluation_id(spec), "group": LEADER, "attempts": [killed, killed]}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    assert lead_group(spec, GROUP, failing(AssertionError("never run")), None, attempts(2)) == EXIT_INFRA
    final = record(tmp_path).final
    assert final is not None and final.final and (final.attempt, final.attempts) == (2, 2)
    assert "none ended by itself" in json.loads(final.summary)["error"]


def test_another_group_s_record_starts_the_count_anew(tmp_path: Path) -> None:
    spec = two_nodes(tmp_path)
    assert lead_group(spec, GROUP, failing(InfrastructureError("x")), None, attempts(1)) == EXIT_INFRA
    assert record(tmp_path).final is not None
    next_generation = NodeGroup(size=2, rank=0, leader_address="big-g2-serve-0.big-g2-serve.team-a")
    assert lead_group(spec, next_generation, completed, None, attempts(1)) == EXIT_OK
    kept = record(tmp_path)
    assert kept.group == next_generation.leader_address and len(kept.attempts) == 1
    (tmp_path / STAGE_RECORDS / ATTEMPTS_RECORD).write_text("{garbled")
    assert lead_group(spec, GROUP, completed, None, attempts(1)) == EXIT_OK  # unreadable: anew


def test_a_namesake_made_again_on_a_kept_workspace_starts_anew(tmp_path: Path) -> None:
    """Same name, same spec, same generation, same leader address: only the evaluation's UID
    (`NEJUMI_GROUP_ID`, set by the operator) tells the first evaluation's record from its own."""
    spec = two_nodes(tmp_path)
    first = {**attempts(1), "NEJUMI_GROUP_ID": "uid-1/1"}
    assert lead_group(spec, GROUP, failing(InfrastructureError("x")), None, first) == EXIT_INFRA
    assert record(tmp_path).final is not None  # a final failure: the first one's
    again = {**attempts(1), "NEJUMI_GROUP_ID": "uid-2/1"}
    assert lead_group(spec, GROUP, completed, None, again) == EXIT_OK  # served, not the old failure
    assert record(tmp_path).final is not None and record(tmp_path).final.exit_code == EXIT_OK


# ---- what is final -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "code", "final"),
    [
        (completed, EXIT_OK, True),
        (lambda: Summary(status="failed", model="org/big", stage="serve", error="e"), EXIT_INFRA, False),
        (failing(InfrastructureError("server gone")), EXIT_INFRA, False),
        (failing(ConfigError("model.name: no such model")), EXIT_CONFIG, True),
        (failing(RuntimeError("a bug")), EXIT_BUG, True),
    ],
    ids=["completed", "failed-summary", "infrastructure", "configuration", "bug"],
)
def test_success_and_non_retryable_codes_are_final_at_once(
    attempt: Callable[[], Summary],
    code: int,
    final: bool,
    tmp_path: Path,
    api: ApiServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A final outcome holds: a signal ends the hold, as the operator's release does.
    release = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    if final:
        release.start()
    try:
        returned = lead_group(two_nodes(tmp_path), GROUP, attempt, publisher(api.url, tmp_path), attempts(3))
    finally:
        release.cancel()
    assert returned == (EXIT_OK if final else code)
    (outcome,) = api.outcomes()
    assert (outcome.exit_code, outcome.final, outcome.attempt, outcome.attempts) == (code, final, 1, 3)
    assert outcome.pod == POD
    err = capsys.readouterr().err
    assert ("Traceback" in err and "a bug" in err) == (code == EXIT_BUG)
    line = f"serve stage finished (exit {code}, attempt 1 of 3)"
    assert line + (": holding the group until the operator releases it" if final else "") in err


@pytest.mark.parametrize("value", ["", "0", "three", "1001", "-1"])
def test_a_garbled_attempt_budget_is_a_final_configuration_error(value: str, tmp_path: Path) -> None:
    assert lead_group(two_nodes(tmp_path), GROUP, completed, None, attempts(value)) == EXIT_CONFIG
    final = record(tmp_path).final
    assert final is not None and GROUP_ATTEMPTS_ENV in json.loads(final.summary)["error"]


def test_unset_the_budget_is_one_attempt(tmp_path: Path) -> None:
    assert lead_group(two_nodes(tmp_path), GROUP, failing(InfrastructureError("x")), None, {}) == EXIT_INFRA
    final = record(tmp_path).final
    assert final is not None and (final.attempt, final.attempts) == (1, 1)


# ---- the outcome in the progress ConfigMap -------------------------------------------------------


def test_the_outcome_is_a_merge_patch_of_its_own_key(tmp_path: Path, api: ApiServer) -> None:
    spec = two_nodes(tmp_path)
    assert (
        lead_group(
            spec, GROUP, failing(InfrastructureError("lost")), publisher(api.url, tmp_path), attempts(2)
        )
        == EXIT_INFRA
    )
    ((headers, body),) = api.patches
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert headers["Authorization"] == "Bearer the-token"
    assert list(body) == ["data"] and list(body["data"]) == [OUTCOME_KEY]
    assert set(api.data) == {PROGRESS_KEY, OUTCOME_KEY}  # the progress report stays
    doc = json.loads(body["data"][OUTCOME_KEY])
    assert set(doc) == {"version", "pod", "attempt", "attempts", "exitCode", "final", "summary", "finishedAt"}
    assert json.loads(doc["summary"])["error"] == "lost"


def test_the_outcome_is_retried_and_every_failure_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = StageOutcome(
        pod=POD, attempt=1, attempts=1, exit_code=0, final=True, finished_at=datetime.now(UTC)
    )
    with ApiServer([500, 503]) as api:
        assert publisher(api.url, tmp_path).publish_outcome(
            outcome, RetryPolicy(max_attempts=3, initial_delay_s=0.01)
        )
        assert len(api.patches) == 3 and api.outcomes()[-1] == outcome
    with ApiServer([403] * 3) as api:
        assert not publisher(api.url, tmp_path).publish_outcome(
            outcome, RetryPolicy(max_attempts=3, initial_delay_s=0.01)
        )
    failures = [r for r in caplog.records if "could not write" in r.message]
    assert [r.levelname for r in failures] == ["WARNING", "WARNING", "WARNING", "WARNING", "ERROR"]


# ---- a real process: the hold, SIGTERM --------------------------------------------------------

LEADER_SCRIPT = """
import asyncio, functools, sys
from pathlib import Path
import certifi
from nejumi_eval import group_leader
from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_eval.report.progress import ProgressPublisher
from nejumi_eval.runtime.client.retry import RetryPolicy
from nejumi_eval.runtime.serve import NodeGroup

workspace, url, token, mode = sys.argv[1:5]
spec = parse_spec({{"model": {{"name": "org/big"}}, "workspace": {{"path": workspace}}}})
group = NodeGroup(size=2, rank=0, leader_address={leader!r})
publisher = ProgressPublisher(url, "big-g1-serve-0", Path(token), Path(certifi.where()))
publisher.publish_outcome = functools.partial(publisher.publish_outcome, retry=RetryPolicy(max_attempts=1))
group_leader.HOLD_RETRY_S = 0.05

async def serving(marker):
    try:
        print("serving", file=sys.stderr, flush=True)
        await asyncio.sleep(60)
    finally:
        Path(marker).write_text("stopped")  # the model server stopped as the run unwound

def attempt():
    if mode == "serve":
        asyncio.run(serving(Path(workspace) / "unwound"))
    return Summary(status="completed", model="org/big", stage="serve")

sys.exit(group_leader.lead_group(spec, group, attempt, publisher, {{"NEJUMI_GROUP_ATTEMPTS": "3"}}))
"""


def start_leader(tmp_path: Path, url: str, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "leader.py"
    script.write_text(textwrap.dedent(LEADER_SCRIPT.format(leader=LEADER)))
    token = tmp_path / "token"
    token.write_text("t")
    args = [sys.executable, str(script), str(tmp_path / "ws"), url, str(token), mode]
    return subprocess.Popen(args, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen[str], text: str) -> list[str]:
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if text in line:
            return lines
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {text!r} in {lines}")


def test_a_final_outcome_holds_until_sigterm_then_exits_0(tmp_path: Path) -> None:
    with ApiServer([500, 500]) as api:  # refused twice: the hold keeps trying
        proc = start_leader(tmp_path, api.url, "done")
        try:
            lines = wait_for_line(proc, "holding the group until the operator releases it")
            assert "serve stage finished (exit 0, attempt 1 of 3)" in lines[-1]
            deadline = time.monotonic() + TIMEOUT_S
            while len(api.patches) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [o.final for o in api.outcomes()] == [True] * 3 and api.data[OUTCOME_KEY]
            time.sleep(0.3)
            assert proc.poll() is None  # held
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT_S) == 0
        finally:
            proc.kill()
            proc.wait()
    final = record(tmp_path / "ws").final
    assert final is not None and final.exit_code == 0


def test_sigterm_while_serving_unwinds_the_run_and_leaves_the_attempt_uncounted(tmp_path: Path) -> None:
    with ApiServer() as api:
        proc = start_leader(tmp_path, api.url, "serve")
        try:
            wait_for_line(proc, "serving")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT_S) == 128 + signal.SIGTERM
        finally:
            proc.kill()
            proc.wait()
        assert api.patches == []  # an interrupted attempt reports nothing
    assert (tmp_path / "ws" / "unwound").read_text() == "stopped"
    assert [a.state for a in record(tmp_path / "ws").attempts] == ["interrupted"]


# ---- the command line --------------------------------------------------------------------------


def test_the_serve_stage_s_leader_runs_through_the_group_leader_and_nothing_else_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "eval.yaml"
    spec = {"model": {"name": "org/big"}, "workspace": {"path": str(tmp_path / "ws")}}
    config.write_text(json.dumps(spec))

    def run(*_args: Any, **_kwargs: Any) -> Summary:
        raise InfrastructureError("server gone")

    monkeypatch.setattr("nejumi_eval.pipeline.run", run)
    for name in (GROUP_SIZE_ENV, WORKER_INDEX_ENV, LEADER_ADDRESS_ENV, GROUP_ATTEMPTS_ENV):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ws" / STAGE_RECORDS / ATTEMPTS_RECORD
    assert main(["run", str(config), "--stage", "serve"]) == EXIT_INFRA  # one node: as before
    assert not path.exists()
    monkeypatch.setenv(GROUP_SIZE_ENV, "2")
    monkeypatch.setenv(WORKER_INDEX_ENV, "0")
    monkeypatch.setenv(LEADER_ADDRESS_ENV, LEADER)
    monkeypatch.setenv(GROUP_ATTEMPTS_ENV, "2")
    assert main(["run", str(config), "--stage", "serve"]) == EXIT_INFRA
    assert [a.state for a in record(tmp_path / "ws").attempts] == ["ended"]
    assert main(["run", str(config), "--stage", "judge"]) == EXIT_INFRA  # not the serve stage
    assert len(record(tmp_path / "ws").attempts) == 1
