"""A test-only node agent: a minimal stand-in for the kubelet that runs pods as local processes.

There is no container runtime in the test environment, yet the operator's behaviour depends on
real scheduling (GPU capacity), real Job -> Pod -> status flows and real garbage collection. The
agent registers a Node as the node itself (x509 identity ``system:node:<name>`` in
``system:nodes``, so the Node authorizer and NodeRestriction apply), advertises ``nvidia.com/gpu``
capacity, keeps the Node Ready, and for every pod bound to it runs each container's
``command + args`` as a local process. It never exists outside ``tests/``.

What a container gets (the contract operator/evaluator tests can rely on):

- **argv**: ``command + args`` with kubelet ``$(VAR)`` expansion (``$$`` escapes). The image is
  ignored; a container without ``command`` fails to start (``StartError``, exit code 128), since
  there is no image entrypoint to fall back to.
- **env**: ``PATH`` and ``LANG`` of the agent (plus ``passthrough_env``), ``HOME``/``TMPDIR`` in the
  pod sandbox, ``HOSTNAME`` = pod name, then ``envFrom`` (Secret/ConfigMap, with ``prefix``), then
  ``env`` (``value``, ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``, ``resourceFieldRef``),
  as the kubelet orders them. A missing non-optional Secret/ConfigMap/key leaves the container
  waiting with reason ``CreateContainerConfigError`` (retried every second), like the kubelet.
- **termination message**: ``terminationMessagePath`` (``/dev/termination-log`` by default) is not
  writable by a local process, so it is rewritten to ``<sandbox>/<container>.termination-log`` and
  exported as ``NEJUMI_TERMINATION_MESSAGE_PATH``. Any argv element or env value exactly equal to
  the original path is rewritten too, so ``--summary-path /dev/termination-log`` works unchanged.
  The file's content (at most 4096 bytes) becomes ``state.terminated.message``;
  ``FallbackToLogsOnError`` uses the log tail when the file is empty and the exit code is not 0.
- **working dir**: inside a PVC mount, the claim's folder (see volumes); else ``workingDir`` if it
  exists on this machine, else the same path re-rooted under
  ``<sandbox>/rootfs`` (created); without ``workingDir``, ``<sandbox>/work``.
  ``NEJUMI_POD_DIR`` names the sandbox.
- **logs**: stdout and stderr go to ``<sandbox>/<container>.log`` (``kubectl logs`` is not served).
- **lifecycle**: init containers run in order first; ``restartPolicy`` is honoured with a short
  backoff; a pod being deleted gets SIGTERM (its whole process group), then SIGKILL after
  ``min(grace period, max_grace_seconds)``, and the agent then deletes it with grace period 0, as
  the kubelet does. Probes, resources limits and networking are ignored (pod IP is 127.0.0.1).
- **volumes**: a ``persistentVolumeClaim`` volume is resolved to its bound PV's ``hostPath`` (or
  ``local``) folder; a ``workingDir`` inside such a mount (e.g. ``/workspace``) is that folder
  (plus ``subPath``), so two pods of one claim share their files, as on a real node. A missing or
  unbound claim leaves the container waiting (``CreateContainerConfigError``, retried).
- **projected, configMap and secret volumes** (the ServiceAccount token above all): the agent
  writes their files into ``<sandbox>/volumes/<volume>/`` as the kubelet would — a
  ``serviceAccountToken`` source is a real TokenRequest for the pod's ServiceAccount, bound to the
  pod and made with the node's own credentials (the Node authorizer allows exactly that), a
  ``configMap``/``secret`` source is read as the node, ``downwardAPI`` items are resolved from the
  pod — and the process sees them **at their ``mountPath``**: it runs in a private mount namespace
  (``unshare --mount``) where each such folder is bind-mounted read-only over its path (the empty
  directory is created on this machine if absent, e.g. ``/var/run/secrets/kubernetes.io/
  serviceaccount``). So ``kubernetes.config.load_incluster_config()`` and kopf's
  ``login_with_service_account`` work unchanged inside a pod. ``KUBERNETES_SERVICE_HOST``/``PORT``
  name the API server's loopback address (its certificate covers 127.0.0.1). Tokens are not
  rotated (the API server extends their lifetime to a year). Without mount namespaces (not root)
  such a pod's container waits with ``CreateContainerConfigError`` saying so. emptyDir volumes are
  ignored (the process sees the pod sandbox instead).
- **the ``kubernetes`` Service**: kopf's ``login_with_service_account`` does not read
  ``KUBERNETES_SERVICE_HOST``; it hard-codes ``https://kubernetes.default.svc`` (port 443), which
  needs cluster DNS and the Service's virtual IP, neither of which exists here. So the agent
  listens on ``<address>:443`` (the first free 127.100.0.x, one per agent) and forwards each
  connection, TLS untouched, to the API server (whose certificate names
  ``kubernetes.default.svc``); a pod in a mount namespace gets this machine's ``/etc/hosts`` plus
  that address for ``kubernetes``, ``kubernetes.default``, ``kubernetes.default.svc`` and
  ``kubernetes.default.svc.cluster.local``, bind-mounted over its own.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import config, watch
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("nejumi.nodeagent")

GPU_RESOURCE = "nvidia.com/gpu"
TERMINATION_ENV = "NEJUMI_TERMINATION_MESSAGE_PATH"
POD_DIR_ENV = "NEJUMI_POD_DIR"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096
MERGE_PATCH = "application/merge-patch+json"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
AGENT_VERSION = "nejumi-test-agent://0.1.0"


def now() -> str:
    """RFC 3339 UTC timestamp, as the API stores times."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubelet ``$(VAR)`` expansion: defined vars are substituted, ``$$`` yields ``$``, and an
    undefined reference is left as written (k8s.io/kubernetes third_party/forked/golang/expansion).
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


