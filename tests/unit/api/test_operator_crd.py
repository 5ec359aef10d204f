"""The generated CRD: structural, faithful to the spec model, and committed without drift."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nejumi_eval.api.v1alpha1 import crd
from nejumi_eval.api.v1alpha1.names import GROUP, KIND, PLURAL, SHORT_NAME, VERSION


def walk(node: Any, path: str = "") -> Any:
    """Yield (path, schema node) for every dict in the schema tree."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


@pytest.fixture(scope="module")
def version() -> dict[str, Any]:
    (v,) = crd.build_crd()["spec"]["versions"]
    return v


def props(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    for part in dotted.split("."):
        schema = schema["properties"][part]
    return schema


def test_committed_crd_matches_generator() -> None:
    """The CI drift check: regenerate with `make crd` when the spec model changes."""
    committed = crd.CRD_PATH.read_text(encoding="utf-8")
    assert committed == crd.render(), "crds/ is out of date with the spec model: run `make crd`"
    assert committed.startswith("# generated") and "DO NOT EDIT" in committed.splitlines()[1]
    assert crd.main(["--check"]) == 0


def test_drift_check_fails_on_a_hand_edit(tmp_path) -> None:
    edited = tmp_path / "crd.yaml"
    edited.write_text(crd.render().replace("minimum: 1", "minimum: 2", 1), encoding="utf-8")
    assert crd.main(["--check", "--out", str(edited)]) == 1


def test_names_and_subresources(version: dict[str, Any]) -> None:
    doc = crd.build_crd()
    assert doc["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (KIND, PLURAL, [SHORT_NAME])
    assert doc["spec"]["scope"] == "Namespaced"
    assert version["name"] == VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural(version: dict[str, Any]) -> None:
    schema = version["schema"]["openAPIV3Schema"]
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "const", "title", "default"}
    for path, node in walk(schema):
        if path.endswith(".properties") or path.endswith("x-kubernetes-validations"):
            continue  # property-name maps and rule lists, not schema nodes
        if "rule" in node or path.endswith(".default"):
            continue
        # No defaults (the evaluator applies the spec's), but one: an unwritten status (kstatus).
        allowed = {"default"} if path == ".properties.status" else set()
        assert not (forbidden - allowed) & node.keys(), f"{path}: {forbidden & node.keys()}"
        untyped = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert "type" in node or untyped, f"{path}: no type"
        if node.get("type") == "object":
            assert not ("properties" in node and "additionalProperties" in node), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_schema_keeps_constraints_from_the_model(version: dict[str, Any]) -> None:
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["model"]
    assert props(spec, "model")["required"] == ["name"]
    assert props(spec, "model.name")["minLength"] == 1
    assert props(spec, "model.source")["enum"] == ["vllm", "transformers", "openai-compatible"]
    tp = props(spec, "model.vllm.tensorParallelSize")
    assert (tp["type"], tp["minimum"], tp["maximum"]) == ("integer", 1, 64)
    assert props(spec, "model.endpoint") | {"description": ""} == {
        "type": "string",
        "nullable": True,
        "description": "",
    }
    datasets = props(spec, "benchmarks.jaster.datasets")
    assert datasets["nullable"] is True and datasets["minItems"] == 1
    assert "jamp" in datasets["items"]["enum"] and len(datasets["items"]["enum"]) == 16
    assert "protocol" not in props(spec, "benchmarks.jaster")["properties"]  # unread: removed (issue 8 §4)
    timeout = props(spec, "generation.requestTimeoutSeconds")
    assert (timeout["minimum"], timeout["exclusiveMinimum"]) == (0, True)
    assert props(spec, "resources.nodeSelector")["additionalProperties"]["type"] == "string"
    assert props(spec, "model.apiKeySecretRef")["required"] == ["name", "key"]
    assert props(spec, "model")["description"] == "The model under test."


def test_cel_rules_each_have_a_message(version: dict[str, Any]) -> None:
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [(p, r) for p, node in walk(spec) for r in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 4
    assert all(r["message"] for _, r in rules)
    texts = {r["rule"] for _, r in rules}
    assert "self == oldSelf" not in texts  # an edit is a new generation (only the workspace is fixed)
    workspace = [r for r in spec["x-kubernetes-validations"] if r.get("fieldPath") == ".workspace"]
    assert len(workspace) == 1 and "oldSelf.workspace" in workspace[0]["rule"], workspace
    endpoint = [r for r in props(spec, "model")["x-kubernetes-validations"] if r["fieldPath"] == ".endpoint"]
    assert {r["message"] for r in endpoint} >= {
        "model.endpoint is required when model.source is openai-compatible",
        "model.endpoint is only valid when model.source is openai-compatible",
    }


def test_an_unwritten_status_reads_as_not_observed(version: dict[str, Any]) -> None:
    """Before the operator's first write the API server fills in `observedGeneration: 0` (on read,
    nothing stored): kstatus reads generation 1 > 0 as InProgress, never a bare object as Current."""
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["default"] == crd.UNOBSERVED_STATUS == {"observedGeneration": 0}
    assert status["properties"]["observedGeneration"]["minimum"] == 0


def test_status_schema_and_printer_columns(version: dict[str, Any]) -> None:
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    conds = status["properties"]["conditions"]
    assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]
    cond = conds["items"]
    assert set(cond["required"]) >= {"type", "status", "reason", "lastTransitionTime"}
    assert cond["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    for field in ("phase", "observedGeneration", "jobName", "startTime", "completionTime", "progress"):
        assert field in status["properties"], field
    scores = status["properties"]["scores"]["properties"]
    assert set(scores) == {"overall", "benchmarks"}  # per benchmark by name: a new one needs no CRD change
    assert set(scores["benchmarks"]["additionalProperties"]["properties"]) == {"avg", "categories"}
    assert set(status["properties"]["failures"]["properties"]) == {"generation", "judge", "truncatedAnswers"}
    assert "judgeTokens" in status["properties"]["usage"]["properties"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Succeeded"]["jsonPath"] == '.status.conditions[?(@.type=="Succeeded")].status'
    assert columns["Model"]["jsonPath"] == ".spec.model.name"
    assert columns["Overall"]["jsonPath"] == ".status.overallDisplay"  # rounded; the exact value in scores
    assert columns["Age"]["type"] == "date"


def test_rendered_file_is_yaml_of_the_object() -> None:
    assert yaml.safe_load(crd.render()) == crd.build_crd()


def test_unknown_schema_keyword_is_an_error() -> None:
    with pytest.raises(crd.SchemaError, match=r"spec\.x: JSON-schema keyword 'patternProperties'"):
        crd.structural({"type": "object", "patternProperties": {}}, {}, "spec.x")
    with pytest.raises(crd.SchemaError, match="2 non-null variants"):
        crd.structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {}, "spec")


def test_quantities_are_int_or_string_nodes() -> None:
    """`cpu: 4` and `cpu: "500m"` both: Kubernetes' own shape for a quantity (no `type`; the pattern
    checks strings, the minimum integers)."""
    node = crd.structural({"x-kubernetes-int-or-string": True, "pattern": "^x$", "minimum": 0}, {}, "spec.q")
    assert node == {"x-kubernetes-int-or-string": True, "pattern": "^x$", "minimum": 0}
    nullable = crd.structural(
        {"anyOf": [{"x-kubernetes-int-or-string": True}, {"type": "null"}]}, {}, "spec.q"
    )
    assert nullable == {"x-kubernetes-int-or-string": True, "nullable": True}
    with pytest.raises(crd.SchemaError, match="int-or-string node has no type"):
        crd.structural({"x-kubernetes-int-or-string": True, "type": "string"}, {}, "spec.q")
    assert (
        crd.structural(
            {"type": "object", "maxProperties": 3, "additionalProperties": {"type": "string"}}, {}
        )["maxProperties"]
        == 3
    )


def test_pod_fields_in_the_schema(version: dict[str, Any]) -> None:
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    resources = props(spec, "resources")["properties"]
    for field in (
        "shmSize",
        "activeDeadlineSeconds",
        "priorityClassName",
        "runtimeClassName",
        "imagePullSecrets",
    ):
        assert field in resources, field
    assert props(spec, "model.hfTokenSecretRef")["required"] == ["name", "key"]
    # gpus has no default in the schema (the source decides: 0 for an API, 1 for a served model)
    assert props(spec, "resources.gpus") | {"description": ""} == {
        "type": "integer",
        "minimum": 0,
        "maximum": 64,
        "description": "",
    }
