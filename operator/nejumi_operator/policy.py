"""What a NejumiEvaluation may ask of the cluster: the allow-lists that stop a confused deputy.

Whoever may create an evaluation gets a Job created by the operator, under the operator's rights.
Without limits they could place pods where they could not place their own (tolerate any taint,
select any node, pick a privileged runtime or a preempting priority) or run code from a model
repository (`--trust-remote-code`). The cluster admin decides, in the chart's `policy` values:

- `tolerations`: the tolerations a spec may carry (an exact match on key, operator, value and effect);
  default: the GPU taint the chart knows, `nvidia.com/gpu` Exists NoSchedule;
- `nodeSelector`: label key → allowed values (`[]`: any value); default: none;
- `runtimeClassNames`, `priorityClassNames`, `workloadPriorityClassNames` (Kueue's: queue order and
  preemption): default none;
- `vllmExtraArgs`: flags `model.vllm.extraArgs` may use (`--flag`, `--flag=value`, or `--flag value`;
  `_` and `-` are one character to vLLM); default none;
- `allowTrustRemoteCode`: whether `--trust-remote-code` is allowed at all; default false;
- `keyHosts`: the hosts an API key may be sent to (`model.endpoint` with `model.apiKeySecretRef`, a
  judge's `endpoint` with its `apiKeySecretRef`, a judge without an endpoint is the OpenAI API;
  `results.endpoint` with `results.credentialsSecretRef`, a store without an endpoint is AWS S3);
  an exact host or `*.suffix`; default: the well-known LLM APIs, AWS S3 and in-cluster Services;
- `usableSecrets`: Secret names any evaluation may reference without the Secret's own consent
  (below); default none;
- `leaderboardNamespaces`: the namespaces a NejumiLeaderboard may read besides its own
  (`spec.namespaces`), by the leaderboard's namespace (`"*"`: any leaderboard's; a value `["*"]`:
  any namespace); default none. A leaderboard shows what it reads (models, scores, questions and
  answers) to whoever may read the leaderboard: reading another team's namespace is the admin's call;
- `enabled: false` lifts every limit (a cluster whose evaluation creators are all trusted).

Secrets by consent. Whoever may create an evaluation may name a Secret the evaluator then reads
and sends as `Authorization: Bearer …` — without consent that turns "create evaluations" into "read
every Secret of the namespace". So a Secret is usable by evaluations only when it says so (label
`nejumi.wandb.ai/usable-by-evaluations: "true"`, set by whoever may write Secrets) or the chart's
`policy.usableSecrets` names it; and a key goes only to a host in `policy.keyHosts`. The operator
checks the label before any pod exists, reading the Secret's metadata only (`secret_problems`);
the admission policy checks the hosts. The operator's default results destination (the chart's
`results`, used when a spec names no `results.uri`) is not the spec's: the platform admin named its
Secret and its endpoint together, so neither is checked here — but a spec that names that Secret
for a destination of its own needs the Secret's consent like any other.

The chart enforces them twice: a ValidatingAdmissionPolicy refuses a spec at admission naming the
field and the allow-list (templates/policy/), and the operator (this module, the same values in
`$NEJUMI_OPERATOR_POLICY`) refuses it in status before any pod exists — for an operator run
without the chart, or a cluster where the admission policy is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.names import GROUP
from nejumi_eval.api.v1alpha1.spec import EvaluationSpec

TRUST_REMOTE_CODE = "--trust-remote-code"
LABEL_USABLE_BY_EVALUATIONS = f"{GROUP}/usable-by-evaluations"
"""On a Secret: `"true"` = evaluations of its namespace may reference it (the owner's consent)."""
OPENAI_API_HOST = "api.openai.com"
"""Where a judge without `endpoint` sends its key (the evaluator's default judge endpoint)."""
AWS_S3_HOST = "s3.amazonaws.com"
"""Where a results store without `endpoint` sends its key pair: AWS S3, in whichever region
(boto3 picks the regional host from `results.region`; this, S3's global endpoint, names them all).
No `*.amazonaws.com`: that suffix is also every EC2 instance's, load balancer's and API Gateway's
public name, hosts anyone can run a server on."""
DEFAULT_KEY_HOSTS = (
    OPENAI_API_HOST,
    "*.openai.azure.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "api.mistral.ai",
    "api.deepseek.com",
    "api.together.xyz",
    "api.fireworks.ai",
    "api.groq.com",
    "openrouter.ai",
    AWS_S3_HOST,
    "*.svc",  # in-cluster Services: <service>.<namespace>.svc
    "*.svc.cluster.local",
)
"""The hosts an API key may go to by default: well-known LLM APIs, AWS S3 and in-cluster Services."""


class AllowedToleration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def text(self) -> str:
        op = "Exists" if self.operator == "Exists" else f"={self.value}"
        return f"{self.key or '*'} {op}{(' ' + self.effect) if self.effect else ''}"


GPU_TOLERATION = AllowedToleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


class Policy(BaseModel):
    """The chart's `policy` values (camelCase JSON)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    enabled: bool = True
    """False: no limits (every creator of evaluations is trusted with what the operator may do)."""
    tolerations: list[AllowedToleration] = Field(default_factory=lambda: [GPU_TOLERATION])
    node_selector: dict[str, list[str]] = Field(default_factory=dict)
    runtime_class_names: list[str] = Field(default_factory=list)
    priority_class_names: list[str] = Field(default_factory=list)
    workload_priority_class_names: list[str] = Field(default_factory=list)
    vllm_extra_args: list[str] = Field(default_factory=list)
    allow_trust_remote_code: bool = False
    key_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_KEY_HOSTS))
    usable_secrets: list[str] = Field(default_factory=list)
    leaderboard_namespaces: dict[str, list[str]] = Field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: str) -> Policy:
        return cls.model_validate(json.loads(raw))

    def violations(self, spec: EvaluationSpec) -> list[str]:
        """One message per refused value, each naming the field and what is allowed."""
        if not self.enabled:
            return []
        out: list[str] = []
        r = spec.resources
        allowed = ", ".join(t.text() for t in self.tolerations) or "none"
        for i, t in enumerate(r.tolerations):
            if not any(_tolerates(a, t) for a in self.tolerations):
                out.append(
                    f"spec.resources.tolerations[{i}]: {_toleration_text(t)} is not in the operator's "
                    f"policy.tolerations (allowed: {allowed})"
                )
        for key, value in r.node_selector.items():
            values = self.node_selector.get(key)
            if values is None:
                keys = ", ".join(sorted(self.node_selector)) or "none"
                out.append(
                    f"spec.resources.nodeSelector.{key}: the key is not in the operator's "
                    f"policy.nodeSelector (allowed keys: {keys})"
                )
            elif values and value not in values:
                out.append(
                    f"spec.resources.nodeSelector.{key}: {value!r} is not allowed by the operator's "
                    f"policy.nodeSelector (allowed: {', '.join(values)})"
                )
        for field, name, allowed_names in (
            ("runtimeClassName", r.runtime_class_name, self.runtime_class_names),
            ("priorityClassName", r.priority_class_name, self.priority_class_names),
        ):
            if name and name not in allowed_names:
                out.append(
                    f"spec.resources.{field}: {name!r} is not in the operator's policy.{field}s "
                    f"(allowed: {', '.join(allowed_names) or 'none'})"
                )
        wpc, wpcs = spec.workload_priority_class_name, self.workload_priority_class_names
        if wpc and wpc not in wpcs:
            out.append(
                f"spec.workloadPriorityClassName: {wpc!r} is not in the operator's "
                f"policy.workloadPriorityClassNames (allowed: {', '.join(wpcs) or 'none'})"
            )
        flags = {_flag(f) for f in self.vllm_extra_args}
        for i, arg in enumerate(spec.model.vllm.extra_args):
            if not arg.startswith("-"):
                continue  # the value of the flag before it
            flag = _flag(arg)
            if flag == TRUST_REMOTE_CODE:
                if not self.allow_trust_remote_code:
                    out.append(
                        f"spec.model.vllm.extraArgs[{i}]: {TRUST_REMOTE_CODE} (running code from the model "
                        "repository) is not allowed: the operator's policy.allowTrustRemoteCode is false"
                    )
            elif flag not in flags:
                out.append(
                    f"spec.model.vllm.extraArgs[{i}]: {flag} is not in the operator's policy.vllmExtraArgs "
                    f"(allowed: {', '.join(sorted(flags)) or 'none'})"
                )
        out.extend(self._key_host_violations(spec))
        return out

    def _key_host_violations(self, spec: EvaluationSpec) -> list[str]:
        """Each API key sent to a host outside `keyHosts` (nothing is checked where no key goes)."""
        out = []
        allowed = ", ".join(self.key_hosts) or "none"
        for field, endpoint, secret in key_destinations(spec):
            host = endpoint_host(endpoint)
            if not any(host_matches(host, pattern) for pattern in self.key_hosts):
                out.append(
                    f"{field}: the key in Secret {secret} may not be sent to {host or endpoint!r}: "
                    f"the host is not in the operator's policy.keyHosts (allowed: {allowed})"
                )
        return out

    def secret_problems(
        self, spec: EvaluationSpec, labels_of: Callable[[str], dict[str, str] | None]
    ) -> list[str]:
        """One message per referenced Secret that evaluations may not use: it exists, but neither
        carries the consent label nor is named in `usableSecrets`. `labels_of(name)` gives a
        Secret's labels (None: it does not exist — not refused here: the caller waits for it)."""
        if not self.enabled:
            return []
        out = []
        for field, name in secret_refs(spec):
            if name in self.usable_secrets:
                continue
            found = labels_of(name)
            if found is not None and found.get(LABEL_USABLE_BY_EVALUATIONS) != "true":
                out.append(
                    f"{field}: Secret {name} is not usable by evaluations: it has no label "
                    f'{LABEL_USABLE_BY_EVALUATIONS}="true" and is not in the operator\'s '
                    "policy.usableSecrets (whoever owns the Secret gives that consent)"
                )
        return out

    def unreadable_namespaces(self, namespace: str, requested: list[str]) -> list[str]:
        """One message per namespace of a leaderboard's `spec.namespaces` the policy does not let a
        leaderboard in `namespace` read (its own is always readable)."""
        if not self.enabled:
            return []
        allowed = {*self.leaderboard_namespaces.get(namespace, []), *self.leaderboard_namespaces.get("*", [])}
        refused = [n for n in requested if n != namespace and "*" not in allowed and n not in allowed]
        if not refused:
            return []
        listed = ", ".join(sorted(allowed)) or "none"
        return [
            f"spec.namespaces: a leaderboard in namespace {namespace} may not read namespace {n}: it is "
            f"not in the operator's policy.leaderboardNamespaces for {namespace} (allowed: {listed})"
            for n in refused
        ]

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def secret_refs(spec: EvaluationSpec) -> list[tuple[str, str]]:
    """(field, Secret name) for every Secret whose value the evaluator reads."""
    out: list[tuple[str, str]] = []
    model = spec.model
    if model.api_key_secret_ref:
        out.append(("spec.model.apiKeySecretRef", model.api_key_secret_ref.name))
    if model.hf_token_secret_ref:
        out.append(("spec.model.hfTokenSecretRef", model.hf_token_secret_ref.name))
    for bench, judge in spec.benchmarks.judges().items():
        if judge.api_key_secret_ref:
            out.append((f"spec.benchmarks.{bench}.judge.apiKeySecretRef", judge.api_key_secret_ref.name))
    if spec.wandb.enabled and spec.wandb.api_key_secret_ref:
        out.append(("spec.wandb.apiKeySecretRef", spec.wandb.api_key_secret_ref.name))
    results = spec.results
    if results.uri and results.credentials_secret_ref:
        out.append(("spec.results.credentialsSecretRef", results.credentials_secret_ref.name))
    return out


def key_destinations(spec: EvaluationSpec) -> list[tuple[str, str, str]]:
    """(field, endpoint, Secret name) for every API key the evaluator sends to an endpoint the spec
    chooses: the model's (an API model), each judge's (the OpenAI API without an endpoint) and the
    results store's (AWS S3 without an endpoint). A store gets requests signed with the secret key
    rather than the key itself, but a signed request can be replayed to the real store for minutes
    and names the access key id: the same rule as an API key."""
    out: list[tuple[str, str, str]] = []
    model = spec.model
    if model.api_key_secret_ref and model.endpoint:
        out.append(("spec.model.endpoint", model.endpoint, model.api_key_secret_ref.name))
    for bench, judge in spec.benchmarks.judges().items():
        if judge.api_key_secret_ref and not judge.synthetic:
            endpoint = judge.endpoint or f"https://{OPENAI_API_HOST}/v1"
            out.append((f"spec.benchmarks.{bench}.judge.endpoint", endpoint, judge.api_key_secret_ref.name))
    results = spec.results
    if results.uri and results.credentials_secret_ref:
        endpoint = results.endpoint or f"https://{AWS_S3_HOST}"
        out.append(("spec.results.endpoint", endpoint, results.credentials_secret_ref.name))
    return out


def endpoint_host(endpoint: str) -> str:
    """The host an endpoint URL sends requests to, lower-case ("" if there is none)."""
    try:
        return (urlsplit(endpoint).hostname or "").lower()
    except ValueError:
        return ""


def host_matches(host: str, pattern: str) -> bool:
    """`pattern` is a host (`api.openai.com`) or `*.suffix` (any host ending in `.suffix`)."""
    pattern = pattern.lower()
    if pattern.startswith("*."):
        return bool(host) and host.endswith(pattern[1:])
    return host == pattern


def _flag(arg: str) -> str:
    """`--max_model_len=4096` → `--max-model-len` (vLLM's parser treats `_` as `-`)."""
    name = arg.split("=", 1)[0]
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


def _tolerates(allowed: AllowedToleration, t: Any) -> bool:
    return (
        (t.key or "") == allowed.key
        and (t.operator or "Equal") == allowed.operator
        and (t.value or "") == allowed.value
        and (t.effect or "") == allowed.effect
    )


def _toleration_text(t: Any) -> str:
    return AllowedToleration(
        key=t.key or "", operator=t.operator or "Equal", value=t.value or "", effect=t.effect or ""
    ).text()
