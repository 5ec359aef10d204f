"""No API key leaks: a recognisable model, judge and W&B key go through a whole evaluation on the
real control plane (operator → Job → evaluator pod → status), each key really used (the servers
see it), and then nothing readable besides the Secrets themselves contains any of them: not the
resource, its status, Jobs, pods, ConfigMaps, Events, ServiceAccounts or Roles, not the operator's
log, not the pod's log or termination message, not the workspace (results, W&B offline files, the
response cache, server logs), not the results store (the keys of a real S3 server, used to store the
results: nothing stored there contains any key either)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import ApiClient, CoreV1Api

from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from tests.cluster import NodeAgent
from tests.fixtures.openai_stub import StubServer
from tests.fixtures.scripted_judge import ScriptedJudge
from tests.integration.test_status_truth import HANDLERS, Recorder
from tests.support.kube import create_evaluation as create
from tests.support.kube import kubectl
from tests.support.s3 import S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

KINDS = (
    "nejumievaluations,jobs,pods,configmaps,events,persistentvolumeclaims,serviceaccounts,roles,rolebindings"
)


def files_containing(root: Path, needles: list[str]) -> list[str]:
    """Every file under `root` whose bytes contain one of `needles` (binary files too: SQLite)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {n[:12]}…" for n in needles if n.encode() in data]
    return found


def test_no_api_key_appears_anywhere_but_its_secret(
    crd: None,
    k8s_client: ApiClient,
    kubeconfig: Path,
    namespace: str,
    node_agent: NodeAgent,
    operator_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    s3_server: S3Server,
) -> None:
    keys = {name: f"sk-nejumi-{name}-{secrets.token_hex(12)}" for name in ("model", "judge", "wandb")}
    core = CoreV1Api(k8s_client)
    consent = {"nejumi.wandb.ai/usable-by-evaluations": "true"}
    for name, key in keys.items():
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": f"{name}-key", "labels": consent}, "stringData": {"k": key}}
        )
    # The results store's key pair: a user of a real S3 server who may write the bucket.
    s3_server.make_bucket("leak-check")
    store_user = s3_server.add_user(f"store-{secrets.token_hex(6)}")
    s3_server.allow("leak-check", store_user, ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"])
    keys["store-id"], keys["store-secret"] = store_user.access_key, store_user.secret_key
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "store-key", "labels": consent},
            "stringData": {
                "AWS_ACCESS_KEY_ID": store_user.access_key,
                "AWS_SECRET_ACCESS_KEY": store_user.secret_key,
            },
        },
    )
    # One more key that never consented: the operator reads its labels (metadata only) and refuses.
    keys["unconsented"] = f"sk-nejumi-unconsented-{secrets.token_hex(12)}"
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "unconsented-key"}, "stringData": {"k": keys["unconsented"]}}
    )
    data = load_variant("neo", default_mirror())
    caplog.set_level(logging.DEBUG)
    args = ["run", "--standalone", "--verbose", "--namespace", namespace, str(HANDLERS)]
    with (
        StubServer() as model,
        ScriptedJudge({q.question_id: q.turns[0] for q in data.questions}) as judge,
        KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=60) as operator,
        Recorder(k8s_client, namespace) as seen,
    ):
        ref = lambda name: {"name": f"{name}-key", "key": "k"}  # noqa: E731
        spec = {
            "model": {
                "name": "stub-model",
                "source": "openai-compatible",
                "endpoint": model.base_url,
                "apiKeySecretRef": ref("model"),
            },
            "benchmarks": {
                "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 0},
                "mtbench": {
                    "questionsPerCategory": 1,
                    "judge": {
                        "endpoint": judge.base_url,
                        "model": judge.model,
                        "apiKeySecretRef": ref("judge"),
                    },
                },
            },
            "wandb": {
                "enabled": True,
                "mode": "offline",
                "project": "leak-check",
                "apiKeySecretRef": ref("wandb"),
            },
            "results": {
                "uri": "s3://leak-check/x",
                "endpoint": s3_server.endpoint,
                "credentialsSecretRef": {"name": "store-key"},
            },
            "resources": {"gpus": 0},
        }
        create(k8s_client, namespace, "leak-check", spec)
        refused = {**spec, "model": {**spec["model"], "apiKeySecretRef": ref("unconsented")}}
        create(k8s_client, namespace, "refused", refused)
        status = seen.wait_for("leak-check", "Succeeded", None, timeout=240)
        denial = seen.wait_for("refused", "Failed", "SecretNotUsable")
    assert "Secret unconsented-key is not usable" in denial["message"], denial
    assert (operator.exit_code, operator.exception) == (0, None), operator.output
    # Each key was really handed to the evaluator and used, so its absence below means something.
    assert model.authorizations == {f"Bearer {keys['model']}"}
    assert judge.authorizations == {f"Bearer {keys['judge']}"}
    assert status.get("wandbRunPath"), status
    assert status["results"]["stored"] is True, status  # the store accepted the key pair

    needles = list(keys.values())
    dump = kubectl(kubeconfig, "get", KINDS, "-n", namespace, "-o", "yaml")
    assert "leak-check-g1" in dump and "leak-check-progress" in dump  # the dump has what it should
    assert [n for n in needles if n in dump] == []
    assert [n for n in needles if n in operator.output or n in caplog.text] == []
    pod = next(
        p for p in core.list_namespaced_pod(namespace).items if p.metadata.name.startswith("leak-check")
    )
    sandbox = node_agent.pod_dir(namespace, pod.metadata.name)
    assert sandbox is not None and (sandbox / "evaluator.log").stat().st_size > 0
    assert files_containing(sandbox, needles) == []
    claim = core.read_namespaced_persistent_volume_claim("leak-check-workspace", namespace)
    volume = Path(core.read_persistent_volume(claim.spec.volume_name).spec.host_path.path)
    results = list(volume.glob("results/*/summary.json"))
    assert results and list(volume.rglob("*.wandb")), sorted(str(p) for p in volume.rglob("*"))[:20]
    assert files_containing(volume, needles) == []
    assert list(s3_server.data_dir.rglob("manifest.json")), sorted(s3_server.data_dir.rglob("*"))
    assert files_containing(s3_server.data_dir, needles) == []
