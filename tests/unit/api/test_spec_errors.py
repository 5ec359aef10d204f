"""Config errors: field paths as the user wrote them (`spec.` in a manifest) and "did you mean"."""

from __future__ import annotations

from pathlib import Path

import pytest

from nejumi_eval.api.v1alpha1.spec import ConfigError, load_spec, parse_spec


def _error(doc: object, **kwargs: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_spec(doc, **kwargs)
    return str(err.value)


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        (
            {"model": {"name": "m"}, "benchmarks": {"jaster": {"testSample": 3}}},
            "benchmarks.jaster.testSample: Extra inputs are not permitted (did you mean testSamples?)",
        ),
        (
            {"model": {"name": "m"}, "benchmarks": {"jaster": {"test_sample": 3}}},
            "benchmarks.jaster.test_sample: Extra inputs are not permitted (did you mean testSamples?)",
        ),
        (
            {"model": {"name": "m", "vllm": {"extraArg": []}}},
            "model.vllm.extraArg: Extra inputs are not permitted (did you mean extraArgs?)",
        ),
        (
            {"model": {"name": "m", "tensorParallelSize": 2}},
            "model.tensorParallelSize: Extra inputs are not permitted"
            " (did you mean vllm.tensorParallelSize?)",
        ),
        (  # through an optional nested model
            {"model": {"name": "m"}, "benchmarks": {"mtbench": {"judge": {"modle": "x"}}}},
            "benchmarks.mtbench.judge.modle: Extra inputs are not permitted (did you mean model?)",
        ),
        (  # through a list
            {"model": {"name": "m"}, "resources": {"tolerations": [{"kye": "a"}]}},
            "resources.tolerations.0.kye: Extra inputs are not permitted (did you mean key?)",
        ),
        (  # an abbreviation suggests every field it starts
            {"model": {"name": "m", "apiKey": "k"}},
            "model.apiKey: Extra inputs are not permitted (did you mean apiKeyEnv or apiKeySecretRef?)",
        ),
        ({"modle": {"name": "m"}}, "modle: Extra inputs are not permitted (did you mean model?)"),
    ],
)
def test_unknown_keys_suggest_the_closest_field(doc: dict, line: str) -> None:
    assert f"\n  {line}" in _error(doc)


def test_nothing_close_means_no_suggestion() -> None:
    message = _error({"model": {"name": "m"}, "benchmarks": {"jaster": {"zzzzzz": 1}}})
    assert message.splitlines()[-1] == "  benchmarks.jaster.zzzzzz: Extra inputs are not permitted"


def test_other_errors_keep_their_format() -> None:
    message = _error({"model": {"name": "m"}, "benchmarks": {"mtbench": {"variant": "old"}}}, source="c.yaml")
    assert message == (
        "c.yaml: invalid evaluation spec\n"
        "  benchmarks.mtbench.variant: Input should be 'neo' or 'head' (got 'old')"
    )
    assert _error(None).splitlines()[1].startswith("  (root): ")


def test_a_prefix_goes_in_front_of_every_path() -> None:
    message = _error(
        {"model": {"name": "m", "endpoint": "http://x/v1", "vllm": {"dtyp": "x"}}}, path_prefix="spec"
    )
    assert "\n  spec.model.vllm.dtyp: Extra inputs are not permitted (did you mean dtype?)" in message
    assert _error(None, path_prefix="spec").splitlines()[1].startswith("  spec: ")


def test_manifest_errors_name_spec_fields_and_plain_configs_do_not(tmp_path: Path) -> None:
    body = "model:\n  name: m\n  source: openai-compatible\nbenchmarks:\n  jaster:\n    testSample: 3\n"
    plain = tmp_path / "plain.yaml"
    plain.write_text(body)
    manifest = tmp_path / "cr.yaml"
    manifest.write_text(
        "apiVersion: nejumi.wandb.ai/v1alpha1\nkind: NejumiEvaluation\nmetadata: {name: x}\nspec:\n"
        + "".join(f"  {line}\n" for line in body.splitlines())
    )
    with pytest.raises(ConfigError) as err:
        load_spec(plain)
    assert f"{plain}: invalid evaluation spec" in str(err.value)
    assert "\n  benchmarks.jaster.testSample: " in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_spec(manifest)
    assert f"{manifest}: invalid evaluation spec" in str(err.value)
    assert (
        "\n  spec.benchmarks.jaster.testSample: Extra inputs are not permitted (did you mean testSamples?)"
        in (str(err.value))
    )

    manifest.write_text(
        "kind: NejumiEvaluation\nspec:\n  model:\n    name: m\n    source: openai-compatible\n"
    )
    with pytest.raises(ConfigError, match=r"\n  spec\.model: .*model\.endpoint is required"):
        load_spec(manifest)
    manifest.write_text("kind: NejumiEvaluation\nmetadata: {name: x}\n")
    with pytest.raises(ConfigError, match=r"\n  spec: Input should be a valid dictionary"):
        load_spec(manifest)
