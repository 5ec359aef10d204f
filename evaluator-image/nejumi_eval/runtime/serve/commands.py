"""Server settings and the exact command lines that serve a local model (pure functions).

Two backends fill the same role (design §Serve): ``vllm serve`` on GPUs, ``transformers serve``
on CPU (the embedded default and the tests). Everything after serving speaks the OpenAI API, so
the rest of the evaluator needs only :func:`served_model_name` and :func:`base_url`.

Facts about ``transformers serve`` (transformers 5.x, checked against its source) that shape the
transformers command:

- It serves ``POST /v1/completions`` (a raw prompt, tokenised with the tokenizer's default special
  tokens — BOS where the tokenizer adds one — and no chat template; output decoded with special
  tokens skipped), ``POST /v1/chat/completions`` (the tokenizer's own chat template with the
  generation prompt), ``GET /v1/models`` and ``GET /health``. So jaster's ``completion`` mode
  needs no workaround.
- The positional ``FORCE_MODEL`` (a local folder or ``org/repo@revision``) is loaded before the
  HTTP port opens, so ``/health`` answering means the model is ready. Requests must name the model
  exactly as given there (another name is a 400), and ``/v1/models`` lists that string alone.
  There is no ``--served-model-name`` and no ``--chat-template`` flag.
- ``temperature: 0`` switches to greedy decoding; ``max_tokens`` sets ``max_new_tokens``.

A model larger than one node is one ``vllm serve`` spread over a group of nodes (``NodeGroup``),
without Ray: vLLM's multiprocessing backend across nodes, as vLLM's documentation gives it
("Running vLLM with MultiProcessing", ``docs/serving/parallelism_scaling.md`` of
vllm-project/vllm): on the head node ``vllm serve <model> --tensor-parallel-size 8
--pipeline-parallel-size 2 --nnodes 2 --node-rank 0 --master-addr <head>``, on each other node the
same command with its ``--node-rank`` and ``--headless`` (no API server: it runs its share of the
model for the head's engine). The group's members, size and head come from LeaderWorkerSet's
environment (``api.v1alpha1.contract``: ``LWS_GROUP_SIZE``, ``LWS_WORKER_INDEX``,
``LWS_LEADER_ADDRESS``), so the command line is still a pure function of settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nejumi_eval.api.v1alpha1.contract import GROUP_SIZE_ENV, LEADER_ADDRESS_ENV, WORKER_INDEX_ENV

Backend = Literal["vllm", "transformers"]


class NodeGroup(BaseModel):
    """This process's place in a group of nodes that serve one model together (vLLM multi-node
    without Ray): `size` nodes, this one's `rank` (0: the leader, whose server answers requests),
    and the leader's address every node rendezvouses at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=2, description="vllm --nnodes: the nodes of the group, leader included")
    rank: int = Field(ge=0, description="vllm --node-rank: 0 for the leader")
    leader_address: str = Field(min_length=1, description="vllm --master-addr: the leader's address")

    @property
    def leader(self) -> bool:
        return self.rank == 0


def node_group(env: Mapping[str, str]) -> NodeGroup | None:
    """The group this process serves in, from LeaderWorkerSet's environment; None outside a group
    (no `LWS_GROUP_SIZE`) or in a group of one (one node: nothing to join). Raises ValueError for
    an environment that names a group but not where this process stands in it."""
    size_text = env.get(GROUP_SIZE_ENV)
    if not size_text:
        return None
    try:
        size, rank = int(size_text), int(env.get(WORKER_INDEX_ENV, ""))
    except ValueError:
        raise ValueError(
            f"${GROUP_SIZE_ENV}={size_text!r} and ${WORKER_INDEX_ENV}={env.get(WORKER_INDEX_ENV)!r}: "
            "a serving group needs both as whole numbers"
        ) from None
    if size == 1:
        return None
    address = env.get(LEADER_ADDRESS_ENV, "")
    if not address or not 0 <= rank < size:
        raise ValueError(
            f"${GROUP_SIZE_ENV}={size}, ${WORKER_INDEX_ENV}={rank}, ${LEADER_ADDRESS_ENV}={address!r}: "
            "not a place in a serving group (the index must be below the size, the address set)"
        )
    return NodeGroup(size=size, rank=rank, leader_address=address)


class ServerSettings(BaseModel):
    """What to serve and how. The lead's top-level config maps onto this."""

    model_config = ConfigDict(extra="forbid")

    backend: Backend = "vllm"
    model: str = Field(description="HF repo id or local folder")
    revision: str | None = Field(default=None, description="HF revision (commit, tag, branch)")
    served_model_name: str | None = Field(
        default=None, description="vllm only: the name requests use (default: `model`)"
    )
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1, description="vllm only: pipeline stages")
    max_model_len: int | None = Field(default=None, ge=1)
    dtype: str = "auto"
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="vllm only: --max-num-seqs (sequences batched at once)"
    )
    chat_template: Path | None = Field(default=None, description="vllm only: a Jinja chat template file")
    generation_config: str | None = Field(
        default="vllm",
        description=(
            "vllm --generation-config. 'vllm' keeps vLLM's neutral defaults so a model's "
            "generation_config.json cannot add e.g. a repetition penalty the protocol forbids; "
            "None omits the flag (vLLM < 0.6.5)"
        ),
    )
    seed: int | None = Field(default=0, description="server default seed")
    device: str | None = Field(default=None, description="transformers only: --device (e.g. cpu)")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535, description="0: pick a free port at start")
    extra_args: list[str] = Field(default_factory=list, description="appended verbatim")
    env: dict[str, str] = Field(default_factory=dict, description="added to the server's environment")
    startup_timeout_s: float = Field(default=1800.0, gt=0, description="load + warm-up of a large model")
    stop_grace_s: float = Field(default=30.0, ge=0, description="SIGTERM → SIGKILL grace")
    executable: str | None = Field(default=None, description="override `vllm`/`transformers` binary")
    group: NodeGroup | None = Field(
        default=None, description="vllm only: serve across this group of nodes (None: this host alone)"
    )


