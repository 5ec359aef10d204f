"""Operator settings, read once at startup from the operator's environment.

The evaluator's image and command are settings (not spec) so that a cluster can pin its own image
and tests can run the evaluator as a local process (the test node agent runs `command + args`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TypeVar

from pydantic import ValidationError

from nejumi_eval.api.v1alpha1.cost import Pricing, PricingError, parse_pricing
from nejumi_eval.api.v1alpha1.spec import S3_URI, ResultsSpec
from nejumi_operator.policy import Policy

ENV_IMAGE = "NEJUMI_OPERATOR_EVALUATOR_IMAGE"
ENV_COMMAND = "NEJUMI_OPERATOR_EVALUATOR_COMMAND"  # JSON list of strings
ENV_EVALUATOR_ENV = "NEJUMI_OPERATOR_EVALUATOR_ENV"  # JSON object: extra env for the evaluator container
ENV_SERVER_TIMEOUT = "NEJUMI_OPERATOR_SERVER_TIMEOUT"  # seconds; kopf's settings.watching.server_timeout
# Seconds between status re-reads of unfinished evaluations (the operator's resync loop); > 0. Read
# here only: the handlers take it from `OperatorConfig.resync_seconds`.
ENV_RESYNC = "NEJUMI_OPERATOR_RESYNC_SECONDS"
ENV_BACKOFF_LIMIT = "NEJUMI_OPERATOR_BACKOFF_LIMIT"
# "true" (the default): a served model's evaluation runs as three Jobs, fetch (CPU), serve (GPU) and
# judge (CPU), so GPUs are held only while the model is served (`api.v1alpha1.stages`); "false": one
# Job does everything (and holds the GPUs throughout). The chart's `evaluator.stages`.
ENV_STAGES = "NEJUMI_OPERATOR_STAGES"
# A PVC of prepared data (a cache root: `<pvc>/jaster/prepared/…`) that every evaluator Job mounts
# read-only and searches before preparing anything itself; empty = none.
ENV_PREPARED_DATA_PVC = "NEJUMI_OPERATOR_PREPARED_DATA_PVC"
# The workspace PVC the operator creates for an evaluation without `workspace.pvcName`: its size
# when `workspace.size` is unset, and its StorageClass when `workspace.storageClassName` is unset
# (empty = none named: the cluster's default StorageClass).
ENV_WORKSPACE_SIZE = "NEJUMI_OPERATOR_WORKSPACE_SIZE"
# The shared model cache (the chart's `evaluator.modelCache`): a ReadWriteMany PVC of this name in
# each evaluation's namespace (made by the operator, unowned and shared, when missing: its size and
# StorageClass below), filled by fetch stages (once per model content, under a lock) and mounted
# read-only by serve stages; empty = none: each evaluation keeps the weights in its workspace.
ENV_MODEL_CACHE_PVC = "NEJUMI_OPERATOR_MODEL_CACHE_PVC"
ENV_MODEL_CACHE_SIZE = "NEJUMI_OPERATOR_MODEL_CACHE_SIZE"
ENV_MODEL_CACHE_STORAGE_CLASS = "NEJUMI_OPERATOR_MODEL_CACHE_STORAGE_CLASS"
DEFAULT_MODEL_CACHE_SIZE = "1Ti"
ENV_WORKSPACE_STORAGE_CLASS = "NEJUMI_OPERATOR_WORKSPACE_STORAGE_CLASS"
DEFAULT_WORKSPACE_SIZE = "50Gi"
# The Kueue LocalQueue of evaluations whose spec names none (`queueName` wins); empty = none: such
# evaluations start at once, outside Kueue.
ENV_DEFAULT_QUEUE = "NEJUMI_OPERATOR_DEFAULT_QUEUE_NAME"
# The allow-lists for placement and code execution (JSON, camelCase: nejumi_operator.policy.Policy,
# the chart's `policy` values); unset = the chart's defaults (the GPU toleration, nothing else).
ENV_POLICY = "NEJUMI_OPERATOR_POLICY"
# The results destination of evaluations whose spec sets no `results.uri` (JSON, camelCase: exactly
# a `results` section of a spec, `uri` required, e.g. {"uri": "s3://bucket/prefix",
# "credentialsSecretRef": {"name": "nejumi-results"}}; the chart's `results` values); unset or empty
# = none: such evaluations keep their results in the workspace only.
ENV_RESULTS = "NEJUMI_OPERATOR_RESULTS"
# The price table (JSON, camelCase: nejumi_eval.api.v1alpha1.cost.Pricing, the chart's `pricing`
# values: {"currency": "USD", "models": {"gpt-4-0613": {"promptPerMillionTokens": 30,
# "completionPerMillionTokens": 60}}, "gpuHour": 2.5}); passed to the evaluator Jobs that report
# (`contract.PRICING_ENV`) and used for `status.cost.gpuCost`. Unset or empty: costs in tokens and
# GPU-seconds only. Configuration, never a secret.
ENV_PRICING = "NEJUMI_OPERATOR_PRICING"
# NejumiLeaderboards (the chart's `leaderboard` values): where one without `spec.publish.uri`
# publishes (`<uri>/leaderboards/<namespace>/<name>/`; empty = nowhere), how long a burst of
# evaluation changes is waited out (quiet, and at most max delay), and the bounds of one
# computation (a child process: seconds, MiB of memory). The store itself (endpoint, region, keys,
# CA) is the operator's own: the standard AWS variables.
ENV_LEADERBOARD_STORE_URI = "NEJUMI_OPERATOR_LEADERBOARD_STORE_URI"
ENV_LEADERBOARD_QUIET = "NEJUMI_OPERATOR_LEADERBOARD_QUIET_SECONDS"
ENV_LEADERBOARD_MAX_DELAY = "NEJUMI_OPERATOR_LEADERBOARD_MAX_DELAY_SECONDS"
ENV_LEADERBOARD_TIMEOUT = "NEJUMI_OPERATOR_LEADERBOARD_TIMEOUT_SECONDS"
ENV_LEADERBOARD_MEMORY = "NEJUMI_OPERATOR_LEADERBOARD_MEMORY_MIB"
# A folder where computations keep the stored objects they read, by sha256, for the next one (empty:
# none, every computation reads the store), and the most MiB it keeps.
ENV_LEADERBOARD_CACHE_DIR = "NEJUMI_OPERATOR_LEADERBOARD_CACHE_DIR"
ENV_LEADERBOARD_CACHE_MIB = "NEJUMI_OPERATOR_LEADERBOARD_CACHE_MIB"


def _version() -> str:
    try:
        return metadata.version("nejumi")
    except metadata.PackageNotFoundError:
        return "latest"


DEFAULT_IMAGE = f"ghcr.io/nejumi/evaluator:{_version()}"
DEFAULT_COMMAND = ("nejumi-eval", "run")


class SettingsError(ValueError):
    """An operator environment variable that cannot be used."""


@dataclass(frozen=True)
class OperatorConfig:
    image: str = DEFAULT_IMAGE
    command: tuple[str, ...] = DEFAULT_COMMAND
    evaluator_env: Mapping[str, str] = field(default_factory=dict)
    server_timeout_seconds: int = 60
    resync_seconds: float = 30.0
    backoff_limit: int = 2
    staged: bool = True
    prepared_data_pvc: str = ""
    model_cache_pvc: str = ""
    model_cache_size: str = DEFAULT_MODEL_CACHE_SIZE
    model_cache_storage_class: str = ""
    workspace_size: str = DEFAULT_WORKSPACE_SIZE
    workspace_storage_class: str = ""
    policy: Policy = field(default_factory=Policy)
    default_queue_name: str = ""
    leaderboard_store_uri: str = ""
    leaderboard_quiet_seconds: float = 5.0
    leaderboard_max_delay_seconds: float = 60.0
    leaderboard_timeout_seconds: float = 600.0
    leaderboard_memory_mib: int = 2048
    leaderboard_cache_dir: str = ""
    leaderboard_cache_mib: int = 2048
    pricing: Pricing | None = None
    default_results: ResultsSpec | None = None
    """Used as a whole (never merged with a spec's own `results`), so its credentials only ever go to
    the destination the platform admin named with them."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        command = _json(env, ENV_COMMAND, list) or list(DEFAULT_COMMAND)
        if not command or not all(isinstance(c, str) and c for c in command):
            raise SettingsError(f"{ENV_COMMAND}: expected a non-empty JSON list of strings")
        extra = _json(env, ENV_EVALUATOR_ENV, dict) or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            raise SettingsError(f"{ENV_EVALUATOR_ENV}: expected a JSON object of strings")
        try:
            policy = Policy.from_json(env[ENV_POLICY]) if env.get(ENV_POLICY) else Policy()
        except (ValueError, ValidationError) as exc:
            raise SettingsError(f"{ENV_POLICY}: {exc}") from None
        return cls(
            policy=policy,
            default_queue_name=(env.get(ENV_DEFAULT_QUEUE) or "").strip(),
            default_results=_results(env),
            pricing=_pricing(env),
            image=env.get(ENV_IMAGE) or DEFAULT_IMAGE,
            command=tuple(command),
            evaluator_env=dict(extra),
            server_timeout_seconds=int(_number(env, ENV_SERVER_TIMEOUT, 60)),  # the API wants an integer
            resync_seconds=_positive(env, ENV_RESYNC, 30.0),
            backoff_limit=int(_number(env, ENV_BACKOFF_LIMIT, 2)),
            staged=_flag(env, ENV_STAGES, True),
            prepared_data_pvc=(env.get(ENV_PREPARED_DATA_PVC) or "").strip(),
            model_cache_pvc=(env.get(ENV_MODEL_CACHE_PVC) or "").strip(),
            model_cache_size=(env.get(ENV_MODEL_CACHE_SIZE) or "").strip() or DEFAULT_MODEL_CACHE_SIZE,
            model_cache_storage_class=(env.get(ENV_MODEL_CACHE_STORAGE_CLASS) or "").strip(),
            workspace_size=(env.get(ENV_WORKSPACE_SIZE) or "").strip() or DEFAULT_WORKSPACE_SIZE,
            workspace_storage_class=(env.get(ENV_WORKSPACE_STORAGE_CLASS) or "").strip(),
            leaderboard_store_uri=_store_uri(env),
            leaderboard_quiet_seconds=_number(env, ENV_LEADERBOARD_QUIET, 5.0),
            leaderboard_max_delay_seconds=_positive(env, ENV_LEADERBOARD_MAX_DELAY, 60.0),
            leaderboard_timeout_seconds=_positive(env, ENV_LEADERBOARD_TIMEOUT, 600.0),
            leaderboard_memory_mib=int(_positive(env, ENV_LEADERBOARD_MEMORY, 2048)),
            leaderboard_cache_dir=(env.get(ENV_LEADERBOARD_CACHE_DIR) or "").strip(),
            leaderboard_cache_mib=int(_positive(env, ENV_LEADERBOARD_CACHE_MIB, 2048)),
        )


T = TypeVar("T")


def _results(env: Mapping[str, str]) -> ResultsSpec | None:
    """The default destination, checked at startup as a spec's `results` would be at admission: an
    operator that would hand every evaluator a bad destination does not start."""
    data = _json(env, ENV_RESULTS, dict)
    if data is None:
        return None
    try:
        results = ResultsSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'results'}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"{ENV_RESULTS}: {problems}") from None
    if not results.uri:
        raise SettingsError(
            f"{ENV_RESULTS}: uri is required (s3://bucket[/prefix]); unset the variable for none"
        )
    return results


def _pricing(env: Mapping[str, str]) -> Pricing | None:
    """The price table, checked at startup: an operator that would price every evaluation with a
    broken table does not start."""
    try:
        return parse_pricing(env.get(ENV_PRICING), ENV_PRICING)
    except PricingError as exc:
        raise SettingsError(str(exc)) from None


def _store_uri(env: Mapping[str, str]) -> str:
    uri = (env.get(ENV_LEADERBOARD_STORE_URI) or "").strip().rstrip("/")
    if uri and not re.match(S3_URI, uri):
        raise SettingsError(f"{ENV_LEADERBOARD_STORE_URI}: expected s3://bucket[/prefix], got {uri!r}")
    return uri


def _json(env: Mapping[str, str], name: str, kind: type[T]) -> T | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise SettingsError(f"{name}: expected a JSON {kind.__name__}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise SettingsError(f"{name}: expected true or false, got {value!r}")
    return value == "true"


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name}: must not be negative")
    return value


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name}: must be a positive number of seconds, got {env.get(name)!r}")
    return value
