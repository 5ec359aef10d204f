"""Issue 9: the evaluator as a newcomer meets it — clear errors before anything is served or
sent, a judge failure that keeps the jaster half, an honest W&B hand-off, results hygiene.

Exit codes and messages are asserted, never timings. Every server is on loopback; the Hub is
pointed at a closed local port through `HF_ENDPOINT`, so no traffic leaves the machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nejumi_eval.api.v1alpha1.contract import EXIT_CONFIG, EXIT_INFRA, EXIT_OK
from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_eval.cli import main
from nejumi_eval.pipeline import evaluation_id, run
from nejumi_eval.report.results import read_table
from tests.fixtures.openai_stub import Reply, StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.support import wandb_offline

REPO = Path(__file__).resolve().parents[2]
MODEL = "stub-model"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _api(endpoint: str, **benchmarks: object) -> dict:
    return {
        "model": {"name": MODEL, "source": "openai-compatible", "endpoint": endpoint, "mode": "completion"},
        "benchmarks": {"jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0}, **benchmarks},
        "generation": {"maxRetries": 1},
        "wandb": {"enabled": False},
    }


@pytest.fixture(scope="module")
def questions() -> dict[int, str]:
    return {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}


# ---- failures become clear errors ------------------------------------------------------------


def test_mtbench_only_with_an_unreachable_model_is_one_line_and_exit_3(tmp_path: Path) -> None:
    doc = _api(f"http://127.0.0.1:{_closed_port()}/v1", mtbench={"questionsPerCategory": 1})
    doc["benchmarks"]["jaster"] = {"enabled": False}
    doc["workspace"] = {"path": str(tmp_path / "ws")}
    proc = subprocess.run(
        [sys.executable, "-m", "nejumi_eval.cli", "-q", "run", str(_config(tmp_path, doc))],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_INFRA
    assert "Traceback" not in proc.stderr and "ExceptionGroup" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert "cannot reach the OpenAI-compatible endpoint" in proc.stderr


@pytest.mark.parametrize(
    ("model", "code", "message"),
    [
        ({"name": "/no/such/model", "source": "transformers"}, EXIT_CONFIG, "/no/such/model does not exist"),
        (
            {"name": "./relative/missing", "source": "transformers"},
            EXIT_CONFIG,
            "does not exist or is not a folder",
        ),
    ],
)
def test_preflight_rejects_a_local_model_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: dict, code: int, message: str
) -> None:
    doc = {"model": model, "workspace": {"path": str(tmp_path)}, "wandb": {"enabled": False}}
    assert main(["-q", "run", str(_config(tmp_path, doc))]) == code
    err = capsys.readouterr().err
    assert message in err and "model.name" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()  # nothing started


def test_preflight_a_hub_id_that_cannot_be_reached_or_is_not_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests/conftest.py sets it for the suite
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    doc = {"model": {"name": "org/not-cached", "source": "transformers"}, "wandb": {"enabled": False}}
    doc["workspace"] = {"path": str(tmp_path)}
    assert main(["-q", "run", str(_config(tmp_path, doc))]) == EXIT_INFRA
    err = capsys.readouterr().err
    assert "org/not-cached is a Hugging Face Hub id" in err and "cannot be reached" in err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["-q", "run", str(_config(tmp_path, doc))]) == EXIT_INFRA
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


@pytest.mark.skipif(
    any((Path(p) / "vllm").exists() for p in os.environ.get("PATH", "").split(os.pathsep)),
    reason="vLLM is installed here",
)
def test_preflight_vllm_not_installed_says_which_source_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    doc = {"model": {"name": str(folder)}, "benchmarks": {"mtbench": {"enabled": False}}}
    doc |= {"workspace": {"path": str(tmp_path)}, "wandb": {"enabled": False}}
    assert main(["-q", "run", str(_config(tmp_path, doc))]) == EXIT_CONFIG
    assert (
        "model.source: vllm is not installed on this machine; use source: transformers"
        in capsys.readouterr().err
    )


def test_preflight_an_unreachable_judge_before_any_model_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    judge = {"model": "gpt-4-0613", "endpoint": f"http://127.0.0.1:{_closed_port()}/v1"}
    with StubServer(model=MODEL) as model:
        doc = _api(model.base_url, mtbench={"questionsPerCategory": 1, "judge": judge})
        doc["workspace"] = {"path": str(tmp_path)}
        assert main(["-q", "run", str(_config(tmp_path, doc))]) == EXIT_INFRA
        assert model.calls == 0  # found before a single answer was generated
    assert "cannot reach the OpenAI-compatible endpoint" in capsys.readouterr().err


def test_preflight_a_judge_without_a_key_and_wandb_online_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "NEJUMI_JUDGE_API_KEY", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a W&B login
    with StubServer(model=MODEL) as model:
        doc = _api(model.base_url, mtbench={"questionsPerCategory": 1, "judge": {"model": "gpt-4-0613"}})
        doc["workspace"] = {"path": str(tmp_path)}
        assert main(["-q", "run", str(_config(tmp_path, doc))]) == EXIT_CONFIG
        assert "benchmarks.mtbench.judge: no API key for the judge" in capsys.readouterr().err
        doc = _api(model.base_url, mtbench={"enabled": False})
        doc |= {"workspace": {"path": str(tmp_path)}, "wandb": {"mode": "online"}}
        assert main(["-q", "run", str(_config(tmp_path, doc))]) == EXIT_CONFIG
        assert "wandb.mode: online needs an API key" in capsys.readouterr().err
        assert model.calls == 0


def test_judge_api_key_env_alone_configures_the_default_judge() -> None:
    from nejumi_eval.cli import _set_judges, build_parser

    spec = parse_spec({"model": {"name": "m"}})
    args = build_parser().parse_args(["run", "--judge-api-key-env", "MY_KEY"])
    _set_judges(spec, args)
    judge = spec.benchmarks.mtbench.judge
    assert judge is not None and judge.api_key_env == "MY_KEY" and judge.model == "gpt-4-0613"
    assert not judge.synthetic


# ---- a judge failure keeps the jaster half ---------------------------------------------------


def test_a_lost_judge_keeps_the_jaster_half_and_a_rerun_resumes(
    tmp_path: Path, questions: dict[int, str]
) -> None:
    with StubServer(model=MODEL) as model, ScriptedJudge(questions) as judge:
        judge.script.extend([Reply(401, body={"error": {"message": "key revoked"}})] * 50)
        doc = _api(model.base_url, mtbench={"questionsPerCategory": 1, "judge": {"endpoint": judge.base_url}})
        doc["workspace"] = {"path": str(tmp_path)}
        doc["summaryPath"] = str(tmp_path / "summary.json")
        summary = run(parse_spec(doc), progress=False)
        answered = model.calls
        judge_port = judge.port

    assert summary.status == "failed" and "mtbench" in (summary.error or "") and "401" in summary.error
    jaster, mtbench = summary.benchmarks["jaster"], summary.benchmarks["mtbench"]
    assert jaster.scored and jaster.samples == 2  # scored and kept
    assert not mtbench.scored and mtbench.avg is None  # never a partial score
    assert summary.overall is None
    results = Path(summary.results_dir or "")
    assert len(read_table(results / "jaster_output_table.jsonl")) == 2
    assert len(read_table(results / "mtbench_answers.jsonl")) == 8
    assert json.loads((results / "summary.json").read_text())["status"] == "failed"
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"

    with (
        StubServer(model=MODEL, port=int(doc["model"]["endpoint"].split(":")[2].split("/")[0])) as model,
        ScriptedJudge(questions, port=judge_port) as judge,
    ):
        again = run(parse_spec(doc), progress=False)
        assert model.calls == 0  # every answer from the cache
        assert judge.calls == 16
    assert answered == 2 + 16
    assert again.status == "completed" and again.benchmarks["mtbench"].scored


# ---- W&B hand-off and results hygiene ----------------------------------------------------------


def test_one_evaluation_is_one_wandb_run_and_the_printed_folder_syncs(
    tmp_path: Path, questions: dict[int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with StubServer(model=MODEL) as model:
        doc = _api(model.base_url, mtbench={"questionsPerCategory": 1, "judge": {"synthetic": True}})
        doc |= {"workspace": {"path": str(tmp_path)}, "wandb": {"mode": "offline"}}
        config = _config(tmp_path, doc)
        assert main(["-q", "run", str(config)]) == EXIT_OK
        first_out = capsys.readouterr().out
        assert main(["-q", "run", str(config)]) == EXIT_OK
        second_out = capsys.readouterr().out

    runs = sorted(tmp_path.glob("results/*/wandb/offline-run-*"))
    assert len(runs) == 2
    records = [wandb_offline.run_record(r) for r in runs]
    assert records[0].run_id == records[1].run_id == evaluation_id(parse_spec(doc))  # resumed, not duplicated
    # a capped, synthetic-judge run is a smoke test: not in the leaderboard project, grouped, tagged
    assert records[0].project == "nejumi-smoke-tests" and records[0].run_group == "smoke-test"
    assert {"capped", "synthetic-judge"} <= set(records[0].tags)
    for out, folder in ((first_out, runs[0]), (second_out, runs[1])):
        assert f"W&B run: {folder}" in out  # the run folder, not its files/ subfolder
        assert f"wandb sync {folder}" in out
        assert list(folder.glob("run-*.wandb"))  # what `wandb sync` reads


def test_run_json_has_wall_times_and_judge_time_overlapping_generation(
    tmp_path: Path, questions: dict[int, str]
) -> None:
    with StubServer(model=MODEL, delay_s=0.02) as model, ScriptedJudge(questions, delay_s=0.05) as judge:
        doc = _api(model.base_url, mtbench={"questionsPerCategory": 1, "judge": {"endpoint": judge.base_url}})
        doc["workspace"] = {"path": str(tmp_path)}
        summary = run(parse_spec(doc), progress=False)
    doc = json.loads((Path(summary.results_dir or "") / "run.json").read_text())
    assert doc["started_at"] < doc["ended_at"] and doc["status"] == "completed"
    assert doc["runtime_seconds"]["judge"] >= 0.05  # its own wall time, though it overlapped generation
    answers = {
        r["question_id"]: r["tstamp"]
        for r in read_table(Path(summary.results_dir or "") / "mtbench_answers.jsonl")
    }
    judged = read_table(Path(summary.results_dir or "") / "mtbench_output_table.jsonl")
    assert all(j["tstamp"] >= answers[j["question_id"]] - 1e-6 or j["turn"] == 1 for j in judged)


# ---- CLI parity ---------------------------------------------------------------------------------


def test_list_version_and_global_flags_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "== jaster" in text and "wiki_coreference" in text and "== mtbench" in text
    assert main(["list", "--json", "-q"]) == EXIT_OK  # a global flag after the subcommand
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["jaster"]["datasets"]) == 16 and doc["mtbench"]["questions"] == 80
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.startswith("nejumi-eval ")


def test_run_options_limit_datasets_judge_and_a_per_dataset_table(
    tmp_path: Path, questions: dict[int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with StubServer(model=MODEL) as model, ScriptedJudge(questions) as judge:
        doc = _api(model.base_url, mtbench={"enabled": True})
        doc["benchmarks"]["jaster"] = {"devSamples": 0}
        doc["workspace"] = {"path": str(tmp_path)}
        config = _config(tmp_path, doc)
        argv = ["run", str(config), "-q", "--limit", "1", "--datasets", "jamp,mawps"]
        argv += ["--judge", "gpt-4-0613", "--judge-endpoint", judge.base_url]
        assert main(argv) == EXIT_OK
        assert model.calls == 2 + 16  # 1 sample of 2 datasets; 1 question per category, 2 turns
        assert judge.calls == 16
    out = capsys.readouterr().out
    assert "jaster AVG: null (incomplete)  [capped]" in out  # a subset: no average…
    assert "jamp_exact_match" in out and "mawps_exact_match" in out  # …but every dataset's score
    assert main(["run", str(config), "--datasets", "jamps"]) == EXIT_CONFIG
    assert "benchmarks.jaster.datasets.0" in capsys.readouterr().err


def test_failure_warnings_name_the_benchmark_dataset_and_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with StubServer(model=MODEL) as model:
        model.script.extend([Reply(500)] * 4)  # the first request's 2 attempts, then the second's
        doc = _api(model.base_url, mtbench={"enabled": False})
        doc["generation"]["concurrency"] = 1
        doc["workspace"] = {"path": str(tmp_path)}
        summary = run(parse_spec(doc), progress=False)
    assert summary.benchmarks["jaster"].failures == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("jaster jamp test #0 failed: ") for w in warnings), warnings


def test_progress_in_a_log_is_plain_periodic_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nejumi_eval import pipeline

    monkeypatch.setattr(pipeline, "HEARTBEAT_S", 0.05)
    with StubServer(model=MODEL, delay_s=0.05) as model:
        doc = _api(model.base_url, mtbench={"enabled": False})
        doc["benchmarks"]["jaster"] = {"datasets": ["jamp"], "testSamples": 6, "devSamples": 0}
        doc["generation"]["concurrency"] = 1
        doc["workspace"] = {"path": str(tmp_path)}
        assert main(["run", str(_config(tmp_path, doc))]) == EXIT_OK  # stderr is not a terminal here
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err  # no progress-bar redraws in a log
    assert any(line.startswith("progress: jaster ") for line in err.splitlines())
    assert any(line.startswith("generate: 6 sent, 0 from the cache, 0 failed") for line in err.splitlines())


def test_a_run_that_fails_before_scoring_leaves_a_failed_summary_not_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nejumi_eval.benchmarks.jaster import benchmark as jaster

    def broken_plan(*_args: object, **_kwargs: object):
        raise OSError("disk full while preparing")

    monkeypatch.setattr(jaster, "plan", broken_plan)
    with StubServer(model=MODEL) as model:
        doc = _api(model.base_url, mtbench={"enabled": False})
        doc |= {"workspace": {"path": str(tmp_path)}, "wandb": {"mode": "offline"}}  # W&B opens the folder
        with pytest.raises(OSError):
            run(parse_spec(doc), progress=False)
    (folder,) = (tmp_path / "results").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "failed" and "disk full" in summary["error"]


def test_a_model_the_endpoint_does_not_serve_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 10: exit 2, so the operator fails the Job at once instead of retrying three pods."""
    with StubServer(model="another-model") as server:
        doc = _api(server.base_url, mtbench={"enabled": False})
        doc["workspace"] = {"path": str(tmp_path)}
        assert main(["-q", "run", str(_config(tmp_path, doc))]) == EXIT_CONFIG
    assert f"model {MODEL!r} is not served at {server.base_url}" in capsys.readouterr().err
