"""A real S3-compatible server for the tests: versitygw (github.com/versity/versitygw, Apache-2.0),
one Go binary that serves a local folder over the S3 API, built by ``make versitygw-bin``.

Why a real server and not a mock: what the results store relies on (SigV4 signatures checked
against real keys, a bucket policy that lets one key read and another write only under a prefix,
the error codes a refusal comes back with, user metadata kept with an object, a server that goes
away and comes back with its data) is the server's behaviour, and a mock would only repeat what
the test's author believed it to be.

Layout under ``root_dir``: ``data/`` (one folder per bucket, objects as files, metadata in xattrs),
``iam/`` (versitygw's internal IAM: ``users.json``), ``versitygw.log`` (its output, all runs).
The root keys are random per server; users are added through versitygw's admin API (served on the
S3 port itself when no ``--admin-port`` is given) by its own ``admin create-user`` command, and
their permissions are bucket policies put by root, as an operator would do it.

What versitygw v1.8.0 does that a test may trip over (checked by tests/e2e/test_s3_server.py):

- a policy's ``Principal`` is a user's access key (``{"AWS": ["reader"]}``), not an ARN, and it must
  name an existing user: anything else is ``MalformedPolicy`` ("Invalid principal in policy");
- bucket names are checked strictly (3 to 63 characters, as AWS): ``InvalidBucketName`` otherwise;
- a HEAD answers with no body, so botocore's error code is the bare status (``"403"``, ``"404"``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

READY_TIMEOUT_S = 60.0
"""How long a start may take before it counts as failed: generous for a loaded 2-core machine (it
is ready in well under a second when idle); the poll returns as soon as it answers."""
STOP_GRACE_S = 10.0
"""SIGTERM, then this long for a graceful shutdown, then SIGKILL."""
ADMIN_TIMEOUT_S = 60.0
"""One ``versitygw admin`` call (a single local HTTP request; generous for a loaded machine)."""


class VersitygwMissing(RuntimeError):
    """The versitygw binary has not been built (``make versitygw-bin``)."""


class StartupError(RuntimeError):
    """versitygw exited or did not answer in time; the message carries its log's tail."""


@dataclass(frozen=True)
class Credentials:
    """One S3 key pair (versitygw's account name is its access key)."""

    access_key: str
    secret_key: str


