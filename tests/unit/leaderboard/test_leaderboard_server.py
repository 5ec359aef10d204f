"""The read-only leaderboard server (nejumi_eval.leaderboard.server) over HTTP, with the API and the
store replaced by fakes: routes, answers, headers, one log line per request. The real API, store
and browser: tests/integration/test_leaderboard_server.py."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from nejumi_eval.leaderboard import server as srv
from nejumi_eval.storage.store import StoredObject, StoreError, StoreRefused, StoreUnreachable

PAGE = "<!DOCTYPE html><title>board</title><p>ランキング</p>".encode() * 5000
BOARD = b'{"entries": []}'


def leaderboard(namespace: str, name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {}, "status": status}


PUBLISHED = leaderboard(
    "team-a",
    "main",
    leader="org/<b>alpha</b>",
    leaderOverall="0.61 [0.58, 0.64]",
    counts={"ranked": 3, "pending": 1},
    updatedAt="2026-11-01T09:00:00Z",
    conditions=[{"type": "Ready", "status": "True", "reason": "Computed", "message": "3 ranked"}],
    page={
        "uri": "s3://boards/leaderboards/team-a/main/index.html",
        "jsonUri": "s3://boards/leaderboards/team-a/main/leaderboard.json",
        "bytes": len(PAGE),
        "published": True,
    },
)


class FakeLeaderboards:
    def __init__(self, objects: list[dict[str, Any]], namespaces: list[str] | None = None) -> None:
        self.objects, self.namespaces = objects, namespaces or []
        self.failing: str | None = None

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    def list(self) -> srv.Listing:
        if self.failing:
            raise srv.Upstream(self.failing)
        return srv.Listing(items=list(self.objects))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        if self.failing:
            raise srv.Upstream(self.failing)
        for o in self.objects:
            if o["metadata"] == {"namespace": namespace, "name": name}:
                return o
        raise srv.NotFound(f"no NejumiLeaderboard {namespace}/{name}")


class Body:
    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.stream, self.fail_after, self.closed = io.BytesIO(data), fail_after, False

    def iter_chunks(self, size: int) -> Iterator[bytes]:
        sent = 0
        while chunk := self.stream.read(size):
            if self.fail_after is not None and sent >= self.fail_after:
                raise StoreUnreachable("s3://boards/x: the store went away")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.closed = True


class FakeStore:
    def __init__(self) -> None:
        self.objects = {
            ("boards", "leaderboards/team-a/main/index.html"): PAGE,
            ("boards", "leaderboards/team-a/main/leaderboard.json"): BOARD,
        }
        self.error: StoreError | None = None
        self.fail_after: int | None = None
        self.opened: list[Body] = []

    def open(self, bucket: str, key: str) -> StoredObject:
        if self.error is not None:
            raise self.error
        if (bucket, key) not in self.objects:
            raise StoreError(f"s3://{bucket}/{key}: no such object", "NoSuchKey")
        data = self.objects[(bucket, key)]
        body = Body(data, self.fail_after)
        self.opened.append(body)
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        return StoredObject(f"s3://{bucket}/{key}", "store", etag, len(data), body)


@pytest.fixture
def app() -> Iterator[tuple[FakeLeaderboards, FakeStore, int]]:
    lbs = FakeLeaderboards([PUBLISHED, leaderboard("team-b", "fresh")])
    store = FakeStore()
    server = srv.Server(("127.0.0.1", 0), lbs, srv.Published(store))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield lbs, store, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def request(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def assert_secure(headers: dict[str, str]) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


# ---- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", ("index", "", "")),
        ("/healthz", ("health", "", "")),
        ("/team-a/main/", ("page", "team-a", "main")),
        ("/team-a/main/index.html", ("page", "team-a", "main")),
        ("/team-a/main/leaderboard.json", ("json", "team-a", "main")),
        ("/team-a/main", ("slash", "team-a", "main")),
        ("/team-a/v1.2/", ("page", "team-a", "v1.2")),
        ("/team-a/main/other.html", None),
        ("/team-a/main/a/b", None),
        ("/../etc/passwd", None),
        ("/team-a/../", None),
        ("/team-a/%2e%2e/", None),
        ("/Team-A/main/", None),
        ("/team-a/.hidden/", None),
        ("/team-a/main\n/", None),
        ("/team-a.x/main/", None),  # a namespace is a label, no dots
        ("/" + "a" * 64 + "/main/", None),
        ("/team-a", None),
        ("/index.html", None),
    ],
)
def test_routes_are_dns_names_and_fixed_words(path: str, expected: tuple[str, str, str] | None) -> None:
    assert srv.route(path) == expected


# ---- answers -----------------------------------------------------------------------------------


def test_the_index_lists_every_leaderboard_escaped(app: tuple[FakeLeaderboards, FakeStore, int]) -> None:
    _, _, port = app
    status, headers, body = request(port, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert_secure(headers)
    text = body.decode()
    assert "org/&lt;b&gt;alpha&lt;/b&gt;" in text and "<b>alpha" not in text  # data, not markup
    assert "0.61 [0.58, 0.64]" in text and "2026-11-01T09:00:00Z" in text
    assert 'href="/team-a/main/"' in text and 'href="/team-a/main/leaderboard.json"' in text
    assert "True (Computed)" in text and 'title="3 ranked"' in text
    # the one without status: listed, not linked
    row = re.search(r'<tr data-leaderboard="team-b/fresh">.*?</tr>', text)
    assert row and "not published" in row.group(0) and "href" not in row.group(0)
    assert "<script" not in text
    # the CSP allows exactly the index's own style block, by hash
    style = re.search(r"<style>(.*?)</style>", text, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]


def test_the_page_is_streamed_from_the_store_with_its_etag(
    app: tuple[FakeLeaderboards, FakeStore, int],
) -> None:
    _, store, port = app
    status, headers, body = request(port, "/team-a/main/")
    assert status == 200 and body == PAGE
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert int(headers["content-length"]) == len(PAGE)
    assert headers["content-security-policy"] == srv.PAGE_CSP
    assert_secure(headers)
    etag = headers["etag"]
    assert etag == '"' + hashlib.md5(PAGE).hexdigest() + '"'
    deadline = time.monotonic() + 5  # closed once the last chunk is out (the client may be faster)
    while not store.opened[-1].closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.opened[-1].closed
    # revalidation: 304 without a body; HEAD: the headers only
    status, headers, body = request(port, "/team-a/main/", headers={"If-None-Match": f'W/{etag}, "x"'})
    assert (status, body) == (304, b"") and headers["etag"] == etag
    status, headers, body = request(port, "/team-a/main/index.html", "HEAD")
    assert (status, body) == (200, b"") and int(headers["content-length"]) == len(PAGE)
    status, headers, body = request(port, "/team-a/main/leaderboard.json")
    assert (status, body) == (200, BOARD) and headers["content-type"] == "application/json"
    assert headers["content-security-policy"] == srv.DATA_CSP
    status, headers, _ = request(port, "/team-a/main")
    assert status == 301 and headers["location"] == "/team-a/main/"


def test_missing_things_are_404_with_a_sentence(app: tuple[FakeLeaderboards, FakeStore, int]) -> None:
    _, store, port = app
    status, headers, body = request(port, "/team-a/nope/")
    assert status == 404 and body.decode().strip() == "no NejumiLeaderboard team-a/nope"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert_secure(headers)
    status, _, body = request(port, "/team-b/fresh/")
    assert status == 404 and "team-b/fresh has no published page yet" in body.decode()
    del store.objects[("boards", "leaderboards/team-a/main/index.html")]
    status, _, body = request(port, "/team-a/main/")
    assert status == 404
    assert "s3://boards/leaderboards/team-a/main/index.html is not in the store" in body.decode()
    status, _, body = request(port, "/../../etc/passwd")
    assert status == 404 and body.startswith(b"no such path")


@pytest.mark.parametrize(
    "error",
    [
        StoreUnreachable("s3://boards/leaderboards/team-a/main/index.html: http://s3:9000 cannot be reached"),
        StoreRefused(
            "s3://boards/leaderboards/team-a/main/index.html: refused the credentials", "AccessDenied"
        ),
    ],
)
def test_a_failing_store_is_502_naming_the_uri(
    app: tuple[FakeLeaderboards, FakeStore, int], error: StoreError
) -> None:
    _, store, port = app
    store.error = error
    status, headers, body = request(port, "/team-a/main/")
    assert status == 502 and headers["content-type"] == "text/plain; charset=utf-8"
    text = body.decode()
    assert (
        "s3://boards/leaderboards/team-a/main/index.html" in text and "cannot be read from the store" in text
    )


def test_a_store_failing_mid_page_cuts_the_response_short(
    app: tuple[FakeLeaderboards, FakeStore, int], caplog: pytest.LogCaptureFixture
) -> None:
    """The headers (200, Content-Length) are out: the connection is closed early, so a client sees
    an incomplete body, never a truncated page taken for a whole one."""
    _, store, port = app
    store.fail_after = 1
    with pytest.raises(http.client.IncompleteRead):
        request(port, "/team-a/main/")
    deadline = time.monotonic() + 5
    while (
        not any("failed mid-read" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    assert any("the store failed mid-read" in r.getMessage() for r in caplog.records)
    assert store.opened[-1].closed


def test_a_failing_api_is_502(app: tuple[FakeLeaderboards, FakeStore, int]) -> None:
    lbs, _, port = app
    lbs.failing = "the Kubernetes API server cannot be reached (ConnectionRefusedError)"
    for path in ("/", "/team-a/main/"):
        status, _, body = request(port, path)
        assert status == 502 and b"cannot be reached" in body
    assert request(port, "/healthz")[0] == 200  # liveness does not depend on the API


def test_a_status_naming_another_object_is_refused(app: tuple[FakeLeaderboards, FakeStore, int]) -> None:
    """Only index.html and leaderboard.json are ever read, whatever a status says."""
    lbs, store, port = app
    lbs.objects.append(
        leaderboard(
            "team-a", "odd", page={"uri": "s3://boards/secrets/creds.txt", "jsonUri": "s3://boards/x.json"}
        )
    )
    store.objects[("boards", "secrets/creds.txt")] = b"secret"
    status, _, body = request(port, "/team-a/odd/")
    assert status == 502 and b"does not end in /index.html" in body
    status, _, body = request(port, "/team-a/odd/leaderboard.json")
    assert status == 502 and b"does not end in /leaderboard.json" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
def test_only_get_and_head(app: tuple[FakeLeaderboards, FakeStore, int], method: str) -> None:
    _, store, port = app
    status, headers, body = request(port, "/team-a/main/", method, body=b"x" * 100)
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert f"{method} is not allowed".encode() in body
    assert store.opened == []


# ---- the API, through a fake CustomObjectsApi ----------------------------------------------------


class FakeApi:
    """CustomObjectsApi's three calls the server makes: pages of two, errors by namespace."""

    def __init__(self, objects: list[dict[str, Any]], errors: dict[str | None, BaseException] | None = None):
        self.objects, self.errors, self.calls = objects, errors or {}, []

    def _page(
        self, namespace: str | None, items: list[dict[str, Any]], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append((namespace, kwargs.get("_continue")))
        if namespace in self.errors:
            raise self.errors[namespace]
        start = int(kwargs.get("_continue") or 0)
        token = str(start + 2) if start + 2 < len(items) else None
        return {"items": [dict(i) for i in items[start : start + 2]], "metadata": {"continue": token}}

    def list_cluster_custom_object(self, group: str, version: str, plural: str, **kw: Any) -> dict[str, Any]:
        assert (group, version, plural) == ("nejumi.wandb.ai", "v1alpha1", "nejumileaderboards")
        return self._page(None, self.objects, kw)

    def list_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, **kw: Any) -> Any:
        items = [
            {"metadata": {"name": o["metadata"]["name"]}}
            for o in self.objects
            if o["metadata"]["namespace"] == ns
        ]
        return self._page(ns, items, kw)

    def get_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, name: str, **kw: Any
    ):
        self.calls.append((ns, name))
        if ns in self.errors:
            raise self.errors[ns]
        for o in self.objects:
            if o["metadata"] == {"namespace": ns, "name": name}:
                return o
        raise ApiException(status=404, reason="Not Found")


