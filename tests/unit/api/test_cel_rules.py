"""CEL rules are written once, beside their model: the CRD carries them and the evaluator
evaluates the same expressions (cel-python), with the same messages (issue 8 §3)."""

from __future__ import annotations

from typing import Any

import pytest

from nejumi_eval.api.v1alpha1 import spec as api
from nejumi_eval.api.v1alpha1.cel import broken
from nejumi_eval.api.v1alpha1.crd import build_crd
from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec


def _schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ((), api.EvaluationSpec),
        (("model",), api.ModelSpec),
        (("model", "vllm"), api.VllmSettings),
        (("resources",), api.ResourcesSpec),
        (("benchmarks", "mtbench", "judge"), api.JudgeSpec),
    ],
)
def test_the_crd_carries_each_models_rules_verbatim(path: tuple[str, ...], model: type) -> None:
    node = _schema()
    for name in path:
        node = node["properties"][name]
    assert node["x-kubernetes-validations"] == [r.crd() for r in model.cel_rules]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"model": {"name": "m", "source": "openai-compatible"}}, "model.endpoint is required"),
        ({"model": {"name": "m", "endpoint": "http://x/v1"}}, "model.endpoint is only valid"),
        ({"model": {"name": "m", "vllm": {"extraArgs": ["--max-num-seqs=8"]}}}, "use model.vllm.maxNumSeqs"),
        ({"model": {"name": "--trust-remote-code"}}, "model.name must be a Hugging Face model id"),
        (
            {"model": {"name": "--x", "source": "openai-compatible", "endpoint": "http://x/v1"}},
            "model.name must be the API's model name",
        ),
        (
            {
                "model": {"name": "m"},
                "benchmarks": {"mtbench": {"judge": {"synthetic": True, "apiKeyEnv": "K"}}},
            },
            "judge.synthetic runs in the evaluator",
        ),
        (
            {"model": {"name": "m", "vllm": {"tensorParallelSize": 4}}, "resources": {"gpus": 4, "nodes": 2}},
            "resources.nodes: a vllm model on more than one node uses every GPU of every node",
        ),
        (
            {"model": {"name": "m", "source": "transformers"}, "resources": {"nodes": 2}},
            "resources.nodes: more than one node only with model.source vllm",
        ),
    ],
)
def test_the_evaluator_applies_the_same_rules(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(doc)
    assert message in str(err.value)


def test_cluster_only_and_transition_rules_are_left_to_the_api_server() -> None:
    # one node's gpus < TP * PP concerns pod resources, which a local run ignores; oldSelf needs an update
    doc = {"model": {"name": "m", "vllm": {"tensorParallelSize": 4, "pipelineParallelSize": 2}}}
    spec = parse_spec({**doc, "resources": {"gpus": 1}})
    assert spec.model.vllm.tensor_parallel_size == 4
    local = {r.field_path for r in api.EvaluationSpec.cel_rules if r.evaluated_locally}
    assert local == {".resources.nodes"}  # more than one node: this host cannot stand in for them
    assert "oldSelf" in api.EvaluationSpec.cel_rules[0].rule


def test_the_operator_can_apply_the_cluster_only_rules_with_the_same_expressions() -> None:
    """`broken(cluster=True)`: the API server's own rules too, evaluated by cel-python (the operator's
    check for a CRD older than itself), never a transition rule."""
    written = {"model": {"name": "m", "vllm": {"tensorParallelSize": 4}}, "resources": {"gpus": 1}}
    assert broken(api.EvaluationSpec.cel_rules, written) == []
    (rule,) = broken(api.EvaluationSpec.cel_rules, written, cluster=True)
    assert rule.field_path == ".resources.gpus" and not rule.local
    assert broken(api.EvaluationSpec.cel_rules, {**written, "resources": {"gpus": 4}}, cluster=True) == []
    piped = {"model": {"name": "m", "vllm": {"tensorParallelSize": 2, "pipelineParallelSize": 2}}}
    assert [r.field_path for r in broken(api.EvaluationSpec.cel_rules, piped, cluster=True)] == [
        ".resources.gpus"
    ]
    assert broken(api.EvaluationSpec.cel_rules, {**piped, "resources": {"gpus": 4}}, cluster=True) == []


def test_valid_specs_still_pass() -> None:
    parse_spec({"model": {"name": "m", "vllm": {"extraArgs": ["--enforce-eager"]}}})
    parse_spec({"model": {"name": "m", "source": "openai-compatible", "endpoint": "http://x/v1"}})
    parse_spec({"model": {"name": "org/m"}})
    parse_spec({"model": {"name": "./m", "source": "transformers"}})
    parse_spec({"model": {"name": "a/b/c", "source": "openai-compatible", "endpoint": "http://x/v1"}})
    parse_spec({"model": {"name": "m"}, "benchmarks": {"mtbench": {"judge": {"synthetic": True}}}})
    parse_spec(
        {
            "model": {"name": "m", "vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2}},
            "resources": {"gpus": 8, "nodes": 2},
        }
    )
