"""The W&B source over runs the product really logged: `pipeline.run` against a stub model and a
scripted judge with W&B in offline mode, and a failed evaluation's run opened and closed by
`WandbRun` itself. Each W&B run must give the same evaluation as the results folder it mirrors.
The online path (`wandb.Api()`) is fed the same runs through a stand-in for the API object."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.spec import WandbSpec, parse_spec
from nejumi_eval.benchmarks.jaster.datasets import DATASETS
from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_eval.cli import main
from nejumi_eval.errors import InfrastructureError, InputError
from nejumi_eval.leaderboard import compare, sources, wandb_source
from nejumi_eval.pipeline import run
from nejumi_eval.report.wandb_log import WandbRun
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge

RATINGS = {"stub-strong": 8, "stub-weak": 3}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("wandb-ws")
    questions = {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}
    for model, rating in RATINGS.items():
        judgment = f"評価: [[{rating}]]"
        with StubServer(model=model) as server, ScriptedJudge(questions, default=judgment) as judge:
            spec = {
                "model": {"name": model, "source": "openai-compatible", "endpoint": server.base_url},
                "benchmarks": {
                    "jaster": {"testSamples": 2, "devSamples": 1},
                    "mtbench": {
                        "questionsPerCategory": 1,
                        "judge": {"model": "gpt-4-0613", "endpoint": judge.base_url, "apiKeyEnv": None},
                    },
                },
                "workspace": {"path": str(ws)},
                "wandb": {"mode": "offline", "entity": "nejumi", "project": "leaderboard"},
            }
            summary = run(parse_spec(spec), progress=False)
        assert summary.status == "completed" and summary.wandb_run_path
    # an evaluation that failed before its report: the run has the spec, no tables, exit code 1
    broken = WandbRun.open(
        WandbSpec(mode="offline", entity="nejumi", project="leaderboard"),
        ws / "results" / "broken",
        run_id="brokenrun0001",
        name="org-broken",
        config={"spec": {"model": {"name": "org/broken"}}, "versions": {"nejumi": "0.1.0"}},
        smoke_test=False,
        tags=[],
    )
    assert broken.run is not None, broken.error
    broken.close(failed=True)
    return ws


def by_model(evaluations: list[sources.Evaluation]) -> dict[str, sources.Evaluation]:
    return {e.entry.model: e for e in evaluations}


def test_a_wandb_run_is_the_same_evaluation_as_its_results_folder(workspace: Path) -> None:
    runs = by_model(wandb_source.from_offline_runs([workspace]))
    folders = by_model(sources.from_results_folders([workspace]))
    assert set(runs) == {*RATINGS, "org/broken"}  # the failed run: its spec names the model
    for model in RATINGS:
        mine, theirs = runs[model].entry, folders[model].entry
        assert mine.overall == pytest.approx(theirs.overall)
        assert mine.provenance.key == theirs.provenance.key  # config = run.json: one protocol group
        assert mine.provenance.details["wandb_run"].endswith(mine.id)
        assert (mine.capped, mine.degraded, mine.synthetic_judge) == (True, False, False)
        assert mine.started_at == theirs.started_at
        assert mine.runtime_seconds == pytest.approx(theirs.runtime_seconds, abs=0.5)
        for name in ("jaster", "mtbench"):
            a, b = mine.benchmarks[name], theirs.benchmarks[name]
            assert (a.avg, a.categories, a.scores, a.samples) == (b.avg, b.categories, b.scores, b.samples)
        # the per-question tables read back from the run's media files are the folder's rows
        qa, qb = runs[model].questions, folders[model].questions
        assert {n: len(q.rows) for n, q in qa.items()} == {"jaster": 2 * len(DATASETS), "mtbench": 8}
        assert {n: q.design.units for n, q in qa.items()} == {n: q.design.units for n, q in qb.items()}
        assert qa["jaster"].rows[0].answer["output"] == qb["jaster"].rows[0].answer["output"]
    # hence the same intervals, question by question
    a = compare.build(list(runs.values()), include_all=True, resamples=300).leaderboard
    b = compare.build(list(folders.values()), include_all=True, resamples=300).leaderboard
    for model in RATINGS:
        ea = next(e for e in a.entries if e.model == model)
        eb = next(e for e in b.entries if e.model == model)
        assert ea.overall_ci == eb.overall_ci and ea.overall_ci is not None


def test_runs_are_ranked_and_the_failed_one_listed(workspace: Path) -> None:
    board = compare.build(wandb_source.from_offline_runs([workspace]), include_all=True, resamples=300)
    lb = board.leaderboard
    assert [e.model for e in lb.ranked()] == ["stub-strong", "stub-weak"]
    assert lb.ranked()[0].tied_with_above is None and lb.ranked()[1].tied_with_above is False
    broken = next(e for e in lb.entries if e.model == "org/broken")
    assert (broken.state, broken.status, broken.overall) == ("excluded", "failed", None)
    strict = compare.build(wandb_source.from_offline_runs([workspace]), resamples=0).leaderboard
    assert strict.ranked() == []  # testSamples caps: smoke tests, listed not ranked
    assert all("capped (a smoke test)" in e.reasons for e in strict.entries if e.model in RATINGS)


def test_a_run_still_writing_is_listed_as_running(workspace: Path, tmp_path: Path) -> None:
    folder = next(f for f in wandb_source.find_offline_runs([workspace]) if "stub-strong" in str(f))
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    (log,) = copy.glob("run-*.wandb")
    records = list(wandb_source.read_records(log))
    assert records[-1].WhichOneof("record_type") == "exit"
    data = log.read_bytes()

    def kinds(size: int) -> list[str | None]:
        log.write_bytes(data[:size])
        return [r.WhichOneof("record_type") for r in wandb_source.read_records(log)]

    # cut just before the exit record, mid-chunk: everything the run reported is there but the end
    size = len(data) - 1
    while "exit" in kinds(size):
        size -= 1
    cut = kinds(size)
    assert 0 < len(cut) < len(records) and "summary" in cut
    (evaluation,) = wandb_source.from_offline_runs([copy])
    assert evaluation.entry.overall is not None  # its scores were logged ...
    assert evaluation.entry.status == "running"  # ... but it has not ended: not a result yet
    board = compare.build([evaluation], include_all=True, resamples=0).leaderboard
    assert board.entries[0].state == "excluded" and "status running" in board.entries[0].reasons
    # a file cut in its first block still reads up to its last whole record
    assert 0 < len(kinds(len(data) // 3)) < len(cut)


def test_the_cli_reads_wandb_dirs(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "board.json"
    code = main(["leaderboard", "--wandb-dir", str(workspace), "--include-all", "--json", str(out)])
    assert code == 0
    assert "stub-strong" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert [e["model"] for e in doc["entries"] if e["state"] == "ranked"] == ["stub-strong", "stub-weak"]
    assert main(["leaderboard", "--wandb-dir", str(tmp_path / "none")]) == 2
    assert "no W&B run folder" in capsys.readouterr().err


# ---- online: wandb.Api() ------------------------------------------------------------------------


class FakeFile:
    def __init__(self, source: Path, name: str, downloads: list[str]) -> None:
        self.source, self.name, self.downloads = source, name, downloads

    def download(self, root: str = ".", replace: bool = False, **_: Any) -> None:
        self.downloads.append(self.name)
        target = Path(root) / self.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.source / self.name, target)


class FakeRun:
    """What `wandb.apis.public.Run` offers the source, backed by an offline run folder."""

    def __init__(self, folder: Path, downloads: list[str]) -> None:
        data = wandb_source.read_offline_run(folder)
        self.id, self.name, self.entity, self.project = data.id, data.name, "nejumi", "leaderboard"
        self.state = "finished" if data.state == "finished" else "failed"
        self.config, self.summary_metrics, self.job_type = data.config, data.summary, data.job_type
        self.url = f"https://wandb.ai/nejumi/leaderboard/runs/{data.id}"
        self.created_at = "2026-11-01T09:00:00Z"
        self._files, self._downloads = folder / "files", downloads

    def file(self, name: str) -> FakeFile:
        return FakeFile(self._files, name, self._downloads)


class FakeApi:
    def __init__(self, runs: list[FakeRun]) -> None:
        self._runs = runs
        self.asked: list[tuple[str, Any]] = []

    def runs(self, path: str, filters: Any = None, **_: Any) -> list[FakeRun]:
        self.asked.append((path, filters))
        return self._runs


def test_a_project_online_gives_the_same_board(workspace: Path, tmp_path: Path) -> None:
    downloads: list[str] = []
    api = FakeApi([FakeRun(f, downloads) for f in wandb_source.find_offline_runs([workspace])])
    online = wandb_source.from_project("nejumi/leaderboard", api=api, cache=tmp_path / "cache")
    assert api.asked == [("nejumi/leaderboard", {"jobType": "evaluation"})]
    offline = by_model(wandb_source.from_offline_runs([workspace]))
    for evaluation in online:
        entry = evaluation.entry
        twin = offline[entry.model].entry
        assert (entry.overall, entry.provenance.key) == (twin.overall, twin.provenance.key)
        assert entry.status == twin.status
        assert entry.source == f"nejumi/leaderboard/{twin.id}"
        assert entry.provenance.details["wandb_run"].startswith("https://wandb.ai/nejumi/leaderboard/runs/")
    board = compare.build(online, include_all=True, resamples=100).leaderboard
    assert [e.model for e in board.ranked()] == ["stub-strong", "stub-weak"]
    assert board.ranked()[0].overall_ci is not None  # the tables were downloaded and read
    fetched = len(downloads)
    assert fetched >= 2 * 3  # leaderboard, jaster and MT-bench output tables of both runs
    assert all(name.startswith("media/table/") for name in downloads)
    again = wandb_source.from_project("nejumi/leaderboard", api=api, cache=tmp_path / "cache")
    compare.build(again, include_all=True, resamples=0)
    assert len(downloads) == fetched  # content-addressed: cached tables are not fetched again


def test_a_failed_table_download_is_named(workspace: Path, tmp_path: Path) -> None:
    class Offline(FakeFile):
        def download(self, root: str = ".", replace: bool = False, **_: Any) -> None:
            raise ConnectionError("api.wandb.ai unreachable")

    folder = next(f for f in wandb_source.find_offline_runs([workspace]) if "stub-strong" in str(f))
    fake = FakeRun(folder, [])
    fake.file = lambda name: Offline(Path("."), name, [])  # type: ignore[method-assign]
    with pytest.raises(InfrastructureError) as failed:
        compare.build(wandb_source.from_project("a/b", api=FakeApi([fake]), cache=tmp_path), resamples=0)
    assert f"downloading leaderboard_table of W&B run nejumi/leaderboard/{fake.id} failed" in str(
        failed.value
    )
    assert "ConnectionError: api.wandb.ai unreachable" in str(failed.value)


def test_project_errors_are_named(tmp_path: Path) -> None:
    class Down:
        def runs(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("api.wandb.ai unreachable")

    with pytest.raises(InfrastructureError, match="cannot read W&B project a/b: ConnectionError"):
        wandb_source.from_project("a/b", api=Down(), cache=tmp_path)
    with pytest.raises(InputError, match="ENTITY/PROJECT"):
        wandb_source.from_project("just-a-project", api=Down(), cache=tmp_path)
