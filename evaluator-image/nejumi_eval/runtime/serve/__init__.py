"""Serving a local model behind an OpenAI-compatible API: vllm (GPU) or transformers (CPU)."""

from nejumi_eval.runtime.serve.commands import (
    NodeGroup,
    ServerSettings,
    base_url,
    health_url,
    node_group,
    served_model_name,
    server_command,
    transformers_command,
    vllm_command,
)
from nejumi_eval.runtime.serve.process import (
    ModelServer,
    ServerError,
    ServerExitedError,
    ServerStartTimeoutError,
    free_port,
)

__all__ = [
    "ModelServer",
    "NodeGroup",
    "ServerError",
    "ServerExitedError",
    "ServerSettings",
    "ServerStartTimeoutError",
    "base_url",
    "free_port",
    "health_url",
    "node_group",
    "served_model_name",
    "server_command",
    "transformers_command",
    "vllm_command",
]
