"""Concurrency follows the server (issue 8 §5): vLLM's --max-num-seqs, passed explicitly, sets how
many requests the client keeps in flight; APIs get a polite default; the judge defaults to 32."""

from __future__ import annotations

import pytest

from nejumi_eval.api.v1alpha1.spec import ConfigError, parse_spec
from nejumi_eval.endpoints import API_CONCURRENCY, TRANSFORMERS_CONCURRENCY, request_concurrency
from nejumi_eval.runtime.serve.commands import ServerSettings, vllm_command


def _spec(**model: object) -> object:
    return parse_spec({"model": {"name": "org/m", **model}})


def test_in_flight_requests_follow_the_server() -> None:
    assert request_concurrency(_spec()) == 256  # vLLM's default max-num-seqs, explicit
    assert request_concurrency(_spec(vllm={"maxNumSeqs": 512})) == 512
    assert request_concurrency(_spec(source="transformers")) == TRANSFORMERS_CONCURRENCY
    api = {"source": "openai-compatible", "endpoint": "https://api.example/v1"}
    assert request_concurrency(_spec(**api)) == API_CONCURRENCY
    explicit = parse_spec({"model": {"name": "org/m"}, "generation": {"concurrency": 64}})
    assert request_concurrency(explicit) == 64
    judge = parse_spec(
        {"model": {"name": "m"}, "benchmarks": {"mtbench": {"judge": {}}}}
    ).benchmarks.mtbench.judge
    assert judge is not None and judge.concurrency == 32


def test_vllm_gets_max_num_seqs_explicitly() -> None:
    cmd = vllm_command(ServerSettings(model="org/m", max_num_seqs=256))
    assert cmd[cmd.index("--max-num-seqs") + 1] == "256"
    assert "--max-num-seqs" not in vllm_command(ServerSettings(model="org/m"))


@pytest.mark.parametrize(
    "arg",
    [
        "--max-num-seqs",
        "--max-num-seqs=8",
        "--tensor-parallel-size",
        "--pipeline-parallel-size",
        "--pipeline-parallel-size=2",
    ],
)
def test_extra_args_cannot_override_typed_fields(arg: str) -> None:
    with pytest.raises(ConfigError, match=r"model\.vllm\.extraArgs: use model\.vllm"):
        _spec(vllm={"extraArgs": [arg, "8"]})
