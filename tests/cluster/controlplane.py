"""Run a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) as local processes on free loopback ports.

The operator is tested against the genuine API server, admission, RBAC, scheduler and controllers
rather than mocks, because the behaviour we depend on (CEL validation, Job -> Pod, scheduling on
extended resources, garbage collection) lives in that code. The binaries are built from the Go
module pinned in ``tests/k8s-bin`` by ``make k8s-bin``; nothing here downloads anything.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.certs import CertificateAuthority, CertPair, service_account_keys

REPO = Path(__file__).resolve().parents[2]
K8S_MODULE = REPO / "tests" / "k8s-bin"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.0.0.0/24"

# The controllers the tests rely on; an explicit list keeps node-lifecycle-controller out, so the
# test node is never tainted or evicted when its agent is paused.
CONTROLLERS = (
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "resourcequota-controller",
    # Workspace PVCs: the binder binds a claim to the volume the test provisioner
    # (tests/cluster/provisioner.py) creates for it; the protection controllers lift the
    # pvc-/pv-protection finalizers (added by admission) once nothing uses them, so deletion ends.
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    # The chart's operator Deployment (tests/integration/test_in_cluster.py): Deployment →
    # ReplicaSet → pods, and a killed or deleted replica replaced.
    "deployment-controller",
    "replicaset-controller",
    # LeaderWorkerSet (tests/cluster/lws.py) runs a group's leader and workers as StatefulSets.
    "statefulset-controller",
)


class BinariesMissing(RuntimeError):
    """The control-plane binaries have not been built for the current ``tests/k8s-bin/go.sum``."""


class StartupError(RuntimeError):
    """A component exited or did not become ready in time; the message carries its log tail."""


def binary_cache_key() -> str:
    """The cache key ``make k8s-bin`` uses: the first 16 hex digits of sha256(go.sum)."""
    return hashlib.sha256((K8S_MODULE / "go.sum").read_bytes()).hexdigest()[:16]


def find_binaries() -> Path:
    """The folder holding the four binaries, or BinariesMissing telling the developer what to run.

    ``NEJUMI_K8S_BIN`` (exported by the Makefile) wins; otherwise the same hash-keyed cache folder
    is computed here, so a plain ``pytest`` finds what ``make k8s-bin`` built.
    """
    env = os.environ.get("NEJUMI_K8S_BIN")
    folder = Path(env) if env else REPO / ".cache" / "k8s-bin" / binary_cache_key()
    missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
    if missing:
        raise BinariesMissing(
            f"control-plane binaries missing in {folder} ({', '.join(missing)}): "
            "run `make k8s-bin` first (a cold build takes about 10 minutes)"
        )
    return folder


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets are held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; TimeoutError names ``what`` otherwise.

    Exceptions from the predicate count as "not yet" (the last one is quoted in the timeout), so
    callers can poll endpoints that refuse connections while starting.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last = result
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


@dataclass
class Process:
    """One child process with its log file; stops its whole process group."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(
        self, *, tie_to_parent: bool, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        """Start in a new session; with ``tie_to_parent`` the kernel kills it if we die (SIGKILL too)."""
        prefix: list[str] = []
        if tie_to_parent and shutil.which("setpriv"):
            prefix = ["setpriv", "--pdeathsig", "KILL", "--"]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                prefix + self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )

    @property
    def pid(self) -> int | None:
        """The OS process id (None before start)."""
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL it."""
        if self.popen is None:
            return
        terminate_group(self.popen.pid, grace, lambda: self.popen is not None and self.popen.poll() is None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def log_tail(self, lines: int = 25) -> str:
        """The end of the component's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def terminate_group(pid: int, grace: float, running: Callable[[], bool]) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL it if ``running()`` after ``grace``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _stop_all(processes: list[Process]) -> None:
    """Stop in reverse start order: scheduler/controller-manager, then apiserver, then etcd."""
    for proc in reversed(processes):
        proc.stop()


