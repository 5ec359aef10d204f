"""The Argo CD health check the chart ships (`argocd/nejumi.wandb.ai/NejumiEvaluation/`, Argo CD's
own `resource_customizations` layout): every case of its `health_test.yaml` run the way Argo CD runs
it (a real Lua 5.1, `obj` bound, from argocd-cm without open libraries and as a built-in with them),
on testdata the operator's reducer produced (a status change that breaks the Lua fails here), the
README's argocd-cm snippet equal to the file, and the files in the packaged chart."""

from __future__ import annotations

import copy
import tarfile
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.names import GROUP, KIND
from tests.support import argocd_testdata
from tests.support.argocd_health import CM_KEY, HEALTH_DIR, cases, health, load_yaml, readme_argocd_cm
from tests.support.helm import CHART, helm

SCRIPT = (HEALTH_DIR / "health.lua").read_text(encoding="utf-8")
CASES = cases(HEALTH_DIR)


def test_the_folder_is_argo_cds_layout() -> None:
    assert HEALTH_DIR.relative_to(CHART / "argocd").parts == (GROUP, KIND)
    assert sorted(p.name for p in HEALTH_DIR.iterdir()) == ["health.lua", "health_test.yaml", "testdata"]
    listed = {path for path, _ in CASES}
    assert len(listed) == len(CASES), "a testdata file listed twice"
    assert listed == {f"testdata/{p.name}" for p in (HEALTH_DIR / "testdata").glob("*.yaml")}


def test_testdata_is_what_the_reducer_writes_now() -> None:
    assert argocd_testdata.differences() == [], "run `python -m tests.support.argocd_testdata`"
    assert argocd_testdata.main(["--check"]) == 0


def test_every_phase_has_a_case() -> None:
    phases = {(load_yaml(HEALTH_DIR / path).get("status") or {}).get("phase") for path, _ in CASES}
    assert phases == {None, *c.PHASES}


@pytest.mark.parametrize("open_libs", [False, True], ids=["argocd-cm", "built-in"])
@pytest.mark.parametrize(("input_path", "expected"), CASES, ids=[path for path, _ in CASES])
def test_health_case(input_path: str, expected: dict[str, str], open_libs: bool) -> None:
    assert health(SCRIPT, load_yaml(HEALTH_DIR / input_path), open_libs=open_libs) == expected


def kstatus(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with kstatus's Ready/Reconciling/Stalled conditions added as issue 19 defines them."""
    out = copy.deepcopy(obj)
    status = out["status"]
    phase, generation = status["phase"], out["metadata"]["generation"]
    starting = status["observedGeneration"] < generation
    values = {
        "Ready": phase == c.PHASE_SUCCEEDED and not starting,
        "Reconciling": starting or phase not in (c.PHASE_SUCCEEDED, c.PHASE_FAILED),
        "Stalled": phase == c.PHASE_FAILED and not starting,
    }
    status["conditions"] += [
        {
            "type": type_,
            "status": "True" if value else "False",
            "reason": status["reason"],
            "message": "",
            "lastTransitionTime": argocd_testdata.WRITTEN,
            "observedGeneration": status["observedGeneration"],
        }
        for type_, value in values.items()
    ]
    return out


WITH_STATUS = [(path, want) for path, want in CASES if "status" in load_yaml(HEALTH_DIR / path)]


@pytest.mark.parametrize(("input_path", "expected"), WITH_STATUS, ids=[path for path, _ in WITH_STATUS])
def test_kstatus_conditions_change_nothing(input_path: str, expected: dict[str, str]) -> None:
    assert health(SCRIPT, kstatus(load_yaml(HEALTH_DIR / input_path))) == expected


def test_an_unknown_phase_is_unknown() -> None:
    obj = load_yaml(HEALTH_DIR / "testdata" / "running.yaml")
    obj["status"]["phase"] = "Hibernating"
    assert health(SCRIPT, obj) == {"status": "Unknown", "message": "Unknown phase Hibernating"}


def test_a_status_without_a_phase_waits_for_the_operator() -> None:
    obj = load_yaml(HEALTH_DIR / "testdata" / "no_status.yaml") | {"status": {}}
    assert health(SCRIPT, obj) == {
        "status": "Progressing",
        "message": "Waiting for the operator to report the evaluation's status",
    }


def test_the_readme_snippet_is_the_script() -> None:
    cm = readme_argocd_cm()
    assert (cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("argocd-cm", "argocd")
    assert cm["data"][CM_KEY] == SCRIPT


def test_the_packaged_chart_carries_the_check_and_renders_none_of_it(tmp_path: Path) -> None:
    helm(["package", str(CHART), "--destination", str(tmp_path)], tmp_path / "home")
    (package,) = tmp_path.glob("nejumi-operator-*.tgz")
    with tarfile.open(package) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames()}
    inside = {
        f"argocd/{GROUP}/{KIND}/{p.relative_to(HEALTH_DIR)}" for p in HEALTH_DIR.rglob("*") if p.is_file()
    }
    assert inside <= names
    rendered = helm(["template", "x", str(CHART)], tmp_path / "home").stdout
    assert "obj.status" not in rendered and "nejumi.wandb.ai/v1alpha1\nkind: NejumiEvaluation" not in rendered
