"""The NejumiLeaderboard spec: what it refuses (the same CEL rules the CRD carries, evaluated here),
the selector as an API query, and the CRD generated from it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from nejumi_eval.api.v1alpha1.crd import build_leaderboard_crd
from nejumi_eval.api.v1alpha1.leaderboard import LeaderboardSpec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"gates": [{"name": "g"}]}, "a gate has either min or notWorseThan"),
        (
            {"gates": [{"name": "g", "min": 0.5, "notWorseThan": "base"}]},
            "a gate has either min or notWorseThan",
        ),
        (
            {"gates": [{"name": "g", "notWorseThan": "base", "metric": "jaster"}]},
            "metric and statistic go with min",
        ),
        ({"gates": [{"name": "g", "notWorseThan": "Not A Name"}]}, "notWorseThan: an evaluation name"),
        ({"gates": [{"name": "g", "min": 1}, {"name": "g", "min": 2}]}, "gates: names must be unique"),
        ({"namespaces": ["a", "a"]}, "namespaces: each at most once"),
        ({"namespaces": ["Team_A"]}, "namespaces: each a namespace name"),
        ({"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "values: required"),
        ({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}, "values"),
        ({"selector": {"matchLabels": {"bad key!": "x"}}}, "matchLabels: each key a label key"),
        ({"confidence": 1.0}, "confidence"),
        ({"resamples": 20000}, "resamples"),
        ({"protocol": "abc"}, "protocol"),
        ({"publish": {"uri": "http://not-s3"}}, "uri"),
    ],
)
def test_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        LeaderboardSpec.model_validate(spec)
    assert message in str(err.value)


def test_accepted_and_defaults() -> None:
    spec = LeaderboardSpec.model_validate(
        {
            "selector": {"matchLabels": {"nejumi.wandb.ai/board": "neo"}},
            "gates": [
                {"name": "floor", "min": 0.55},
                {"name": "nli", "metric": "jaster/NLI", "min": 0.4, "statistic": "LowerBound"},
                {"name": "no-regression", "notWorseThan": "team-a/baseline"},
            ],
            "include": {"capped": True},
        }
    )
    assert (spec.confidence, spec.resamples, spec.seed, spec.top, spec.keep_deleted) == (
        0.95,
        1000,
        0,
        10,
        True,
    )
    assert spec.include is not None and spec.include.capped and not spec.include.degraded


def test_crd_printer_columns_and_status_default() -> None:
    crd = build_leaderboard_crd()
    (version,) = crd["spec"]["versions"]
    names = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert names == ["Leader", "Overall", "Ranked", "Pending", "Updated"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["status"]["default"] == {"observedGeneration": 0}
    rules = [r["rule"] for r in schema["spec"]["properties"]["gates"]["items"]["x-kubernetes-validations"]]
    assert "has(self.min) != has(self.notWorseThan)" in rules
    assert crd["spec"]["names"]["shortNames"] == ["nejumilb"]


def test_the_example_is_a_valid_leaderboard() -> None:
    import yaml

    from tests.support.paths import REPO

    doc = yaml.safe_load((REPO / "operator" / "examples" / "leaderboard.yaml").read_text(encoding="utf-8"))
    assert doc["kind"] == "NejumiLeaderboard"
    spec = LeaderboardSpec.model_validate(doc["spec"])
    assert spec.gates[0].min == 0.5


def test_kubectl_get_nejumi_still_means_evaluations() -> None:
    """`nejumi` is the evaluations' short name and category: the leaderboard is in neither."""
    from nejumi_eval.api.v1alpha1.crd import build_crd

    names = build_leaderboard_crd()["spec"]["names"]
    assert "categories" not in names and "nejumi" not in names["shortNames"]
    assert build_crd()["spec"]["names"]["categories"] == ["nejumi"]
