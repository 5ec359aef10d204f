"""One S3 client for the results of record (and a model's s3:// weights), and every S3 failure turned
into a typed error here.

boto3 speaks the protocol (signing, retries, addressing); this module only chooses its settings
from `results` (endpoint, region, path-style) and the standard AWS variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_CA_BUNDLE`, read by boto3 itself),
and says what went wrong in one line that names the URI and never a key:

- the store refused the credentials, or the bucket does not exist → `StoreRefused` (exit 2: change
  the spec or the Secret);
- the store cannot be reached, or failed on its side → `StoreUnreachable` (exit 3: retry, fix the
  network).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nejumi_eval.api.v1alpha1.contract import EXIT_CONFIG, EXIT_INFRA
from nejumi_eval.api.v1alpha1.spec import ResultsSpec
from nejumi_eval.storage.cache import ObjectCache

DEFAULT_REGION = "us-east-1"
REFUSED_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "SignatureDoesNotMatch",
    "AuthorizationHeaderMalformed",
    "InvalidBucketName",
    "NoSuchBucket",
    "403",
    "Forbidden",
}
"""Error codes that no retry fixes: the credentials, the permissions or the bucket are wrong."""
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
RESULTS_CREDENTIALS = "results.credentialsSecretRef, or $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY"
"""Where the access key pair comes from, as a refusal's message names it (a store's user says its own)."""
DOWNLOAD_PART_BYTES = 64 << 20
"""`ObjectStore.download`: objects above this are read in ranged GETs of this size, in parallel."""
DOWNLOAD_CONCURRENCY = 8


class StoreError(RuntimeError):
    """An S3 operation failed; the message names the URI and what to do, never a key. `code`: the
    store's error code (NoSuchBucket, AccessDenied, NoSuchKey…), "" when it did not answer."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class StoreRefused(StoreError):
    """Refused credentials or permissions, or no such bucket: the spec or the Secret must change."""

    nejumi_exit_code = EXIT_CONFIG


class StoreUnreachable(StoreError):
    """The store cannot be reached (or failed on its side): retrying may help."""

    nejumi_exit_code = EXIT_INFRA


@dataclass(frozen=True)
class StoreSettings:
    """How to reach the store: `results` with the environment's defaults filled in."""

    endpoint: str | None
    region: str
    path_style: bool

    @classmethod
    def of(cls, spec: ResultsSpec) -> StoreSettings:
        env = os.environ
        endpoint = spec.endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        region = spec.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        # Path-style wherever an endpoint is named (MinIO, Ceph, versitygw: virtual-hosted style
        # would need a wildcard DNS name per bucket); virtual-hosted on AWS itself.
        path_style = spec.path_style if spec.path_style is not None else bool(endpoint)
        return cls(endpoint=endpoint or None, region=region, path_style=path_style)

    @property
    def where(self) -> str:
        return self.endpoint or "AWS S3"


@dataclass(frozen=True)
class ListedObject:
    """One object of a listing (`ObjectStore.objects`): its key, size and ETag (quoted, as sent)."""

    key: str
    size: int
    etag: str


@dataclass
class StoredObject:
    """An object being read (`ObjectStore.open`): `chunks()` yields its bytes, a failure on the way
    raised as a typed StoreError like any other; `close()` ends the read (read or not)."""

    uri: str
    where: str
    etag: str
    """As the store sent it, quoted (`"…"`): the MD5 of a single-part upload, else opaque."""
    size: int | None
    body: Any
    credentials: str = RESULTS_CREDENTIALS

    def chunks(self, size: int = 1 << 16) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(size)
        except Exception as exc:
            error = translate(exc, self.uri, self.where, self.credentials)
            if error is None:
                raise
            raise error from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.body.close()


