"""The whole product as a user meets it: `kubectl apply` the CRD and a NejumiEvaluation → the
operator creates a GPU Job → the node agent runs the evaluator, which serves the tiny model with a
real `transformers serve`, runs jaster and MT-bench (rated by the scripted judge) → the scores,
Overall included, land in the resource's status and in `kubectl get nejumi`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from nejumi_eval.api.v1alpha1.crd import CRD_PATH
from nejumi_eval.api.v1alpha1.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_eval.runtime.serve.tiny import build_tiny_model
from nejumi_operator.reconcile.job import job_name
from tests.cluster import NodeAgent, wait_until
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.integration.test_operator import HANDLERS
from tests.support.kube import job_finished, kubectl, wait_while_progressing

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

STALL_S = 240
"""The longest the evaluation may show no progress (its status unchanged) before the test fails.
Idle, the quietest stretch is the pod's start: model server start beside cold data preparation,
~30 s on 2 cores. A fixed 420 s for the whole run once failed and was put down to load; it was a
server that never answered (a TMPDIR too deep for its Unix socket), which this catches sooner."""


def test_kubectl_apply_to_scores_in_status(
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    tiny = build_tiny_model()
    data = load_variant("neo", default_mirror())
    plan: dict[tuple[int, int], list[str | int]] = {
        (q.question_id, turn): [f"Rating: [[{3 if q.category == 'math' else 7}]]"]
        for q in data.questions
        for turn in (1, 2)
    }
    name = "tiny-llama"
    batch, custom = BatchV1Api(k8s_client), CustomObjectsApi(k8s_client)
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(CRD_PATH))
    wait_until(
        lambda: "nejumievaluations" in kubectl(kubeconfig, "api-resources", f"--api-group={GROUP}"),
        30,
        "the NejumiEvaluation API to be served",
    )
    with ScriptedJudge({q.question_id: q.turns[0] for q in data.questions}, plan) as judge:
        manifest = tmp_path / "evaluation.yaml"
        manifest.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {
                        "model": {
                            "name": str(tiny.path),
                            "revision": tiny.fingerprint,
                            "source": "transformers",
                        },
                        "benchmarks": {
                            "jaster": {"testSamples": 1, "devSamples": 0},
                            "mtbench": {
                                "questionsPerCategory": 1,
                                "judge": {"endpoint": judge.base_url},
                            },
                        },
                        "generation": {"maxNewTokensCap": 8, "concurrency": 8},
                        "resources": {"gpus": 1},
                        "wandb": {"mode": "offline"},
                    },
                }
            )
        )
        args = ["run", "--standalone", "--namespace", namespace, str(HANDLERS)]
        with KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as runner:
            kubectl(kubeconfig, "apply", "-f", str(manifest))

            def finished() -> str | None:
                assert runner._thread.is_alive(), f"the operator stopped:\n{runner.output}"
                # a served model on a GPU: three stages; the judge stage's Job ends the evaluation
                return job_finished(batch, namespace, job_name(name, 1, Stage.JUDGE))

            def progress() -> object:
                status = (
                    custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status")
                    or {}
                )
                return status.get("phase"), status.get("progress"), status.get("conditions")

            def evaluator_log() -> str:
                tails = []
                for pod in CoreV1Api(k8s_client).list_namespaced_pod(namespace).items:
                    sandbox = node_agent.pod_dir(namespace, pod.metadata.name)
                    log = sandbox / "evaluator.log" if sandbox else None
                    if log is not None and log.is_file():
                        tails.append(f"{log}:\n{log.read_text(errors='replace')[-3000:]}")
                return "\n".join(tails)

            outcome = wait_while_progressing(
                finished, progress, STALL_S, "the evaluation Job to finish", explain=evaluator_log
            )

            def settled() -> dict[str, Any] | None:
                status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get(
                    "status"
                )
                conds = {c["type"]: c for c in (status or {}).get("conditions", [])}
                return status if conds.get("Succeeded", {}).get("status") in ("True", "False") else None

            status = wait_until(settled, 60, "the Succeeded condition to settle")
            printed = kubectl(kubeconfig, "get", "nejumi", name, "-n", namespace)
            pods = CoreV1Api(k8s_client).list_namespaced_pod(namespace).items
            logs = "".join(
                (node_agent.pod_dir(namespace, p.metadata.name) / "evaluator.log").read_text()[-3000:]
                for p in pods
            )
            # deleting the evaluation collects the Job (ownerReference garbage collection, no finalizer)
            kubectl(kubeconfig, "delete", "-f", str(manifest), "--wait=true", "--timeout=60s")
            wait_until(lambda: not batch.list_namespaced_job(namespace).items, 60, "the Job to be collected")
        judge_calls = judge.calls

    assert outcome == "Complete", f"{outcome}: {json.dumps(status, indent=1)}\n{logs}"
    assert (runner.exit_code, runner.exception) == (0, None)
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Succeeded"]["status"], conds["Succeeded"]["reason"]) == ("True", "EvaluationCompleted")
    scores = status["scores"]
    # 8 questions × 2 turns judged: math rated 3, the other 7 categories 7 → (7·7 + 3) / 8
    assert scores["benchmarks"]["mtbench"]["avg"] == pytest.approx((7 * 7 + 3) / 8)
    assert judge_calls == 16
    assert set(scores["benchmarks"]["jaster"]["categories"]) == {"NLI", "QA", "RC", "MC", "EL", "FA", "MR"}
    jaster_avg = scores["benchmarks"]["jaster"]["avg"]
    assert jaster_avg is not None and 0.0 <= jaster_avg <= 1.0
    assert scores["overall"] == pytest.approx((jaster_avg + scores["benchmarks"]["mtbench"]["avg"] / 10) / 2)
    assert status["capped"] is True and status["usage"]["completionTokens"] > 0
    row = printed.splitlines()[1].split()
    assert row[:4] == [name, str(tiny.path), "Succeeded", "EvaluationCompleted"]
    assert float(row[4]) == pytest.approx(scores["overall"], abs=1e-4)
