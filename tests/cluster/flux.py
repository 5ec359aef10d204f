"""Run the real Flux (source-controller and kustomize-controller) against the test control plane,
as local processes, with a Git server on loopback.

A team keeps its NejumiEvaluations in Git and lets Flux apply them; what the operator relies on
there (kustomize-controller's server-side apply, its health checks with kstatus under `wait: true`,
pruning of what was removed from Git) lives in Flux's code, so the tests run the genuine
controllers rather than a mock. Everything comes from the pinned module versions: the binaries
of one Flux release (v2.9.3: source-controller v1.9.3, kustomize-controller v1.9.4) built by
``make flux-bin``, and the CRDs and RBAC in the same modules' ``config/`` (found through
``go mod download -json``), so they cannot drift apart.

What a real install does in-cluster, and what this harness does instead on loopback:

- **CRDs**: every ``config/crd/bases`` file of both modules, as they are (kustomize-controller
  watches GitRepository, OCIRepository, Bucket and ExternalArtifact sources, so all are served).
- **Identities**: a client certificate per controller (users ``flux-source-controller`` and
  ``flux-kustomize-controller``). source-controller is bound to its module's own ClusterRole
  (``config/rbac/role.yaml``); kustomize-controller is bound to ``cluster-admin``, which is what
  flux2's install does too (its ``cluster-reconciler`` binding): it applies whatever Git holds.
  Each module's role is named ``<user>-manager-role``. The harness installs all this as the admin.
- **Artifacts**: source-controller's storage is a folder in ``workdir``, served on a free loopback
  port that is also the advertised address (``--storage-adv-addr``), so kustomize-controller
  downloads ``http://127.0.0.1:<port>/...`` as it would download from the Service.
- **Git**: the GitRepository CRD accepts only ``http``, ``https`` and ``ssh`` URLs (a pattern in
  its schema), so the repository is served over smart HTTP by ``git http-backend`` behind a small
  loopback HTTP server (``GitServer``), not by ``git daemon``. Tests commit into a working clone
  and push to the served bare repository (``GitServer.commit``).
- No notification-controller (``--events-addr`` empty: Events only), no leader election, health
  and metrics servers on free loopback ports. Ready means both ``/readyz`` answer.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes.dynamic import DynamicClient

from tests.cluster.controlplane import REPO, ControlPlane, Process, free_ports
from tests.cluster.gomodules import apply, install_crds, load_yaml, module_dir
from tests.cluster.manager import installing, wait_ready

# The controllers of one Flux release (fluxcd/flux2: manifests/bases/*/kustomization.yaml at the
# tag), as the Makefile's FLUX_*_VERSION; why this release, there.
FLUX_VERSION = "v2.9.3"
SOURCE_MODULE = "github.com/fluxcd/source-controller"
KUSTOMIZE_MODULE = "github.com/fluxcd/kustomize-controller"
MODULE_VERSIONS = {SOURCE_MODULE: "v1.9.3", KUSTOMIZE_MODULE: "v1.9.4"}
SOURCE_GROUP = "source.toolkit.fluxcd.io"
KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"
SOURCE_USER = "flux-source-controller"
KUSTOMIZE_USER = "flux-kustomize-controller"


class FluxMissing(RuntimeError):
    """The Flux binaries or modules are not there."""


def find_flux() -> Path:
    """The folder with ``source-controller`` and ``kustomize-controller`` (``make flux-bin``)."""
    env = os.environ.get("NEJUMI_FLUX_BIN")
    folder = Path(env) if env else REPO / ".cache" / "flux-bin" / FLUX_VERSION
    missing = [n for n in ("source-controller", "kustomize-controller") if not os.access(folder / n, os.X_OK)]
    if missing:
        raise FluxMissing(
            f"{', '.join(missing)} missing in {folder}: run `make flux-bin` first (~10 min cold)"
        )
    return folder


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "nejumi-test",
        "GIT_AUTHOR_EMAIL": "test@nejumi.invalid",
        "GIT_COMMITTER_NAME": "nejumi-test",
        "GIT_COMMITTER_EMAIL": "test@nejumi.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr}")
    return proc.stdout


class _GitHandler(BaseHTTPRequestHandler):
    """Smart HTTP through ``git http-backend`` (CGI), for the repositories under the server's root."""

    server: _GitHTTPServer

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _backend(self) -> None:
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": "nejumi-test",
        }
        for header, name in (("Git-Protocol", "GIT_PROTOCOL"), ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if self.headers.get(header):
                env[name] = self.headers[header]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.requests += 1


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.root = root
        self.requests = 0


class GitServer:
    """A bare repository ``<name>.git`` served over smart HTTP on loopback, and a working clone to
    commit into: ``commit({"models/a.yaml": text, "models/b.yaml": None}, "message")`` writes (or,
    for None, removes) the files, commits and pushes; it returns the commit's SHA."""

    def __init__(self, workdir: Path, name: str = "repo", branch: str = "main") -> None:
        self.workdir = Path(workdir).resolve()
        self.name = name
        self.branch = branch
        self.bare = self.workdir / "served" / f"{name}.git"
        self.clone = self.workdir / "clone"
        self._server: _GitHTTPServer | None = None

    @property
    def url(self) -> str:
        """The repository's URL, for a GitRepository."""
        assert self._server is not None, "GitServer not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self.name}.git"

    @property
    def requests(self) -> int:
        """How many HTTP requests the server answered (a fetch is two)."""
        return self._server.requests if self._server else 0

    def start(self) -> GitServer:
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "-q", f"--initial-branch={self.branch}", str(self.bare))
        _git("config", "http.receivepack", "true", cwd=self.bare)
        _git("init", "-q", f"--initial-branch={self.branch}", str(self.clone))
        _git("remote", "add", "origin", str(self.bare), cwd=self.clone)
        self._server = _GitHTTPServer(self.workdir / "served")
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def commit(self, files: dict[str, str | None], message: str) -> str:
        for name, text in files.items():
            path = self.clone / name
            if text is None:
                _git("rm", "-q", "--", name, cwd=self.clone)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                _git("add", "--", name, cwd=self.clone)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=self.clone)
        _git("push", "-q", "origin", f"HEAD:{self.branch}", cwd=self.clone)
        return _git("rev-parse", "HEAD", cwd=self.clone).strip()


