"""The S3 test server itself (tests/support/s3.py: versitygw, a real S3 implementation): what the
store tests build on, checked against the server rather than assumed. Keys are checked, a bucket
policy grants exactly what it says (read-only, write-only under a prefix), refusals come back with
the codes the product translates, and a stopped server refuses connections, then comes back with
its objects, users and policies.

Here rather than in tests/integration: that folder's fixtures start a Kubernetes control plane for
every test in it, and nothing here needs one."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.support.s3 import Credentials, S3Server

pytestmark = pytest.mark.timeout(120)

BUCKET = "results"


def _refusal(call: Callable[[], Any]) -> tuple[str, int]:
    """The (error code, HTTP status) of a call that must fail. A HEAD has no body to carry a code, so
    botocore's code is then the status itself ("403", "404")."""
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def s3(s3_server: S3Server) -> S3Server:
    s3_server.make_bucket(BUCKET)
    return s3_server


def test_root_stores_an_object_with_its_metadata_as_a_file_in_the_data_folder(s3: S3Server) -> None:
    root = s3.client()
    root.put_object(Bucket=BUCKET, Key="a/b.json", Body=b'{"x": 1}', Metadata={"sha256": "abc"})
    got = root.get_object(Bucket=BUCKET, Key="a/b.json")
    assert got["Body"].read() == b'{"x": 1}' and got["Metadata"] == {"sha256": "abc"}
    head = root.head_object(Bucket=BUCKET, Key="a/b.json")
    assert head["ContentLength"] == 8 and head["Metadata"] == {"sha256": "abc"}  # user metadata kept
    assert [o["Key"] for o in root.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["a/b.json"]
    assert (s3.data_dir / BUCKET / "a" / "b.json").read_bytes() == b'{"x": 1}'  # a real folder, no mock
    assert [b["Name"] for b in root.list_buckets()["Buckets"]] == [BUCKET]


def test_a_reader_lists_and_gets_but_may_not_put(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.client().put_object(Bucket=BUCKET, Key="team-a/r.json", Body=b"r")
    reader = s3.add_user("reader")
    assert reader.access_key == "reader" and reader.secret_key
    other = s3.client(reader)
    assert _refusal(lambda: other.get_object(Bucket=BUCKET, Key="team-a/r.json")) == ("AccessDenied", 403)

    s3.allow(BUCKET, reader, ["s3:GetObject", "s3:ListBucket"])
    client = s3.client(reader)
    assert [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="team-a/")["Contents"]] == [
        "team-a/r.json"
    ]
    assert client.get_object(Bucket=BUCKET, Key="team-a/r.json")["Body"].read() == b"r"
    assert client.head_object(Bucket=BUCKET, Key="team-a/r.json")["ContentLength"] == 1
    assert _refusal(lambda: client.put_object(Bucket=BUCKET, Key="team-a/w.json", Body=b"w")) == (
        "AccessDenied",
        403,
    )
    assert _refusal(lambda: client.create_bucket(Bucket="readers-own")) == ("AccessDenied", 403)

    # env() is all an SDK needs: a client configured only by the environment reads as the reader
    import boto3
    from botocore.config import Config

    for name, value in s3.env(reader).items():
        monkeypatch.setenv(name, value)
    from_env = boto3.session.Session().client("s3", config=Config(s3={"addressing_style": "path"}))
    assert from_env.get_object(Bucket=BUCKET, Key="team-a/r.json")["Body"].read() == b"r"


def test_a_writer_puts_under_its_prefix_only_and_reads_nothing(s3: S3Server) -> None:
    writer = s3.add_user("writer")
    s3.allow(BUCKET, writer, ["s3:PutObject"], prefix="team-a/")
    client = s3.client(writer)
    client.put_object(Bucket=BUCKET, Key="team-a/run/summary.json", Body=b"{}", Metadata={"sha256": "s"})
    stored = s3.client().head_object(Bucket=BUCKET, Key="team-a/run/summary.json")
    assert stored["Metadata"] == {"sha256": "s"}

    denied = ("AccessDenied", 403)
    assert _refusal(lambda: client.put_object(Bucket=BUCKET, Key="team-b/x.json", Body=b"")) == denied
    assert _refusal(lambda: client.put_object(Bucket=BUCKET, Key="team-a", Body=b"")) == denied
    assert _refusal(lambda: client.get_object(Bucket=BUCKET, Key="team-a/run/summary.json")) == denied
    assert _refusal(lambda: client.list_objects_v2(Bucket=BUCKET, Prefix="team-a/")) == denied
    assert _refusal(lambda: client.delete_object(Bucket=BUCKET, Key="team-a/run/summary.json")) == denied
    # HEAD needs s3:GetObject: refused, whether the object exists or not (no existence leak)
    assert _refusal(lambda: client.head_object(Bucket=BUCKET, Key="team-a/run/summary.json")) == ("403", 403)
    assert _refusal(lambda: client.head_object(Bucket=BUCKET, Key="team-a/none")) == ("403", 403)
    assert _refusal(lambda: client.head_bucket(Bucket=BUCKET)) == ("403", 403)

    # statements accumulate: a later grant to another user leaves the writer's in place
    reader = s3.add_user("reader")
    s3.allow(BUCKET, reader, ["s3:GetObject"], prefix="team-a/")
    statements = s3.policy(BUCKET)["Statement"]
    assert [(s["Principal"]["AWS"], s["Action"], s["Resource"]) for s in statements] == [
        (["writer"], ["s3:PutObject"], [f"arn:aws:s3:::{BUCKET}/team-a/*"]),
        (["reader"], ["s3:GetObject"], [f"arn:aws:s3:::{BUCKET}/team-a/*"]),
    ]
    client.put_object(Bucket=BUCKET, Key="team-a/again.json", Body=b"{}")


def test_bad_keys_and_missing_buckets_are_refused_with_these_codes(s3: S3Server) -> None:
    wrong_secret = s3.client(Credentials(s3.root.access_key, "not-the-secret"))
    assert _refusal(lambda: wrong_secret.list_objects_v2(Bucket=BUCKET)) == ("SignatureDoesNotMatch", 403)
    assert _refusal(lambda: wrong_secret.put_object(Bucket=BUCKET, Key="k", Body=b"")) == (
        "SignatureDoesNotMatch",
        403,
    )
    assert _refusal(lambda: wrong_secret.head_bucket(Bucket=BUCKET)) == ("403", 403)
    unknown = s3.client(Credentials("nobody", "whatever"))
    assert _refusal(lambda: unknown.list_objects_v2(Bucket=BUCKET)) == ("InvalidAccessKeyId", 403)
    assert _refusal(lambda: unknown.head_bucket(Bucket=BUCKET)) == ("403", 403)

    root, missing = s3.client(), ("NoSuchBucket", 404)
    assert _refusal(lambda: root.put_object(Bucket="no-such-bucket", Key="k", Body=b"")) == missing
    assert _refusal(lambda: root.list_objects_v2(Bucket="no-such-bucket")) == missing
    assert _refusal(lambda: root.head_bucket(Bucket="no-such-bucket")) == ("404", 404)
    assert _refusal(lambda: root.get_object(Bucket=BUCKET, Key="none")) == ("NoSuchKey", 404)
    assert _refusal(lambda: root.head_object(Bucket=BUCKET, Key="none")) == ("404", 404)
    # the bucket is checked before the policy: a user with no grant learns it does not exist
    nobody = s3.client(s3.add_user("nobody"))
    assert _refusal(lambda: nobody.put_object(Bucket="no-such-bucket", Key="k", Body=b"")) == missing

    # versitygw's own rules: a principal is an existing user's access key, and a user is added once
    ghost = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["ghost"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{BUCKET}/*"],
            }
        ],
    }
    refused = _refusal(lambda: root.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(ghost)))
    assert refused == ("MalformedPolicy", 400)
    with pytest.raises(RuntimeError, match="already exists"):
        s3.add_user("nobody")


def test_a_stopped_server_refuses_connections_and_comes_back_with_everything(s3: S3Server) -> None:
    s3.client().put_object(Bucket=BUCKET, Key="kept.json", Body=b"kept", Metadata={"sha256": "k"})
    reader = s3.add_user("reader")
    s3.allow(BUCKET, reader, ["s3:GetObject"])
    impatient = s3.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)

    s3.stop()
    assert not s3.running()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", s3.port), timeout=5):
        pass
    with pytest.raises(EndpointConnectionError):
        impatient.get_object(Bucket=BUCKET, Key="kept.json")
    s3.stop()  # a second stop is a no-op

    s3.start()
    assert s3.endpoint == f"http://127.0.0.1:{s3.port}"
    got = impatient.get_object(Bucket=BUCKET, Key="kept.json")  # the same client, the same root keys
    assert got["Body"].read() == b"kept" and got["Metadata"] == {"sha256": "k"}
    assert s3.client(reader).get_object(Bucket=BUCKET, Key="kept.json")["Body"].read() == b"kept"
