"""Every S3 failure becomes one typed error with one line that names the URI and never a key
(nejumi_eval.storage.store.translate): refused → exit 2, unreachable → exit 3."""

from __future__ import annotations

import pytest
from botocore import exceptions as bx

from nejumi_eval.api.v1alpha1.spec import ResultsSpec
from nejumi_eval.errors import EXIT_CONFIG, EXIT_INFRA, classify
from nejumi_eval.storage.store import StoreError, StoreRefused, StoreSettings, StoreUnreachable, translate

URI = "s3://results/team-a/summary.json"


def _client_error(code: str, status: int) -> bx.ClientError:
    response = {
        "Error": {"Code": code, "Message": "AKIAEXAMPLESECRET in the message"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return bx.ClientError(response, "PutObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "says"),
    [
        (
            _client_error("SignatureDoesNotMatch", 403),
            StoreRefused,
            "refused the credentials (SignatureDoesNotMatch)",
        ),
        (
            _client_error("InvalidAccessKeyId", 403),
            StoreRefused,
            "refused the credentials (InvalidAccessKeyId)",
        ),
        (_client_error("AccessDenied", 403), StoreRefused, "refused the credentials (AccessDenied)"),
        (_client_error("NoSuchBucket", 404), StoreRefused, "bucket results does not exist"),
        (_client_error("InternalError", 500), StoreUnreachable, "answered 500 InternalError"),
        (
            bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            StoreUnreachable,
            "cannot be reached",
        ),
        (bx.ConnectTimeoutError(endpoint_url="http://10.0.0.1"), StoreUnreachable, "cannot be reached"),
        (bx.NoCredentialsError(), StoreRefused, "no credentials"),
        (bx.SSLError(endpoint_url="https://s3.example", error="x"), StoreRefused, "not trusted"),
    ],
)
def test_each_failure_is_typed_and_says_what_to_do(exc: Exception, kind: type, says: str) -> None:
    error = translate(exc, URI, "http://store:9000")
    assert type(error) is kind
    assert says in str(error) and URI in str(error)
    assert "\n" not in str(error) and "AKIA" not in str(error)  # the store's own message is not repeated
    assert classify(error) == (EXIT_CONFIG if kind is StoreRefused else EXIT_INFRA)


def test_a_missing_object_is_neither_refused_nor_unreachable() -> None:
    error = translate(_client_error("NoSuchKey", 404), URI, "AWS S3")
    assert type(error) is StoreError and error.code == "NoSuchKey"
    assert translate(ValueError("a bug"), URI, "AWS S3") is None  # not boto's: raised as it is


def test_settings_come_from_the_spec_then_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    aws = StoreSettings.of(ResultsSpec())
    assert (aws.endpoint, aws.region, aws.path_style, aws.where) == (None, "us-east-1", False, "AWS S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    env = StoreSettings.of(ResultsSpec())
    assert (env.endpoint, env.region, env.path_style) == ("http://minio:9000", "ap-northeast-1", True)
    spec = ResultsSpec(uri="s3://bucket", endpoint="https://ceph:8443", region="jp", path_style=False)
    own = StoreSettings.of(spec)
    assert (own.endpoint, own.region, own.path_style) == ("https://ceph:8443", "jp", False)