def kubeconfig_dict(server: str, ca_pem: bytes, user: str, cert: CertPair) -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded) for one client-certificate identity."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "nejumi-test", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert.cert_pem), "client-key-data": b64(cert.key_pem)},
            }
        ],
        "contexts": [{"name": "nejumi-test", "context": {"cluster": "nejumi-test", "user": user}}],
        "current-context": "nejumi-test",
    }


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler in ``workdir``.

    Use as a context manager (or call ``start``/``stop``). ``tie_to_parent`` (the default, for
    tests) makes the kernel kill the components if the Python process dies, and registers an
    interpreter-exit finalizer; ``make cluster-up`` turns it off so the cluster outlives the command.
    """

    workdir: Path
    bin_dir: Path | None = None
    tie_to_parent: bool = True
    # Opt-in API audit log (the scale bench counts one client's requests with it): an audit.k8s.io/v1
    # Policy, written to <workdir>/audit-policy.yaml; events go to `audit_log` as JSON lines.
    audit_policy: dict[str, Any] | None = None
    processes: list[Process] = field(default_factory=list)
    startup_seconds: float | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self._finalizer: weakref.finalize[Any, ControlPlane] | None = None

    # ---- identities and kubeconfigs ------------------------------------------------------------

    @property
    def pki(self) -> Path:
        """Certificates and keys."""
        return self.workdir / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``system:masters``)."""
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path | None:
        """The audit log (JSON lines), when ``audit_policy`` is set."""
        return self.workdir / "logs" / "audit.log" if self.audit_policy is not None else None

    @property
    def ca_file(self) -> Path:
        """The cluster CA certificate (PEM)."""
        return self.pki / "ca.crt"

    def write_kubeconfig(self, path: Path, user: str, groups: tuple[str, ...] = ()) -> Path:
        """Issue a client certificate for ``user``/``groups`` and write a kubeconfig for it.

        This is how tests act as another identity (a node, an unprivileged user) through real
        x509 authentication.
        """
        cert = self._ca.client(user, groups)
        path.write_text(yaml.safe_dump(kubeconfig_dict(self.server, self._ca.pair.cert_pem, user, cert)))
        path.chmod(0o600)
        return path

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes`` ApiClient for the admin (or the given kubeconfig)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> ControlPlane:
        """Start all components and return once the API is ready and controllers work."""
        t0 = time.monotonic()
        bins = self.bin_dir or find_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki.mkdir(exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        etcd_port, etcd_peer, api_port, kcm_port, sched_port = free_ports(5)
        self.server = f"https://127.0.0.1:{api_port}"
        self._write_pki()
        if self.tie_to_parent:
            self._finalizer = weakref.finalize(self, _stop_all, self.processes)

        def launch(name: str, argv: list[str]) -> Process:
            proc = Process(name, argv, logs / f"{name}.log")
            proc.start(tie_to_parent=self.tie_to_parent)
            self.processes.append(proc)
            return proc

        try:
            etcd = launch("etcd", self._etcd_args(bins, etcd_port, etcd_peer))
            self._wait_http(etcd, f"http://127.0.0.1:{etcd_port}/health", timeout, b'"health":"true"')
            api = launch("kube-apiserver", self._apiserver_args(bins, etcd_port, api_port))
            self._wait_http(api, f"{self.server}/readyz", timeout, b"ok", self._admin_ssl())
            kcm = launch("kube-controller-manager", self._kcm_args(bins, kcm_port))
            sched = launch("kube-scheduler", self._scheduler_args(bins, sched_port))
            insecure = ssl.create_default_context()
            insecure.check_hostname = False
            insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs; only /healthz
            self._wait_http(kcm, f"https://127.0.0.1:{kcm_port}/healthz", timeout, b"ok", insecure)
            self._wait_http(sched, f"https://127.0.0.1:{sched_port}/healthz", timeout, b"ok", insecure)
            # The serviceaccount controller creating default/default proves controllers really run.
            self._wait_http(
                kcm,
                f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
                timeout,
                b'"default"',
                self._admin_ssl(),
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop everything, the API server (and its watchers) before etcd. Safe to call twice."""
        _stop_all(self.processes)
        if self._finalizer is not None:
            self._finalizer.detach()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        """Component name -> pid, for ``cluster-down`` and debugging."""
        return {p.name: p.pid for p in self.processes if p.pid is not None}

    def logs(self) -> Iterator[tuple[str, Path]]:
        """(component, log file) pairs."""
        for p in self.processes:
            yield p.name, p.log_path

    # ---- internals ----------------------------------------------------------------------------

    def _write_pki(self) -> None:
        self._ca = CertificateAuthority()
        self._ca.pair.write(self.pki, "ca")
        self._ca.serving(
            "kube-apiserver",
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ["127.0.0.1", "10.0.0.1"],
        ).write(self.pki, "apiserver")
        self._sa_key, self._sa_pub = service_account_keys(self.pki)
        admin = self._ca.client("nejumi-admin", ("system:masters",))
        self.kubeconfig.write_text(
            yaml.safe_dump(kubeconfig_dict(self.server, self._ca.pair.cert_pem, "nejumi-admin", admin))
        )
        self.kubeconfig.chmod(0o600)
        self._admin = admin.write(self.pki, "admin")
        self.write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig", "system:kube-controller-manager"
        )
        self.write_kubeconfig(self.workdir / "scheduler.kubeconfig", "system:kube-scheduler")

    def _admin_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        assert self._admin.cert_file and self._admin.key_file
        ctx.load_cert_chain(self._admin.cert_file, self._admin.key_file)
        return ctx

    def _wait_http(
        self, proc: Process, url: str, timeout: float, expect: bytes, ctx: ssl.SSLContext | None = None
    ) -> None:
        def ready() -> bool:
            if not proc.alive():
                raise StartupError(f"{proc.name} exited with {proc.popen and proc.popen.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                    return resp.status == 200 and expect in resp.read()
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(ready, timeout, f"{proc.name} ({url})", interval=0.05)
        except (TimeoutError, StartupError) as exc:
            raise StartupError(f"{exc}\n--- {proc.log_path} (tail) ---\n{proc.log_tail()}") from None

    def _etcd_args(self, bins: Path, port: int, peer: int) -> list[str]:
        return [
            str(bins / "etcd"),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{port}",
            f"--advertise-client-urls=http://127.0.0.1:{port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",  # throwaway data: durability costs seconds per test run
            "--log-level=warn",
        ]

    def _apiserver_args(self, bins: Path, etcd_port: int, port: int) -> list[str]:
        pki = self.pki
        return [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self._sa_pub}",
            f"--service-account-signing-key-file={self._sa_key}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--anonymous-auth=false",
            "--profiling=false",
            *self._audit_args(),
        ]

    def _audit_args(self) -> list[str]:
        if self.audit_policy is None or self.audit_log is None:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(self.audit_policy))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # written as each request completes: counts are exact
        ]

    def _kcm_args(self, bins: Path, port: int) -> list[str]:
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        return [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self._sa_key}",
            f"--root-ca-file={self.ca_file}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--profiling=false",
        ]

    def _scheduler_args(self, bins: Path, port: int) -> list[str]:
        kubeconfig = self.workdir / "scheduler.kubeconfig"
        return [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'scheduler-certs'}",
            "--leader-elect=false",
            "--profiling=false",
        ]
