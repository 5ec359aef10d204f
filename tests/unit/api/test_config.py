"""The evaluation spec: defaults, camelCase wire names, errors that name the field."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.spec import ConfigError, JasterDataset, load_spec, parse_spec
from nejumi_eval.benchmarks.jaster.datasets import DATASETS
from tests.support.paths import REPO


def test_spec_dataset_enum_is_the_registry() -> None:
    assert list(typing.get_args(JasterDataset)) == list(DATASETS)


def test_defaults_follow_the_protocol() -> None:
    spec = parse_spec({"model": {"name": "org/model"}})
    assert spec.model.source == "vllm" and spec.model.request_mode == "completion"
    assert spec.benchmarks.jaster.test_samples is None and spec.benchmarks.jaster.dev_samples == 20
    assert spec.benchmarks.jaster.prompt_template == "alpaca-ja-v1.3.0"
    assert spec.benchmarks.mtbench.variant == "neo" and spec.benchmarks.mtbench.judge is None
    api = parse_spec({"model": {"name": "gpt", "source": "openai-compatible", "endpoint": "http://x/v1"}})
    assert api.model.request_mode == "chat"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"model": {"name": ""}}, "model.name"),
        ({"model": {"name": "m", "vllm": {"tensorParallelSize": 0}}}, "model.vllm.tensorParallelSize"),
        ({"model": {"name": "m"}, "benchmarks": {"jaster": {"datasets": ["jnli", "x"]}}}, "datasets.1"),
        ({"model": {"name": "m"}, "benchmarks": {"mtbench": {"variant": "old"}}}, "mtbench.variant"),
        ({"model": {"name": "m"}, "generation": {"concurrency": 0}}, "generation.concurrency"),
        ({"model": {"name": "m"}, "wandb": {"apiKey": "secret"}}, "wandb.apiKey"),
        ({"model": {"name": "m", "source": "openai-compatible"}}, "model.endpoint is required"),
        ({"model": {"name": "m", "endpoint": "http://x/v1"}}, "only valid when model.source"),
    ],
)
def test_errors_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(doc)
    assert field in str(err.value)


def test_manifest_and_plain_yaml_load_alike(tmp_path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("model:\n  name: org/m\nbenchmarks:\n  jaster:\n    testSamples: 5\n")
    manifest = tmp_path / "cr.yaml"
    manifest.write_text(
        "apiVersion: nejumi.wandb.ai/v1alpha1\nkind: NejumiEvaluation\nmetadata: {name: x}\n"
        "spec:\n  model:\n    name: org/m\n  benchmarks:\n    jaster:\n      testSamples: 5\n"
    )
    assert load_spec(plain) == load_spec(manifest)
    (tmp_path / "broken.yaml").write_text("model: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_shipped_example_is_valid() -> None:
    spec = load_spec(REPO / "evaluator-image" / "examples" / "evaluation.yaml")
    assert spec.model.source == "vllm" and spec.benchmarks.mtbench.judge is not None


def test_shipped_custom_resource_example_is_valid() -> None:
    spec = load_spec(REPO / "operator" / "examples" / "llm-jp-3-1.8b.yaml")
    assert spec.resources.gpus >= spec.model.vllm.tensor_parallel_size
    assert spec.benchmarks.mtbench.judge is not None and spec.benchmarks.mtbench.judge.api_key_secret_ref


def test_model_id_picks_vllm_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from nejumi_eval import demo

    monkeypatch.setattr(demo.shutil, "which", lambda name: "/usr/bin/vllm" if name == "vllm" else None)
    assert demo.embedded_default_spec("org/m").model.source == "vllm"
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    spec = demo.embedded_default_spec("org/m")
    assert spec.model.source == "transformers" and spec.benchmarks.jaster.test_samples is None


def test_schema_command_prints_the_spec_schema(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from nejumi_eval.cli import main

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["required"] == ["model"] and "benchmarks" in schema["properties"]


def test_a_local_model_without_chat_template_is_a_config_error(tmp_path: Path) -> None:
    from nejumi_eval.pipeline import check_chat_template

    (tmp_path / "tokenizer_config.json").write_text('{"bos_token": "<s>"}')
    doc = {"model": {"name": str(tmp_path), "source": "transformers"}}
    with pytest.raises(ConfigError, match=r"model\.chatTemplate: .* has no chat template"):
        check_chat_template(parse_spec(doc))
    check_chat_template(parse_spec({**doc, "benchmarks": {"mtbench": {"enabled": False}}}))  # jaster only
    (tmp_path / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    check_chat_template(parse_spec(doc))
    with pytest.raises(ConfigError, match="is not a file"):
        check_chat_template(
            parse_spec({"model": {**doc["model"], "chatTemplate": str(tmp_path / "nope.jinja")}})
        )


def test_a_flag_given_as_model_is_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--model` on the command line obeys model.name's rules, as the same value in a config would:
    refused before the run, not by the Hub client deep inside it (issue 16)."""
    from nejumi_eval.cli import main

    config = tmp_path / "evaluation.yaml"
    config.write_text("model:\n  name: org/m\n", encoding="utf-8")
    assert main(["run", str(config), "--model=--trust-remote-code"]) == 2
    assert "model.name must be a Hugging Face model id" in capsys.readouterr().err


def test_a_local_run_refuses_a_model_on_several_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nejumi-eval run` serves on the host it runs on: a spec for two nodes is a configuration error
    (exit 2) before anything is fetched or served, never a run on this host's GPUs under its name."""
    from nejumi_eval.cli import main

    config = tmp_path / "evaluation.yaml"
    config.write_text(
        "model:\n  name: org/m\n  vllm: {tensorParallelSize: 8, pipelineParallelSize: 2}\n"
        f"resources: {{gpus: 8, nodes: 2}}\nworkspace: {{path: {tmp_path / 'ws'}}}\n",
        encoding="utf-8",
    )
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "resources.nodes: 2 nodes asked" in err
    assert "only in the cluster, as a LeaderWorkerSet group" in err
    assert not (tmp_path / "ws").exists()  # nothing started
