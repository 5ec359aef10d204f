"""Benchmarks by name (inspect_ai's registry, kept small).

Built-ins are named here with where they live and imported on first use (the operator and
`nejumi-eval schema` never pay for them). A plugin registers itself with `@register` in a module
that is imported through the `nejumi.benchmarks` entry-point group of an installed package, or
through `$NEJUMI_BENCHMARKS` (comma-separated module names), e.g. a benchmark that lives in tests.
Its spec section is `benchmarks.<name>`, validated by its own `spec_model`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, TypeVar

from nejumi_eval.api.v1alpha1 import spec
from nejumi_eval.benchmarks.reading import Labels, Reading

if TYPE_CHECKING:
    from nejumi_eval.benchmarks.base import Benchmark

PLUGINS_ENV = "NEJUMI_BENCHMARKS"
ENTRY_POINT_GROUP = "nejumi.benchmarks"

BUILTIN: dict[str, str] = {
    "jaster": "nejumi_eval.benchmarks.jaster.benchmark",
    "mtbench": "nejumi_eval.benchmarks.mtbench.benchmark",
}
"""Name → module that registers it, in report order."""

_registered: dict[str, Benchmark] = {}
_plugins_loaded = False

B = TypeVar("B")


def register(cls: type[B]) -> type[B]:
    """Class decorator: register one benchmark under its `name`. A class that declares no
    `reading` is refused here, at import, rather than when a leaderboard first reads it."""
    name = cls.name  # type: ignore[attr-defined]
    if not hasattr(cls, "reading"):
        raise TypeError(
            f"benchmark {name!r} ({cls.__module__}) declares no `reading` "
            "(nejumi_eval.benchmarks.reading; None: ranked by its recorded score alone)"
        )
    existing = _registered.get(name)
    if existing is not None and type(existing) is not cls:
        raise ValueError(
            f"benchmark {name!r} is registered twice ({type(existing).__module__}, {cls.__module__})"
        )
    _registered[name] = cls()  # type: ignore[assignment]
    return cls


def load_plugins() -> None:
    """Import every plugin module once (entry points, then $NEJUMI_BENCHMARKS)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        importlib.import_module(module)


def names() -> list[str]:
    """Every benchmark: built-ins in report order, then plugins in registration order."""
    load_plugins()
    return [*BUILTIN, *(n for n in _registered if n not in BUILTIN)]


def plugin_names() -> list[str]:
    load_plugins()
    return [n for n in _registered if n not in BUILTIN]


def get(name: str) -> Benchmark:
    if name in BUILTIN and name not in _registered:
        importlib.import_module(BUILTIN[name])
    if name not in _registered:
        load_plugins()
    try:
        return _registered[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(names())}") from None


def reading(name: str) -> Reading | None:
    """How `name`'s tables are read back; None for a benchmark without a reader, or one this
    process does not know (a summary written with a plugin that is not installed here)."""
    try:
        return get(name).reading
    except KeyError:
        return None


def labels(name: str) -> Labels:
    """How people read `name`'s per-question results; generic ones where it has no reader."""
    found = reading(name)
    return found.labels if found is not None else Labels(heading=name)


def plugin_spec_models() -> Mapping[str, type[spec.BenchmarkSpec]]:
    """Each plugin's spec section model, by name (what `benchmarks.<plugin>` is validated with)."""
    return {name: get(name).spec_model for name in plugin_names()}


spec.use_plugin_sections(plugin_spec_models)
