"""Editing an evaluation the GitOps way (issue 19 §2, §5), on the real control plane with the real
operator: `kubectl apply` of an edited manifest is a new generation that re-evaluates on the same
workspace, sending only what the edit changed (counted at the stub model and the scripted judges);
the earlier generation's outcome stays in `status.history`; applying the same manifest again changes
nothing; an edit while queued replaces the queued Job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.integration.test_status_truth import Recorder
from tests.support.kstatus import kstatus
from tests.support.kube import judged_spec, kubectl, operator_runner

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

RESYNC_S = 5  # NEJUMI_OPERATOR_RESYNC_SECONDS in operator_env


def _apply(kubeconfig: Path, path: Path, namespace: str, name: str, spec: dict[str, Any]) -> str:
    """`kubectl apply -f` of the manifest a team would commit; returns kubectl's verdict line."""
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}}
    path.write_text(yaml.safe_dump({**manifest, "spec": spec}))
    return kubectl(kubeconfig, "apply", "-f", str(path)).strip()


def _spec(model: str, judge: ScriptedJudge, **extra: Any) -> dict[str, Any]:
    return judged_spec(model, judge.base_url, judge.model, **extra)


def _events(client: ApiClient, namespace: str, name: str) -> list[tuple[str, str]]:
    items = CoreV1Api(client).list_namespaced_event(namespace).items
    return sorted((e.metadata.name, e.reason) for e in items if e.involved_object.name == name)


def test_an_edit_re_evaluates_sending_only_what_changed(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    questions: dict[int, str],
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "models" / "stub.yaml"
    manifest.parent.mkdir()
    custom = CustomObjectsApi(k8s_client)
    with (
        StubServer() as model,
        ScriptedJudge(questions) as first_judge,
        ScriptedJudge(questions, model="gpt-4o-2024-08-06") as second_judge,
        operator_runner(namespace) as operator,
        Recorder(k8s_client, namespace) as seen,
    ):
        assert _apply(kubeconfig, manifest, namespace, "stub", _spec(model.base_url, first_judge)).endswith(
            "created"
        )
        first = seen.wait_for("stub", "Succeeded", None, timeout=300)
        sent = model.calls
        judged = first_judge.calls
        assert sent > 0 and judged > 0

        # the same manifest again: nothing changes (no generation, Job, status write or Event)
        wait_until(  # the Event of the last transition is posted just after its status write
            lambda: any(r == "Succeeded" for _, r in _events(k8s_client, namespace, "stub")),
            60,
            "the Succeeded Event",
        )
        before = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stub")
        events = _events(k8s_client, namespace, "stub")
        assert _apply(kubeconfig, manifest, namespace, "stub", _spec(model.base_url, first_judge)).endswith(
            "unchanged"
        )
        time.sleep(2 * RESYNC_S + 1)  # two resync rounds would show a write, were there one to make
        after = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stub")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert _events(k8s_client, namespace, "stub") == events

        # a label is metadata: no new generation, nothing runs again
        labelled = custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "stub", {"metadata": {"labels": {"team": "ja-eval"}}}
        )
        assert labelled["metadata"]["generation"] == 1
        time.sleep(2 * RESYNC_S + 1)
        jobs = [j.metadata.name for j in BatchV1Api(k8s_client).list_namespaced_job(namespace).items]
        assert jobs == ["stub-g1"] and _events(k8s_client, namespace, "stub") == events
        after = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stub")
        assert after["status"] == before["status"]

        # a commit that changes only the judge: a new generation, judgments only
        assert kstatus([after])["stub"][0] == "Current"
        edited = _spec(model.base_url, second_judge)
        assert _apply(kubeconfig, manifest, namespace, "stub", edited).endswith("configured")
        # from the edit until generation 2 is done, Flux and Helm read it as in progress
        fresh = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stub")
        assert fresh["metadata"]["generation"] == 2
        assert kstatus([fresh])["stub"][0] == "InProgress", fresh.get("status")
        wait_until(
            lambda: (
                (seen.latest.get("stub") or {}).get("observedGeneration") == 2
                and seen.latest["stub"].get("phase") == "Succeeded"
            ),
            300,
            f"generation 2 to succeed (seen {seen.seen.get('stub')})",
        )
        second = seen.latest["stub"]
        assert model.calls == sent  # every model answer came from the workspace's cache
        assert first_judge.calls == judged
        assert second_judge.calls == judged  # every judgment again, from the new judge
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    done = CustomObjectsApi(k8s_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "stub"
    )
    assert kstatus([done])["stub"][0] == "Current"
    (entry,) = second["history"]
    assert entry["generation"] == 1 and entry["phase"] == "Succeeded"
    assert entry["overall"] == first["scores"]["overall"] is not None and entry["jobName"] == "stub-g1"
    assert second["jobName"] == "stub-g2" and all(c["observedGeneration"] == 2 for c in second["conditions"])
    jobs = sorted(j.metadata.name for j in BatchV1Api(k8s_client).list_namespaced_job(namespace).items)
    assert jobs == ["stub-g1", "stub-g2"]  # the finished one is kept (its log), nothing else made


def test_an_edit_while_queued_replaces_the_queued_job(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator_env: pytest.MonkeyPatch,
    questions: dict[int, str],
    tmp_path: Path,
) -> None:
    """No Kueue here: a Job labelled for a LocalQueue stays suspended, as one waiting for quota."""
    manifest = tmp_path / "queued.yaml"
    batch = BatchV1Api(k8s_client)
    with (
        ScriptedJudge(questions) as judge,
        operator_runner(namespace) as operator,
        Recorder(k8s_client, namespace) as seen,
    ):
        spec = _spec("http://127.0.0.1:9/v1", judge, queueName="gpu-queue")
        _apply(kubeconfig, manifest, namespace, "queued", spec)
        seen.wait_for("queued", "Queued", "Suspended", timeout=120)
        spec["benchmarks"]["jaster"]["testSamples"] = 3
        _apply(kubeconfig, manifest, namespace, "queued", spec)
        wait_until(
            lambda: (
                (seen.latest.get("queued") or {}).get("observedGeneration") == 2
                and seen.latest["queued"].get("phase") == "Queued"
            ),
            120,
            f"generation 2 to be queued (seen {seen.seen.get('queued')})",
        )
        wait_until(
            lambda: [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == ["queued-g2"],
            120,
            "generation 1's queued Job to be deleted",
        )
        status = seen.latest["queued"]
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    assert batch.read_namespaced_job("queued-g2", namespace).spec.suspend is True
    (entry,) = status["history"]
    assert (entry["generation"], entry["phase"], entry["reason"]) == (1, "Queued", "Replaced")