def _is_local(model: str) -> bool:
    return os.path.exists(model)


def served_model_name(settings: ServerSettings) -> str:
    """The ``model`` string clients must send."""
    if settings.backend == "vllm":
        return settings.served_model_name or settings.model
    return _transformers_model_arg(settings)


def serving_folder(settings: ServerSettings, folder: str | Path) -> ServerSettings:
    """The same server, serving the weights in `folder` (the model cache's copy) under the model's
    own name, so requests, and the response cache's keys, stay those of `model`. vLLM only."""
    update = {"model": str(folder), "served_model_name": served_model_name(settings), "revision": None}
    return settings.model_copy(update=update)


def _transformers_model_arg(settings: ServerSettings) -> str:
    if settings.revision and not _is_local(settings.model):
        return f"{settings.model}@{settings.revision}"
    return settings.model


def client_host(host: str) -> str:
    """Where a client on this machine connects when the server binds ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def base_url(settings: ServerSettings) -> str:
    return f"http://{client_host(settings.host)}:{settings.port}/v1"


def health_url(settings: ServerSettings) -> str:
    """Both backends expose ``GET /health`` (200 once the model is loaded)."""
    return f"http://{client_host(settings.host)}:{settings.port}/health"


def vllm_command(settings: ServerSettings) -> list[str]:
    """The ``vllm serve`` command line, flag by flag (vLLM's OpenAI-compatible server).

    In a group (``settings.group``) every node runs the same command, so each loads the same engine
    configuration, plus ``--nnodes``, ``--node-rank`` and ``--master-addr``; a worker (rank > 0)
    adds ``--headless``: it serves no API, its share of the model answers the leader's engine."""
    s = settings
    cmd = [s.executable or "vllm", "serve", s.model, "--host", s.host, "--port", str(s.port)]
    cmd += ["--served-model-name", served_model_name(s)]
    if s.revision:
        cmd += ["--revision", s.revision]
    # Both parallel sizes always, as written: the command line says how many GPUs the server uses.
    cmd += ["--tensor-parallel-size", str(s.tensor_parallel_size)]
    cmd += ["--pipeline-parallel-size", str(s.pipeline_parallel_size), "--dtype", s.dtype]
    if (g := s.group) is not None:
        cmd += ["--nnodes", str(g.size), "--node-rank", str(g.rank), "--master-addr", g.leader_address]
        if not g.leader:
            cmd.append("--headless")
    if s.max_model_len is not None:
        cmd += ["--max-model-len", str(s.max_model_len)]
    if s.max_num_seqs is not None:
        cmd += ["--max-num-seqs", str(s.max_num_seqs)]
    if s.chat_template is not None:
        cmd += ["--chat-template", str(s.chat_template)]
    if s.generation_config is not None:
        cmd += ["--generation-config", s.generation_config]
    if s.seed is not None:
        cmd += ["--seed", str(s.seed)]
    return cmd + list(s.extra_args)


def transformers_command(settings: ServerSettings) -> list[str]:
    """The ``transformers serve`` command line (CPU backend).

    Settings it cannot honour are refused rather than dropped: a silently ignored chat template or
    served name would change what is measured.
    """
    s = settings
    if s.served_model_name and s.served_model_name != _transformers_model_arg(s):
        raise ValueError(
            "transformers serve has no --served-model-name: requests must use the model string "
            f"{_transformers_model_arg(s)!r}; leave served_model_name unset"
        )
    if s.chat_template is not None:
        raise ValueError(
            "transformers serve has no --chat-template: put the template in the model folder "
            "(chat_template.jinja) or use the vllm backend"
        )
    if s.tensor_parallel_size != 1:
        raise ValueError("transformers serve runs on one device: tensor_parallel_size must be 1")
    if s.pipeline_parallel_size != 1:
        raise ValueError("transformers serve runs on one device: pipeline_parallel_size must be 1")
    if s.group is not None:
        raise ValueError("transformers serve runs on one device: it cannot serve across a group of nodes")
    cmd = [s.executable or "transformers", "serve", _transformers_model_arg(s)]
    cmd += ["--host", s.host, "--port", str(s.port), "--dtype", s.dtype, "--log-level", "info"]
    if s.device is not None:
        cmd += ["--device", s.device]
    if s.seed is not None:
        cmd += ["--default-seed", str(s.seed)]
    return cmd + list(s.extra_args)


def server_command(settings: ServerSettings) -> list[str]:
    if settings.backend == "vllm":
        return vllm_command(settings)
    return transformers_command(settings)
