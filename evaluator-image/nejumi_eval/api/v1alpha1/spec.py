"""The evaluation spec: one pydantic model that is both `nejumi-eval run`'s YAML config and the
`spec` of the NejumiEvaluation custom resource.

Why one model: the operator generates the CRD schema from it, so a field the evaluator accepts is
a field the API server validates, and the two can never drift. Field names are camelCase (the
Kubernetes convention); Python code reads them as snake_case attributes.

CEL rules (`cel_rules`, see `cel.py`) stand next to the model they constrain; the CRD carries them
and the evaluator applies them, so each rule is written once.

This module must stay light (pydantic, pyyaml, cel-python): the operator imports it.
"""

from __future__ import annotations

import collections.abc
import difflib
import json
import types
import typing
from collections.abc import Callable, Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.cel import Rule, failures
from nejumi_eval.api.v1alpha1.contract import EXIT_CONFIG


def _schema_extra(schema: dict[str, Any], cls: type) -> None:
    """Each model's CEL rules go into its JSON schema, from where the CRD generator copies them."""
    rules = cls.__dict__.get("cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.crd() for r in rules]


class Spec(BaseModel):
    """Base for every spec section: camelCase on the wire, unknown fields rejected, CEL rules
    (`cel_rules`) checked on the object as written."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", json_schema_extra=_schema_extra
    )
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Spec:
        rules = type(self).__dict__.get("cel_rules", ())
        if rules:
            written = self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
            broken = failures(rules, written)
            if broken:
                raise ValueError("; ".join(broken))
        return self


# ---- Kubernetes syntax ------------------------------------------------------------------------
# What the API server would refuse in the Job (or its pod) is refused in the spec already, by the
# same rule both here and in the CRD: a field constraint (pattern, length) or a CEL rule. The
# patterns are Kubernetes' own (k8s.io/apimachinery/pkg/util/validation, resource.Quantity).

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""An object name (Secret, PVC, PriorityClass, RuntimeClass): an RFC 1123 subdomain, ≤253."""
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
"""A key of a Secret's data (≤253)."""
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
"""A label value: empty, or ≤63 alphanumerics, '-', '_', '.', alphanumeric at both ends."""
QUANTITY = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A non-negative resource.Quantity: `8`, `500m`, `64Gi`, `1e9`."""
_LABEL_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = f"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$"
_LABEL_KEY_PREFIX = "^([^/]{1,253}/)?[^/]+$"
_URL = r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)(:[0-9]{1,5})?(/[^\s?#]*)?$"
"""An endpoint's base URL: http(s)://host[:port][/path] (no user info, query or fragment). Short:
the API server costs a CEL `matches` by the regex's length times the string's."""
MAX_URL = 2048


def _cel_string(text: str) -> str:
    """`text` as a CEL string literal (single-quoted, backslashes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def label_key_cel(expr: str) -> str:
    """CEL: the string `expr` is a label key, `[prefix/]name` (prefix a DNS subdomain ≤253)."""
    return f"{expr}.matches({_cel_string(_LABEL_KEY)}) && {expr}.matches({_cel_string(_LABEL_KEY_PREFIX)})"


def url_cel(expr: str) -> str:
    """CEL: the string `expr` is an http(s) base URL."""
    return f"{expr}.matches({_cel_string(_URL)})"


def _int_as_string(value: Any) -> Any:
    """`cpu: 4` is a quantity as much as `cpu: "4"` (Kubernetes reads both); kept as the string."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    BeforeValidator(_int_as_string),
    Field(max_length=64, pattern=QUANTITY),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY, "maxLength": 64, "minimum": 0}),
]
"""A Kubernetes quantity, written as a string or a plain integer (an int-or-string in the CRD)."""
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]


class SecretKeyRef(Spec):
    """A key of a Kubernetes Secret. Secrets are only ever referenced, never inlined."""

    name: DnsSubdomain = Field(description="Secret name, in the evaluation's namespace.")
    key: str = Field(min_length=1, max_length=253, pattern=CONFIG_KEY, description="Key inside the Secret.")


class LocalObjectReference(Spec):
    """An object in the evaluation's namespace, by name (core/v1 LocalObjectReference)."""

    name: DnsSubdomain


class ModelSource(StrEnum):
    VLLM = "vllm"
    TRANSFORMERS = "transformers"
    OPENAI_COMPATIBLE = "openai-compatible"


class VllmSettings(Spec):
    """Arguments for `vllm serve` (ignored for API models)."""

    tensor_parallel_size: int = Field(
        1, ge=1, le=64, description="GPUs each layer is sharded over (vLLM --tensor-parallel-size)."
    )
    pipeline_parallel_size: int = Field(
        1,
        ge=1,
        le=64,
        description="Pipeline stages the layers are split into, each on tensorParallelSize GPUs (vLLM "
        "--pipeline-parallel-size). The server uses tensorParallelSize * pipelineParallelSize GPUs; "
        "across nodes, typically tensorParallelSize = resources.gpus and pipelineParallelSize = "
        "resources.nodes.",
    )
    max_model_len: int | None = Field(None, ge=256, description="Context length; vLLM's default if unset.")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = Field(
        "auto", description="Weights dtype (vLLM's --dtype choices)."
    )
    max_num_seqs: int = Field(
        256,
        ge=1,
        le=1024,
        description="vLLM --max-num-seqs (its default, passed explicitly); the client keeps as many "
        "requests in flight unless generation.concurrency says otherwise.",
    )
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    startup_timeout_seconds: int = Field(
        1800,
        ge=10,
        le=86400,
        description="Seconds the server may take to load the weights and answer its health check; "
        "past it the attempt fails quoting the server's last log lines. Across nodes the server is "
        "ready only once every node joined it.",
    )
    extra_args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Appended verbatim to `vllm serve` (bounded: the API server costs CEL rules by size).",
    )

    cel_rules = tuple(
        Rule(
            rule="!has(self.extraArgs) || "
            f"!self.extraArgs.exists(a, a == '{flag}' || a.startsWith('{flag}='))",
            message=f"model.vllm.extraArgs: use model.vllm.{field}, not {flag}",
            field_path=".extraArgs",
        )
        for flag, field in (
            ("--max-num-seqs", "maxNumSeqs"),
            ("--tensor-parallel-size", "tensorParallelSize"),
            ("--pipeline-parallel-size", "pipelineParallelSize"),
        )
    )


DEFAULT_SOURCE = ModelSource.VLLM
_API = ModelSource.OPENAI_COMPATIBLE.value
_SOURCE = f"(has(self.source) ? self.source : '{DEFAULT_SOURCE.value}')"
"""`model.source` as CEL sees it (the stored object has no defaults)."""

# ---- model names ------------------------------------------------------------------------------
# `model.name` ends up as an argument of `vllm serve` / `transformers serve` and in Hub requests: a
# value that is neither a Hub id nor a path (`--trust-remote-code`) would be read as a flag, or fail
# deep in huggingface_hub, long after admission. So it is checked by its source's syntax.

_HF_PART = r"[A-Za-z0-9_]([-A-Za-z0-9_.]{0,94}[A-Za-z0-9_])?"
HF_REPO_ID = f"^({_HF_PART}/)?{_HF_PART}$"
"""A Hugging Face Hub id, `name` or `org/name` (huggingface_hub's validate_repo_id): letters, digits,
'-', '_', '.', ≤96 per part, no '-' or '.' at either end; '--', '..' and a '.git' end are refused
by the rule beside it (RE2 has no look-ahead)."""
LOCAL_MODEL_PATH = r"^(/|\./|\.\./|~/)[^\x00-\x1f\x7f]*$"
"""A local model folder, written as a path: absolute, `./…`, `../…` or `~/…` (what preflight reads
as local); no control characters."""
API_MODEL_NAME = r"^[^-\x00-\x20\x7f][^\x00-\x20\x7f]*$"
"""An API's model name (`gpt-4o-2024-08-06`, `accounts/fireworks/models/x`, `claude-3-5-sonnet@…`):
anything printable without whitespace, not starting with '-'."""
MAX_API_MODEL_NAME = 256
MAX_MODEL_NAME = 4096
"""A path's bound (PATH_MAX); Hub ids and API names are shorter by their own rules."""
_NAME = "self.name"
_SERVED_NAME = (
    f"{_NAME}.matches({_cel_string(LOCAL_MODEL_PATH)}) || ({_NAME}.matches({_cel_string(HF_REPO_ID)}) "
    f"&& !{_NAME}.contains('--') && !{_NAME}.contains('..') && !{_NAME}.endsWith('.git'))"
)


# ---- where served weights come from -------------------------------------------------------------
# `model.storageUri` (KServe's convention) names what is loaded, fetched into a shared, verified cache
# before any GPU is held (`nejumi_eval.runtime.weights`); `model.name` stays the served model's name.

_HF_REVISION = r"[A-Za-z0-9_.][-A-Za-z0-9_./]{0,254}"
"""A Hub revision: a branch, a tag (`v1.0`), a pull request (`refs/pr/1`) or a commit sha."""
HF_STORAGE_URI = f"^hf://({_HF_PART}/)?{_HF_PART}(@{_HF_REVISION})?$"
"""hf://org/name[@revision] (a Hub id as `model.name` takes it)."""
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s?#]*)?$"
"""s3://bucket[/prefix]: an S3 bucket name (3–63 lower-case letters, digits, '.', '-') and a prefix."""
PVC_STORAGE_URI = r"^pvc://[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?(/[^\x00-\x1f\x7f]*)?$"
"""pvc://claim[/path]: a PersistentVolumeClaim (a DNS subdomain) and a folder on it."""
MAX_STORAGE_URI = 2048
_URI = "self.storageUri"
_STORAGE_URI_FORMS = (
    f"({_URI}.matches({_cel_string(HF_STORAGE_URI)}) && !{_URI}.contains('--') "
    f"&& !{_URI}.contains('..') && !{_URI}.endsWith('.git') && !{_URI}.contains('.git@'))"
    f" || {_URI}.matches({_cel_string(S3_URI)})"
    f" || ({_URI}.matches({_cel_string(PVC_STORAGE_URI)}) && !{_URI}.matches('/[.][.]?(/|$)'))"
)


class ModelSpec(Spec):
    """The model under test."""

    name: str = Field(
        min_length=1,
        max_length=MAX_MODEL_NAME,
        description="Served models (vllm, transformers): a Hugging Face model id (org/name) or a local "
        "path (/…, ./…, ../…, ~/…). openai-compatible: the API's model name. Never a flag.",
    )
    revision: str | None = Field(
        None,
        description="Model revision (commit/tag); part of the cache key. With an hf:// storageUri "
        "without @revision, the revision loaded.",
    )
    storage_uri: str | None = Field(
        None,
        max_length=MAX_STORAGE_URI,
        description="Served models: where the weights come from, fetched into a shared cache and "
        "verified before the server starts: hf://org/name[@revision], s3://bucket/path/ (a folder "
        "of weights) or pvc://claim/path (a folder on a PVC). model.name stays the served name.",
    )
    source: ModelSource = Field(DEFAULT_SOURCE, description="vllm, transformers (CPU) or openai-compatible.")
    endpoint: str | None = Field(
        None, description="Base URL of an OpenAI-compatible API: http(s)://host[:port]/…/v1."
    )
    api_key_secret_ref: SecretKeyRef | None = Field(None, description="API key (operator: mounted as env).")
    hf_token_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Hugging Face token for gated or private models (operator: mounted as $HF_TOKEN, "
        "which huggingface_hub and vLLM read; a local run reads $HF_TOKEN itself).",
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (local runs)."
    )
    mode: Literal["auto", "completion", "chat"] = Field(
        "auto",
        description="jaster request mode: completion (raw prompt) for served models, chat for APIs; "
        "auto picks by source.",
    )
    chat_template: str | None = Field(
        None, description="Path of a Jinja chat template for models that have none (MT-bench)."
    )
    vllm: VllmSettings = Field(default_factory=VllmSettings)

    cel_rules = (
        Rule(
            rule=f"{_SOURCE} == '{_API}' || {_SERVED_NAME}",
            message="model.name must be a Hugging Face model id (name or org/name: letters, digits, "
            "'-', '_', '.', at most 96 each, no '--', '..' or '.git' end) or a local path "
            "(/…, ./…, ../…, ~/…) when model.source is vllm or transformers; a flag is not a model",
            field_path=".name",
        ),
        Rule(
            rule=f"{_SOURCE} != '{_API}' || (size({_NAME}) <= {MAX_API_MODEL_NAME} "
            f"&& {_NAME}.matches({_cel_string(API_MODEL_NAME)}))",
            message=f"model.name must be the API's model name when model.source is {_API}: at most "
            f"{MAX_API_MODEL_NAME} characters, no whitespace or control characters, no leading '-'",
            field_path=".name",
        ),
        Rule(
            rule=f"{_SOURCE} != '{_API}' || (has(self.endpoint) && size(self.endpoint) > 0)",
            message=f"model.endpoint is required when model.source is {_API}",
            field_path=".endpoint",
            reason="FieldValueRequired",
        ),
        Rule(
            rule=f"{_SOURCE} == '{_API}' || !has(self.endpoint)",
            message=f"model.endpoint is only valid when model.source is {_API}",
            field_path=".endpoint",
            reason="FieldValueForbidden",
        ),
        Rule(
            rule=f"!has(self.endpoint) || size(self.endpoint) == 0 || {url_cel('self.endpoint')}",
            message="model.endpoint must be an http(s) URL: http(s)://host[:port]/path "
            "(no user info, query or fragment)",
            field_path=".endpoint",
        ),
        Rule(
            rule=f"{_SOURCE} != '{ModelSource.TRANSFORMERS.value}' || !has(self.vllm) "
            "|| !has(self.vllm.tensorParallelSize) || self.vllm.tensorParallelSize == 1",
            message="model.vllm.tensorParallelSize: transformers serve runs on one device; "
            "use model.source vllm to shard a model over GPUs",
            field_path=".vllm.tensorParallelSize",
        ),
        Rule(
            rule=f"{_SOURCE} != '{ModelSource.TRANSFORMERS.value}' || !has(self.vllm) "
            "|| !has(self.vllm.pipelineParallelSize) || self.vllm.pipelineParallelSize == 1",
            message="model.vllm.pipelineParallelSize: transformers serve runs on one device; "
            "use model.source vllm to split a model over GPUs",
            field_path=".vllm.pipelineParallelSize",
        ),
        Rule(
            rule=f"!has({_URI}) || {_SOURCE} != '{_API}'",
            message="model.storageUri is only valid when model.source is vllm or transformers "
            f"(an {_API} API serves its own weights)",
            field_path=".storageUri",
            reason="FieldValueForbidden",
        ),
        Rule(
            rule=f"!has({_URI}) || {_STORAGE_URI_FORMS}",
            message="model.storageUri must be hf://org/name[@revision] (a Hugging Face model id: no '--', "
            "'..' or '.git' end), s3://bucket/path/ or pvc://claim/path (no '.' or '..' segments)",
            field_path=".storageUri",
        ),
        Rule(
            rule=f"!has({_URI}) || !has(self.revision) "
            f"|| ({_URI}.startsWith('hf://') && !{_URI}.contains('@'))",
            message="model.revision: with model.storageUri, the revision is written once, in the URI "
            "(hf://org/name@revision) or in model.revision for an hf:// URI without one; an s3:// or "
            "pvc:// folder has none",
            field_path=".revision",
        ),
    )

    @property
    def request_mode(self) -> Literal["completion", "chat"]:
        """The jaster mode actually used (protocol-jaster §5)."""
        if self.mode != "auto":
            return self.mode
        return "chat" if self.source == ModelSource.OPENAI_COMPATIBLE else "completion"


JASTER_TASKS = "jaster_tasks.json"
"""jaster's task table (datasets, categories, metrics, templates): protocol data, so part of the API
— the dataset names are this version's enum — and read by the jaster benchmark from here."""


def _jaster_dataset_names() -> tuple[str, ...]:
    """The dataset names of the jaster task table (the one place they are written down)."""
    text = resources.files("nejumi_eval.api.v1alpha1").joinpath(JASTER_TASKS).read_text("utf-8")
    return tuple(json.loads(text)["tasks"])


if TYPE_CHECKING:
    JasterDataset = str  # a Literal built at import is no static type
else:
    JasterDataset = Literal[_jaster_dataset_names()]
"""The 16 datasets of profile `neo` (an enum in the CRD), read from the task table."""


class BenchmarkSpec(Spec):
    """Base of every benchmark's section (`benchmarks.<name>`)."""

    enabled: bool = True

    @property
    def capped(self) -> bool:
        """Fewer samples or questions than the protocol: a smoke test (sections say which caps)."""
        return False

    def limit(self, n: int) -> None:
        """`nejumi-eval run --limit N`: cap the section for a smoke test (no-op without caps)."""


class JasterSpec(BenchmarkSpec):
    """llm-jp-eval "jaster": 16 datasets, zero-shot."""

    datasets: list[JasterDataset] | None = Field(
        None, min_length=1, description="Subset of dataset names; all 16 when unset."
    )
    test_samples: int | None = Field(
        None,
        ge=1,
        description="Cap on scored test samples per dataset (protocol: 100, wiki 20). "
        "A capped run is a smoke test, not a leaderboard score.",
    )
    dev_samples: int = Field(20, ge=0, description="Dev samples per dataset for the dev output table.")
    prompt_template: str = Field("alpaca-ja-v1.3.0", description="Prompt template name (versioned).")

    @property
    def capped(self) -> bool:
        return self.test_samples is not None

    def limit(self, n: int) -> None:
        self.test_samples = n


class JudgeSpec(Spec):
    """A benchmark's LLM judge: any OpenAI-compatible endpoint, or the built-in synthetic judge."""

    model: str = Field("gpt-4-0613", min_length=1)
    synthetic: bool = Field(
        False,
        description="Rate with nejumi's deterministic synthetic judge (no key, no network): a smoke test. "
        "Its ratings follow a fixed rule, are marked syntheticJudge everywhere, never MT-bench scores.",
    )
    endpoint: str | None = Field(
        None, max_length=MAX_URL, description="Base URL (http(s)://host[:port]/…); the OpenAI API when unset."
    )
    api_key_secret_ref: SecretKeyRef | None = None
    api_key_env: str | None = Field(
        None,
        description="Env var holding the judge's API key. Unset: $NEJUMI_JUDGE_API_KEY (where the operator "
        "mounts apiKeySecretRef), else $OPENAI_API_KEY when the endpoint is the OpenAI API, else no key.",
    )
    concurrency: int = Field(
        32, ge=1, le=256, description="Judge requests in flight (Nejumi 4's value; 429s back off)."
    )

    cel_rules = (
        Rule(
            rule="!has(self.synthetic) || !self.synthetic"
            " || (!has(self.endpoint) && !has(self.apiKeyEnv) && !has(self.apiKeySecretRef))",
            message="judge.synthetic runs in the evaluator: set no endpoint, apiKeyEnv or apiKeySecretRef",
            field_path=".synthetic",
        ),
        Rule(
            rule=f"!has(self.endpoint) || {url_cel('self.endpoint')}",
            message="judge.endpoint must be an http(s) URL: http(s)://host[:port]/path "
            "(no user info, query or fragment)",
            field_path=".endpoint",
        ),
    )


class MtbenchSpec(BenchmarkSpec):
    """MT-bench-jp: 80 two-turn questions judged 1–10."""

    variant: Literal["neo", "head"] = "neo"
    judge: JudgeSpec | None = Field(None, description="No judge: answers are generated, not judged.")
    questions_per_category: int | None = Field(
        None, ge=1, le=10, description="Cap: the first N questions of each category (smoke tests only)."
    )

    @property
    def capped(self) -> bool:
        return self.questions_per_category is not None

    def limit(self, n: int) -> None:
        self.questions_per_category = min(n, 10)


PluginSections = Callable[[], Mapping[str, type[BenchmarkSpec]]]
_plugin_sections: PluginSections | None = None


def use_plugin_sections(catalog: PluginSections) -> None:
    """Install where plugin benchmarks' spec sections come from: name → the plugin's spec model.
    The benchmark registry installs itself when it is imported, so the API validates a plugin's
    section with the plugin's own model and never imports the registry (nor any benchmark)."""
    global _plugin_sections
    _plugin_sections = catalog


def _benchmarks_schema_extra(schema: dict[str, Any], cls: type) -> None:
    _schema_extra(schema, cls)
    schema["additionalProperties"] = False  # the CRD knows the built-ins only


NO_BENCHMARK = "benchmarks: enable at least one benchmark (every section says enabled: false)"


class BenchmarksSpec(Spec):
    """One section per benchmark, by name; a plugin's section is validated by its own spec model."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_benchmarks_schema_extra)

    jaster: JasterSpec = Field(default_factory=JasterSpec)
    mtbench: MtbenchSpec = Field(default_factory=MtbenchSpec)

    cel_rules = (
        Rule(
            rule=" || ".join(
                f"!has(self.{name}) || !has(self.{name}.enabled) || self.{name}.enabled"
                for name in ("jaster", "mtbench")  # the fields above: an unwritten section is enabled
            ),
            message=NO_BENCHMARK,
            # The API server knows only the built-in sections; the evaluator also counts plugins'
            # (`_at_least_one`, the same message), so this expression is not evaluated locally.
            local=False,
        ),
    )

    @model_validator(mode="after")
    def _plugin_sections(self) -> BenchmarksSpec:
        extra = self.__pydantic_extra__ or {}
        if not extra:
            return self
        plugins = dict(_plugin_sections()) if _plugin_sections is not None else {}
        for name, value in extra.items():
            if name not in plugins:
                known = ", ".join([*type(self).model_fields, *plugins])
                raise ValueError(f"unknown benchmark {name!r}; known: {known}")
            extra[name] = plugins[name].model_validate(value)
        return self

    @model_validator(mode="after")
    def _at_least_one(self) -> BenchmarksSpec:
        if not self.enabled():
            raise ValueError(NO_BENCHMARK)
        return self

    def sections(self) -> dict[str, BenchmarkSpec]:
        """Every section by name (built-ins first), enabled or not."""
        out: dict[str, BenchmarkSpec] = {name: getattr(self, name) for name in type(self).model_fields}
        out.update(self.__pydantic_extra__ or {})
        return out

    def enabled(self) -> dict[str, BenchmarkSpec]:
        return {name: section for name, section in self.sections().items() if section.enabled}

    def judges(self) -> dict[str, JudgeSpec]:
        """The judge of every enabled benchmark that has one, by benchmark name."""
        out = {}
        for name, section in self.enabled().items():
            judge = getattr(section, "judge", None)
            if isinstance(judge, JudgeSpec):
                out[name] = judge
        return out


class GenerationSpec(Spec):
    """How requests are sent to the model under test."""

    concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Requests in flight (the server batches them). Unset: vLLM's maxNumSeqs, 8 for "
        "transformers (CPU), 32 for an API.",
    )
    request_timeout_seconds: float = Field(600, gt=0)
    max_retries: int = Field(6, ge=0, le=20)
    max_new_tokens_cap: int | None = Field(
        None,
        ge=1,
        description="Cap on every request's max new tokens (smoke tests only; results are marked capped).",
    )


class WandbSpec(Spec):
    enabled: bool = True
    entity: str | None = None
    project: str = "nejumi-leaderboard"
    run_name: str | None = None
    mode: Literal["online", "offline"] = "offline"
    api_key_secret_ref: SecretKeyRef | None = None


class ResultsCredentialsRef(Spec):
    """A Secret holding an S3 access key pair (the store's keys are only ever referenced)."""

    name: DnsSubdomain = Field(description="Secret name, in the evaluation's namespace.")
    access_key_id_key: str = Field(
        "AWS_ACCESS_KEY_ID",
        min_length=1,
        max_length=253,
        pattern=CONFIG_KEY,
        description="Key of the access key id in the Secret.",
    )
    secret_access_key_key: str = Field(
        "AWS_SECRET_ACCESS_KEY",
        min_length=1,
        max_length=253,
        pattern=CONFIG_KEY,
        description="Key of the secret access key in the Secret.",
    )


class ConfigMapKeyRef(Spec):
    """A key of a ConfigMap in the evaluation's namespace."""

    name: DnsSubdomain
    key: str = Field("ca.crt", min_length=1, max_length=253, pattern=CONFIG_KEY)


class ResultsSpec(Spec):
    """Where the results of record go: an S3-compatible object store (AWS S3, MinIO, Ceph RGW,
    versitygw…). The workspace keeps its copy; the store is what the leaderboard reads once the
    evaluation and its volume are gone. Unset `uri`: the operator's default (the chart's
    `results`), else the workspace only. The layout under `uri` is `nejumi_eval.api.v1alpha1.results`."""

    uri: str | None = Field(
        None,
        max_length=1024,
        pattern=S3_URI,
        description="s3://bucket[/prefix]. Each evaluation gets its own prefix under it "
        "(<namespace>/<name>/<generation> in the cluster, <model>/<time> for local runs).",
    )
    endpoint: str | None = Field(
        None,
        max_length=MAX_URL,
        description="The S3 API's URL for a store other than AWS (MinIO, Ceph…): http(s)://host[:port]. "
        "Unset: AWS S3 (locally: $AWS_ENDPOINT_URL).",
    )
    region: str | None = Field(
        None, max_length=64, pattern=r"^[a-z0-9-]+$", description="Unset: $AWS_REGION, else us-east-1."
    )
    credentials_secret_ref: ResultsCredentialsRef | None = Field(
        None,
        description="The Secret with the access key pair (operator: mounted as $AWS_ACCESS_KEY_ID and "
        "$AWS_SECRET_ACCESS_KEY; a local run reads those variables itself).",
    )
    ca_bundle_ref: ConfigMapKeyRef | None = Field(
        None,
        description="A ConfigMap key holding the PEM CA bundle of a store with a private CA (operator: "
        "mounted as $AWS_CA_BUNDLE; a local run reads $AWS_CA_BUNDLE itself).",
    )
    path_style: bool | None = Field(
        None,
        description="Path-style addressing (https://host/bucket/key), as MinIO and Ceph need. Unset: "
        "path-style with an endpoint, virtual-hosted style on AWS.",
    )

    cel_rules = (
        Rule(
            rule="has(self.uri) || !(has(self.endpoint) || has(self.region) "
            "|| has(self.credentialsSecretRef) || has(self.caBundleRef) || has(self.pathStyle))",
            message="results: endpoint, region, credentialsSecretRef, caBundleRef and pathStyle go with "
            "uri (without uri the operator's default destination is used as a whole)",
            field_path=".uri",
        ),
        Rule(
            rule=f"!has(self.endpoint) || {url_cel('self.endpoint')}",
            message="results.endpoint: an http(s) URL, http(s)://host[:port]",
            field_path=".endpoint",
        ),
    )


class WorkspaceSpec(Spec):
    """Where the response cache and results live (a PVC in the cluster: survives pod retries)."""

    path: str = Field("workspace", description="Local folder (evaluator).")
    pvc_name: DnsSubdomain | None = Field(None, description="Existing PVC to mount (operator).")
    size: Quantity | None = Field(
        None,
        description="Size of the PVC the operator creates when pvcName is unset (unset: the "
        "operator's default, e.g. 50Gi).",
    )
    storage_class_name: DnsSubdomain | None = Field(
        None,
        description="StorageClass of the PVC the operator creates (unset: the operator's setting, "
        "else the cluster's default class).",
    )
    retain: bool = Field(
        False,
        description="Keep the PVC the operator creates when the evaluation is deleted (no "
        "ownerReference); false: it is garbage-collected with the evaluation.",
    )

    cel_rules = (
        Rule(
            rule="!has(self.pvcName) || !has(self.size)",
            message="workspace: set pvcName (an existing PVC) or size (of one the operator provides), "
            "not both",
            field_path=".size",
        ),
        Rule(
            rule="!has(self.pvcName) || !has(self.storageClassName)",
            message="workspace: storageClassName is for the PVC the operator provides, not with pvcName",
            field_path=".storageClassName",
        ),
        Rule(
            rule="!has(self.pvcName) || !has(self.retain) || !self.retain",
            message="workspace: retain is for the PVC the operator provides (an existing pvcName is "
            "never deleted by the operator)",
            field_path=".retain",
        ),
    )


class Toleration(Spec):
    """A pod toleration (core/v1 Toleration), e.g. for tainted GPU nodes."""

    key: str | None = Field(None, max_length=317, description="Taint key; empty with operator Exists: any.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Equal when unset.")
    value: str | None = Field(None, max_length=63, pattern=LABEL_VALUE)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(None, description="With effect NoExecute: how long to stay.")

    cel_rules = (
        Rule(
            rule=f"!has(self.key) || size(self.key) == 0 || ({label_key_cel('self.key')})",
            message="toleration key must be a label key: [prefix/]name, the prefix a DNS subdomain, "
            "the name at most 63 alphanumerics, '-', '_' or '.'",
            field_path=".key",
        ),
        Rule(
            rule="(has(self.key) && size(self.key) > 0) || (has(self.operator) && self.operator == 'Exists')",
            message="a toleration without a key must have operator Exists (it then tolerates every taint)",
            field_path=".operator",
        ),
        Rule(
            rule="!has(self.operator) || self.operator != 'Exists' "
            "|| !has(self.value) || size(self.value) == 0",
            message="a toleration with operator Exists must have no value",
            field_path=".value",
        ),
        Rule(
            rule="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="tolerationSeconds is only valid with effect NoExecute",
            field_path=".tolerationSeconds",
        ),
    )


DEFAULT_GPUS = {ModelSource.VLLM: 1, ModelSource.TRANSFORMERS: 1, ModelSource.OPENAI_COMPATIBLE: 0}
"""`resources.gpus` when unset, by `model.source`: an API needs no GPU."""
MAX_DEADLINE_SECONDS = 30 * 24 * 3600


class ResourcesSpec(Spec):
    """The evaluator pod: resources, placement and scheduling (operator only; the evaluator ignores
    them, but for `nodes`: it serves on its own host, so it refuses more than one)."""

    gpus: int = Field(
        DEFAULT_GPUS[DEFAULT_SOURCE],
        ge=0,
        le=64,
        description="nvidia.com/gpu for the pod: the GPUs of one node (with resources.nodes > 1, each "
        "node's pod asks for this many). Unset: 1 for vllm and transformers, 0 for openai-compatible.",
    )
    nodes: int = Field(
        1,
        ge=1,
        le=64,
        description="Nodes the served model spans, each with resources.gpus GPUs (vllm only; then "
        "model.vllm.tensorParallelSize * pipelineParallelSize = gpus * nodes). 1: one pod on one "
        "node. More: the serve stage is a LeaderWorkerSet group of this many pods, one per node, "
        "admitted whole by Kueue (LeaderWorkerSet must be installed; the workspace is ReadWriteMany).",
    )
    memory: Quantity | None = Field(None, description="Memory request and limit, e.g. 64Gi.")
    cpu: Quantity | None = Field(None, description="CPU request (no limit), e.g. 8 or 500m.")
    shm_size: Quantity | None = Field(
        None,
        description="Size of the memory-backed /dev/shm (vLLM tensor parallelism needs shared memory). "
        "Unset: 2Gi per GPU, 1Gi without GPUs.",
    )
    active_deadline_seconds: int | None = Field(
        None,
        ge=1,
        le=MAX_DEADLINE_SECONDS,
        description="The Job's activeDeadlineSeconds: the evaluation fails (DeadlineExceeded) after this "
        "long, retries included, so a hung server does not hold GPUs forever. Unset: 86400 (24 h).",
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]] = Field(
        default_factory=dict, max_length=64, description="Node labels the pod must match (label keys/values)."
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    priority_class_name: DnsSubdomain | None = Field(None, description="The pod's PriorityClass.")
    runtime_class_name: DnsSubdomain | None = Field(
        None, description="The pod's RuntimeClass (e.g. nvidia where that runtime is not the default)."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets for pulling the evaluator image, in the evaluation's namespace.",
    )

    cel_rules = (
        Rule(
            rule=f"!has(self.nodeSelector) || self.nodeSelector.all(k, {label_key_cel('k')})",
            message="resources.nodeSelector keys must be label keys: [prefix/]name, the prefix a DNS "
            "subdomain, the name at most 63 alphanumerics, '-', '_' or '.'",
            field_path=".nodeSelector",
        ),
        # gpus unset is the source's default: 1 for vllm; for another source nodes > 1 is refused
        # by EvaluationSpec's rule, which knows the source.
        Rule(
            rule="!has(self.nodes) || self.nodes == 1 || !has(self.gpus) || self.gpus >= 1",
            message="resources.gpus: a model on more than one node (resources.nodes > 1) needs at "
            "least one GPU per node",
            field_path=".gpus",
        ),
    )


# ---- GPUs: how many a vllm server uses, on how many nodes ---------------------------------------
# vLLM's world size is tensorParallelSize * pipelineParallelSize GPUs, and it refuses to start on
# fewer. On one node it takes the first world-size GPUs of the pod, so more are admitted, as they
# were before pipelines (a spec admitted then is admitted now; the rest sit idle). Across nodes each
# node runs world size / nodes ranks on its own GPUs, so the product must be every GPU of every node:
# a remainder would fail at start, a surplus hold GPUs of several nodes for nothing. Written over the
# stored object, which has no defaults.
_MODEL_SOURCE = f"(has(self.model.source) ? self.model.source : '{DEFAULT_SOURCE.value}')"
_NODES = "(has(self.resources) && has(self.resources.nodes) ? self.resources.nodes : 1)"
_GPUS = (
    "(has(self.resources) && has(self.resources.gpus) ? self.resources.gpus : "
    f"{DEFAULT_GPUS[ModelSource.VLLM]})"
)
_WORLD_SIZE = (
    "(has(self.model.vllm) && has(self.model.vllm.tensorParallelSize) "
    f"? self.model.vllm.tensorParallelSize : {VllmSettings.model_fields['tensor_parallel_size'].default}) * "
    "(has(self.model.vllm) && has(self.model.vllm.pipelineParallelSize) "
    f"? self.model.vllm.pipelineParallelSize : {VllmSettings.model_fields['pipeline_parallel_size'].default})"
)
_NOT_VLLM = f"{_MODEL_SOURCE} != '{ModelSource.VLLM.value}'"


class EvaluationSpec(Spec):
    """One evaluation of one model. In the cluster an edit of the spec is a new generation: the
    operator stops the previous generation's Job and evaluates again on the same workspace, whose
    response cache serves every request the edit did not change (GitOps: a commit that bumps
    `model.revision` or changes the judge re-evaluates; nothing needs a delete and re-create)."""

    cel_rules = (
        Rule(
            rule="has(self.workspace) == has(oldSelf.workspace) && "
            "(!has(self.workspace) || self.workspace == oldSelf.workspace)",
            message="spec.workspace is immutable: an edit re-evaluates on the same workspace (its "
            "response cache serves every request the edit did not change); to use another workspace "
            "create a new NejumiEvaluation",
            field_path=".workspace",
        ),
        Rule(
            rule=f"{_NOT_VLLM} || {_NODES} > 1 || {_GPUS} >= {_WORLD_SIZE}",
            message="resources.gpus must be at least model.vllm.tensorParallelSize * "
            "model.vllm.pipelineParallelSize for a vllm model on one node",
            field_path=".resources.gpus",
            local=False,  # one node's pod resources: a local run serves on its host's GPUs
        ),
        Rule(
            rule=f"{_NOT_VLLM} || {_NODES} == 1 || {_WORLD_SIZE} == {_GPUS} * {_NODES}",
            message="resources.nodes: a vllm model on more than one node uses every GPU of every node: "
            "model.vllm.tensorParallelSize * model.vllm.pipelineParallelSize must equal "
            "resources.gpus (per node) * resources.nodes",
            field_path=".resources.nodes",
        ),
        Rule(
            rule=f"{_NODES} == 1 || {_MODEL_SOURCE} == '{ModelSource.VLLM.value}'",
            message="resources.nodes: more than one node only with model.source vllm (transformers "
            "serves on one device; an openai-compatible API serves itself)",
            field_path=".resources.nodes",
            reason="FieldValueForbidden",
        ),
        # In the cluster an environment variable is the operator's (the chart's evaluator.env), not
        # the evaluation creator's: naming one would read a key its creator was never given.
        Rule(
            rule="!has(self.model.apiKeyEnv)",
            message="model.apiKeyEnv is for local runs (nejumi-eval run); in the cluster name the "
            "key's Secret with model.apiKeySecretRef",
            field_path=".model.apiKeyEnv",
            reason="FieldValueForbidden",
            local=False,
        ),
        Rule(
            rule="!has(self.benchmarks) || !has(self.benchmarks.mtbench) || "
            "!has(self.benchmarks.mtbench.judge) || !has(self.benchmarks.mtbench.judge.apiKeyEnv)",
            message="benchmarks.mtbench.judge.apiKeyEnv is for local runs (nejumi-eval run); in the "
            "cluster name the key's Secret with judge.apiKeySecretRef",
            field_path=".benchmarks.mtbench.judge.apiKeyEnv",
            reason="FieldValueForbidden",
            local=False,
        ),
    )

    model: ModelSpec
    benchmarks: BenchmarksSpec = Field(default_factory=BenchmarksSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    wandb: WandbSpec = Field(default_factory=WandbSpec)
    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    results: ResultsSpec = Field(default_factory=ResultsSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    queue_name: str | None = Field(
        None,
        max_length=63,
        pattern=DNS_SUBDOMAIN,
        description="Kueue LocalQueue (a label value and an object name); the Job is labelled for it.",
    )
    workload_priority_class_name: str | None = Field(
        None,
        max_length=63,
        pattern=DNS_SUBDOMAIN,
        description="Kueue WorkloadPriorityClass of the Job (label kueue.x-k8s.io/priority-class): "
        "its place in the queue and whom it may preempt. Subject to the operator's policy.",
    )
    summary_path: str | None = Field(
        None, description="Where to write the compact JSON summary (the pod's termination message)."
    )

    @model_validator(mode="after")
    def _default_gpus(self) -> EvaluationSpec:
        """`resources.gpus` unset: the source's default (0 for an API), so `resources.gpus` is the
        number the pod requests."""
        if "gpus" not in self.resources.model_fields_set:
            self.resources.gpus = DEFAULT_GPUS[self.model.source]
            self.resources.model_fields_set.discard("gpus")  # still "as written": unset
        return self


class ConfigError(ValueError):
    """A config that cannot be run; the message names the offending field (exit 2)."""

    nejumi_exit_code = EXIT_CONFIG


def _field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """`model.vllm.tensorParallelSize`; `prefix` (e.g. `spec` in a manifest) goes in front."""
    parts = [prefix] if prefix else []
    parts.extend(str(p) for p in loc)
    return ".".join(parts) or "(root)"


def _alternatives(tp: Any) -> list[Any]:
    """The types a value of annotation `tp` may have: Annotated and Optional peeled, unions split."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _alternatives(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [alt for arg in typing.get_args(tp) if arg is not type(None) for alt in _alternatives(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _field_named(model: type[BaseModel], key: object) -> Any:
    """The annotation of `model`'s field written `key` (its camelCase alias or its Python name)."""
    for name, field in model.model_fields.items():
        if key in (field.alias, name):
            return field.annotation
    return None


def _step(tp: Any, part: int | str) -> Any:
    """One step along an error `loc`: the annotation of what `part` names inside a `tp` value."""
    alternatives = _alternatives(tp)
    for alt in alternatives:
        if len(alternatives) > 1 and getattr(alt, "__name__", None) == part:
            return alt  # pydantic names the union member it tried
        if _is_model(alt):
            found = _field_named(alt, part)
            if found is not None:
                return found
            continue
        origin, args = typing.get_origin(alt), typing.get_args(alt)
        if origin in (list, set, frozenset, collections.abc.Sequence) and isinstance(part, int) and args:
            return args[0]
        if origin is tuple and isinstance(part, int) and args:
            if len(args) == 2 and args[1] is Ellipsis:
                return args[0]
            return args[part] if part < len(args) else None
        if origin in (dict, collections.abc.Mapping) and len(args) == 2:
            return args[1]
    return None


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The spec model that validates the object at `loc` (from EvaluationSpec), if it can be told."""
    tp: Any = EvaluationSpec
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    models = [alt for alt in _alternatives(tp) if _is_model(alt)]
    return models[0] if len(models) == 1 else None


def _normal(name: str) -> str:
    """Spelling-insensitive form: `test_samples`, `test-samples` and `testSamples` compare equal."""
    return name.replace("_", "").replace("-", "").lower()


def _close(key: str, names: list[str], cutoff: float) -> list[str]:
    """`names` that look like a misspelling of `key` (or that `key` abbreviates), closest first."""
    by_normal = {_normal(n): n for n in names}
    wanted = _normal(key)
    scored = sorted(((difflib.SequenceMatcher(None, wanted, n).ratio(), n) for n in by_normal), reverse=True)
    best = scored[0][0] if scored else 0.0
    # Only the clear winners: `testSample` suggests testSamples, not devSamples as well.
    close = [n for ratio, n in scored if ratio >= cutoff and ratio >= best - 0.1]
    if len(wanted) >= 4:
        close += [n for n in by_normal if n.startswith(wanted) and n not in close]
    return [by_normal[n] for n in close[:3]]


def _field_aliases(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """` (did you mean testSamples?)` for an unknown key at `loc`, or "" when nothing is close.

    Candidates are the camelCase field names of the model at that place; failing those, a field of
    one of its sub-sections (`model.tensorParallelSize` -> `vllm.tensorParallelSize`)."""
    if not loc:
        return ""
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    key = str(loc[-1])
    names = _close(key, _field_aliases(model), cutoff=0.6)
    if not names:
        for name, field in model.model_fields.items():
            for sub in _alternatives(field.annotation):
                if _is_model(sub) and sub is not model:
                    section = field.alias or name
                    names += [f"{section}.{n}" for n in _close(key, _field_aliases(sub), cutoff=0.8)]
    if not names:
        return ""
    shown = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f" (did you mean {shown}?)"


def _error_line(err: Any, prefix: str) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        # The value of a misnamed key is beside the point; its likely intended name is not.
        return f"  {_field_path(loc, prefix)}: {err['msg']}{_did_you_mean(loc)}"
    got = err.get("input")
    shown = f" (got {got!r})" if isinstance(got, str | int | float) and len(repr(got)) < 80 else ""
    return f"  {_field_path(loc, prefix)}: {err['msg']}{shown}"


def parse_spec(data: object, source: str = "config", *, path_prefix: str = "") -> EvaluationSpec:
    """Validate a decoded YAML/JSON document; errors name each bad field by its dotted path.

    `path_prefix` goes in front of every path: `spec` when `data` is a NejumiEvaluation's spec, so
    errors read `spec.model.endpoint`, as kubectl reports them. An unknown key gets the closest valid
    field name(s) of its section: `benchmarks.jaster.testSample: ... (did you mean testSamples?)`.
    """
    try:
        return EvaluationSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid evaluation spec"]
        lines.extend(_error_line(err, path_prefix) for err in exc.errors())
        raise ConfigError("\n".join(lines)) from None


def load_spec(path: str | Path) -> EvaluationSpec:
    """Read a YAML config file. A NejumiEvaluation manifest is accepted too (its `spec` is used,
    and errors name fields as `spec.model.…`, the way kubectl does)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and data.get("kind") == "NejumiEvaluation":
        return parse_spec(data.get("spec"), source=str(path), path_prefix="spec")
    return parse_spec(data, source=str(path))
