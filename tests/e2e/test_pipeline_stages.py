"""`nejumi-eval run --stage fetch|serve|judge` on one workspace scores exactly as one `run`.

The operator runs a served model's evaluation as three pods (`api.v1alpha1.stages`); this is the
evaluator's half of that contract, end to end: a stub `vllm serve` (tests/fixtures/served_model.py,
real HTTP, its own record of when it was ready and what it answered) and a scripted judge. The
fetch stage starts no server and asks no judge; the serve stage generates every answer and asks no
judge; the judge stage sends nothing to the model (no server start, no reply) and asks the judge
everything; the scores equal those of one all-in-one run of the same spec, and the judge stage's
cost is the whole evaluation's (the serve stage's model tokens and serving span, from its record in
the workspace; the GPU-seconds held, from the operator's variable; the judge's tokens priced).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.contract import GPU_SECONDS_HELD_ENV, PRICING_ENV
from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_eval.pipeline import NOT_SERVED, run
from nejumi_eval.report.results import read_table
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.support.served import model_folder, stub_vllm


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stub `vllm` first on PATH, fast and roomy; returns the model folder it serves."""
    bin_dir = stub_vllm(tmp_path / "bin").parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NEJUMI_STUB_CAPACITY", "16")
    monkeypatch.setenv("NEJUMI_STUB_LATENCY_S", "0.01")
    return model_folder(tmp_path)


