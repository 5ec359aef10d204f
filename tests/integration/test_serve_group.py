"""The serve stage of a 2-node evaluation as the operator builds it (`reconcile.group`), on the real
control plane with the real LeaderWorkerSet controller and Kueue's LWS integration (issue 22).

The LeaderWorkerSet is `build_serve_group`'s, as built, save one thing only a test may change: the
leader's command is a stub that records what it was given and stays up (the real serve stage would
serve, generate and end). The worker runs for real: the evaluator (`nejumi-eval run --stage serve
--join-group`, this checkout) reads the spec and LWS's group environment and becomes `vllm serve
--headless`, here a stub `vllm` on the pods' PATH that records its command line and stays up, as a
worker's server would. No assertion depends on timing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import utils
from kubernetes.client import ApiClient

from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_eval.api.v1alpha1.stages import STAGE_FLAG, Stage
from nejumi_eval.pipeline import check_one_host
from nejumi_eval.runtime.serve import NodeGroup
from nejumi_operator.policy import Policy
from nejumi_operator.reconcile.group import build_serve_group
from nejumi_operator.reconcile.job import build_workspace_pvc
from nejumi_operator.reconcile.progress import build_progress_objects
from nejumi_operator.settings import OperatorConfig
from tests.cluster import GPU_RESOURCE, NodeAgent, wait_until
from tests.cluster.lws import GROUP_SIZE_ENV, LEADER_ADDRESS_ENV, WORKER_INDEX_ENV
from tests.integration.conftest import SECOND_NODE_TAINT
from tests.integration.test_kueue import Kueues, said
from tests.integration.test_lws import Group, gated

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

TIMEOUT = 180
NODE_GPUS = 8
NAME = "big"
KEYS = ("HOSTNAME", LEADER_ADDRESS_ENV, GROUP_SIZE_ENV, WORKER_INDEX_ENV, "HF_HUB_OFFLINE", "NEJUMI_SPEC")
# Writes its argv and the group environment to <RECORDS>/<pod name>.json, then stays up.
RECORD = (
    "import json, os, sys, time\n"
    "keys = {keys!r}\n"
    "path = os.path.join({out!r}, os.environ['HOSTNAME'] + '.json')\n"
    "with open(path + '.tmp', 'w') as f:\n"
    "    json.dump({{'argv': sys.argv[1:], 'env': {{k: os.environ.get(k) for k in keys}}}}, f)\n"
    "os.replace(path + '.tmp', path)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


def two_nodes(queue: str) -> dict[str, Any]:
    """A 405B-class model on two nodes of 8 GPUs: tensor-parallel in a node, pipeline across."""
    return {
        "model": {
            "name": "org/big",
            "revision": "r1",
            "vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2},
        },
        "benchmarks": {"jaster": {"enabled": True}, "mtbench": {"enabled": False}},
        "resources": {
            "gpus": NODE_GPUS,
            "nodes": 2,
            # The second session node is tainted: the group may use both.
            "tolerations": [{**SECOND_NODE_TAINT, "operator": "Equal"}],
        },
        "queueName": queue,
    }


def stub_vllm(bin_dir: Path, out: Path) -> Path:
    """`vllm` on the pods' PATH: records its command line and stays up (a headless worker's server)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "vllm"
    code = RECORD.format(keys=KEYS, out=str(out))
    script.write_text(f"#!{sys.executable}\n{code}", encoding="utf-8")
    script.chmod(0o755)
    return bin_dir


