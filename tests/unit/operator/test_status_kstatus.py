"""The status in the kstatus convention: Ready, Reconciling and Stalled for every phase and every
reason, derived from the observed conditions in one place (`conditions.kstatus_conditions`), each
condition naming the generation it describes, and the same observation written twice a no-op.
What the real kstatus library reads from these statuses is checked here too (the binary of `make
kstatus-bin`), and on the API server in tests/integration/test_kstatus.py."""

from __future__ import annotations

from typing import Any

import pytest

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_operator.status import reduce_status, transitions
from tests.fixtures.evaluation_phases import PHASE_OF_REASON, observations
from tests.support.kstatus import kstatus

T0, T1, T2 = "2025-01-01T01:00:00Z", "2025-01-01T01:10:00Z", "2025-01-01T01:20:00Z"
GENERATION = 3
COMPANIONS = {
    c.JOB_CREATED,
    c.IN_PROGRESS,
    c.COMPLETED,
    c.FAILED,
    c.NO_FAILURES,
    c.NOT_EVALUATED,
    c.EVALUATION_COMPLETED,
    c.LATEST_GENERATION_NOT_OBSERVED,
    c.REPLACED,  # only in status.history: a generation an edit stopped
}
"""Reasons that never decide a phase under way or failed: companions of another condition's (JobCreated,
InProgress, …), a clean success's (EvaluationCompleted), or kstatus's own (a generation not observed)."""
REASONS = sorted(observations())


def reason_constants() -> set[str]:
    """Every reason the API module names: its CamelCase string constants that are not a condition
    type, a condition status or a phase."""
    others = {*c.CONDITION_TYPES, c.TRUE, c.FALSE, c.UNKNOWN}
    return {
        value
        for name, value in vars(c).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("PHASE_") and value not in others
    }


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = c.find(status["conditions"], type_)
    assert found is not None, type_
    return dict(found)


def triple(status: dict[str, Any], type_: str) -> tuple[str, str, str]:
    found = cond(status, type_)
    return found["status"], found["reason"], found["message"]


def evaluation(name: str, status: dict[str, Any], generation: int = GENERATION) -> dict[str, Any]:
    return {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": name, "namespace": "ns", "generation": generation},
        "spec": {},
        "status": status,
    }


def test_every_reason_is_classified_and_has_an_observation() -> None:
    groups = (c.UNDER_WAY_REASONS, c.FAILURE_REASONS, c.DEGRADED_REASONS)
    classified = [reason for group in groups for reason in group]
    assert len(classified) == len(set(classified)), "a reason in two groups"
    assert reason_constants() == set(classified) | COMPANIONS  # a new reason must be placed
    assert set(observations()) == set(classified) | {c.EVALUATION_COMPLETED}
    assert set(PHASE_OF_REASON) == set(observations())


@pytest.mark.parametrize("reason", REASONS)
def test_the_kstatus_conditions_of_every_reason(reason: str) -> None:
    st = reduce_status({}, observations(generation=GENERATION)[reason], at=T0)
    phase = PHASE_OF_REASON[reason]
    assert (st["phase"], st["reason"]) == (phase, reason)
    assert [x["type"] for x in st["conditions"]] == list(c.CONDITION_TYPES)
    message = st.get("message", "")
    if phase == c.PHASE_SUCCEEDED:
        succeeded = cond(st, c.SUCCEEDED)
        done = c.EVALUATION_COMPLETED
        assert triple(st, c.READY) == (c.TRUE, done, succeeded["message"])  # degraded: still Ready
        assert triple(st, c.RECONCILING) == (c.FALSE, done, "")
        assert triple(st, c.STALLED) == (c.FALSE, done, "")
        assert cond(st, c.DEGRADED)["status"] == (c.TRUE if reason in c.DEGRADED_REASONS else c.FALSE)
    elif phase == c.PHASE_FAILED:
        assert message
        assert triple(st, c.READY) == (c.FALSE, reason, message)
        assert triple(st, c.RECONCILING) == (c.FALSE, reason, "")
        assert triple(st, c.STALLED) == (c.TRUE, reason, message)
    else:  # Queued, Pending, Running: under way, with what it is doing
        assert message
        assert triple(st, c.READY) == (c.FALSE, reason, message)
        assert triple(st, c.RECONCILING) == (c.TRUE, reason, message)
        assert triple(st, c.STALLED) == (c.FALSE, reason, "")