def _spec(model: Path, workspace: Path, judge_url: str) -> dict[str, Any]:
    return {
        "model": {"name": str(model), "source": "vllm"},
        "benchmarks": {
            "jaster": {"testSamples": 1, "devSamples": 0},
            "mtbench": {
                "questionsPerCategory": 1,
                "judge": {"endpoint": judge_url, "model": "gpt-4-0613", "apiKeyEnv": None},
            },
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": 1},
        "workspace": {"path": str(workspace)},
    }


def _record(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


PRICES = {
    "currency": "USD",
    "models": {"gpt-4-0613": {"promptPerMillionTokens": 30, "completionPerMillionTokens": 60}},
    "gpuHour": 2.5,
}


def test_three_stages_score_exactly_as_one_run(
    tmp_path: Path, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PRICING_ENV, json.dumps(PRICES))
    monkeypatch.setenv(GPU_SECONDS_HELD_ENV, "240")  # what the operator tells the judge stage only
    questions = {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}
    with ScriptedJudge(questions) as judge:
        one_record = tmp_path / "one.jsonl"
        monkeypatch.setenv("NEJUMI_STUB_RECORD", str(one_record))
        one = run(parse_spec(_spec(served, tmp_path / "one", judge.base_url)), progress=False)
        one_judged = judge.calls
        replies = len([e for e in _record(one_record) if "reply" in e])
        assert one.status == "completed" and one.overall is not None and replies == 16 + 8 * 2

        record = tmp_path / "staged.jsonl"
        monkeypatch.setenv("NEJUMI_STUB_RECORD", str(record))
        spec = parse_spec(_spec(served, tmp_path / "staged", judge.base_url))
        before = judge.calls
        fetched = run(spec, progress=False, stage=Stage.FETCH)
        assert fetched.stage == "fetch" and fetched.status == "completed" and fetched.overall is None
        assert not _record(record), "the fetch stage started the model server"
        assert "weights" in fetched.runtime_seconds and "prepare" in fetched.runtime_seconds

        asked = judge.calls
        serve = run(spec, progress=False, stage=Stage.SERVE)
        assert serve.stage == "serve" and serve.status == "completed" and not serve.benchmarks
        assert judge.calls == asked, "the serve stage asked the judge"
        served_replies = [e for e in _record(record) if "reply" in e]
        assert len(served_replies) == replies
        assert serve.usage.requests_sent == replies and serve.runtime_seconds["serving"] > 0
        assert serve.cost is not None and serve.cost.gpu_seconds_busy == serve.runtime_seconds["serving"]
        assert serve.cost.model_prompt_tokens == 10 * replies  # the stub's usage: 10 + 1 per reply
        assert serve.cost.judge_cost is None and serve.cost.gpu_seconds_held is None
        record_doc = json.loads((tmp_path / "staged" / "stages" / "serve.json").read_text(encoding="utf-8"))
        assert record_doc["summary"]["cost"] == serve.cost.model_dump(by_alias=True, exclude_none=True)

        final = run(spec, progress=False, stage=Stage.JUDGE)
        assert len(_record(record)) == 1 + replies, "the judge stage asked the model"
        assert len([e for e in _record(record) if "ready" in e]) == 1
        assert judge.calls - asked == one_judged
        assert asked == before  # the fetch stage checks the judge is reachable (GET), asks it nothing
    assert final.stage is None and final.status == "completed"
    # the evaluation's usage, as one run's: the serve stage's model requests, the judge stage's judgments
    assert final.usage == one.usage and final.usage.requests_sent == replies + one_judged
    assert final.overall == one.overall
    assert final.benchmarks == one.benchmarks
    assert "gpu_idle" not in final.runtime_seconds  # the judge stage's pod holds no GPU

    # The cost: the judge stage reports the whole evaluation's, as one run does (plus what only the
    # operator knows: the GPU-seconds held, which one pod cannot see the end of).
    assert final.usage.prompt_tokens == 10 * replies  # the serve stage's (the judge stage sent none)
    assert final.cost is not None and one.cost is not None and serve.cost is not None
    assert final.cost.model_prompt_tokens == one.cost.model_prompt_tokens == 10 * replies
    assert final.cost.model_completion_tokens == one.cost.model_completion_tokens == replies
    assert final.cost.gpu_seconds_busy == serve.cost.gpu_seconds_busy
    assert final.cost.gpu_seconds_held == 240.0 and final.cost.gpu_cost == round(240 / 3600 * 2.5, 6)
    assert one.cost.gpu_seconds_held is None and one.cost.gpu_cost is None  # the operator's to add
    assert one.cost.gpu_seconds_busy is not None and one.cost.gpu_seconds_busy > 0
    judged_prompt, judged_completion = 100 * one_judged, 10 * one_judged  # the scripted judge's usage
    for cost in (final.cost, one.cost):
        assert (cost.judge_prompt_tokens, cost.judge_completion_tokens) == (judged_prompt, judged_completion)
        assert cost.currency == "USD" and cost.unpriced == []
        assert cost.judge_cost == round((judged_prompt * 30 + judged_completion * 60) / 1e6, 6)
    assert final.usage.judge_prompt_tokens == judged_prompt and final.usage.judge_tokens == 110 * one_judged
    run_doc = json.loads((Path(final.results_dir or "") / "run.json").read_text(encoding="utf-8"))
    assert run_doc["cost"] == final.cost.model_dump(by_alias=True)


def test_an_answer_the_serve_stage_did_not_get_is_a_failed_answer(
    tmp_path: Path, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judge stage never asks the model: a missing answer is counted and scored as the failed
    request it stands for, never sent to a server that is gone, never a silent score."""
    monkeypatch.setenv("NEJUMI_STUB_RECORD", str(tmp_path / "record.jsonl"))
    questions = {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}
    with ScriptedJudge(questions) as judge:
        doc = _spec(served, tmp_path / "ws", judge.base_url)
        doc["benchmarks"]["mtbench"]["enabled"] = False
        spec = parse_spec(doc)
        run(spec, progress=False, stage=Stage.SERVE)
        import sqlite3

        with sqlite3.connect(tmp_path / "ws" / "cache" / "responses.sqlite") as db:
            (table,) = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            (key,) = db.execute(f"select key from {table} limit 1").fetchone()
            db.execute(f"delete from {table} where key = ?", (key,))
        final = run(spec, progress=False, stage=Stage.JUDGE)
    jaster = final.benchmarks["jaster"]
    assert jaster.failures == 1 and jaster.degraded and final.degraded
    rows = read_table(Path(final.results_dir) / "jaster_output_table.jsonl")
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 1 and failed[0]["error"] == NOT_SERVED and failed[0]["score"] == 0.0
    assert len([e for e in _record(tmp_path / "record.jsonl") if "ready" in e]) == 1


def test_weights_fetched_once_into_the_model_cache_and_served_from_it(
    tmp_path: Path, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub model through a shared model cache: the first evaluation's fetch stage downloads it
    (verified) once, its serve stage serves the cached folder under the model's name without the
    network; a second evaluation of the same model (another workspace) downloads nothing."""
    from nejumi_eval.api.v1alpha1.contract import MODEL_CACHE_ENV
    from nejumi_eval.runtime.weights.handoff import recorded
    from tests.fixtures.hub_server import HubServer, point_huggingface_hub_at
    from tests.fixtures.hub_server import model_folder as hub_folder

    size = 512 * 1024
    with HubServer() as hub:
        commit = hub.add_repo("org/stub", hub_folder(tmp_path / "repo", weights_bytes=size))
        point_huggingface_hub_at(hub, monkeypatch, tmp_path / "hf-home")
        monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "models"))
        monkeypatch.setenv("NEJUMI_STUB_RECORD", str(tmp_path / "records"))
        (tmp_path / "records").mkdir()
        questions = {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}
        summaries = []
        with ScriptedJudge(questions) as judge:
            for name in ("first", "second"):
                doc = _spec(served, tmp_path / name, judge.base_url)
                doc["model"] = {"name": "org/stub", "source": "vllm"}
                spec = parse_spec(doc)
                before = hub.stats()["bytesServed"]
                run(spec, progress=False, stage=Stage.FETCH)
                fetched = hub.stats()["bytesServed"] - before
                handoff = recorded(tmp_path / name)
                assert handoff is not None and handoff.key == f"hf/org--stub/{commit}"
                assert Path(handoff.path).is_relative_to(tmp_path / "models")
                assert fetched >= size if name == "first" else fetched == 0
                monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as the operator sets it for the serve stage
                run(spec, progress=False, stage=Stage.SERVE)
                monkeypatch.setenv("HF_HUB_OFFLINE", "0")
                summaries.append(run(spec, progress=False, stage=Stage.JUDGE))
                assert hub.stats()["bytesServed"] - before == fetched  # served from the cache
    # The stub served the cached folder (`<cache>/<key>/weights`), under the model's own name.
    records = sorted(path.name for path in (tmp_path / "records").iterdir())
    assert records == ["weights.jsonl", "weights.requests.jsonl"]  # the stub's replies, its requests
    assert summaries[0].overall == summaries[1].overall and summaries[0].status == "completed"
    assert summaries[1].usage.requests_sent == summaries[0].usage.requests_sent  # judged afresh