def versitygw_version() -> str:
    """``VERSITYGW_VERSION`` from the Makefile: the one pin, so the harness and the build agree."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^VERSITYGW_VERSION := (\S+)$", text, re.M)
    assert match, "VERSITYGW_VERSION not found in the Makefile"
    return match.group(1)


def versitygw_binary() -> Path:
    """The binary: ``$NEJUMI_VERSITYGW`` (exported by the Makefile), else the Makefile's cache folder.

    Missing is an error, not a skip: a store suite that skipped itself would report green without
    having tested anything."""
    env = os.environ.get("NEJUMI_VERSITYGW")
    path = Path(env) if env else REPO / ".cache" / "versitygw-bin" / versitygw_version() / "versitygw"
    if not os.access(path, os.X_OK):
        raise VersitygwMissing(f"versitygw not found at {path}: run `make versitygw-bin` (~1 min cold)")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _new_credentials(access_prefix: str) -> Credentials:
    return Credentials(f"{access_prefix}{secrets.token_hex(8)}", secrets.token_urlsafe(30))


def _resources(bucket: str, action: str, prefix: str) -> list[str]:
    """The policy resources an action applies to: bucket-level actions (``s3:ListBucket``,
    ``s3:GetBucketPolicy``, …: "Bucket" in the name) on the bucket, object actions on
    ``bucket/prefix*``, a wildcard action on both."""
    bucket_arn, objects_arn = f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{prefix}*"
    if "*" in action:
        return [bucket_arn, objects_arn]
    return [bucket_arn] if "Bucket" in action else [objects_arn]


class S3Server:
    """One versitygw process (posix backend) on 127.0.0.1, with its data, IAM and log in ``root_dir``.

    ``stop`` and ``start`` keep the port, the root keys, the users and the data: a test can take the
    store away and bring the same one back."""

    region: str = "us-east-1"

    def __init__(self, root_dir: Path, *, binary: Path | None = None, port: int | None = None) -> None:
        self.binary = binary or versitygw_binary()
        self.root_dir = root_dir
        self.data_dir = root_dir / "data"
        self.iam_dir = root_dir / "iam"
        self.log_path = root_dir / "versitygw.log"
        self.port = port or _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.root = _new_credentials("root-")
        self._popen: subprocess.Popen[bytes] | None = None

    # ---- process ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start versitygw (a no-op while it runs) and return once root's signed request succeeds.

        A clean environment: versitygw reads many ``VGW_*``/``ROOT_*`` variables (and ``LOGFILE``)
        as flags, and the test process's own must not configure it. Root's keys go through that
        environment rather than argv. With ``setpriv --pdeathsig`` the kernel kills the server if
        the test process dies, so none outlives the session."""
        if self.running():
            return
        for folder in (self.data_dir, self.iam_dir):
            folder.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "--port",
            f"127.0.0.1:{self.port}",
            "--region",
            self.region,
            "--iam-dir",
            str(self.iam_dir),
            "posix",
            str(self.data_dir),
        ]
        if setpriv := shutil.which("setpriv"):
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ROOT_ACCESS_KEY_ID": self.root.access_key,
            "ROOT_SECRET_ACCESS_KEY": self.root.secret_key,
        }
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {' '.join(argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Poll until root can list buckets (the listener is up and the IAM is loaded), failing at
        once if the process exits (e.g. the port was taken since ``stop``)."""
        import botocore.exceptions

        probe = self.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)
        deadline = time.monotonic() + READY_TIMEOUT_S
        last: Exception | None = None
        while True:
            if not self.running():
                raise StartupError(f"versitygw exited at start (port {self.port}):\n{self.log_tail()}")
            try:
                probe.list_buckets()
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                self.stop()
                raise StartupError(
                    f"versitygw did not answer within {READY_TIMEOUT_S:.0f}s at {self.endpoint} "
                    f"(last: {last!r}):\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self) -> None:
        """End the process (SIGTERM to its group, SIGKILL after ``STOP_GRACE_S``) and reap it: once
        this returns, the port refuses connections. Data, users and policies stay on disk."""
        popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- clients ----------------------------------------------------------------------------------

    def client(self, creds: Credentials | None = None, **config: Any) -> Any:
        """A boto3 S3 client for ``creds`` (root by default): this endpoint and region, path-style
        addressing (no bucket-name DNS on loopback). ``config`` adds ``botocore.config.Config``
        options, e.g. ``retries={"max_attempts": 1}, connect_timeout=1`` to see a failure at once.

        Keys, region and endpoint are explicit (they take precedence over ``AWS_*`` variables), so
        what a test exports for the product (``env``) never changes whom the harness speaks as."""
        import boto3
        from botocore.config import Config

        creds = creds or self.root
        session = boto3.session.Session(
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            region_name=self.region,
        )
        return session.client(
            "s3", endpoint_url=self.endpoint, config=Config(s3={"addressing_style": "path"}, **config)
        )

    def env(self, creds: Credentials | None = None) -> dict[str, str]:
        """The standard AWS variables that point an SDK (the product, a subprocess) at this server as
        ``creds`` (root by default)."""
        creds = creds or self.root
        return {
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
        }

    # ---- buckets, users, policies -----------------------------------------------------------------

    def make_bucket(self, name: str) -> None:
        """Create a bucket owned by root."""
        self.client().create_bucket(Bucket=name)

    def add_user(self, name: str) -> Credentials:
        """A non-admin user (versitygw role ``user``: no bucket of its own, no access to root's until
        ``allow``) whose access key is ``name`` (what a policy's principal names) and whose secret is
        random. A second user of the same name is an error."""
        creds = Credentials(name, secrets.token_urlsafe(30))
        argv = [str(self.binary), "admin", "--endpoint-url", self.endpoint, "--region", self.region]
        argv += ["create-user", "--access", creds.access_key, "--secret", creds.secret_key, "--role", "user"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ADMIN_ACCESS_KEY_ID": self.root.access_key,
            "ADMIN_SECRET_ACCESS_KEY": self.root.secret_key,
        }
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=ADMIN_TIMEOUT_S, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"versitygw admin create-user {name} failed: {proc.stdout}{proc.stderr}")
        return creds

    def policy(self, bucket: str) -> dict[str, Any]:
        """The bucket's policy document (an empty statement list when it has none)."""
        import botocore.exceptions

        try:
            text = self.client().get_bucket_policy(Bucket=bucket)["Policy"]
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchBucketPolicy":
                raise
            return {"Version": "2012-10-17", "Statement": []}
        doc: dict[str, Any] = json.loads(text)
        return doc

    def allow(self, bucket: str, creds: Credentials, actions: list[str], prefix: str = "") -> None:
        """Add to the bucket's policy (as root) statements that allow ``creds`` ``actions``: bucket-level
        ones (``s3:ListBucket``) on the whole bucket, object ones (``s3:GetObject``, ``s3:PutObject``)
        on keys starting with ``prefix``. Statements accumulate, read back from the server each time."""
        by_resource: dict[tuple[str, ...], list[str]] = {}
        for action in actions:
            by_resource.setdefault(tuple(_resources(bucket, action, prefix)), []).append(action)
        doc = self.policy(bucket)
        for resources, granted in by_resource.items():
            doc["Statement"].append(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": [creds.access_key]},
                    "Action": granted,
                    "Resource": list(resources),
                }
            )
        self.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(doc))


@contextmanager
def running_s3(root_dir: Path) -> Iterator[S3Server]:
    """A started ``S3Server`` over ``root_dir`` (random root keys, a free loopback port), stopped on
    exit however the block ends."""
    server = S3Server(root_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


RESULTS_BUCKET = "nejumi-results"
RESULTS_SECRET = "results-key"
"""The bucket and the consented Secret of the integration tests' `store` fixture."""


def results_spec(s3: S3Server, prefix: str = "cluster") -> dict[str, Any]:
    """`spec.results` for that bucket on `s3`, with the `store` fixture's Secret."""
    return {
        "uri": f"s3://{RESULTS_BUCKET}/{prefix}",
        "endpoint": s3.endpoint,
        "credentialsSecretRef": {"name": RESULTS_SECRET},
    }