@dataclass
class Flux:
    """source-controller and kustomize-controller for ``control_plane``, with their state (certs,
    artifact storage, logs) in ``workdir``. Use as a context manager (or ``start``/``stop``)."""

    control_plane: ControlPlane
    workdir: Path
    bin_dir: Path | None = None
    tie_to_parent: bool = True
    processes: dict[str, Process] = field(default_factory=dict)
    health_ports: dict[str, int] = field(default_factory=dict)
    storage_port: int = 0
    startup_seconds: float | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self._finalizers: list[weakref.finalize[Any, Flux]] = []

    def log_path(self, controller: str) -> Path:
        return self.workdir / "logs" / f"{controller}.log"

    def logs(self, lines: int = 40) -> str:
        """The tail of both controllers' logs, for error messages."""
        return "\n".join(f"--- {name} ---\n{proc.log_tail(lines)}" for name, proc in self.processes.items())

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Flux:
        """Install CRDs and RBAC, run both controllers, and return once both are ready."""
        t0 = time.monotonic()
        bins = self.bin_dir or find_flux()
        sources = {m: module_dir(m, v, FluxMissing) for m, v in MODULE_VERSIONS.items()}
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "storage").mkdir(exist_ok=True)
        with installing(self.control_plane, self.stop) as cluster:
            install_crds(cluster, [m / "config" / "crd" / "bases" for m in sources.values()], timeout, "Flux")
            self._install_rbac(cluster, sources[SOURCE_MODULE], SOURCE_USER, admin=False)
            self._install_rbac(cluster, sources[KUSTOMIZE_MODULE], KUSTOMIZE_USER, admin=True)
            self._launch(bins)
            self._wait_ready(timeout)
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop both controllers (CRDs and Flux's objects stay); safe to call twice."""
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()

    def __enter__(self) -> Flux:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- installation -------------------------------------------------------------------------

    def _install_rbac(self, cluster: DynamicClient, module: Path, user: str, *, admin: bool) -> None:
        """The module's own ClusterRole (``config/rbac/role.yaml``) bound to ``user``, plus
        ``cluster-admin`` for kustomize-controller (flux2's ``cluster-reconciler`` binding)."""
        subject = [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
        roles = []
        for role in load_yaml(module / "config" / "rbac" / "role.yaml"):
            role["metadata"]["name"] = f"{user}-{role['metadata']['name']}"
            apply(cluster, role)
            roles.append(role["metadata"]["name"])
        if admin:
            roles.append("cluster-admin")
        for role_name in roles:
            binding = f"{user}-{role_name}" if role_name == "cluster-admin" else role_name
            apply(
                cluster,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": binding},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": role_name,
                    },
                    "subjects": subject,
                },
            )

    # ---- the controller processes -------------------------------------------------------------

    def _launch(self, bins: Path) -> None:
        source_health, source_metrics, kustomize_health, kustomize_metrics, self.storage_port = free_ports(5)
        self.health_ports = {"source-controller": source_health, "kustomize-controller": kustomize_health}
        storage = f"127.0.0.1:{self.storage_port}"
        common = ["--events-addr=", "--log-level=debug", "--log-encoding=json", "--watch-all-namespaces=true"]
        argvs = {
            "source-controller": [
                str(bins / "source-controller"),
                f"--health-addr=127.0.0.1:{source_health}",
                f"--metrics-addr=127.0.0.1:{source_metrics}",
                f"--storage-path={self.workdir / 'storage'}",
                f"--storage-addr={storage}",
                f"--storage-adv-addr={storage}",
                *common,
            ],
            "kustomize-controller": [
                str(bins / "kustomize-controller"),
                f"--health-addr=127.0.0.1:{kustomize_health}",
                f"--metrics-addr=127.0.0.1:{kustomize_metrics}",
                "--no-remote-bases=true",
                *common,
            ],
        }
        users = {"source-controller": SOURCE_USER, "kustomize-controller": KUSTOMIZE_USER}
        for name, argv in argvs.items():
            kubeconfig = self.control_plane.write_kubeconfig(self.workdir / f"{name}.kubeconfig", users[name])
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(self.workdir),
                "KUBECONFIG": str(kubeconfig),
                "RUNTIME_NAMESPACE": "flux-system",
                "TMPDIR": str(self.workdir),
            }
            proc = Process(name, argv, self.log_path(name))
            proc.start(tie_to_parent=self.tie_to_parent, env=env, cwd=self.workdir)
            self.processes[name] = proc
            if self.tie_to_parent:
                self._finalizers.append(weakref.finalize(self, proc.stop))

    def _wait_ready(self, timeout: float) -> None:
        for name, port in self.health_ports.items():
            wait_ready(self.processes[name], port, timeout, name, interval=0.2)


def git_repository(
    name: str, namespace: str, url: str, interval: str = "5s", branch: str = "main"
) -> dict[str, Any]:
    """A GitRepository as a team would commit it."""
    return {
        "apiVersion": f"{SOURCE_GROUP}/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": interval, "url": url, "ref": {"branch": branch}, "timeout": "30s"},
    }


def kustomization(
    name: str, namespace: str, source: str, path: str = "./models", interval: str = "5s", timeout: str = "5m"
) -> dict[str, Any]:
    """A Kustomization applying ``path`` of the GitRepository ``source`` with prune and wait."""
    return {
        "apiVersion": f"{KUSTOMIZE_GROUP}/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": interval,
            "retryInterval": interval,
            "timeout": timeout,
            "path": path,
            "prune": True,
            "wait": True,
            "targetNamespace": namespace,
            "sourceRef": {"kind": "GitRepository", "name": source},
        },
    }


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Flux object's conditions by type."""
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


__all__ = [
    "FLUX_VERSION",
    "Flux",
    "FluxMissing",
    "GitServer",
    "conditions",
    "git_repository",
    "kustomization",
]