_BIND_SCRIPT = (
    'while [ "$1" != -- ]; do mkdir -p "$2" 2>/dev/null; '
    'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" || exit 127; shift 2; done; '
    'shift; exec "$@"'
)


def mount_namespace(binds: list[tuple[Path, str]]) -> list[str]:
    """An argv prefix running the command in a private mount namespace where each (folder,
    mountPath) is bind-mounted read-only over mountPath; [] when there is nothing to mount. The
    shell ``exec``s the command, so the pid (and process group) the agent tracks stays the same."""
    if not binds:
        return []
    for _, target in binds:  # a mount point must exist; an empty folder on this machine is harmless
        if not Path(target).exists():  # (a file, such as /etc/hosts, is bound over the file)
            Path(target).mkdir(parents=True)
    pairs = [arg for folder, target in binds for arg in (str(folder), target)]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _BIND_SCRIPT, "sh", *pairs, "--"]


def mount_namespaces_work() -> bool:
    """Whether this machine lets the agent create mount namespaces and bind-mount in them."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount --bind /tmp /tmp"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


class ServiceProxy:
    """The ``kubernetes`` Service's stand-in: a TCP forwarder from ``<address>:443`` to the API
    server, ``address`` the first free one of 127.100.0.1, 127.100.0.2, … (several agents in one
    process each get their own). Bytes are copied both ways; TLS is the client's and the API
    server's business."""

    PORT = 443

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.address = ""
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> ServiceProxy:
        for i in range(1, 255):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((f"127.100.0.{i}", self.PORT))
            except OSError:
                sock.close()
                continue
            sock.listen(128)
            self._listener, self.address = sock, f"127.100.0.{i}"
            threading.Thread(target=self._accept_loop, name="nodeagent-service-proxy", daemon=True).start()
            return self
        raise OSError(f"no free 127.100.0.x:{self.PORT} for the kubernetes Service stand-in")

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # a watch through here must not keep the API server's shutdown waiting
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)  # pass the half-close on; the other pump closes
            with self._lock:
                done = src in self._conns and dst not in self._conns
                self._conns.discard(src)
            if done:  # both directions have ended
                src.close()
                dst.close()


class ConfigError(Exception):
    """The container cannot be configured yet (missing Secret/ConfigMap/key): kubelet's
    ``CreateContainerConfigError``, which it retries until the reference appears."""


