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
- `enabled: false` lifts every limit (a cluster whose evaluation creators are all trusted).

The chart enforces them twice: a ValidatingAdmissionPolicy refuses a spec at admission naming the
field and the allow-list (templates/policy/), and the operator (this module, the same values in
`$NEJUMI_OPERATOR_POLICY`) refuses it in status before any pod exists — for an operator run
without the chart, or a cluster where the admission policy is not installed.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from nejumi_eval.api.v1alpha1.spec import EvaluationSpec

TRUST_REMOTE_CODE = "--trust-remote-code"


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
        return out

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


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