@pytest.mark.parametrize("reason", REASONS)
def test_every_condition_names_the_generation_and_a_second_write_is_a_no_op(reason: str) -> None:
    seen = observations(generation=GENERATION)[reason]
    first = reduce_status({}, seen, at=T0)
    assert first["observedGeneration"] == GENERATION  # refused before any Job included
    assert {x["type"]: x["observedGeneration"] for x in first["conditions"]} == dict.fromkeys(
        c.CONDITION_TYPES, GENERATION
    )
    again = reduce_status(first, seen, at=T1)
    assert again == first  # identical: nothing to write, no Event
    assert transitions(first, again) == []


def test_transition_times_move_only_with_a_status() -> None:
    cases = observations()
    running = reduce_status({}, cases[c.JOB_RUNNING], at=T0)
    finishing = reduce_status(running, cases[c.FINISHING], at=T1)
    done = reduce_status(finishing, cases[c.EVALUATION_COMPLETED], at=T2)
    times = {
        type_: [cond(st, type_)["lastTransitionTime"] for st in (running, finishing, done)]
        for type_ in c.KSTATUS_TYPES
    }
    # Running → Finishing: the reasons change, no status does; → Succeeded: Ready and Reconciling flip.
    assert times == {c.READY: [T0, T0, T2], c.RECONCILING: [T0, T0, T2], c.STALLED: [T0, T0, T0]}
    assert triple(finishing, c.RECONCILING)[:2] == (c.TRUE, c.FINISHING)


def test_a_status_for_an_earlier_generation_is_reconciling_and_not_ready() -> None:
    for reason in (c.EVALUATION_COMPLETED, c.RESULTS_NOT_STORED, c.NO_SCORE, c.JOB_RUNNING):
        st = reduce_status({}, observations(generation=1)[reason], at=T0)
        derived = c.kstatus_conditions(st, generation=2)
        assert derived == {
            c.READY: (c.FALSE, c.LATEST_GENERATION_NOT_OBSERVED, derived[c.READY][2]),
            c.RECONCILING: (c.TRUE, c.LATEST_GENERATION_NOT_OBSERVED, derived[c.READY][2]),
            c.STALLED: (c.FALSE, c.LATEST_GENERATION_NOT_OBSERVED, ""),
        }, reason
        assert derived[c.READY][2] == "generation 2 is not observed yet: the status describes generation 1"
        assert c.kstatus_conditions(st, generation=1) == {
            type_: triple(st, type_) for type_ in c.KSTATUS_TYPES
        }  # its own generation: what the reducer wrote


def test_a_new_generation_starts_reconciling_from_a_finished_one() -> None:
    done = reduce_status({}, observations(generation=1)[c.EVALUATION_COMPLETED], at=T0)
    assert cond(done, c.READY)["status"] == c.TRUE
    starting = reduce_status(done, observations(generation=2)[c.JOB_NOT_FOUND], at=T1)
    assert starting["observedGeneration"] == 2
    assert {x["observedGeneration"] for x in starting["conditions"]} == {2}
    assert triple(starting, c.RECONCILING)[:2] == (c.TRUE, c.JOB_NOT_FOUND)
    assert triple(starting, c.READY)[:2] == (c.FALSE, c.JOB_NOT_FOUND)
    assert cond(starting, c.READY)["lastTransitionTime"] == T1
    assert cond(starting, c.STALLED)["lastTransitionTime"] == T0  # False before and after


def test_the_real_kstatus_reads_every_reason() -> None:
    """kstatus (cli-utils' status.Compute, as Flux and Helm 4 --wait run it) on the statuses the
    reducer writes: under way → InProgress, succeeded (degraded too) → Current, failed → Failed,
    a status for an earlier generation → InProgress."""
    expected = {
        c.PHASE_QUEUED: "InProgress",
        c.PHASE_PENDING: "InProgress",
        c.PHASE_RUNNING: "InProgress",
        c.PHASE_SUCCEEDED: "Current",
        c.PHASE_FAILED: "Failed",
    }
    statuses = {reason: reduce_status({}, seen, at=T0) for reason, seen in observations().items()}
    objects = [evaluation(reason.lower(), st, generation=1) for reason, st in statuses.items()]
    behind = [evaluation(f"{reason.lower()}-behind", st, generation=2) for reason, st in statuses.items()]
    read = kstatus([*objects, *behind])
    for reason, st in statuses.items():
        status, message = read[reason.lower()]
        assert status == expected[PHASE_OF_REASON[reason]], (reason, status, message)
        if status == "InProgress":
            assert message == cond(st, c.RECONCILING)["message"]
        if status == "Failed":
            assert message == cond(st, c.STALLED)["message"]
        assert read[f"{reason.lower()}-behind"][0] == "InProgress", reason