_FIELD_LABEL = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref(pod: dict[str, Any], path: str) -> str:
    """Resolve a downward-API ``fieldRef.fieldPath`` against the pod."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP") or "127.0.0.1",
        "status.hostIPs": status.get("hostIP") or "127.0.0.1",
        "status.podIP": status.get("podIP") or "127.0.0.1",
        "status.podIPs": status.get("podIP") or "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    if m := _FIELD_LABEL.match(path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"unsupported fieldPath {path!r}")


@dataclass
class _Container:
    """One container's process and the status the agent reports for it."""

    spec: dict[str, Any]
    log_path: Path
    term_path: Path
    popen: subprocess.Popen[bytes] | None = None
    restart_count: int = 0
    started_at: str | None = None
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    next_start: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def terminated(self) -> bool:
        return "terminated" in self.state

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"nejumi://{self.popen.pid}" if self.popen else "",
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodWorker(threading.Thread):
    """Runs one pod's containers and reports its status, until it ends or is deleted."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.dir = agent.root / f"{self.ns}_{self.pod_name}_{self.uid[:8]}"
        self.delete_requested = threading.Event()
        self.gone = threading.Event()  # the API object no longer exists: just kill
        self.done = threading.Event()
        self.init: list[_Container] = []
        self.containers: list[_Container] = []
        self.phase = "Pending"
        self.start_time = now()
        self._lock = threading.Lock()
        self._binds: list[tuple[Path, str]] = []

    # ---- entry points from the watch loop ----

    def update(self, pod: dict[str, Any]) -> None:
        """Take the latest object (deletion timestamps, grace periods)."""
        with self._lock:
            self.pod = pod

    def request_delete(self) -> None:
        self.delete_requested.set()

    def pids(self) -> list[int]:
        """PIDs of this pod's live processes."""
        return [c.popen.pid for c in self.init + self.containers if c.popen and c.popen.poll() is None]

    # ---- the pod lifecycle ----

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: agent error", self.ns, self.pod_name)
            self.agent.errors.append(f"pod {self.ns}/{self.pod_name}: {traceback.format_exc()}")
        finally:
            self._kill_all(grace=0)
            self.done.set()

    def _stopping(self) -> bool:
        return self.delete_requested.is_set() or self.gone.is_set() or self.agent.stopping.is_set()

    def _run(self) -> None:
        spec = self.pod["spec"]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        mk = lambda c: _Container(c, self.dir / f"{c['name']}.log", self.dir / f"{c['name']}.termination-log")  # noqa: E731
        self.init = [mk(c) for c in spec.get("initContainers") or []]
        self.containers = [mk(c) for c in spec.get("containers") or []]
        policy = spec.get("restartPolicy", "Always")
        self._patch_status()

        for c in self.init:
            while not self._stopping():
                if not self._start(c):
                    continue  # config error, reported and retried
                code = self._wait_exit(c)
                if code is None or code == 0:
                    break
                if policy == "Never":
                    self.phase = "Failed"
                    self._patch_status()
                    return self._await_deletion()
                self._sleep(self._backoff(c))
                c.last_state, c.restart_count, c.popen = c.state, c.restart_count + 1, None
            if self._stopping():
                return self._finish_deleted()

        # Main containers: start all, then supervise (restart per restartPolicy, with backoff).
        while not self._stopping():
            changed = False
            for c in self.containers:
                if c.popen is None and not c.terminated():
                    changed |= self._start(c, patch=False)  # first start (or config error retry)
                elif "running" in c.state and c.popen is not None and c.popen.poll() is not None:
                    self._record_exit(c)
                    c.next_start = time.monotonic() + self._backoff(c)
                    changed = True
                elif c.terminated() and self._wants_restart(c, policy) and time.monotonic() >= c.next_start:
                    c.last_state, c.restart_count, c.popen = c.state, c.restart_count + 1, None
                    changed |= self._start(c, patch=False)
            if all(c.terminated() and not self._wants_restart(c, policy) for c in self.containers):
                codes = [c.state["terminated"]["exitCode"] for c in self.containers]
                self.phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
                self._patch_status()
                return self._await_deletion()
            if any("running" in c.state for c in self.containers):
                self.phase = "Running"
            if changed:
                self._patch_status()
            time.sleep(0.05)
        self._finish_deleted()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping() and time.monotonic() < deadline:
            time.sleep(0.05)

    @staticmethod
    def _wants_restart(c: _Container, policy: str) -> bool:
        """restartPolicy for a terminated container: Always restarts, OnFailure only non-zero exits."""
        if not c.terminated():
            return False
        return policy == "Always" or (policy == "OnFailure" and c.state["terminated"]["exitCode"] != 0)

    def _backoff(self, c: _Container) -> float:
        return min(1.0 * 2**c.restart_count, 10.0)

    def _wait_exit(self, c: _Container) -> int | None:
        """Wait for an init container; None if the pod is being stopped."""
        if c.popen is None:  # StartError: already terminated
            self._patch_status()
            return int(c.state["terminated"]["exitCode"])
        while c.popen.poll() is None:
            if self._stopping():
                return None
            time.sleep(0.05)
        self._record_exit(c)
        self._patch_status()
        return int(c.state["terminated"]["exitCode"])

    def _start(self, c: _Container, patch: bool = True) -> bool:
        """Resolve env and start the process; on a config error report ``waiting`` and retry later."""
        try:
            argv, env, cwd = self._prepare(c)
        except ConfigError as exc:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            self._patch_status()
            time.sleep(1.0)
            return False
        c.term_path.write_bytes(b"")
        exe = shutil.which(argv[0], path=env.get("PATH")) if argv else None
        if exe is None:
            msg = (
                "no command: the test node agent cannot run image entrypoints"
                if not argv
                else (f'exec: "{argv[0]}": executable file not found in $PATH')
            )
            c.started_at = now()
            c.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": msg,
                    "startedAt": c.started_at,
                    "finishedAt": now(),
                }
            }
            c.next_start = time.monotonic() + self._backoff(c)
            if patch:
                self._patch_status()
            return True
        prefix = (
            ["setpriv", "--pdeathsig", "KILL", "--"]
            if self.agent.tie_to_parent and shutil.which("setpriv")
            else []
        )
        with open(c.log_path, "ab") as logf:
            c.popen = subprocess.Popen(
                [*prefix, *mount_namespace(self._binds), exe, *argv[1:]],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        c.started_at = now()
        c.state = {"running": {"startedAt": c.started_at}}
        log.info("pod %s/%s container %s: pid %d: %s", self.ns, self.pod_name, c.name, c.popen.pid, argv)
        if patch:
            self.phase = "Running" if c in self.containers else self.phase
            self._patch_status()
        return True

    def _prepare(self, c: _Container) -> tuple[list[str], dict[str, str], Path]:
        spec = c.spec
        original = spec.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        term = str(c.term_path)
        env: dict[str, str] = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL") if k in os.environ}
        env.update({k: os.environ[k] for k in self.agent.passthrough_env if k in os.environ})
        env.update({"HOME": str(self.dir), "TMPDIR": str(self.dir / "tmp"), "HOSTNAME": self.pod_name})
        env.update(self.agent.extra_env)
        env.update(self.agent.service_env)
        for src in spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if ref := src.get("secretRef"):
                data = self.agent.read_source("secrets", self.ns, ref["name"], ref.get("optional", False))
            elif ref := src.get("configMapRef"):
                data = self.agent.read_source("configmaps", self.ns, ref["name"], ref.get("optional", False))
            else:
                continue
            env.update({prefix + k: v for k, v in (data or {}).items()})
        for var in spec.get("env") or []:
            value = self._env_value(var, c.spec, env)
            if value is not None:
                env[var["name"]] = value
        for k, v in env.items():
            if v == original:
                env[k] = term
        env[TERMINATION_ENV] = term
        env[POD_DIR_ENV] = str(self.dir)
        argv = [expand(a, env) for a in (spec.get("command") or []) + (spec.get("args") or [])]
        argv = [term if a == original else a for a in argv]
        mounts = self._volume_mounts(spec)
        self._binds = self._file_volumes(spec)
        if self._binds and self.agent.hosts_file is not None:
            self._binds.append((self.agent.hosts_file, "/etc/hosts"))
        if wd := spec.get("workingDir"):
            cwd = self._in_mount(wd, mounts)
            if cwd is None:
                cwd = Path(wd) if Path(wd).is_dir() else self.dir / "rootfs" / wd.lstrip("/")
        else:
            cwd = self.dir / "work"
        cwd.mkdir(parents=True, exist_ok=True)
        return argv, env, cwd

    @staticmethod
    def _in_mount(path: str, mounts: list[tuple[str, Path]]) -> Path | None:
        """``path`` (a container path) on this machine when it lies in a mounted PVC, else None."""
        for mount_path, host in sorted(mounts, key=lambda m: -len(m[0])):
            base = mount_path.rstrip("/") or "/"
            if path == base or path.startswith(base.rstrip("/") + "/"):
                rel = path[len(base) :].lstrip("/")
                return host / rel if rel else host
        return None

    def _volume_mounts(self, container: dict[str, Any]) -> list[tuple[str, Path]]:
        """(mountPath, folder on this machine) for the container's ``persistentVolumeClaim`` volumes:
        claim → bound PV → its ``hostPath``/``local`` path (+ ``subPath``). An unbound or missing
        claim is a ``ConfigError`` (retried), as the kubelet would wait for the volume to attach.
        Other volume kinds are ignored (the process sees the pod sandbox instead)."""
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        out: list[tuple[str, Path]] = []
        for mount in container.get("volumeMounts") or []:
            claim = (volumes.get(mount["name"]) or {}).get("persistentVolumeClaim")
            if not claim:
                continue
            host = self.agent.claim_path(self.ns, claim["claimName"])
            if sub := mount.get("subPath"):
                host = host / sub
            host.mkdir(parents=True, exist_ok=True)
            out.append((mount["mountPath"], host))
        return out

    def _file_volumes(self, container: dict[str, Any]) -> list[tuple[Path, str]]:
        """(folder on this machine, mountPath) for the container's projected/configMap/secret volumes,
        their files written now (see the module docstring). A reference that cannot be resolved
        yet (missing ConfigMap, ServiceAccount) is a ``ConfigError``, retried like the kubelet."""
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        out: list[tuple[Path, str]] = []
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            sources: list[dict[str, Any]]
            if "projected" in volume:
                sources = volume["projected"].get("sources") or []
            elif "configMap" in volume or "secret" in volume:
                sources = [volume]
            else:
                continue
            folder = self.dir / "volumes" / mount["name"]
            files: dict[str, bytes] = {}
            for source in sources:
                files.update(self._source_files(source))
            if folder.exists():
                shutil.rmtree(folder)
            for rel, data in files.items():
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o644)
            folder.mkdir(parents=True, exist_ok=True)
            if sub := mount.get("subPath"):
                folder = folder / sub
            out.append((folder, mount["mountPath"]))
        if out and not self.agent.can_mount:
            raise ConfigError(
                "the test node agent needs mount namespaces (root, `unshare --mount`) to mount "
                f"volumes at {[m for _, m in out]}"
            )
        return out

    def _source_files(self, source: dict[str, Any]) -> dict[str, bytes]:
        """The files of one volume source: path → content."""
        if token := source.get("serviceAccountToken"):
            return {token.get("path", "token"): self.agent.request_token(self.pod, token).encode()}
        if "downwardAPI" in source:
            items = source["downwardAPI"].get("items") or []
            return {
                i["path"]: field_ref(self.pod, i["fieldRef"]["fieldPath"]).encode()
                for i in items
                if "fieldRef" in i
            }
        for kind, key, name_key in (("configmaps", "configMap", "name"), ("secrets", "secret", "secretName")):
            if ref := source.get(key):
                name = ref.get(name_key) or ref.get("name")
                data = self.agent.read_source(kind, self.ns, name, ref.get("optional", False)) or {}
                items = ref.get("items")
                if not items:
                    return {k: v.encode() for k, v in data.items()}
                out: dict[str, bytes] = {}
                for item in items:
                    if item["key"] not in data:
                        if ref.get("optional", False):
                            continue
                        raise ConfigError(f"couldn't find key {item['key']} in {kind[:-1]} {self.ns}/{name}")
                    out[item.get("path", item["key"])] = data[item["key"]].encode()
                return out
        return {}

    def _env_value(self, var: dict[str, Any], container: dict[str, Any], env: dict[str, str]) -> str | None:
        """One ``env`` entry; ``value`` may reference variables defined before it."""
        if "valueFrom" not in var:
            return expand(var.get("value", ""), env)
        src = var["valueFrom"]
        for kind, key in (("secrets", "secretKeyRef"), ("configmaps", "configMapKeyRef")):
            if ref := src.get(key):
                optional = ref.get("optional", False)
                data = self.agent.read_source(kind, self.ns, ref["name"], optional)
                if data is None:
                    return None
                if ref["key"] not in data:
                    if optional:
                        return None
                    raise ConfigError(
                        f"couldn't find key {ref['key']} in {kind[:-1]} {self.ns}/{ref['name']}"
                    )
                return data[ref["key"]]
        if ref := src.get("fieldRef"):
            return field_ref(self.pod, ref["fieldPath"])
        if ref := src.get("resourceFieldRef"):
            kind, _, name = ref["resource"].partition(".")
            return str(((container.get("resources") or {}).get(kind) or {}).get(name, "0"))
        raise ConfigError(f"unsupported valueFrom for env {var['name']}")

    def _record_exit(self, c: _Container) -> None:
        assert c.popen is not None
        rc = c.popen.returncode
        # Like a container's cgroup: whatever the main process left behind dies with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.popen.pid, signal.SIGKILL)
        code = 128 - rc if rc < 0 else rc  # killed by signal N -> 128+N, as container runtimes report
        message = c.term_path.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
        if not message and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = c.log_path.read_bytes().decode(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now(),
            "containerID": f"nejumi://{c.popen.pid}",
        }
        if rc < 0:
            terminated["signal"] = -rc
        if message:
            terminated["message"] = message
        c.state = {"terminated": terminated}
        log.info("pod %s/%s container %s exited %d", self.ns, self.pod_name, c.name, code)

    def _kill_all(self, grace: float) -> None:
        procs = [c for c in self.init + self.containers if c.popen and c.popen.poll() is None]
        for c in procs:
            assert c.popen is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.popen and c.popen.poll() is None for c in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in procs:
            assert c.popen is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.popen.wait(timeout=5)
        for c in procs:
            if not c.terminated():
                self._record_exit(c)

    def _await_deletion(self) -> None:
        """A finished pod stays until deleted; then the agent confirms the deletion."""
        while not self._stopping():
            time.sleep(0.1)
        if self.delete_requested.is_set() and not self.gone.is_set():
            self.agent.finalize_deletion(self.pod)

    def _finish_deleted(self) -> None:
        if self.agent.stopping.is_set() and not self.delete_requested.is_set():
            self._kill_all(grace=self.agent.max_grace_seconds)
            return
        grace = float(self.pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        self._kill_all(grace=min(grace, self.agent.max_grace_seconds))
        if self.gone.is_set():
            return
        if self.phase not in ("Succeeded", "Failed"):
            codes = [c.state.get("terminated", {}).get("exitCode", 137) for c in self.containers]
            self.phase = "Succeeded" if codes and all(code == 0 for code in codes) else "Failed"
            self._patch_status()
        self.agent.finalize_deletion(self.pod)

    def _patch_status(self) -> None:
        with self._lock:
            pod = self.pod
        terminal = self.phase in ("Succeeded", "Failed")
        all_running = bool(self.containers) and all("running" in c.state for c in self.containers)
        init_done = all(c.terminated() and c.state["terminated"]["exitCode"] == 0 for c in self.init)
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}

        def cond(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            status = "True" if ok else "False"
            prev = old.get(kind)
            changed = prev is None or prev.get("status") != status
            out: dict[str, Any] = {
                "type": kind,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": now() if changed else prev.get("lastTransitionTime"),
            }
            if reason and not ok:
                out["reason"] = reason
            return out

        not_ready = "PodCompleted" if terminal else "ContainersNotReady"
        ours = [
            cond("PodReadyToStartContainers", not terminal),
            cond("Initialized", init_done, "ContainersNotInitialized"),
            cond("ContainersReady", all_running and not terminal, not_ready),
            cond("Ready", all_running and not terminal, not_ready),
        ]
        keep = [c for t, c in old.items() if t not in {o["type"] for o in ours}]
        status: dict[str, Any] = {
            "phase": self.phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": keep + ours,
            "containerStatuses": [c.status() for c in self.containers],
            "qosClass": (pod.get("status") or {}).get("qosClass"),
        }
        if self.init:
            status["initContainerStatuses"] = [c.status() for c in self.init]
        if gen := pod["metadata"].get("generation"):
            status["observedGeneration"] = gen
        self.agent.patch_pod_status(self.ns, self.pod_name, status)


@dataclass
class NodeAgent:
    """Registers ``name`` as a Ready GPU node and runs the pods the scheduler binds to it.

    ``kubeconfig`` must carry the node identity (``system:node:<name>``, group ``system:nodes``);
    ``admin_kubeconfig`` is used only for what NodeRestriction forbids a node: removing the
    ``not-ready`` taint that admission puts on new Nodes, and setting non-kubelet labels.
    """

    kubeconfig: Path
    admin_kubeconfig: Path
    root: Path
    name: str = "nejumi-gpu-0"
    gpus: int = 8
    cpu: str = "16"
    memory: str = "64Gi"
    max_pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    passthrough_env: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    heartbeat_seconds: float = 10.0
    max_grace_seconds: float = 5.0
    tie_to_parent: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.stopping = threading.Event()
        self.errors: list[str] = []  # agent bugs (not pod failures); the fixture fails tests on them
        self.workers: dict[str, PodWorker] = {}
        self._workers_lock = threading.Lock()
        self._node_client: ApiClient | None = None
        self._admin_client: ApiClient | None = None
        self._threads: list[threading.Thread] = []
        self._watch_resp: Any = None  # the open watch response (urllib3), for stop()
        self.service_env: dict[str, str] = {}
        self.can_mount = False
        self.service_proxy: ServiceProxy | None = None
        self.hosts_file: Path | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> NodeAgent:
        """Register the node, make it schedulable and start watching pods."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._node_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._admin_client = config.new_client_from_config(config_file=str(self.admin_kubeconfig))
        self.node_api, self.admin_api = CoreV1Api(self._node_client), CoreV1Api(self._admin_client)
        server = urlparse(self._node_client.configuration.host)
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port or 443),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(server.port or 443),
        }
        self.can_mount = mount_namespaces_work()
        if not self.can_mount:
            log.warning("no mount namespaces here: pods with projected/configMap/secret volumes will wait")
        else:
            self._start_service_proxy(server.hostname or "127.0.0.1", server.port or 443)
        self._register()
        for target, label in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "pod-watch")):
            t = threading.Thread(target=target, name=f"nodeagent-{label}", daemon=True)
            t.start()
            self._threads.append(t)
        self._wait_schedulable(timeout)
        return self

    def stop(self) -> None:
        """Kill every pod process and stop the loops (the Node object is left as is)."""
        self.stopping.set()
        resp = self._watch_resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()  # unblock the watch read and close the connection now
        with self._workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            w.join(timeout=self.max_grace_seconds + 5)
        for t in self._threads:
            t.join(timeout=1)
        if self.service_proxy is not None:
            self.service_proxy.stop()
        for c in (self._node_client, self._admin_client):
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_service_proxy(self, host: str, port: int) -> None:
        """``kubernetes.default.svc:443`` for the pods (see the module docstring); without it (port
        443 not bindable) pods still have ``KUBERNETES_SERVICE_HOST``/``PORT``."""
        try:
            self.service_proxy = ServiceProxy((host, port)).start()
        except OSError as exc:
            log.warning("no kubernetes Service stand-in: %s", exc)
            return
        hosts = Path("/etc/hosts").read_text(errors="replace") if Path("/etc/hosts").exists() else ""
        self.hosts_file = self.root / "etc-hosts"
        self.hosts_file.write_text(
            hosts.rstrip("\n") + f"\n{self.service_proxy.address} {' '.join(SERVICE_NAMES)}\n"
        )

    def set_gpus(self, count: int) -> None:
        """Change the advertised ``nvidia.com/gpu`` capacity (and allocatable) now."""
        self.gpus = count
        self._patch_node_status()

    def pod_dir(self, namespace: str, name: str) -> Path | None:
        """The sandbox of a pod this agent ran (logs, termination files), if any."""
        with self._workers_lock:
            for w in self.workers.values():
                if (w.ns, w.pod_name) == (namespace, name):
                    return w.dir
        return None

    def pids(self, namespace: str, name: str) -> list[int]:
        """Live process ids of a pod's containers (empty once it ended or was killed)."""
        with self._workers_lock:
            return [
                p for w in self.workers.values() if (w.ns, w.pod_name) == (namespace, name) for p in w.pids()
            ]

    # ---- node registration and heartbeat ------------------------------------------------------

    def _node_status(self) -> dict[str, Any]:
        resources = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.max_pods),
            "ephemeral-storage": "100Gi",
            GPU_RESOURCE: str(self.gpus),
        }
        t = now()

        def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": t,
                "lastTransitionTime": self._since,
            }

        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "test agent"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "test agent"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "test agent"),
                cond("Ready", "True", "KubeletReady", "nejumi test node agent is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": self.name,
                "systemUUID": self.name,
                "bootID": str(os.getpid()),
                "kernelVersion": platform.release(),
                "osImage": "nejumi test node agent",
                "containerRuntimeVersion": AGENT_VERSION,
                "kubeletVersion": "v1.34.4",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _register(self) -> None:
        self._since = now()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        try:
            self.node_api.create_node(body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._patch_node_status()
        spec_patch: dict[str, Any] = {"spec": {"taints": None}}
        if self.labels:
            spec_patch["metadata"] = {"labels": self.labels}
        self.admin_api.patch_node(self.name, spec_patch, _content_type=MERGE_PATCH, _preload_content=False)

    def _patch_node_status(self) -> None:
        self.node_api.patch_node_status(
            self.name, {"status": self._node_status()}, _content_type=MERGE_PATCH, _preload_content=False
        )

    def _wait_schedulable(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            node = json.loads(self.admin_api.read_node(self.name, _preload_content=False).data)
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])
            )
            if ready and not node["spec"].get("taints"):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name} not Ready/untainted after {timeout}s: {node['spec']}")
            time.sleep(0.1)

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.heartbeat_seconds):
            try:
                self._patch_node_status()
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)

    # ---- pods ---------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """List, then watch pods bound to this node; relist on 410 Gone or errors.

        The watch is driven by hand (not ``kubernetes.watch.Watch``) so ``stop`` can shut its
        socket down: an open watch would otherwise keep the API server's graceful shutdown waiting.
        """
        selector = f"spec.nodeName={self.name}"
        rv: str | None = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    listing = json.loads(
                        self.node_api.list_pod_for_all_namespaces(
                            field_selector=selector, _preload_content=False
                        ).data
                    )
                    rv = listing["metadata"]["resourceVersion"]
                    self._resync(listing["items"])
                resp = self.node_api.list_pod_for_all_namespaces(
                    field_selector=selector,
                    resource_version=rv,
                    watch=True,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    _preload_content=False,
                )
                self._watch_resp = resp
                try:
                    for line in watch.watch.iter_resp_lines(resp):
                        if self.stopping.is_set():
                            return
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            rv = None  # 410 Gone (expired resourceVersion) and friends: relist
                            break
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            self._handle(event["type"], obj)
                finally:
                    self._watch_resp = None
                    resp.close()
                    resp.release_conn()
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                elif not self.stopping.is_set():
                    log.warning("pod watch failed: %s", exc)
                    time.sleep(0.5)
            except Exception as exc:
                if not self.stopping.is_set():
                    log.warning("pod watch failed: %s", exc)
                    rv = None
                    time.sleep(0.5)

    def _resync(self, pods: list[dict[str, Any]]) -> None:
        seen = set()
        for pod in pods:
            seen.add(pod["metadata"]["uid"])
            self._handle("ADDED", pod)
        with self._workers_lock:
            missing = [w for uid, w in self.workers.items() if uid not in seen]
        for w in missing:
            w.gone.set()

    def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._workers_lock:
            worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker:
                worker.gone.set()
            return
        deleting = pod["metadata"].get("deletionTimestamp") is not None
        if worker is not None:
            worker.update(pod)
            if deleting:
                worker.request_delete()
            return
        phase = (pod.get("status") or {}).get("phase")
        if deleting or phase in ("Succeeded", "Failed"):
            # Finished before this agent saw it (or never started): only confirm deletions.
            if deleting:
                self.finalize_deletion(pod)
            return
        worker = PodWorker(self, pod)
        with self._workers_lock:
            self.workers[uid] = worker
        worker.start()

    def finalize_deletion(self, pod: dict[str, Any]) -> None:
        """Confirm a graceful deletion once the processes are gone (what the kubelet does)."""
        meta = pod["metadata"]
        try:
            self.node_api.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                # With a body, the API server ignores query parameters: the grace period goes here.
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("deleting pod %s/%s failed: %s", meta["namespace"], meta["name"], exc)

    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch pods/<name>/status as the node (lists are replaced whole)."""
        try:
            self.node_api.patch_namespaced_pod_status(
                name, namespace, {"status": status}, _content_type=MERGE_PATCH, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status patch for %s/%s failed: %s %s", namespace, name, exc.status, exc.body)
                self.errors.append(f"status patch for {namespace}/{name}: {exc.status} {exc.body}")

    def claim_path(self, namespace: str, claim: str) -> Path:
        """The folder on this machine behind a bound PersistentVolumeClaim (its PV's ``hostPath`` or
        ``local`` path), read with the admin credentials (the Node authorizer would allow it too,
        once its graph has caught up); ``ConfigError`` while it is missing or unbound."""
        try:
            pvc = self._admin_client.sanitize_for_serialization(  # type: ignore[union-attr]
                self.admin_api.read_namespaced_persistent_volume_claim(claim, namespace)
            )
            volume = (pvc.get("spec") or {}).get("volumeName")
            if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
                raise ConfigError(f"persistentvolumeclaim {claim!r} is not bound")
            pv = self._admin_client.sanitize_for_serialization(  # type: ignore[union-attr]
                self.admin_api.read_persistent_volume(volume)
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigError(f"persistentvolumeclaim {claim!r} not found") from None
            raise
        source = pv["spec"].get("hostPath") or pv["spec"].get("local") or {}
        if not source.get("path"):
            raise ConfigError(f"persistentvolume {volume!r} has no hostPath/local path")
        return Path(source["path"])

    def request_token(self, pod: dict[str, Any], source: dict[str, Any]) -> str:
        """A ServiceAccount token for the pod (TokenRequest bound to it), as the kubelet gets one for
        a projected ``serviceAccountToken`` source: with the node's credentials, which the Node
        authorizer allows only for a pod bound to this node and its own ServiceAccount."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else [],
                "expirationSeconds": int(source.get("expirationSeconds") or 3607),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        deadline = time.monotonic() + 5
        while True:
            try:
                resp = self.node_api.create_namespaced_service_account_token(
                    account, meta["namespace"], body, _preload_content=False
                )
                return str(json.loads(resp.data)["status"]["token"])
            except ApiException as exc:
                if exc.status == 403 and time.monotonic() < deadline:  # the authorizer's graph lags
                    time.sleep(0.2)
                    continue
                raise ConfigError(
                    f"requesting a token for serviceaccount {meta['namespace']}/{account}: "
                    f"{exc.status} {exc.reason}"
                ) from None

    def read_source(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, str] | None:
        """A Secret's (decoded) or ConfigMap's data, read with the node's own credentials.

        The Node authorizer grants access only once it has seen the pod reference the object,
        which lags the binding slightly, so 403s are retried briefly before counting as errors.
        """
        deadline = time.monotonic() + 5
        while True:
            try:
                read = (
                    self.node_api.read_namespaced_secret
                    if kind == "secrets"
                    else self.node_api.read_namespaced_config_map
                )
                obj = json.loads(read(name, namespace, _preload_content=False).data)
                break
            except ApiException as exc:
                if exc.status == 404:
                    if optional:
                        return None
                    raise ConfigError(f'{kind[:-1]} "{name}" not found') from None
                if exc.status == 403 and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise ConfigError(
                    f"reading {kind[:-1]} {namespace}/{name}: {exc.status} {exc.reason}"
                ) from None
        data = obj.get("data") or {}
        if kind == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return dict(data)


def main(argv: list[str] | None = None) -> None:
    """Run the agent in the foreground until SIGTERM/SIGINT (used by ``make cluster-up``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="node identity kubeconfig")
    parser.add_argument("--admin-kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="folder for pod sandboxes")
    parser.add_argument("--name", default="nejumi-gpu-0")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    agent = NodeAgent(
        args.kubeconfig, args.admin_kubeconfig, args.root, name=args.name, gpus=args.gpus, tie_to_parent=False
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    agent.start()
    log.info("node %s ready with %d GPUs", args.name, args.gpus)
    done.wait()
    agent.stop()


if __name__ == "__main__":
    main()