OBJECTS = [leaderboard(ns, name) for ns, name in [("b", "x"), ("a", "y"), ("a", "x"), ("c", "z"), ("b", "a")]]


def test_the_api_is_read_page_by_page_and_cached() -> None:
    api = FakeApi(OBJECTS)
    lbs = srv.Leaderboards(None, [], api=api)
    listing = lbs.list()
    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listing.items]
    assert keys == [("a", "x"), ("a", "y"), ("b", "a"), ("b", "x"), ("c", "z")] and listing.errors == []
    assert api.calls == [(None, None), (None, "2"), (None, "4")]
    lbs.list()  # within CACHE_SECONDS: no new call
    assert len(api.calls) == 3
    assert lbs.get("a", "x") == leaderboard("a", "x")
    with pytest.raises(srv.NotFound, match=r"^no NejumiLeaderboard a/nope$"):
        lbs.get("a", "nope")


def test_namespaced_lists_carry_their_namespace_and_a_failing_one_is_named() -> None:
    api = FakeApi(OBJECTS, {"b": ApiException(status=403, reason="Forbidden")})
    lbs = srv.Leaderboards(None, ["b", "a"], api=api)
    listing = lbs.list()
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listing.items] == [
        ("a", "x"),
        ("a", "y"),
    ]
    assert listing.errors == [
        "listing NejumiLeaderboards in namespace b: the Kubernetes API refused this server's ServiceAccount "
        "(403 Forbidden)"
    ]
    assert "b" in index_of(listing, lbs) and "refused this server" in index_of(listing, lbs)
    with pytest.raises(srv.NotFound, match="namespace c is not served here"):
        lbs.get("c", "z")
    assert ("c", "z") not in api.calls  # not asked


