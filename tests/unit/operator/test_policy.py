"""The confused-deputy allow-lists, as the operator checks them (the chart's admission policy has the
same rules: tests/integration/test_chart.py). Each refusal names the field and what is allowed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile.job import InvalidEvaluation, build_job
from nejumi_operator.settings import OperatorConfig, SettingsError
from tests.support.helm import template

GPU = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def spec(resources: dict[str, Any] | None = None, extra_args: list[str] | None = None) -> Any:
    model: dict[str, Any] = {"name": "org/model"}
    if extra_args is not None:
        model["vllm"] = {"extraArgs": extra_args}
    return parse_spec({"model": model, "resources": {"gpus": 1, **(resources or {})}})


@pytest.mark.parametrize(
    ("resources", "extra_args", "expected"),
    [
        (
            {"tolerations": [{"operator": "Exists"}]},
            None,
            "spec.resources.tolerations[0]: * Exists is not in",
        ),
        (
            {"tolerations": [GPU, {"key": "spot", "operator": "Equal", "value": "true"}]},
            None,
            "spec.resources.tolerations[1]: spot =true is not in the operator's policy.tolerations "
            "(allowed: nvidia.com/gpu Exists NoSchedule)",
        ),
        ({"tolerations": [{**GPU, "effect": "NoExecute"}]}, None, "tolerations[0]"),  # exact match only
        ({"nodeSelector": {"pool": "a"}}, None, "spec.resources.nodeSelector.pool: the key is not in"),
        ({"runtimeClassName": "kata"}, None, "spec.resources.runtimeClassName: 'kata' is not in"),
        ({"priorityClassName": "high"}, None, "policy.priorityClassNames (allowed: none)"),
        (None, ["--trust-remote-code"], "spec.model.vllm.extraArgs[0]: --trust-remote-code"),
        (None, ["--trust_remote_code=1"], "policy.allowTrustRemoteCode is false"),
        (None, ["--max-model-len", "4096"], "extraArgs[0]: --max-model-len is not in"),
    ],
)
def test_the_default_policy_refuses(resources: Any, extra_args: Any, expected: str) -> None:
    problems = Policy().violations(spec(resources, extra_args))
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_default_policy_admits_the_gpu_toleration_and_plain_specs() -> None:
    assert Policy().violations(spec({"tolerations": [GPU]})) == []
    assert Policy().violations(spec()) == []


def test_an_admin_widens_the_lists() -> None:
    policy = Policy.model_validate(
        {
            "nodeSelector": {"pool": ["a", "b"], "zone": []},
            "runtimeClassNames": ["kata"],
            "priorityClassNames": ["high"],
            "vllmExtraArgs": ["--max-model-len", "--enforce_eager"],
            "allowTrustRemoteCode": True,
        }
    )
    ok = spec(
        {
            "nodeSelector": {"pool": "b", "zone": "z1"},
            "runtimeClassName": "kata",
            "priorityClassName": "high",
        },
        ["--max_model_len=4096", "--enforce-eager", "--trust-remote-code"],
    )
    assert policy.violations(ok) == []
    bad = policy.violations(spec({"nodeSelector": {"pool": "c"}}, ["--max-num-batched-tokens", "8"]))
    assert (
        "nodeSelector.pool: 'c' is not allowed by the operator's policy.nodeSelector (allowed: a, b)"
        in bad[0]
    )
    assert "--max-num-batched-tokens is not in" in bad[1] and "--enforce-eager, --max-model-len" in bad[1]
    assert Policy(enabled=False).violations(spec({"tolerations": [{"operator": "Exists"}]})) == []


def test_the_operator_refuses_before_any_job_exists() -> None:
    evaluation = {
        "metadata": {"name": "e", "namespace": "ns", "generation": 1},
        "spec": {"model": {"name": "org/model"}, "resources": {"runtimeClassName": "privileged"}},
    }
    with pytest.raises(InvalidEvaluation, match=r"spec.resources.runtimeClassName: 'privileged'"):
        build_job(evaluation, OperatorConfig())


def test_the_chart_hands_its_policy_to_the_operator(tmp_path: Any) -> None:
    docs = template(tmp_path, "--set", "policy.runtimeClassNames={kata}")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    config = OperatorConfig.from_env(env)
    assert config.policy.runtime_class_names == ["kata"] and config.policy.tolerations == Policy().tolerations
    kinds = sorted(d["kind"] for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy"))
    assert kinds == ["ValidatingAdmissionPolicy"] * 2 + ["ValidatingAdmissionPolicyBinding"] * 2
    assert not [
        d for d in template(tmp_path, "--set", "policy.enabled=false") if "AdmissionPolicy" in d["kind"]
    ]
    with pytest.raises(SettingsError, match="NEJUMI_OPERATOR_POLICY"):
        OperatorConfig.from_env({"NEJUMI_OPERATOR_POLICY": json.dumps({"tolerations": "all"})})
