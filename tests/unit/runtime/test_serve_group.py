"""A model served across nodes: the group read from LeaderWorkerSet's environment, the leader's and
the workers' `vllm serve` command lines, and who may serve a multi-node model at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.contract import (
    GROUP_SIZE_ENV,
    JOIN_GROUP_FLAG,
    LEADER_ADDRESS_ENV,
    WORKER_INDEX_ENV,
)
from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec
from nejumi_eval.api.v1alpha1.stages import Stage
from nejumi_eval.cli import main
from nejumi_eval.endpoints import ModelEndpoint
from nejumi_eval.pipeline import check_one_host, join_group_command
from nejumi_eval.runtime.serve import NodeGroup, ServerSettings, node_group, server_command, vllm_command
from nejumi_eval.runtime.weights.handoff import RECORD

LEADER = "big-g1-serve-0.big-g1-serve.team-a"


def lws_env(size: int, index: int, address: str = LEADER) -> dict[str, str]:
    """What LWS sets in every container of a group's pod."""
    return {GROUP_SIZE_ENV: str(size), WORKER_INDEX_ENV: str(index), LEADER_ADDRESS_ENV: address}


def two_nodes(workspace: Path | None = None) -> Any:
    spec: dict[str, Any] = {
        "model": {
            "name": "org/big",
            "revision": "r1",
            "vllm": {"tensorParallelSize": 8, "pipelineParallelSize": 2},
        },
        "resources": {"gpus": 8, "nodes": 2},
    }
    if workspace is not None:
        spec["workspace"] = {"path": str(workspace)}
    return parse_spec(spec)


# ---- the group from the environment -----------------------------------------------------------


def test_the_group_comes_from_lws_environment() -> None:
    assert node_group({}) is None  # not in a group: this host alone
    assert node_group(lws_env(1, 0)) is None  # a group of one: nothing to join
    leader = node_group(lws_env(2, 0))
    assert leader == NodeGroup(size=2, rank=0, leader_address=LEADER) and leader.leader
    worker = node_group(lws_env(4, 3))
    assert worker is not None and (worker.size, worker.rank, worker.leader) == (4, 3, False)


@pytest.mark.parametrize(
    "env",
    [
        {GROUP_SIZE_ENV: "2"},  # no index
        {GROUP_SIZE_ENV: "two", WORKER_INDEX_ENV: "0", LEADER_ADDRESS_ENV: LEADER},
        lws_env(2, 2),  # past the group's end
        lws_env(2, 1, address=""),  # nowhere to join
    ],
)
def test_an_environment_that_names_a_group_but_no_place_in_it_is_an_error(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=GROUP_SIZE_ENV):
        node_group(env)


# ---- command lines ----------------------------------------------------------------------------


def settings(group: NodeGroup | None) -> ServerSettings:
    return ServerSettings(
        model="/mnt/nejumi/models/big",
        served_model_name="org/big",
        tensor_parallel_size=8,
        pipeline_parallel_size=2,
        max_model_len=8192,
        port=8000,
        group=group,
    )


ENGINE = [
    "--served-model-name", "org/big",
    "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--dtype", "auto",
]  # fmt: skip
AFTER = ["--max-model-len", "8192", "--generation-config", "vllm", "--seed", "0"]


def test_the_leader_serves_with_the_groups_flags() -> None:
    group = node_group(lws_env(2, 0))
    assert vllm_command(settings(group)) == [
        "vllm", "serve", "/mnt/nejumi/models/big", "--host", "127.0.0.1", "--port", "8000",
        *ENGINE,
        "--nnodes", "2", "--node-rank", "0", "--master-addr", LEADER,
        *AFTER,
    ]  # fmt: skip


def test_a_worker_runs_the_same_engine_headless_with_its_rank() -> None:
    group = node_group(lws_env(3, 2))
    assert server_command(settings(group)) == [
        "vllm", "serve", "/mnt/nejumi/models/big", "--host", "127.0.0.1", "--port", "8000",
        *ENGINE,
        "--nnodes", "3", "--node-rank", "2", "--master-addr", LEADER, "--headless",
        *AFTER,
    ]  # fmt: skip


