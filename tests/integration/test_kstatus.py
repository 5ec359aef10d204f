"""kstatus, the library Flux and Helm 4's `--wait` read health with, on real NejumiEvaluations:
objects on the API server in every phase, with the statuses the operator's reducer writes, read
back and handed to the real `status.Compute` (tests/kstatus, `make kstatus-bin`); then the real
operator, every status version it writes on the way to Succeeded or to a refusal.

Queued, Pending and Running read as InProgress, a success (degraded too) as Current, a failure as
Failed, and a status that describes an earlier generation as InProgress whatever it said of that
one. The spec is immutable (CEL `self == oldSelf`), so an object's `metadata.generation` is 1; a
status "for the previous generation" is written for generation 0 here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import watch
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from nejumi_eval.api.v1alpha1 import conditions as c
from nejumi_eval.api.v1alpha1.names import GROUP, PLURAL, VERSION
from nejumi_operator.status import reduce_status
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.evaluation_phases import PHASE_OF_REASON, observations
from tests.fixtures.openai_stub import StubServer
from tests.support.kstatus import kstatus
from tests.support.kube import create_evaluation, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

KSTATUS_OF_PHASE = {
    c.PHASE_QUEUED: "InProgress",
    c.PHASE_PENDING: "InProgress",
    c.PHASE_RUNNING: "InProgress",
    c.PHASE_SUCCEEDED: "Current",
    c.PHASE_FAILED: "Failed",
}
"""What Flux and Helm --wait must see: waiting while under way, done only when succeeded."""


def spec(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": {
            "name": "stub-model",
            "source": "openai-compatible",
            "endpoint": endpoint,
            **extra.pop("model", {}),
        },
        "benchmarks": {
            "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0},
            "mtbench": {"enabled": False},
        },
        "wandb": {"enabled": False},
        "resources": {"gpus": 0},
        **extra,
    }


def slug(reason: str) -> str:
    return "".join(f"-{ch.lower()}" if ch.isupper() else ch for ch in reason).strip("-")


def listed(client: ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    items = CustomObjectsApi(client).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    return {obj["metadata"]["name"]: obj for obj in items}


def test_kstatus_reads_every_phase_from_the_api_server(
    crd: None, k8s_client: ApiClient, namespace: str
) -> None:
    custom = CustomObjectsApi(k8s_client)
    written: dict[str, dict[str, Any]] = {}
    expected: dict[str, str] = {}
    for reason in observations():
        name = slug(reason)
        written[name] = reduce_status({}, observations(name)[reason])
        expected[name] = KSTATUS_OF_PHASE[PHASE_OF_REASON[reason]]
    for reason in (c.EVALUATION_COMPLETED, c.INVALID_JUDGMENTS, c.NO_SCORE, c.JOB_RUNNING):
        name = f"{slug(reason)}-behind"  # the status of the generation before the object's
        written[name] = reduce_status({}, observations(name, generation=0)[reason])
        expected[name] = "InProgress"
    fresh = "fresh"  # created, not yet seen by any operator
    create_evaluation(k8s_client, namespace, fresh, spec("http://127.0.0.1:9/v1"))
    for name, status in written.items():
        create_evaluation(k8s_client, namespace, name, spec("http://127.0.0.1:9/v1"))
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    objects = listed(k8s_client, namespace)
    kept = ("phase", "reason", "message", "conditions", "observedGeneration")
    for name, status in written.items():  # the schema keeps every condition and generation as written
        assert objects[name]["metadata"]["generation"] == 1
        assert {k: objects[name]["status"].get(k) for k in kept} == {k: status.get(k) for k in kept}, name
    read = kstatus(objects.values())
    assert {name: read[name][0] for name in written} == expected
    for name, status in written.items():
        derived = {x["type"]: x for x in status["conditions"] if x["type"] in c.KSTATUS_TYPES}
        if expected[name] == "Failed":
            assert read[name][1] == derived[c.STALLED]["message"] != "", name
        elif name.endswith("-behind"):
            assert read[name][1] == "NejumiEvaluation generation is 1, but latest observed generation is 0"
        elif expected[name] == "InProgress":
            assert read[name][1] == derived[c.RECONCILING]["message"] != "", name
    assert read[fresh][0] == "InProgress", read[fresh]  # never Current before the operator has looked


class Versions:
    """Every version of the namespace's evaluations, whole, from a watch started before they
    exist (nothing is missed between polls): name → [object]."""

    def __init__(self, client: ApiClient, namespace: str) -> None:
        self.custom = CustomObjectsApi(client)
        self.namespace = namespace
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self._stop = False
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        version = ""
        while not self._stop:
            try:
                for event in self._watch.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=version,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    self.seen.setdefault(obj["metadata"]["name"], []).append(obj)
            except ApiException as exc:
                if exc.status == 410:  # too old to resume: list again (the test is short; rare)
                    version = ""
                elif exc.status != 404:  # the CRD may not be served for a moment
                    raise
                time.sleep(0.2)
            except Exception:  # the connection closed (timeout, stop): watch again unless stopping
                if self._stop:
                    return

    def __enter__(self) -> Versions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._watch.stop()

    def finished(self, name: str, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            last = (self.seen.get(name) or [{}])[-1]
            return last if c.is_finished(last.get("status")) else None

        phases = lambda: [(o.get("status") or {}).get("phase") for o in self.seen.get(name, [])]  # noqa: E731
        return wait_until(done, timeout, f"{name} to finish (phases seen: {phases()})", interval=0.5)


def test_the_operators_statuses_read_in_progress_until_succeeded_or_failed(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator: KopfRunner,
) -> None:
    """Every status the real operator writes, as Flux would poll it: InProgress until the end, then
    Current for a success, Failed for an evaluation refused before any Job (a Secret that has not
    consented), each with `observedGeneration` on the status and on every condition."""
    CoreV1Api(k8s_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "unconsented-key"}, "stringData": {"token": "sk-test"}}
    )
    with StubServer() as stub, Versions(k8s_client, namespace) as versions:
        create_evaluation(k8s_client, namespace, "ok", spec(stub.base_url))
        key = {"apiKeySecretRef": {"name": "unconsented-key", "key": "token"}}
        create_evaluation(k8s_client, namespace, "refused", spec(stub.base_url, model=key))
        done = versions.finished("ok", timeout=240)
        refused = versions.finished("refused", timeout=60)
    assert done["status"]["phase"] == c.PHASE_SUCCEEDED, done["status"]
    assert (refused["status"]["phase"], refused["status"]["reason"]) == (c.PHASE_FAILED, c.SECRET_NOT_USABLE)
    for final in (done, refused):
        assert final["status"]["observedGeneration"] == 1
        assert {
            x["type"]: x.get("observedGeneration") for x in final["status"]["conditions"]
        } == dict.fromkeys(c.CONDITION_TYPES, 1)

    for name, final_read in (("ok", "Current"), ("refused", "Failed")):
        seen = versions.seen[name]  # from the create (no status yet) on, kopf's own writes included
        read = [kstatus([obj])[name][0] for obj in seen]
        end = next(i for i, obj in enumerate(seen) if c.is_finished(obj.get("status")))
        story = [
            ((obj.get("status") or {}).get("phase"), status) for obj, status in zip(seen, read, strict=True)
        ]
        assert read[:end] == ["InProgress"] * end and end > 0, story
        assert set(read[end:]) == {final_read}, story
    assert kstatus([refused])["refused"] == ("Failed", refused["status"]["message"])  # Stalled's: what to fix

    # The same conditions for `kubectl wait`: met at once now that each is final.
    kubectl(kubeconfig, "wait", "--for=condition=Ready", "nejumi/ok", "-n", namespace, "--timeout=20s")
    kubectl(kubeconfig, "wait", "--for=condition=Stalled", "nejumi/refused", "-n", namespace, "--timeout=20s")
