"""One leaderboard's computation, from the operator's side: the request (pure), the child process
that computes it (`python -m nejumi_eval.leaderboard.compute`, bounded in time and memory), and
the status it leads to (pure).

The status says what the last computation found and how it went, in the kstatus convention that
Flux, Argo CD and Helm read:

- computed → Ready=True (`Computed`), with the ranked and unfinished counts in the message;
  published nowhere or not published → still Ready, with Degraded=True (`NotPublished`);
- a namespace the policy does not allow → Stalled=True (`NamespaceNotAllowed`), nothing computed;
- a failed computation → Stalled=True (`ComputeFailed`) with why; the last board's rows stay (they
  were true when computed, and `updatedAt` says when), and it is tried again later;
- gates → GatesPassed: False naming the evaluations that failed, True when one passed and none
  failed, Unknown while none is finished.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from nejumi_eval.api.v1alpha1.conditions import (
    DEGRADED,
    FALSE,
    READY,
    RECONCILING,
    STALLED,
    TRUE,
    UNKNOWN,
)
from nejumi_eval.api.v1alpha1.leaderboard import (
    ALL_PASSED,
    COMPUTE_CACHE_DIR_ENV,
    COMPUTE_CACHE_MIB_ENV,
    COMPUTE_FAILED,
    COMPUTE_MEMORY_ENV,
    COMPUTED,
    GATE_FAILED,
    GATES_PASSED,
    NAMESPACE_NOT_ALLOWED,
    NOT_PUBLISHED,
    NOTHING_TO_JUDGE,
    ComputeRequest,
    ComputeResult,
    LeaderboardSpec,
    Member,
)
from nejumi_eval.api.v1alpha1.leaderboard import (
    COMPUTE_ERROR_PREFIX as ERROR_PREFIX,
)
from nejumi_operator.settings import OperatorConfig

CHILD = ("-m", "nejumi_eval.leaderboard.compute")
OUT_OF_MEMORY = ("MemoryError", "failed to map segment", "Cannot allocate memory", "memory allocation of")
"""How a child over its memory limit fails: an allocation Python or a native library (numpy,
pydantic-core's Rust) was refused, or a library it could not load."""
RETRY_SECONDS = 30.0
"""A failed computation is tried again after this (or at the next change, if sooner)."""
_STDERR_TAIL = 600


class ComputeError(RuntimeError):
    """The child did not produce a result: its own words (stderr's last line), or why it was stopped."""


def publish_uri(spec: LeaderboardSpec, namespace: str, name: str, config: OperatorConfig) -> str | None:
    """Where the page goes: the spec's, else `<chart store uri>/leaderboards/<namespace>/<name>/`."""
    if spec.publish is not None and spec.publish.uri:
        return spec.publish.uri.rstrip("/") + "/"
    if config.leaderboard_store_uri:
        return f"{config.leaderboard_store_uri}/leaderboards/{namespace}/{name}/"
    return None


def build_request(body: Mapping[str, Any], spec: LeaderboardSpec, config: OperatorConfig) -> ComputeRequest:
    """The child's request from the leaderboard as read (pure)."""
    meta = body["metadata"]
    status = body.get("status") or {}
    namespace, name = meta["namespace"], meta["name"]
    members = [Member.model_validate(m) for m in status.get("members") or []]
    return ComputeRequest(
        namespace=namespace,
        name=name,
        generation=int(meta.get("generation") or 1),
        spec=spec,
        namespaces=[namespace, *(n for n in spec.namespaces if n != namespace)],
        members=members,
        publish_uri=publish_uri(spec, namespace, name, config),
    )


def request_json(request: ComputeRequest) -> bytes:
    """The request as the child reads it. The spec as written (`exclude_unset`): its CEL rules are
    about what the author wrote (`has(self.metric)`), and defaults written out would break them."""
    return request.model_dump_json(by_alias=True, exclude_unset=True).encode()


async def run_child(request: ComputeRequest, config: OperatorConfig) -> ComputeResult:
    """Compute in a child process; raises ComputeError when it fails, runs out of time or memory."""
    env = {
        **os.environ,
        COMPUTE_MEMORY_ENV: str(config.leaderboard_memory_mib),
        COMPUTE_CACHE_DIR_ENV: config.leaderboard_cache_dir,
        COMPUTE_CACHE_MIB_ENV: str(config.leaderboard_cache_mib),
        # One thread for numpy's BLAS: the bootstrap is not BLAS work, and every thread's buffers
        # would count against the child's memory.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(request_json(request)),
            config.leaderboard_timeout_seconds,
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ComputeError(
            f"the computation took longer than {config.leaderboard_timeout_seconds:g}s and was stopped "
            "(leaderboard.timeoutSeconds; fewer resamples or evaluations make it shorter)"
        ) from None
    except asyncio.CancelledError:
        proc.kill()
        raise
    if proc.returncode != 0:
        text = err.decode("utf-8", "replace").strip()
        if any(sign in text for sign in OUT_OF_MEMORY):
            raise ComputeError(
                f"the computation ran out of its {config.leaderboard_memory_mib} MiB "
                "(leaderboard.memoryMiB; fewer resamples or evaluations need less)"
            )
        said = [
            line.removeprefix(ERROR_PREFIX) for line in text.splitlines() if line.startswith(ERROR_PREFIX)
        ]
        last = said[-1] if said else (text.splitlines()[-1] if text else f"exit code {proc.returncode}")
        raise ComputeError(f"the computation failed: {last[:_STDERR_TAIL]}")
    try:
        return ComputeResult.model_validate_json(out)
    except ValueError as exc:
        raise ComputeError(f"the computation's result is not readable: {str(exc)[:_STDERR_TAIL]}") from None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    old: list[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> dict[str, Any]:
    """A condition whose lastTransitionTime moves only when its status does."""
    before = next((c for c in old if c.get("type") == type_), None)
    since = before["lastTransitionTime"] if before and before.get("status") == status else now
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def _conditions(
    old: Mapping[str, Any],
    states: Mapping[str, tuple[str, str, str]],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    previous = list(old.get("conditions") or [])
    return [_condition(previous, t, *state, generation, now) for t, state in states.items()]


def _gates_condition(status: Mapping[str, Any]) -> tuple[str, str, str]:
    verdicts = status.get("gates") or []
    failed = [v for v in verdicts if v.get("verdict") == "Failed"]
    passed = [v for v in verdicts if v.get("verdict") == "Passed"]
    unknown = len(verdicts) - len(failed) - len(passed)
    if failed:
        names = ", ".join(f"{v['evaluation']} ({v.get('message') or 'failed'})" for v in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        return FALSE, GATE_FAILED, f"{len(failed)} evaluation(s) failed a gate: {names}{more}"
    if passed:
        rest = f"; {unknown} not judged yet" if unknown else ""
        return TRUE, ALL_PASSED, f"{len(passed)} evaluation(s) passed every gate{rest}"
    return UNKNOWN, NOTHING_TO_JUDGE, "no matched evaluation is finished yet"


def computed_status(
    old: Mapping[str, Any],
    result: ComputeResult,
    spec: LeaderboardSpec,
    generation: int,
    now: str | None = None,
) -> dict[str, Any]:
    """The status after a successful computation (pure; camelCase, as written)."""
    now = now or _now()
    new = result.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    new.update(
        observedGeneration=generation,
        updatedAt=now,
        computations=int(old.get("computations") or 0) + 1,
        computeSeconds=round(result.seconds, 3),
        computePeakMib=round(result.peak_rss_mib, 1),
        bytesRead=result.bytes_read,
        bytesFromCache=result.bytes_from_cache,
    )
    counts = new.get("counts") or {}
    summary = (
        f"{counts.get('ranked', 0)} ranked, {counts.get('pending', 0)} not finished, "
        f"{counts.get('matched', 0)} matched"
    )
    message = new.get("message") or summary
    new["message"] = message if message == summary else f"{summary}: {message}"
    page = new.get("page")
    if page is not None and result.publish_error:
        degraded = (TRUE, NOT_PUBLISHED, f"the page was not written to {page['uri']}: {result.publish_error}")
        new["message"] += f"; page not published: {result.publish_error}"
    else:
        degraded = (FALSE, COMPUTED if page else NOT_PUBLISHED, "")
        if page is None and result.evaluations:
            new["message"] += (
                "; published nowhere (set spec.publish.uri or the chart's leaderboard.store.uri)"
            )
    states: dict[str, tuple[str, str, str]] = {
        READY: (TRUE, COMPUTED, new["message"]),
        RECONCILING: (FALSE, COMPUTED, ""),
        STALLED: (FALSE, COMPUTED, ""),
        DEGRADED: degraded,
    }
    if spec.gates:
        states[GATES_PASSED] = _gates_condition(new)
    new["conditions"] = _conditions(old, states, generation, now)
    return new


def failed_status(
    old: Mapping[str, Any], reason: str, message: str, generation: int, now: str | None = None
) -> dict[str, Any]:
    """The status after a refusal or a failed computation: the last board's rows stay, with the
    failure in the conditions and the message (pure)."""
    now = now or _now()
    new = dict(old)
    new.update(observedGeneration=generation, message=message)
    states = {
        READY: (FALSE, reason, message),
        RECONCILING: (FALSE, reason, ""),
        STALLED: (TRUE, reason, message),
    }
    kept = [c for c in old.get("conditions") or [] if c.get("type") not in states]
    new["conditions"] = _conditions(old, states, generation, now) + kept
    return new


def refused_namespaces_status(old: Mapping[str, Any], problems: list[str], generation: int) -> dict[str, Any]:
    return failed_status(old, NAMESPACE_NOT_ALLOWED, "; ".join(problems), generation)


def compute_failed_status(old: Mapping[str, Any], error: str, generation: int) -> dict[str, Any]:
    return failed_status(
        old, COMPUTE_FAILED, f"{error}; tried again in {RETRY_SECONDS:g}s or at the next change", generation
    )


def fingerprint(body: Mapping[str, Any]) -> str:
    """What of an evaluation a leaderboard shows, as one string: its phase, generation, labels and
    stored results. A change in anything else (its progress line, renewed every few seconds while it
    runs) changes no board, so it triggers no computation."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    results = status.get("results") or {}
    return json.dumps(
        [
            status.get("phase"),
            status.get("observedGeneration"),
            meta.get("generation"),
            meta.get("labels") or {},
            results.get("manifestSha256"),
            results.get("stored"),
            (status.get("scores") or {}).get("overall"),
        ],
        sort_keys=True,
    )
