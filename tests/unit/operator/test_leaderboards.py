"""The operator's side of NejumiLeaderboards, without a cluster: the debounce (many changes, one
computation), the status a computation leads to, what makes an evaluation's change matter to a
board, the namespaces policy, and the request handed to the child process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.leaderboard import (
    ComputeResult,
    GateVerdict,
    LeaderboardSpec,
    LeaderboardStatus,
    PageStatus,
)
from nejumi_operator.debounce import Debouncer
from nejumi_operator.leaderboards.compute import (
    build_request,
    compute_failed_status,
    computed_status,
    fingerprint,
    publish_uri,
    refused_namespaces_status,
)
from nejumi_operator.policy import Policy
from nejumi_operator.settings import OperatorConfig


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_seventy_changes_at_once_cost_one_computation() -> None:
    async def scenario() -> tuple[int, list[Any]]:
        seen: list[Any] = []

        async def compute(key: Any) -> None:
            seen.append(key)

        board = Debouncer(compute, quiet=0.01, max_delay=30)
        for _ in range(70):
            board.touch(("ns", "lb"))
        board.touch(("ns", "other"))
        while board.waiting or any(p.task and not p.task.done() for p in board._pending.values()):
            await asyncio.sleep(0.01)
        return board.runs, seen

    runs, seen = run(scenario())
    assert runs == 2 and sorted(seen) == [("ns", "lb"), ("ns", "other")]


def test_a_change_during_a_computation_computes_again_once() -> None:
    async def scenario() -> int:
        started = asyncio.Event()
        release = asyncio.Event()
        runs = 0

        async def compute(_key: Any) -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                started.set()
                await release.wait()

        board = Debouncer(compute, quiet=0.01, max_delay=30)
        board.touch("lb")
        await started.wait()
        for _ in range(10):  # changes while it computes: one more computation, after it
            board.touch("lb")
        release.set()
        while board._pending:
            await asyncio.sleep(0.01)
        return runs

    assert run(scenario()) == 2


def test_changes_that_keep_coming_wait_at_most_max_delay() -> None:
    async def scenario() -> tuple[int, int]:
        runs = 0

        async def compute(_key: Any) -> None:
            nonlocal runs
            runs += 1

        board = Debouncer(compute, quiet=10, max_delay=0.05)
        touches = 0
        while runs == 0 and touches < 2000:  # a change every 10 ms: never quiet for 10 s
            board.touch("lb")
            touches += 1
            await asyncio.sleep(0.01)
        return runs, touches

    runs, touches = run(scenario())
    assert runs == 1 and touches < 2000


def test_a_failed_computation_is_tried_again_after_its_delay() -> None:
    async def scenario() -> int:
        runs = 0

        async def compute(_key: Any) -> float | None:
            nonlocal runs
            runs += 1
            return 0.01 if runs == 1 else None

        board = Debouncer(compute, quiet=0.0, max_delay=30)
        board.touch("lb")
        for _ in range(500):
            if runs >= 2 and not board._pending:
                break
            await asyncio.sleep(0.01)
        await board.close()
        return runs

    assert run(scenario()) == 2


def _result(**status: Any) -> ComputeResult:
    return ComputeResult(
        status=LeaderboardStatus.model_validate(status),
        digest="sha256:x",
        evaluations=3,
        seconds=1.25,
        bytes_read=1000,
        peak_rss_mib=120.0,
    )


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_computed_board_is_ready_and_counts_in_its_message() -> None:
    spec = LeaderboardSpec()
    page = PageStatus(
        uri="s3://b/p/index.html", json_uri="s3://b/p/leaderboard.json", bytes=10, published=True
    )
    result = _result(counts={"matched": 5, "ranked": 3, "pending": 2}, leader="m", page=page.model_dump())
    new = computed_status({"computations": 4}, result, spec, 2, now="2026-12-05T00:00:00Z")
    assert new["observedGeneration"] == 2 and new["computations"] == 5 and new["bytesRead"] == 1000
    assert new["message"] == "3 ranked, 2 not finished, 5 matched"
    conditions = _conditions(new)
    assert conditions["Ready"] == ("True", "Computed")
    assert conditions["Stalled"][0] == conditions["Reconciling"][0] == "False"
    assert conditions["Degraded"] == ("False", "Computed") and "GatesPassed" not in conditions


def test_a_page_not_written_is_degraded_not_hidden() -> None:
    page = PageStatus(uri="s3://b/p/index.html", json_uri="s3://b/p/leaderboard.json", published=False)
    result = _result(page=page.model_dump()).model_copy(update={"publish_error": "store unreachable"})
    new = computed_status({}, result, LeaderboardSpec(), 1)
    assert _conditions(new)["Degraded"] == ("True", "NotPublished")
    assert "page not published: store unreachable" in new["message"]


def test_gates_condition() -> None:
    spec = LeaderboardSpec.model_validate({"gates": [{"name": "floor", "min": 0.5}]})

    def verdicts(*kinds: str) -> list[dict[str, Any]]:
        return [
            GateVerdict(evaluation=f"ns/e{i}", model=f"m{i}", verdict=k, message=f"{k} why").model_dump()  # type: ignore[arg-type]
            for i, k in enumerate(kinds)
        ]

    failed = _conditions(computed_status({}, _result(gates=verdicts("Passed", "Failed")), spec, 1))
    assert failed["GatesPassed"] == ("False", "GateFailed")
    passed = computed_status({}, _result(gates=verdicts("Passed", "Unknown")), spec, 1)
    assert _conditions(passed)["GatesPassed"] == ("True", "AllPassed")
    assert (
        "1 not judged yet" in next(c for c in passed["conditions"] if c["type"] == "GatesPassed")["message"]
    )
    none = _conditions(computed_status({}, _result(gates=verdicts("Unknown")), spec, 1))
    assert none["GatesPassed"] == ("Unknown", "NothingToJudge")


def test_a_failure_keeps_the_last_board_and_stalls() -> None:
    old = computed_status({}, _result(leader="m", top=[]), LeaderboardSpec(), 1, now="2026-12-05T00:00:00Z")
    failed = compute_failed_status(old, "the computation ran out of its 768 MiB", 1)
    assert failed["leader"] == "m" and failed["updatedAt"] == "2026-12-05T00:00:00Z"
    assert _conditions(failed)["Stalled"] == ("True", "ComputeFailed")
    assert _conditions(failed)["Ready"] == ("False", "ComputeFailed")
    assert "768 MiB" in failed["message"]
    refused = refused_namespaces_status({}, ["spec.namespaces: … (allowed: none)"], 3)
    assert (
        _conditions(refused)["Stalled"] == ("True", "NamespaceNotAllowed")
        and refused["observedGeneration"] == 3
    )


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = computed_status({}, _result(), LeaderboardSpec(), 1, now="2026-12-05T00:00:00Z")
    second = computed_status(first, _result(), LeaderboardSpec(), 1, now="2026-12-05T01:00:00Z")
    ready = next(c for c in second["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-12-05T00:00:00Z"
    failed = compute_failed_status(second, "x", 1)
    assert next(c for c in failed["conditions"] if c["type"] == "Ready")["lastTransitionTime"] != (
        "2026-12-05T00:00:00Z"
    )


def _evaluation(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "e", "generation": 1, "labels": {"team": "a"}}, "status": status}


def test_only_what_a_board_shows_of_an_evaluation_triggers_it() -> None:
    running = _evaluation(phase="Running", progress="jaster 1/10")
    assert fingerprint(running) == fingerprint(_evaluation(phase="Running", progress="jaster 9/10"))
    assert fingerprint(running) != fingerprint(_evaluation(phase="Succeeded"))
    relabelled = _evaluation(phase="Running")
    relabelled["metadata"]["labels"] = {"team": "b"}
    assert fingerprint(running) != fingerprint(relabelled)
    stored = _evaluation(phase="Succeeded", results={"stored": True, "manifestSha256": "sha256:1"})
    assert fingerprint(stored) != fingerprint(_evaluation(phase="Succeeded"))


def test_namespaces_policy() -> None:
    policy = Policy.model_validate({"leaderboardNamespaces": {"team-a": ["team-b"], "*": ["shared"]}})
    assert policy.unreadable_namespaces("team-a", ["team-a", "team-b", "shared"]) == []
    (problem,) = policy.unreadable_namespaces("team-a", ["team-c"])
    assert problem.startswith(
        "spec.namespaces: a leaderboard in namespace team-a may not read namespace team-c"
    )
    assert "policy.leaderboardNamespaces" in problem and "(allowed: shared, team-b)" in problem
    assert Policy().unreadable_namespaces("x", ["y"])  # nothing allowed by default
    assert Policy(enabled=False).unreadable_namespaces("x", ["y"]) == []
    anywhere = Policy.model_validate({"leaderboardNamespaces": {"ops": ["*"]}})
    assert anywhere.unreadable_namespaces("ops", ["a", "b"]) == []


def test_the_request_reads_its_own_namespace_first_and_publishes_where_configured() -> None:
    spec = LeaderboardSpec.model_validate({"namespaces": ["team-b"]})
    body = {
        "metadata": {"namespace": "team-a", "name": "board", "generation": 3},
        "status": {"digest": "sha256:d", "members": [{"evaluation": "team-a/x", "uri": "s3://bkt/x/"}]},
    }
    config = OperatorConfig(leaderboard_store_uri="s3://bkt/pages")
    request = build_request(body, spec, config)
    assert request.namespaces == ["team-a", "team-b"] and request.generation == 3
    assert request.publish_uri == "s3://bkt/pages/leaderboards/team-a/board/"
    assert request.members[0].evaluation == "team-a/x"
    own = LeaderboardSpec.model_validate({"publish": {"uri": "s3://mine/boards/x"}})
    assert publish_uri(own, "team-a", "board", config) == "s3://mine/boards/x/"
    assert publish_uri(LeaderboardSpec(), "team-a", "board", OperatorConfig()) is None


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        (
            {"matchExpressions": [{"key": "size", "operator": "In", "values": ["7b", "8b"]}]},
            {"size": "8b"},
            True,
        ),
        ({"matchExpressions": [{"key": "size", "operator": "NotIn", "values": ["70b"]}]}, {}, True),
        ({"matchExpressions": [{"key": "gate", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "gate", "operator": "DoesNotExist"}]}, {"gate": ""}, False),
    ],
)
def test_label_selector_semantics(selector: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    from nejumi_eval.api.v1alpha1.leaderboard import LabelSelector

    assert LabelSelector.model_validate(selector).matches(labels) is matches


def test_the_wandb_report_job_gets_the_key_by_reference_only() -> None:
    from nejumi_operator.leaderboards.report import LABEL_LEADERBOARD, build_report_job

    spec = LeaderboardSpec.model_validate(
        {"publish": {"wandb": {"project": "team/neo", "apiKeySecretRef": {"name": "wandb", "key": "key"}}}}
    )
    board = {"metadata": {"namespace": "team-a", "name": "neo", "uid": "u"}}
    config = OperatorConfig(image="ghcr.io/nejumi/evaluator:1", command=("nejumi-eval", "run"))
    job = build_report_job(board, spec, "sha256:0123456789abcdef", config)
    assert job["metadata"]["name"] == "neo-wandb-0123456789"
    assert job["metadata"]["labels"] == {LABEL_LEADERBOARD: "neo"}
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["nejumi-eval", "leaderboard", "--wandb-report", "team/neo", "--publish"]
    key = next(e for e in container["env"] if e["name"] == "WANDB_API_KEY")
    assert key == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}}
    assert all("value" not in e or e["name"] != "WANDB_API_KEY" for e in container["env"])
    assert pod["automountServiceAccountToken"] is False and container["securityContext"]["runAsNonRoot"]
    with pytest.raises(ValueError, match=r"publish\.wandb"):
        build_report_job(board, LeaderboardSpec(), "sha256:0", config)


def test_the_request_carries_the_spec_as_written() -> None:
    """Defaults written out would break the spec's own CEL rules in the child (a notWorseThan gate
    with `metric` set): the child reads back exactly the spec the author wrote."""
    from nejumi_eval.api.v1alpha1.leaderboard import ComputeRequest
    from nejumi_operator.leaderboards.compute import request_json

    spec = LeaderboardSpec.model_validate(
        {"gates": [{"name": "floor", "min": 0.5}, {"name": "nw", "notWorseThan": "base"}], "resamples": 10}
    )
    request = ComputeRequest(namespace="ns", name="lb", generation=1, spec=spec, namespaces=["ns"])
    back = ComputeRequest.model_validate_json(request_json(request))
    assert back.spec == spec and back.spec.gates[1].not_worse_than == "base"


def test_a_child_over_its_memory_limit_is_named_as_such() -> None:
    """A real child process with a limit too small for its work: the error names the limit."""
    from nejumi_eval.api.v1alpha1.leaderboard import ComputeRequest
    from nejumi_operator.leaderboards.compute import ComputeError, run_child

    request = ComputeRequest(
        namespace="ns", name="lb", generation=1, spec=LeaderboardSpec(), namespaces=["ns"]
    )
    config = OperatorConfig(leaderboard_memory_mib=40, leaderboard_timeout_seconds=120)
    with pytest.raises(ComputeError, match="ran out of its 40 MiB"):
        run(run_child(request, config))