def test_a_two_node_serve_stage_is_admitted_whole_and_its_worker_joins_the_leader(
    k8s_client: ApiClient,
    namespace: str,
    node_agent: NodeAgent,
    second_node: NodeAgent,
    queues: Kueues,
    tmp_path: Path,
) -> None:
    out = tmp_path / "records"
    out.mkdir()
    venv_bin = Path(sys.executable).parent
    pods_path = os.pathsep.join(
        [str(stub_vllm(tmp_path / "bin", out)), str(venv_bin), os.environ.get("PATH", "")]
    )
    evaluator_env = {"PATH": pods_path}
    if os.environ.get("PYTHONPATH"):  # this checkout, not the venv's editable one (a git worktree)
        evaluator_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    config = OperatorConfig(
        image="nejumi/evaluator:test",  # ignored by the node agent
        command=(str(venv_bin / "nejumi-eval"), "run"),
        evaluator_env=evaluator_env,
        policy=Policy(enabled=False),
    )
    cluster_queue = queues.cluster_queue(queues.flavor(), gpus=2 * NODE_GPUS)
    queue = queues.local_queue(cluster_queue)
    evaluation = {
        "apiVersion": "nejumi.wandb.ai/v1alpha1",
        "kind": "NejumiEvaluation",
        "metadata": {"name": NAME, "namespace": namespace, "generation": 1, "uid": "u-1"},
        "spec": two_nodes(queue),
    }
    # What the operator makes before a stage's pods: the evaluator's ServiceAccount (and its
    # progress ConfigMap) and the workspace (built from the one-node spec: this version's operator
    # refuses a multi-node evaluation everywhere but in the group's builder).
    one_node = {**evaluation, "spec": {**evaluation["spec"], "resources": {"gpus": NODE_GPUS}}}
    one_node["spec"]["model"] = {"name": "org/big", "vllm": {"tensorParallelSize": 8}}
    workspace = build_workspace_pvc(one_node, config)
    for obj in [*build_progress_objects(evaluation), workspace]:
        utils.create_from_dict(k8s_client, obj, namespace=namespace)

    body = build_serve_group(evaluation, config)
    leader_container = body["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    leader_args = list(leader_container["args"])
    leader_container["command"] = [sys.executable, "-c", RECORD.format(keys=KEYS, out=str(out))]  # test only
    name = body["metadata"]["name"]
    group = Group(k8s_client, namespace, name)
    group.create(body)

    leader, worker = wait_until(lambda: group.running(2), TIMEOUT, "the leader and its worker to run")
    # Kueue admitted the group whole: one Workload, a node's GPUs for each pod.
    workload = group.workload()
    assert workload is not None
    assert said(workload, "Admitted") == ("True", "Admitted", "The workload is admitted")
    assignments = workload["status"]["admission"]["podSetAssignments"]
    usage = {ps["name"]: ps["resourceUsage"][GPU_RESOURCE] for ps in assignments}
    assert usage == {"leader": str(NODE_GPUS), "worker": str(NODE_GPUS)}
    assert {leader.spec.node_name, worker.spec.node_name} == {node_agent.name, second_node.name}
    assert not gated(leader) and not gated(worker)

    def record(pod: Any) -> dict[str, Any] | None:
        path = out / f"{pod.metadata.name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    led = wait_until(lambda: record(leader), TIMEOUT, "the leader's record")
    joined = wait_until(lambda: record(worker), TIMEOUT, "the worker's server's record")
    address = f"{name}-0.{name}.{namespace}"

    # The leader: the serve stage's arguments, in LWS's group of two, at rank 0; the evaluator's
    # own check reads that environment as the group it leads.
    assert led["argv"][:2] == leader_args[:2] and led["argv"][-2:] == [STAGE_FLAG, Stage.SERVE.value]
    assert (led["env"][GROUP_SIZE_ENV], led["env"][WORKER_INDEX_ENV]) == ("2", "0")
    assert led["env"][LEADER_ADDRESS_ENV] == address and led["env"]["HF_HUB_OFFLINE"] == "1"
    spec = parse_spec(json.loads(led["env"]["NEJUMI_SPEC"]))
    group_env = {k: v for k, v in led["env"].items() if v is not None}
    assert check_one_host(spec, Stage.SERVE, group_env) == NodeGroup(size=2, rank=0, leader_address=address)

    # The worker: the real evaluator became `vllm serve --headless` at rank 1, joining the leader,
    # with the leader's engine settings.
    argv = joined["argv"]
    assert argv[:2] == ["serve", "org/big"]
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags["--tensor-parallel-size"] == "8" and flags["--pipeline-parallel-size"] == "2"
    at = argv.index("--nnodes")
    assert argv[at : at + 7] == ["--nnodes", "2", "--node-rank", "1", "--master-addr", address, "--headless"]
    assert joined["env"][WORKER_INDEX_ENV] == "1" and joined["env"]["HF_HUB_OFFLINE"] == "1"

    # The group never ends by itself: deleting it (the operator's part, step 3b) leaves nothing.
    group.delete()
    wait_until(group.gone, TIMEOUT, "the group's pods and Workload to go")
    for agent in (node_agent, second_node):
        for pod in (leader.metadata.name, worker.metadata.name):
            assert not agent.pids(namespace, pod), f"{pod}'s process on {agent.name} was stopped"
