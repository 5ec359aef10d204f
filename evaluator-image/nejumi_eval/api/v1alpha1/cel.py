"""CEL validation rules, written once next to the model they constrain.

A rule is a CEL expression over `self` (the object as written, without defaults, as the API server
stores it). The CRD generator copies each model's rules into its `x-kubernetes-validations`, so a
bad spec fails at `kubectl apply`; the evaluator evaluates the same expressions with cel-python on
the same object, so a local config fails the same way with the same message. Nothing is written
twice (a pydantic validator beside a CEL string could drift).

Transition rules (`oldSelf`) and cluster-only rules (`local=False`, e.g. about pod resources the
evaluator ignores) are checked by the API server only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class Rule:
    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None
    local: bool = True
    """Also evaluated by the evaluator (not only by the API server)."""

    def crd(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out

    @property
    def evaluated_locally(self) -> bool:
        return self.local and "oldSelf" not in self.rule


_compiling = threading.Lock()
"""cel-python builds its parser, a process-wide singleton, on first use and without a lock: threads
validating at once (an operator's handlers) would each build one, some 30 MB of memory apiece while
it is built. One compilation at a time; evaluating a compiled rule needs no lock."""


@cache
def _program(rule: str) -> Any:
    import celpy

    with _compiling:
        env = celpy.Environment()
        return env.program(env.compile(rule))


def prepare() -> None:
    """Build cel-python's parser now (once per process), e.g. before threads validate."""
    import celpy

    with _compiling:
        celpy.Environment()


def broken(rules: tuple[Rule, ...], obj: dict[str, Any], *, cluster: bool = False) -> list[Rule]:
    """The rules `obj` (camelCase, as written) breaks, of those evaluated locally; with `cluster`, of
    the API server's own (`local=False`) too, as the operator applies them to an object a CRD older
    than the operator admitted. Transition rules are never evaluated here (there is no old object)."""
    import celpy

    activation = {"self": celpy.json_to_cel(obj)}
    out = []
    for r in rules:
        applies = r.evaluated_locally or (cluster and "oldSelf" not in r.rule)
        if applies and not bool(_program(r.rule).evaluate(activation)):
            out.append(r)
    return out


def failures(rules: tuple[Rule, ...], obj: dict[str, Any], *, cluster: bool = False) -> list[str]:
    """The messages of the rules `obj` (camelCase, as written) breaks (`broken`)."""
    return [r.message for r in broken(rules, obj, cluster=cluster)]
