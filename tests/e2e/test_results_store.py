"""The results of record in a real S3 server (versitygw): a run stores them, a reader with a key that
may only read ranks them, a store that fails is found by preflight or leaves the results in the
workspace for a rerun that sends no request, and nothing is ever read from a half-written upload.

The model and the judge are the usual HTTP test doubles (counting requests); the store is real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.results import MANIFEST, Location, Manifest, sha256_hex
from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.errors import EXIT_CONFIG, EXIT_INFRA
from nejumi_eval.leaderboard import compare
from nejumi_eval.leaderboard.store_source import from_store
from nejumi_eval.pipeline import run
from nejumi_eval.storage import upload as upload_module
from nejumi_eval.storage.reading import NotAsManifested, find_evaluations, open_evaluation
from nejumi_eval.storage.store import ObjectStore, StoreRefused
from nejumi_eval.storage.upload import upload
from tests.fixtures.openai_stub import Reply, StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.support.paths import REPO
from tests.support.s3 import Credentials, S3Server

MODEL = "stub-model"
BUCKET = "results"
SECRET_MARK = "do-not-print-"


@pytest.fixture(scope="module")
def questions() -> dict[int, str]:
    from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant

    return {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}


@pytest.fixture
def s3(s3_server: S3Server) -> S3Server:
    s3_server.make_bucket(BUCKET)
    return s3_server


def _spec(workspace: Path, model_url: str, judge_url: str, uri: str) -> Any:
    return parse_spec(
        {
            "model": {
                "name": MODEL,
                "source": "openai-compatible",
                "endpoint": model_url,
                "mode": "completion",
            },
            "benchmarks": {
                "jaster": {"testSamples": 2, "devSamples": 1},
                "mtbench": {
                    "questionsPerCategory": 1,
                    "judge": {"model": "gpt-4-0613", "endpoint": judge_url, "concurrency": 4},
                },
            },
            "workspace": {"path": str(workspace)},
            "wandb": {"enabled": False},
            "results": {"uri": uri},
        }
    )


def _use(monkeypatch: pytest.MonkeyPatch, s3: S3Server, creds: Credentials) -> None:
    for name, value in s3.env(creds).items():
        monkeypatch.setenv(name, value)


def _reader(s3: S3Server) -> Credentials:
    creds = s3.add_user("reader")
    s3.allow(BUCKET, creds, ["s3:GetObject", "s3:ListBucket"])
    return creds


def test_a_run_stores_its_results_and_a_read_only_key_ranks_them(
    tmp_path: Path, s3: S3Server, questions: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = s3.add_user("writer")
    s3.allow(BUCKET, writer, ["s3:PutObject"], prefix="team-a/")
    reader = _reader(s3)
    _use(monkeypatch, s3, writer)
    with StubServer(model=MODEL) as model, ScriptedJudge(questions) as judge:
        summary = run(
            _spec(tmp_path, model.base_url, judge.base_url, f"s3://{BUCKET}/team-a"), progress=False
        )
    stored = summary.results
    assert stored is not None and stored.stored, stored
    assert stored.uri.startswith(f"s3://{BUCKET}/team-a/stub-model/") and stored.manifest_sha256

    # the manifest lists every file of the results folder, with its size and sha256
    location = Location.parse(stored.uri)
    root = s3.client()
    manifest_bytes = root.get_object(Bucket=BUCKET, Key=location.object_key(MANIFEST))["Body"].read()
    manifest = Manifest.model_validate_json(manifest_bytes)
    folder = Path(summary.results_dir)
    local = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert {o.path for o in manifest.objects} == set(local)
    assert {"summary.json", "run.json", "jaster_output_table.jsonl", "mtbench_output_table.jsonl"} <= set(
        local
    )
    for obj in manifest.objects:
        assert (obj.size, obj.sha256) == (len(local[obj.path]), sha256_hex(local[obj.path]))
    assert stored.manifest_sha256 == "sha256:" + sha256_hex(manifest_bytes)
    assert stored.objects == len(local) and stored.bytes == sum(map(len, local.values()))

    # a key that may only write its prefix may not write outside it, nor read
    outside = _spec(tmp_path / "b", "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", f"s3://{BUCKET}/team-b")
    with pytest.raises(StoreRefused, match="refused the credentials"):
        run(outside, progress=False)
    with pytest.raises(StoreRefused):
        ObjectStore().get(BUCKET, location.object_key(MANIFEST))

    # a key that may only read ranks it, with intervals, from the store alone
    _use(monkeypatch, s3, reader)
    found = from_store(f"s3://{BUCKET}/team-a")
    assert [e.entry.model for e in found] == [MODEL]
    evaluation = found[0]
    assert evaluation.entry.overall == pytest.approx(summary.overall)
    assert evaluation.questions["jaster"] and evaluation.questions["mtbench"]
    board = compare.build(found, include_all=True, resamples=100).leaderboard
    assert board.entries[0].overall_ci is not None
    with pytest.raises(StoreRefused):  # and may not write
        ObjectStore().put(BUCKET, "team-a/x.json", b"{}")


def _cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nejumi_eval.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def test_preflight_finds_a_store_that_refuses_or_cannot_be_reached_before_any_model_is_served(
    tmp_path: Path, s3: S3Server
) -> None:
    wrong = Credentials(s3.root.access_key, SECRET_MARK + "wrong-secret")
    cases = [
        (s3.env(wrong), f"s3://{BUCKET}/x", EXIT_CONFIG, "refused the credentials"),
        (s3.env(), "s3://no-such-bucket/x", EXIT_CONFIG, "bucket no-such-bucket does not exist"),
        (
            {**s3.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
            f"s3://{BUCKET}/x",
            EXIT_INFRA,
            "cannot be reached",
        ),
    ]
    for env, uri, code, message in cases:
        started = time.monotonic()
        proc = _cli(
            "run", "--limit", "1", "--results-uri", uri, "--workspace", str(tmp_path), cwd=tmp_path, env=env
        )
        took = time.monotonic() - started
        assert proc.returncode == code, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("nejumi-eval:")]
        assert len(errors) == 1 and message in errors[0] and uri.split("/")[2] in errors[0], proc.stderr
        assert SECRET_MARK not in proc.stderr + proc.stdout
        assert "preflight: ok" not in proc.stderr and not (tmp_path / "results").exists()
        print(f"{message}: exit {code} in {took:.1f} s")


class _StoreKiller(StubServer):
    """A model API whose first request stops the store: preflight has passed, the upload will fail."""

    def __init__(self, s3: S3Server, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s3 = s3

    def reply(self, path: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.s3 is not None:
                self.s3.stop()
                self.s3 = None  # type: ignore[assignment]
        return super().reply(path, body)


def test_a_store_lost_at_the_end_leaves_the_results_for_a_rerun_that_sends_nothing(
    tmp_path: Path, s3: S3Server, questions: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_module, "BACKOFF_S", (0.2, 0.2))  # the test's patience, not the product's
    _use(monkeypatch, s3, s3.root)
    uri = f"s3://{BUCKET}/lost"
    with _StoreKiller(s3, model=MODEL) as model, ScriptedJudge(questions) as judge:
        first = run(_spec(tmp_path, model.base_url, judge.base_url, uri), progress=False)
        model_port, judge_port = model.port, judge.port
        sent = model.calls + judge.calls
    assert first.status == "completed" and first.overall is not None
    assert first.results is not None and not first.results.stored
    assert "cannot be reached" in (first.results.error or "") and "3 attempts" in (first.results.error or "")
    assert (Path(first.results_dir) / "summary.json").is_file()  # the results stay in the workspace
    assert sent > 0

    s3.start()
    assert find_evaluations(ObjectStore(), Location.parse(uri)) == []  # nothing half-written counts
    with (
        StubServer(model=MODEL, port=model_port) as model,
        ScriptedJudge(questions, port=judge_port) as judge,
    ):
        again = run(_spec(tmp_path, model.base_url, judge.base_url, uri), progress=False)
        assert model.calls == 0 and judge.calls == 0  # every answer and rating from the cache
    assert again.usage.requests_sent == 0
    assert again.results is not None and again.results.stored
    assert again.overall == first.overall
    [found] = from_store(uri)
    assert found.entry.overall == pytest.approx(first.overall) and found.questions["jaster"]


def test_uploads_are_idempotent_and_a_reader_never_takes_a_changed_object(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.leaderboard_results import ratings, write_results

    _use(monkeypatch, s3, s3.root)
    store = ObjectStore()
    folder = write_results(tmp_path, "org/model-a", jaster=lambda d, i: float(i % 2 == 0), mtbench=ratings(7))
    location = Location.parse(f"s3://{BUCKET}/idem/model-a")
    first = upload(store, folder, location, model="org/model-a", status="completed")
    assert first.stored and first.uploaded == first.objects + 1  # every object and the manifest
    again = upload(store, folder, location, model="org/model-a", status="completed")
    assert again.stored and again.uploaded == 0 and again.manifest_sha256 == first.manifest_sha256

    summary = folder / "summary.json"
    doc = json.loads(summary.read_text())
    doc["model"] = "org/model-a (rescored)"
    summary.write_text(json.dumps(doc))
    changed = upload(store, folder, location, model="org/model-a", status="completed")
    assert changed.uploaded == 2 and changed.manifest_sha256 != first.manifest_sha256  # summary + manifest
    keys = sorted(store.keys(BUCKET, "idem/"))
    assert len(keys) == first.objects + 1  # nothing duplicated

    # an object replaced after its manifest (an upload in progress) is refused, not read
    evaluation = open_evaluation(store, location)
    store.put(BUCKET, location.object_key("run.json"), b'{"half": "written"}')
    with pytest.raises(NotAsManifested):
        evaluation.read("run.json")
    with pytest.raises(Exception, match="none is readable"):
        from_store(f"s3://{BUCKET}/idem")