class ObjectStore:
    """A bucket's objects through one boto3 client (thread-safe: uploads and reads run in threads)."""

    def __init__(
        self,
        spec: ResultsSpec | None = None,
        *,
        attempts: int = 3,
        connect_timeout: float = 5.0,
        credentials: str = RESULTS_CREDENTIALS,
    ):
        """`credentials`: where the key pair comes from, for a refusal's message."""
        import boto3
        from botocore.config import Config

        self.settings = StoreSettings.of(spec or ResultsSpec())
        self.credentials = credentials
        config = Config(
            region_name=self.settings.region,
            s3={"addressing_style": "path" if self.settings.path_style else "virtual"},
            retries={"mode": "standard", "max_attempts": attempts},
            connect_timeout=connect_timeout,
            read_timeout=60,
            # Checksums only where S3 requires them: many S3-compatible stores refuse the newer
            # default trailers; integrity is the manifest's sha256, checked by every reader.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=16,
        )
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=self.settings.endpoint, config=config
        )
        self.bytes_read = 0
        """Bytes of object bodies read so far (what a leaderboard's computation costs the store)."""
        self.cache: ObjectCache | None = None
        """Local copies of manifested objects by sha256 (`storage.cache`), when a reader keeps some."""
        self._count = threading.Lock()

    # ---- the operations (each raises a StoreError) ------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        if content_type is None:
            content_type = "application/json" if key.endswith(".json") else "application/x-ndjson"
        with self._errors(bucket, key):
            self.client.put_object(
                Bucket=bucket, Key=key, Body=data, Metadata=metadata or {}, ContentType=content_type
            )

    def get(self, bucket: str, key: str) -> bytes:
        with self._errors(bucket, key):
            data: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        with self._count:
            self.bytes_read += len(data)
        return data

    def get_if_exists(self, bucket: str, key: str) -> bytes | None:
        try:
            return self.get(bucket, key)
        except StoreError as exc:
            if exc.code in MISSING_CODES:
                return None
            raise

    def metadata(self, bucket: str, key: str) -> dict[str, str] | None:
        """The object's user metadata; None when it does not exist or may not be read (a key that
        may only write: the caller then writes, which is idempotent)."""
        try:
            with self._errors(bucket, key):
                head = self.client.head_object(Bucket=bucket, Key=key)
        except StoreRefused as exc:
            if exc.code == "NoSuchBucket":
                raise
            return None
        except StoreError as exc:
            if exc.code in MISSING_CODES:
                return None
            raise
        return {str(k): str(v) for k, v in (head.get("Metadata") or {}).items()}

    def delete(self, bucket: str, key: str) -> bool:
        """Best effort: False when the key may not delete (the caller goes on without)."""
        try:
            with self._errors(bucket, key):
                self.client.delete_object(Bucket=bucket, Key=key)
        except StoreRefused as exc:
            if exc.code == "NoSuchBucket":
                raise
            return False
        return True

    def keys(self, bucket: str, prefix: str) -> Iterator[str]:
        """Every key under `prefix` (page by page)."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(bucket, prefix):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents") or []:
                    yield item["Key"]

    def objects(self, bucket: str, prefix: str) -> Iterator[ListedObject]:
        """Every object under `prefix` with its size and ETag (page by page, in key order)."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(bucket, prefix):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents") or []:
                    yield ListedObject(item["Key"], int(item["Size"]), str(item.get("ETag") or ""))

    def download(self, bucket: str, key: str, dest: Path) -> None:
        """The object into the file `dest` through boto3's managed transfer (a large object in
        parallel ranged GETs; written under a temporary name, renamed when whole)."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=DOWNLOAD_PART_BYTES,
            multipart_chunksize=DOWNLOAD_PART_BYTES,
            max_concurrency=DOWNLOAD_CONCURRENCY,
        )
        with self._errors(bucket, key):
            self.client.download_file(bucket, key, str(dest), Config=config)
        with self._count:
            self.bytes_read += dest.stat().st_size

    def open(self, bucket: str, key: str) -> StoredObject:
        """The object as a stream, with its ETag and size: for serving a large object (a
        leaderboard's page) without holding it in memory. The caller closes it."""
        with self._errors(bucket, key):
            response = self.client.get_object(Bucket=bucket, Key=key)
        return StoredObject(
            uri=f"s3://{bucket}/{key}",
            where=self.settings.where,
            etag=str(response.get("ETag") or ""),
            size=response.get("ContentLength"),
            body=response["Body"],
            credentials=self.credentials,
        )

    # ---- errors --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, bucket: str, key: str) -> Iterator[None]:
        """botocore's exceptions → StoreRefused / StoreUnreachable (the cause kept, not printed)."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            error = translate(exc, f"s3://{bucket}/{key}", self.settings.where, self.credentials)
            if error is None:
                raise
            raise error from exc


def _code(exc: BaseException | None) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    code = str((response.get("Error") or {}).get("Code") or "")
    return code or str((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or "")


def translate(
    exc: BaseException, uri: str, where: str, credentials: str = RESULTS_CREDENTIALS
) -> StoreError | None:
    """The typed error for a botocore exception (None: not one of boto's: a bug, raised as it is).
    `credentials` says where the key pair comes from (a refusal's remedy)."""
    from boto3 import exceptions as b3x
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        code = _code(exc)
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            bucket = uri.split("/")[2]
            return StoreRefused(f"{uri}: bucket {bucket} does not exist at {where}", code)
        if code in REFUSED_CODES:
            return StoreRefused(
                f"{uri}: {where} refused the credentials ({code}): check the access key pair "
                f"({credentials}) and its permissions on the bucket",
                code,
            )
        if code in MISSING_CODES:
            return StoreError(f"{uri}: no such object at {where}", code)
        return StoreUnreachable(f"{uri}: {where} answered {status or ''} {code}".rstrip(), code)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return StoreRefused(f"{uri}: no credentials for {where}: set the access key pair ({credentials})")
    if isinstance(exc, bx.SSLError):
        return StoreRefused(
            f"{uri}: the TLS certificate of {where} is not trusted: name its CA bundle "
            "(results.caBundleRef, or $AWS_CA_BUNDLE)"
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionError | bx.HTTPClientError):
        return StoreUnreachable(f"{uri}: {where} cannot be reached ({type(exc).__name__})")
    if isinstance(exc, bx.BotoCoreError | b3x.Boto3Error):  # a managed transfer's failure included
        return StoreUnreachable(f"{uri}: {where}: {type(exc).__name__}")
    return None
