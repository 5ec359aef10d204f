"""The Argo CD health check of NejumiLeaderboards (`argocd/nejumi.wandb.ai/NejumiLeaderboard/`), run
as Argo CD runs it (Lua 5.1, `obj` bound; from argocd-cm without open libraries and as a built-in
with them) on statuses the operator's own pure functions write (a status change that would break
the script fails here)."""

from __future__ import annotations

from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.leaderboard import ComputeResult, LeaderboardSpec, LeaderboardStatus, PageStatus
from nejumi_eval.api.v1alpha1.names import GROUP, LEADERBOARD_KIND
from nejumi_operator.leaderboards.compute import (
    compute_failed_status,
    computed_status,
    refused_namespaces_status,
)
from tests.support.argocd_health import health
from tests.support.helm import CHART

FOLDER = CHART / "argocd" / GROUP / LEADERBOARD_KIND
SCRIPT = (FOLDER / "health.lua").read_text(encoding="utf-8")
PAGE = PageStatus(uri="s3://b/p/index.html", json_uri="s3://b/p/leaderboard.json", bytes=1, published=True)


def board(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": LEADERBOARD_KIND,
        "metadata": {"name": "neo", "namespace": "team-a", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def result(**status: Any) -> ComputeResult:
    return ComputeResult(
        status=LeaderboardStatus.model_validate({"page": PAGE.model_dump(), **status}),
        digest="sha256:x",
        evaluations=3,
        seconds=1.0,
        bytes_read=10,
        peak_rss_mib=100.0,
    )


GATED = LeaderboardSpec.model_validate({"gates": [{"name": "floor", "min": 0.5}]})
COUNTS = {"matched": 3, "ranked": 2, "pending": 1}
VERDICTS = [
    {"evaluation": "team-a/a", "model": "a", "verdict": "Passed"},
    {
        "evaluation": "team-a/b",
        "model": "b",
        "verdict": "Failed",
        "message": "failed floor: Overall 0.41 < 0.5",
    },
]


@pytest.mark.parametrize("open_libs", [False, True], ids=["argocd-cm", "built-in"])
@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (board(None), ("Progressing", "Waiting for the operator to compute the leaderboard")),
        (
            board({"observedGeneration": 0}),
            ("Progressing", "Waiting for the operator to compute the leaderboard"),
        ),
        (
            board(computed_status({}, result(counts=COUNTS), LeaderboardSpec(), 1), generation=2),
            ("Progressing", "Waiting for the operator to compute the leaderboard"),
        ),
        (
            board(computed_status({}, result(counts=COUNTS), LeaderboardSpec(), 1)),
            ("Healthy", "2 ranked, 1 not finished, 3 matched"),
        ),
        (
            board(computed_status({}, result(counts=COUNTS, gates=VERDICTS), GATED, 1)),
            (
                "Degraded",
                "GateFailed: 1 evaluation(s) failed a gate: team-a/b (failed floor: Overall 0.41 < 0.5)",
            ),
        ),
        (
            board(
                computed_status(
                    {},
                    result(counts=COUNTS).model_copy(update={"publish_error": "store unreachable"}),
                    LeaderboardSpec(),
                    1,
                )
            ),
            ("Degraded", "NotPublished: the page was not written to s3://b/p/index.html: store unreachable"),
        ),
        (
            board(compute_failed_status({}, "the computation ran out of its 768 MiB", 1)),
            (
                "Degraded",
                "ComputeFailed: the computation ran out of its 768 MiB; "
                "tried again in 30s or at the next change",
            ),
        ),
        (
            board(refused_namespaces_status({}, ["spec.namespaces: … (allowed: none)"], 1)),
            ("Degraded", "NamespaceNotAllowed: spec.namespaces: … (allowed: none)"),
        ),
    ],
    ids=[
        "no-status",
        "unobserved",
        "edited",
        "computed",
        "gate-failed",
        "not-published",
        "failed",
        "refused",
    ],
)
def test_health(obj: dict[str, Any], expected: tuple[str, str], open_libs: bool) -> None:
    assert health(SCRIPT, obj, open_libs=open_libs) == {"status": expected[0], "message": expected[1]}


def test_the_readme_snippet_is_the_script() -> None:
    import re

    import yaml

    text = (CHART / "README.md").read_text(encoding="utf-8")
    key = f"resource.customizations.health.{GROUP}_{LEADERBOARD_KIND}"
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if key in b]
    assert yaml.safe_load(block)["data"][key] == SCRIPT