def test_one_host_has_no_group_flags_and_transformers_has_no_group() -> None:
    alone = vllm_command(settings(None))
    assert not {"--nnodes", "--node-rank", "--master-addr", "--headless"} & set(alone)
    cpu = ServerSettings(backend="transformers", model="m", group=node_group(lws_env(2, 0)))
    with pytest.raises(ValueError, match="across a group of nodes"):
        server_command(cpu)


# ---- who serves a multi-node model --------------------------------------------------------------


def test_a_multi_node_model_is_served_only_inside_its_group() -> None:
    spec = two_nodes()
    with pytest.raises(ConfigError, match=r"only in the cluster, as a LeaderWorkerSet group"):
        check_one_host(spec, Stage.SERVE, {})  # outside a group: this host alone would be another deployment
    with pytest.raises(ConfigError, match=r"this pod's serving group has 3"):
        check_one_host(spec, Stage.SERVE, lws_env(3, 0))
    with pytest.raises(ConfigError, match=r"resources\.nodes: .*LWS_WORKER_INDEX"):
        check_one_host(spec, Stage.SERVE, {GROUP_SIZE_ENV: "2"})
    assert check_one_host(spec, Stage.SERVE, lws_env(2, 0)) == NodeGroup(
        size=2, rank=0, leader_address=LEADER
    )
    # The stages that serve nothing run on one pod, whatever the model's size.
    for stage in (Stage.FETCH, Stage.JUDGE):
        assert check_one_host(spec, stage, {}) is None
    one = parse_spec({"model": {"name": "m"}})
    assert check_one_host(one, Stage.SERVE, {}) is None


def test_the_leaders_server_gets_the_group(tmp_path: Path) -> None:
    group = node_group(lws_env(2, 0))
    endpoint = ModelEndpoint(two_nodes(), tmp_path, timeline=None, group=group)
    command = endpoint.server.command
    assert command[command.index("--nnodes") : command.index("--master-addr") + 2] == [
        "--nnodes", "2", "--node-rank", "0", "--master-addr", LEADER,
    ]  # fmt: skip
    assert "--headless" not in command
    assert endpoint.endpoint.base_url.startswith("http://127.0.0.1:")  # the evaluator is the server's client


def test_a_worker_joins_with_the_leaders_weights_and_settings(tmp_path: Path) -> None:
    spec = two_nodes(tmp_path)
    command = join_group_command(spec, lws_env(2, 1))
    assert command[:3] == ["vllm", "serve", "org/big"]  # no fetch record: the Hub id, from $HF_HOME offline
    assert command[command.index("--revision") + 1] == "r1"
    assert command[-9:-6] == ["--master-addr", LEADER, "--headless"]
    # With the fetch stage's record, the model cache's copy under the model's own name, as the leader.
    folder = tmp_path / "models" / "big"
    folder.mkdir(parents=True)
    (tmp_path / RECORD).parent.mkdir(parents=True)
    (tmp_path / RECORD).write_text(json.dumps({"path": str(folder), "uri": "hf://org/big@r1", "key": "k"}))
    command = join_group_command(spec, lws_env(2, 1))
    assert command[:3] == ["vllm", "serve", str(folder)]
    assert command[command.index("--served-model-name") + 1] == "org/big"
    assert "--revision" not in command
    # The same engine as the leader's server: every flag but the rank and --headless.
    leader = ModelEndpoint(spec, tmp_path, timeline=None, group=node_group(lws_env(2, 0)))
    leader.serve_from(folder)

    def engine(cmd: list[str]) -> list[str]:
        start = cmd.index("--served-model-name")
        rank = cmd.index("--node-rank")
        return [a for a in cmd[start:rank] + cmd[rank + 2 :] if a != "--headless"]

    assert leader.server.command[:3] == command[:3]
    assert engine(leader.server.command) == engine(command)


def test_only_a_worker_joins_a_group(tmp_path: Path) -> None:
    spec = two_nodes(tmp_path)
    with pytest.raises(ConfigError, match=r"--join-group: only a worker .* the group's leader"):
        join_group_command(spec, lws_env(2, 0))
    with pytest.raises(ConfigError, match=r"only in the cluster, as a LeaderWorkerSet group"):
        join_group_command(spec, {})


def test_the_cli_joins_only_in_the_serve_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--stage", "judge", JOIN_GROUP_FLAG]) == 2
    assert f"{JOIN_GROUP_FLAG} joins a serving group: only with --stage serve" in capsys.readouterr().err
