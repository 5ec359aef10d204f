"""Argo CD's health-check semantics, run with a real Lua 5.1 interpreter (lupa), for the chart's
`argocd/<group>/<Kind>/health.lua` (Argo CD's `resource_customizations` layout).

What Argo CD does (argoproj/argo-cd `util/lua/lua.go`, `util/lua/health_test.go`), and this does too:

- the script runs as a chunk with the object bound to the global `obj` (its YAML read as JSON: every
  number a float, timestamps strings), and returns a table `{status = …, message = …}`;
- it runs under gopher-lua, Lua 5.1: `lupa.lua51` here, so numbers print as gopher-lua prints them;
- from `argocd-cm` (`resource.customizations.health.<group>_<Kind>`) without
  `resource.customizations.useOpenLibs.<group>_<Kind>: "true"`, only the base, table and a safe
  `os` (time, date) libraries are open: no `string`, not even `("x"):len()`. `open_libs=False`
  runs it that way; built-in scripts get every library (`open_libs=True`);
- nil → an empty status; a status that is not one of Argo CD's → Unknown with its message;
- `health_test.yaml` lists `tests: [{healthStatus: {status, message}, inputPath}]`, compared whole.

With Argo CD's own CLI (`make argocd-health` builds it), every case also runs through
`argocd admin settings resource-overrides health` with the chart README's argocd-cm:

    python -m tests.support.argocd_health --argocd .cache/argocd-bin/<version>/argocd
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

from nejumi_eval.api.v1alpha1.names import GROUP, KIND
from tests.support.paths import REPO

CHART = REPO / "charts" / "nejumi-operator"
HEALTH_DIR = CHART / "argocd" / GROUP / KIND
CM_KEY = f"resource.customizations.health.{GROUP}_{KIND}"

HEALTH_STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
INVALID_HEALTH_STATUS = "Lua returned an invalid health status"

_BASE_LIBRARY = [
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget",
    "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION",
]  # fmt: skip
"""gopher-lua's base library (what Argo CD opens for every script), less the loaders."""

_RUN = """
function(script, obj, open_libs, base)
  local chunk, err = loadstring(script, "=health.lua")
  if chunk == nil then error(err) end
  local env
  if open_libs then
    env = setmetatable({}, {__index = _G})
  else
    env = {table = table, os = {time = os.time, date = os.date}}
    for i = 1, #base do env[base[i]] = _G[base[i]] end
    env._G = env
  end
  env.obj = obj
  setfenv(chunk, env)
  local strings = getmetatable("")
  local methods = strings.__index
  if not open_libs then strings.__index = nil end
  local ok, result = pcall(chunk)
  strings.__index = methods
  if not ok then error(result, 0) end
  return result
end
"""


class _GoYaml(yaml.SafeLoader):
    """YAML as sigs.k8s.io/yaml reads it: timestamps stay strings."""


_GoYaml.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_GoYaml)  # a SafeLoader


def health(script: str, obj: Mapping[str, Any], *, open_libs: bool = False) -> dict[str, str]:
    """`{status, message}` as Argo CD computes it for `obj` (raises on a Lua error)."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    result = lua.eval(_RUN)(
        script,
        lua.table_from(dict(obj), recursive=True),
        open_libs,
        lua.table_from(_BASE_LIBRARY),
    )
    if result is None:
        return {"status": "", "message": ""}
    status, message = result["status"], result["message"]
    if status not in HEALTH_STATUSES:
        return {"status": "Unknown", "message": INVALID_HEALTH_STATUS}
    return {"status": status, "message": message or ""}


def cases(folder: Path) -> list[tuple[str, dict[str, str]]]:
    """`health_test.yaml`'s cases: (inputPath, the expected {status, message})."""
    tests = load_yaml(folder / "health_test.yaml")["tests"]
    return [
        (
            case["inputPath"],
            {"status": case["healthStatus"]["status"], "message": case["healthStatus"].get("message", "")},
        )
        for case in tests
    ]


def readme_argocd_cm() -> dict[str, Any]:
    """The chart README's argocd-cm snippet (its one ```yaml ConfigMap block holding `CM_KEY`)."""
    text = (CHART / "README.md").read_text(encoding="utf-8")
    blocks = [
        b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: ConfigMap" in b and CM_KEY in b
    ]
    assert len(blocks) == 1, f"the chart README has {len(blocks)} argocd-cm snippets, not one"
    return yaml.safe_load(blocks[0])


def argocd_health(argocd: Path, input_path: Path, argocd_cm: Path) -> dict[str, str]:
    """`{status, message}` from Argo CD's CLI (`argocd admin settings resource-overrides health`)."""
    command = ["admin", "settings", "resource-overrides", "health", str(input_path)]
    proc = subprocess.run(
        [str(argocd), *command, "--argocd-cm-path", str(argocd_cm)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"argocd exited {proc.returncode}: {proc.stderr[-2000:]}")
    found = re.fullmatch(r"STATUS: (.*)\nMESSAGE: (.*)\n", proc.stdout, re.S)
    if found is None:
        raise RuntimeError(f"unexpected argocd output: {proc.stdout!r}")
    return {"status": found.group(1), "message": found.group(2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run health_test.yaml's cases with Argo CD's own CLI.")
    parser.add_argument("--argocd", type=Path, required=True, help="the argocd binary")
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        argocd_cm = Path(tmp) / "argocd-cm.yaml"
        argocd_cm.write_text(yaml.safe_dump(readme_argocd_cm()), encoding="utf-8")
        for input_path, expected in cases(HEALTH_DIR):
            got = argocd_health(args.argocd, HEALTH_DIR / input_path, argocd_cm)
            ok = got == expected
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {input_path}: {got['status']}: {got['message'][:100]}")
            if not ok:
                print(f"     expected {expected['status']}: {expected['message']}")
    print(f"{len(cases(HEALTH_DIR)) - failed} of {len(cases(HEALTH_DIR))} cases as health_test.yaml says")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
