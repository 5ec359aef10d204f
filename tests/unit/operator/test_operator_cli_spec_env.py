"""`nejumi-eval run --spec-env VAR`: how the operator's Job hands the evaluator its spec."""

from __future__ import annotations

import json

import pytest

from nejumi_eval import cli, pipeline
from nejumi_eval.api.v1alpha1.summary import Summary
from nejumi_operator.reconcile.job import build_job
from nejumi_operator.settings import OperatorConfig


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list:
    seen: list = []

    def fake_run(spec, progress=True, stage=None):
        seen.append(spec)
        return Summary(status="completed", model=spec.model.name)

    monkeypatch.setattr(pipeline, "run", fake_run)
    return seen


def test_spec_from_the_jobs_env(monkeypatch: pytest.MonkeyPatch, captured: list) -> None:
    spec = {"model": {"name": "m", "source": "openai-compatible", "endpoint": "http://127.0.0.1:1/v1"}}
    body = {"metadata": {"name": "e", "namespace": "ns", "generation": 1}, "spec": spec}
    job = build_job(body, OperatorConfig())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    for env in container["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    args = [a.replace("/dev/termination-log", "/tmp/summary.json") for a in container["args"]]
    assert cli.main(["run", *args]) == 0
    (run_spec,) = captured
    assert run_spec.model.endpoint == "http://127.0.0.1:1/v1"
    assert run_spec.summary_path == "/tmp/summary.json"  # --summary wins over the spec's path


def test_missing_or_bad_spec_env_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, captured: list, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NEJUMI_SPEC", raising=False)
    assert cli.main(["run", "--spec-env", "NEJUMI_SPEC"]) == 2
    assert "$NEJUMI_SPEC: environment variable is not set" in capsys.readouterr().err
    monkeypatch.setenv("NEJUMI_SPEC", json.dumps({"model": {"name": "m", "vllm": {"tensorParallelSize": 0}}}))
    assert cli.main(["run", "--spec-env", "NEJUMI_SPEC"]) == 2
    assert "model.vllm.tensorParallelSize" in capsys.readouterr().err
    monkeypatch.setenv("NEJUMI_SPEC", "{not json")
    assert cli.main(["run", "--spec-env", "NEJUMI_SPEC"]) == 2
    assert cli.main(["run", "some.yaml", "--spec-env", "NEJUMI_SPEC"]) == 2
    assert "not both" in capsys.readouterr().err
    assert captured == []