def index_of(listing: srv.Listing, lbs: srv.Leaderboards) -> str:
    return srv.index_html(listing, lbs.namespaces)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            ApiException(status=404, reason="Not Found"),
            "the cluster serves no nejumileaderboards.nejumi.wandb.ai",
        ),
        (
            ApiException(status=403, reason="Forbidden"),
            "refused this server's ServiceAccount (403 Forbidden)",
        ),
        (ApiException(status=500, reason="Internal Server Error"), "answered 500 Internal Server Error"),
        (ConnectionRefusedError(111, "refused"), "cannot be reached (ConnectionRefusedError)"),
    ],
)
def test_api_failures_are_upstream_errors(error: BaseException, says: str) -> None:
    with pytest.raises(srv.Upstream, match=re.escape(says)):
        srv.Leaderboards(None, [], api=FakeApi(OBJECTS, {None: error})).list()
    if not (isinstance(error, ApiException) and error.status == 404):
        with pytest.raises(srv.Upstream, match=re.escape(says.replace("the cluster serves no", ""))):
            srv.Leaderboards(None, [], api=FakeApi(OBJECTS, {"a": error})).get("a", "x")


def test_one_log_line_per_request(
    app: tuple[FakeLeaderboards, FakeStore, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, _, port = app
    with caplog.at_level(logging.INFO, logger="nejumi.leaderboard.server"):
        request(port, "/team-a/main/?token=abc")
        request(port, "/nope", "POST")
        deadline = time.monotonic() + 5  # logged once answered: the client may read it first
        while len(caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    get, post = sorted(lines)  # each is logged once answered, in either order
    assert re.fullmatch(rf'127\.0\.0\.1 "GET /team-a/main/" 200 {len(PAGE)} \d+ms', get), get
    assert re.fullmatch(r'127\.0\.0\.1 "POST /nope" 405 \d+ \d+ms', post), post
    assert "token" not in "".join(lines)  # no query string


def test_the_cache_keeps_answers_briefly() -> None:
    now = [0.0]
    cache = srv._Cache(2.0, clock=lambda: now[0])
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get(("k",), compute) == 1
    now[0] = 1.9
    assert cache.get(("k",), compute) == 1
    now[0] = 2.1
    assert cache.get(("k",), compute) == 2


def test_arguments() -> None:
    args = srv.parse_args(["--port", "9000", "--namespace=a", "--namespace", "b", "--no-path-style"])
    assert (args.port, args.namespace, args.path_style, args.host) == (9000, ["a", "b"], False, "0.0.0.0")
    with pytest.raises(SystemExit):
        srv.parse_args(["--namespace", "Not_A_Namespace"])


def test_a_bad_kubeconfig_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert srv.main(["--kubeconfig", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "cannot use kubeconfig" in capsys.readouterr().err


def test_a_bug_is_a_500_and_the_server_goes_on(
    app: tuple[FakeLeaderboards, FakeStore, int], caplog: pytest.LogCaptureFixture
) -> None:
    lbs, _, port = app
    lbs.objects.append({"metadata": {"namespace": "team-a", "name": "odd"}, "status": {"page": "not a map"}})
    status, _, body = request(port, "/team-a/odd/")
    assert status == 500 and body == b"internal error (see the server's log)\n"
    assert any("GET /team-a/odd/ failed" in r.getMessage() for r in caplog.records)
    assert request(port, "/healthz")[0] == 200
