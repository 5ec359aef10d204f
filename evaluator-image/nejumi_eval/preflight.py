"""Checks that take seconds, before any server starts or any request is sent.

Each failure is one actionable line: bad input is a `ConfigError` (exit 2: change the spec), an
unreachable service an `InfrastructureError` or a typed client error (exit 3: fix the machine or
the network). Without them, a wrong local path cost 16 s and a 50-line traceback, an offline Hub id
minutes of retries inside the model server, and an unreachable judge was found only after every
answer had been generated.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nejumi_eval.api.v1alpha1.spec import ConfigError, EvaluationSpec, ModelSource, WandbSpec
from nejumi_eval.endpoints import OPENAI_BASE_URL, SYNTHETIC_JUDGE_SOURCE, ModelEndpoint
from nejumi_eval.errors import InfrastructureError
from nejumi_eval.runtime.client.models import ClientSettings
from nejumi_eval.runtime.client.retry import RetryPolicy

QUICK = RetryPolicy(max_attempts=2, initial_delay_s=0.5, max_delay_s=0.5)
"""Preflight asks once more after a short pause: a check, not the run's patient retry policy."""
HUB_TIMEOUT_S = 5.0
_LOCAL_PREFIXES = ("/", "./", "../", "~")


def _installed(backend: str) -> bool:
    sibling = Path(sys.executable).parent / backend
    return (
        sibling.is_file()
        or shutil.which(backend) is not None
        or importlib.util.find_spec(backend) is not None
    )


def check_backend(spec: EvaluationSpec) -> None:
    """A served model needs its server installed here; say which source would work."""
    source = spec.model.source
    if source == ModelSource.OPENAI_COMPATIBLE or _installed(source.value):
        return
    others = [
        s.value for s in (ModelSource.VLLM, ModelSource.TRANSFORMERS) if s != source and _installed(s.value)
    ]
    hint = (
        f"use source: {others[0]} (installed here)"
        if others
        else "install it (pip install 'nejumi[vllm]' on a GPU machine, 'nejumi[serve]' for CPU)"
    )
    raise ConfigError(f"model.source: {source.value} is not installed on this machine; {hint}")


def check_model_location(spec: EvaluationSpec) -> None:
    """A local folder must exist and hold a model; a Hub id must be reachable or cached. Weights
    that go through the model cache are checked by fetching them (`runtime.weights`)."""
    from nejumi_eval.runtime.weights.handoff import uses_cache

    m = spec.model
    if m.source == ModelSource.OPENAI_COMPATIBLE or uses_cache(spec):
        return
    path = Path(m.name).expanduser()
    if m.name.startswith(_LOCAL_PREFIXES) or path.exists():
        if not path.is_dir():
            raise ConfigError(
                f"model.name: {m.name} does not exist or is not a folder (a local model folder was "
                "expected; a Hugging Face Hub id looks like org/name)"
            )
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.name: {m.name} is not a model folder (it has no config.json)")
        return
    _check_hub(m.name, m.revision)


def _check_hub(repo: str, revision: str | None) -> None:
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # no serving runtime here: check_backend has said so
        return
    cached = isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)
    where = f"the local cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise InfrastructureError(
                f"model.name: {repo} is not in {where} and HF_HUB_OFFLINE is set; download it first "
                f"(`huggingface-cli download {repo}`) or set model.name to a local folder"
            )
        return
    import httpx

    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{repo}" + (
        f"/revision/{revision}" if revision else ""
    )
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=HUB_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        if cached:  # use the cache, and keep the server from trying the network at all
            os.environ["HF_HUB_OFFLINE"] = "1"
            return
        raise InfrastructureError(
            f"model.name: {repo} is a Hugging Face Hub id, but {constants.ENDPOINT} cannot be reached "
            f"from here ({type(exc).__name__}) and the model is not in {where}; download it where the "
            f"Hub is reachable (`huggingface-cli download {repo}`), or set model.name to a local folder"
        ) from None
    if response.status_code == 404:
        what = f"{repo}@{revision}" if revision else repo
        raise ConfigError(
            f"model.name: {what} does not exist on {constants.ENDPOINT} (check the id and revision)"
        )
    if response.status_code in (401, 403):
        raise ConfigError(
            f"model.name: {repo} is gated or private on {constants.ENDPOINT}: set HF_TOKEN to a token "
            "that has access"
        )


def check_wandb(spec: WandbSpec) -> None:
    """An online W&B run needs a key (the run would otherwise end in an interactive login)."""
    if not spec.enabled or spec.mode != "online" or os.environ.get("WANDB_API_KEY"):
        return
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    try:
        if netrc.netrc().authenticators(host):
            return
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    raise ConfigError(
        "wandb.mode: online needs an API key: set WANDB_API_KEY (operator: wandb.apiKeySecretRef), "
        "run `wandb login`, or use wandb.mode: offline"
    )


def check_judge_keys(judges: list[tuple[str, ClientSettings]]) -> None:
    for field_name, settings in judges:
        if (
            settings.base_url.rstrip("/") == OPENAI_BASE_URL
            and settings.api_key.get_secret_value() == "EMPTY"
        ):
            raise ConfigError(
                f"{field_name}: no API key for the judge at {OPENAI_BASE_URL}: set OPENAI_API_KEY or "
                f"{field_name}.apiKeyEnv (operator: {field_name}.apiKeySecretRef)"
            )


async def check_reachable(settings: list[ClientSettings]) -> None:
    """GET /models of every API endpoint (model under test, judges): a wrong URL, key or model
    name fails now (typed client errors, exit 3), not after the answers are generated."""
    from nejumi_eval.runtime.client.client import InferenceClient

    for s in settings:
        async with InferenceClient(s.model_copy(update={"retry": QUICK})) as client:
            await client.check()


async def preflight(
    spec: EvaluationSpec,
    endpoint: ModelEndpoint,
    judges: list[tuple[str, ClientSettings]],
    store: Any = None,
    model: bool = True,
) -> None:
    """Everything that can be known in seconds; raises the first problem found. `store`: the
    results destination (`pipeline.ResultsDestination`), checked by writing its `started.json`.
    `model=False`: the model under test is not asked anything here (the judge stage reads its
    answers from the cache), so its server, weights and endpoint are not checked."""
    if model:
        check_backend(spec)
        check_model_location(spec)
    check_wandb(spec.wandb)
    check_judge_keys(judges)
    if store is not None:
        import asyncio

        await asyncio.to_thread(store.check)
    apis: list[Any] = [s for _, s in judges if not (s.source and s.source.base_url == SYNTHETIC_JUDGE_SOURCE)]
    if model and not endpoint.served:
        from nejumi_eval.endpoints import model_settings

        apis.insert(0, model_settings(spec, endpoint.endpoint, None))
    await check_reachable(apis)
