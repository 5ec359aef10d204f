"""The read-only leaderboard server: `python -m nejumi_eval.leaderboard.server [--port 8080]
[--host 0.0.0.0] [--namespace NS ...] [--kubeconfig FILE]` (the chart's `leaderboard.server`).

Why it exists: the operator computes each NejumiLeaderboard and writes its page (`index.html`, one
self-contained file) and its JSON (`leaderboard.json`) to the results store, a bucket people cannot
open in a browser (it needs the store's keys, and it should stay private: it holds every prompt and
answer). This server is the one thing between them and it: it lists the leaderboards the API shows
it and streams each one's page from the store, as read-only as it can be:

- **Kubernetes**: `get` and `list` on nejumileaderboards, nothing else (the chart's RBAC), read on
  request with a short cache (`CACHE_SECONDS`), no watch, no write of any kind.
- **The store**: only the two objects a leaderboard's status names (`status.page.uri`, whose name
  must be `index.html`, and `status.page.jsonUri`, `leaderboard.json`): a URL never becomes a key,
  so no request can read anything else, and a path is only ever `/<namespace>/<name>/…` with both
  parts checked as DNS names. Pages are streamed in chunks (a board of 100 models is tens of MB).
- **Answers**: 404 with a plain sentence when the leaderboard or its page does not exist (yet);
  502 when the API or the store refuses or cannot be reached, naming the URI, never a key; 405 for
  any method but GET and HEAD. Every response carries `X-Content-Type-Options: nosniff`,
  `Referrer-Policy: no-referrer` and a Content-Security-Policy: the index has no script at all; the
  page needs its inline scripts and styles (plotly and the page's own code are inside the file, see
  `html.py`), so `PAGE_CSP` allows inline code but nothing from anywhere else: no script, style,
  image, font, frame or connection of another origin (no network at all), no form, no framing.

The standard library's `ThreadingHTTPServer` is enough for a page that changes when an evaluation
finishes: no framework to keep up to date in an image that also runs the operator. One log line
per request (method, path, status, bytes, milliseconds), none with a query string or a header.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import logging
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from nejumi_eval.api.v1alpha1.leaderboard import BOARD_FILE, DNS_LABEL, PAGE_FILE
from nejumi_eval.api.v1alpha1.names import GROUP, LEADERBOARD_CRD_NAME, LEADERBOARD_PLURAL, VERSION
from nejumi_eval.api.v1alpha1.results import Location
from nejumi_eval.api.v1alpha1.spec import DNS_SUBDOMAIN
from nejumi_eval.errors import InputError
from nejumi_eval.storage.store import MISSING_CODES, StoredObject, StoreError

log = logging.getLogger("nejumi.leaderboard.server")

DEFAULT_PORT = 8080
CACHE_SECONDS = 2.0
"""How long an API answer is reused: a burst of page loads costs one read, and a new status shows
within this long."""
API_TIMEOUT = (5.0, 15.0)
"""Connect and read timeouts of each API call, in seconds."""
PAGE_SIZE = 200
"""Leaderboards per list call."""
REQUEST_TIMEOUT_SECONDS = 60
"""A client that sends nothing for this long is dropped (a slow client must not hold a thread)."""
STORE_ATTEMPTS = 2
STORE_CONNECT_TIMEOUT = 3.0
"""A stopped store answers 502 within seconds, not after the evaluator's patient retries."""

_NAMESPACE = re.compile(DNS_LABEL)
_NAME = re.compile(DNS_SUBDOMAIN)

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_LOCKED = "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    f"img-src data: blob:; font-src data:; {_LOCKED}"
)
"""The leaderboard page's policy: its scripts and styles are inline (one self-contained file), so
they are allowed inline and from nowhere else; plotly draws SVG with inline styles and exports
images as data: URLs. No connect-src: the page fetches nothing."""
DATA_CSP = f"default-src 'none'; {_LOCKED}"
"""JSON and plain-text answers: nothing may run or load."""

INDEX_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
    "table{border-collapse:collapse}th,td{padding:.35rem .7rem;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}td.num{text-align:right}.muted{color:#777}"
    ".warn{color:#a40}"
)
INDEX_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(INDEX_STYLE.encode()).digest()).decode()
    + f"'; {_LOCKED}"
)
"""The index: no script at all, only its own style block (by hash)."""


class Upstream(RuntimeError):
    """The API or the store refused or could not be reached: a 502 whose message says which."""


class NotFound(LookupError):
    """No such leaderboard, or nothing published for it yet: a 404 whose message says which."""


# ---- the API ---------------------------------------------------------------------------------------


@dataclass
class Listing:
    """What the index shows: the leaderboards read, and what could not be read (per namespace)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Cache:
    """Answers kept for `ttl` seconds (successes only: a failure is asked again next time)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = compute()
        with self._lock:
            self._values[key] = (now + self.ttl, value)
            if len(self._values) > 1024:  # names asked for once: drop what has expired
                self._values = {k: v for k, v in self._values.items() if v[0] > now}
        return value


class Leaderboards:
    """The NejumiLeaderboards this server may read: those of `namespaces` (empty: every namespace),
    through `client` (a kubernetes ApiClient)."""

    def __init__(
        self, client: Any, namespaces: list[str], ttl: float = CACHE_SECONDS, api: Any = None
    ) -> None:
        if api is None:
            from kubernetes.client import CustomObjectsApi

            api = CustomObjectsApi(client)
        self.api = api
        self.namespaces = sorted(set(namespaces))
        self._cache = _Cache(ttl)

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    def list(self) -> Listing:
        """Every leaderboard readable, sorted by namespace/name. Raises Upstream only when nothing
        could be read at all; a namespace that fails is named in `errors`."""
        listing: Listing = self._cache.get(("list",), self._list)
        return listing

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """One leaderboard, or NotFound; Upstream when the API fails."""
        if not self.serves(namespace):
            raise NotFound(
                f"namespace {namespace} is not served here (this server reads {', '.join(self.namespaces)})"
            )
        obj: dict[str, Any] = self._cache.get(("get", namespace, name), lambda: self._get(namespace, name))
        return obj

    def _get(self, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: Any = self.api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, LEADERBOARD_PLURAL, name, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"no NejumiLeaderboard {namespace}/{name}") from None
            raise Upstream(_api_error(exc, f"reading NejumiLeaderboard {namespace}/{name}")) from None
        except OSError as exc:  # urllib3's connection errors derive from it
            raise Upstream(f"the Kubernetes API server cannot be reached ({type(exc).__name__})") from None
        return dict(obj)

    def _list(self) -> Listing:
        listing = Listing()
        scopes: list[str | None] = list(self.namespaces) or [None]
        for namespace in scopes:
            try:
                listing.items.extend(self._pages(namespace))
            except Upstream as exc:
                listing.errors.append(str(exc))
        if len(listing.errors) == len(scopes):
            raise Upstream("; ".join(listing.errors))
        listing.items.sort(key=lambda o: (_meta(o, "namespace"), _meta(o, "name")))
        return listing

    def _pages(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        where = f"in namespace {namespace}" if namespace else "in any namespace"
        token = None
        page: Any
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "_request_timeout": API_TIMEOUT}
            if token:
                kwargs["_continue"] = token
            try:
                if namespace:
                    page = self.api.list_namespaced_custom_object(
                        GROUP, VERSION, namespace, LEADERBOARD_PLURAL, **kwargs
                    )
                else:
                    page = self.api.list_cluster_custom_object(GROUP, VERSION, LEADERBOARD_PLURAL, **kwargs)
            except ApiException as exc:
                if exc.status == 404:
                    raise Upstream(
                        f"the cluster serves no {LEADERBOARD_CRD_NAME} (is the NejumiLeaderboard CRD "
                        "installed?)"
                    ) from None
                raise Upstream(_api_error(exc, f"listing NejumiLeaderboards {where}")) from None
            except OSError as exc:
                raise Upstream(
                    f"the Kubernetes API server cannot be reached ({type(exc).__name__})"
                ) from None
            for item in page.get("items") or []:
                if namespace:  # a namespaced list may leave it out
                    item.setdefault("metadata", {}).setdefault("namespace", namespace)
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return


def _api_error(exc: Any, doing: str) -> str:
    if exc.status in (401, 403):
        return f"{doing}: the Kubernetes API refused this server's ServiceAccount ({exc.status} {exc.reason})"
    return f"{doing}: the Kubernetes API answered {exc.status} {exc.reason}"


def _meta(obj: dict[str, Any], key: str) -> str:
    return str((obj.get("metadata") or {}).get(key) or "")


# ---- the store -------------------------------------------------------------------------------------


class Published:
    """Reads the objects a leaderboard's status names, through one ObjectStore (boto3 client)."""

    def __init__(self, store: Any = None, path_style: bool | None = None) -> None:
        if store is None:
            from nejumi_eval.api.v1alpha1.spec import ResultsSpec
            from nejumi_eval.storage.store import ObjectStore

            store = ObjectStore(
                ResultsSpec(path_style=path_style),
                attempts=STORE_ATTEMPTS,
                connect_timeout=STORE_CONNECT_TIMEOUT,
            )
        self.store = store

    def open(self, obj: dict[str, Any], field_name: str, file_name: str) -> StoredObject:
        """The object `status.page.<field_name>` names (which must end in `file_name`), opened."""
        meta, page = obj.get("metadata") or {}, (obj.get("status") or {}).get("page") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        uri = page.get(field_name)
        if not uri:
            raise NotFound(
                f"NejumiLeaderboard {key} has no published page yet (status.page is not set: the operator "
                "has not computed it yet, or it has nowhere to publish; see its Ready condition)"
            )
        try:
            location = Location.parse(uri)
        except ValueError:
            raise Upstream(
                f"NejumiLeaderboard {key}: status.page.{field_name} {uri!r} is not an s3:// URI"
            ) from None
        if PurePosixPath(location.prefix).name != file_name:
            raise Upstream(
                f"NejumiLeaderboard {key}: status.page.{field_name} {uri} does not end in /{file_name}"
            )
        try:
            opened: StoredObject = self.store.open(location.bucket, location.prefix)
        except StoreError as exc:
            if exc.code in MISSING_CODES:
                raise NotFound(
                    f"NejumiLeaderboard {key}: {uri} is not in the store (not written yet?)"
                ) from None
            raise Upstream(f"NejumiLeaderboard {key}: {uri} cannot be read from the store: {exc}") from None
        return opened


# ---- the index -------------------------------------------------------------------------------------


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def index_html(listing: Listing, namespaces: list[str]) -> str:
    """The index page: one row per leaderboard, every value escaped, no script."""
    e = html.escape
    rows = []
    for obj in listing.items:
        ns, name = _meta(obj, "namespace"), _meta(obj, "name")
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        counts, page = status.get("counts") or {}, status.get("page") or {}
        ready = _condition(obj, "Ready")
        ready_text = ready.get("status", "Unknown") + (f" ({ready['reason']})" if ready.get("reason") else "")
        if page.get("uri"):
            link = (
                f'<a href="/{e(ns)}/{e(name)}/">page</a> · <a href="/{e(ns)}/{e(name)}/{BOARD_FILE}">json</a>'
            )
            if page.get("published") is False:
                link += ' <span class="warn" title="not written on the last computation">(stale)</span>'
        else:
            link = '<span class="muted">not published</span>'
        cells = [
            f"<td>{e(ns)}/{e(name)}</td>",
            f"<td>{e(str(spec.get('title') or name))}</td>",
            f"<td>{e(str(status.get('leader') or '—'))}</td>",
            f"<td>{e(str(status.get('leaderOverall') or '—'))}</td>",
            f'<td class="num">{e(str(counts.get("ranked", "—")))}</td>',
            f'<td class="num">{e(str(counts.get("pending", "—")))}</td>',
            f"<td>{e(str(status.get('updatedAt') or '—'))}</td>",
            f'<td title="{e(str(ready.get("message") or ""))}">{e(ready_text)}</td>',
            f"<td>{link}</td>",
        ]
        rows.append(f'<tr data-leaderboard="{e(ns)}/{e(name)}">{"".join(cells)}</tr>')
    scope = ", ".join(namespaces) if namespaces else "every namespace"
    errors = "".join(f'<p class="warn">{e(m)}</p>' for m in listing.errors)
    headers = "".join(
        f"<th>{h}</th>"
        for h in ("Leaderboard", "Title", "Leader", "Overall", "Ranked", "Pending", "Updated", "Ready", "")
    )
    body = (
        f"<table><thead><tr>{headers}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="muted">No NejumiLeaderboard yet.</p>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Nejumi leaderboards</title><style>{INDEX_STYLE}</style></head><body>"
        f'<h1>Nejumi leaderboards</h1><p class="muted">NejumiLeaderboards in {e(scope)}.</p>'
        f"{errors}{body}</body></html>\n"
    )


# ---- HTTP --------------------------------------------------------------------------------------------


def route(path: str) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of a request path; kind is index, health, page, json or slash (the
    leaderboard's path without its final /); None: no such path. Nothing is decoded: a path is
    DNS names and fixed words, or it is not served."""
    if path == "/":
        return ("index", "", "")
    if path == "/healthz":
        return ("health", "", "")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "":
        return None
    namespace, name, rest = parts[1], parts[2], "/".join(parts[3:])
    if not (
        _NAMESPACE.fullmatch(namespace)
        and len(namespace) <= 63
        and _NAME.fullmatch(name)
        and len(name) <= 253
    ):
        return None
    kinds = {"": "page", PAGE_FILE: "page", BOARD_FILE: "json"}
    if len(parts) == 3:
        return ("slash", namespace, name)
    kind = kinds.get(rest)
    return (kind, namespace, name) if kind else None


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], leaderboards: Leaderboards, published: Published) -> None:
        self.leaderboards, self.published = leaderboards, published
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "nejumi-leaderboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_SECONDS

    _status = 0
    _sent = 0

    # ---- dispatch -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def __getattr__(self, name: str) -> Any:
        """Every other method (`do_POST`, `do_DELETE`, even `do_FOO`): 405, not the stdlib's 501."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self.close_connection = True  # a body it may have sent is not read
        self._text(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"{self.command} is not allowed: this server is read-only",
            {"Allow": "GET, HEAD"},
        )

    def _serve(self, body: bool) -> None:
        path = urlsplit(self.path).path
        found = route(path)
        if found is None:
            self._text(
                HTTPStatus.NOT_FOUND, f"no such path: {path} (try / for the list of leaderboards)", body=body
            )
            return
        kind, namespace, name = found
        try:
            if kind == "health":
                self._text(HTTPStatus.OK, "ok", body=body)
            elif kind == "index":
                lbs = self.server.leaderboards
                page = index_html(lbs.list(), lbs.namespaces).encode("utf-8")
                self._bytes(HTTPStatus.OK, page, "text/html; charset=utf-8", INDEX_CSP, body=body)
            elif kind == "slash":
                self._redirect(f"/{namespace}/{name}/", body=body)
            else:
                obj = self.server.leaderboards.get(namespace, name)
                if kind == "page":
                    self._object(obj, "uri", PAGE_FILE, "text/html; charset=utf-8", PAGE_CSP, body)
                else:
                    self._object(obj, "jsonUri", BOARD_FILE, "application/json", DATA_CSP, body)
        except NotFound as exc:
            self._text(HTTPStatus.NOT_FOUND, str(exc), body=body)
        except Upstream as exc:
            self._text(HTTPStatus.BAD_GATEWAY, str(exc), body=body)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:  # a bug: say so, log the traceback, serve the next request
            log.exception("%s %s failed", self.command, path)
            if not self._status:  # nothing sent yet
                self._text(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the server's log)", body=body
                )
            self.close_connection = True

    # ---- answers --------------------------------------------------------------------------------

    def _object(
        self, obj: dict[str, Any], field_name: str, file_name: str, content_type: str, csp: str, body: bool
    ) -> None:
        stored = self.server.published.open(obj, field_name, file_name)
        try:
            etag = stored.etag or ""
            headers = {"Cache-Control": "no-cache", **({"ETag": etag} if etag else {})}
            if etag and etag in _etags(self.headers.get("If-None-Match")):
                self._start(HTTPStatus.NOT_MODIFIED, None, None, csp, headers)
                return
            self._start(HTTPStatus.OK, content_type, stored.size, csp, headers)
            if not body:
                return
            try:
                for chunk in stored.chunks():
                    self.wfile.write(chunk)
                    self._sent += len(chunk)
            except StoreError as exc:  # the headers are out: all that is left is to cut it short
                log.warning("%s: the store failed mid-read: %s", self.path, exc)
                self.close_connection = True
        finally:
            stored.close()

    def _text(
        self, status: HTTPStatus, message: str, extra: dict[str, str] | None = None, *, body: bool = True
    ) -> None:
        self._bytes(
            status, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8", DATA_CSP, extra, body=body
        )

    def _redirect(self, location: str, *, body: bool) -> None:
        self._text(HTTPStatus.MOVED_PERMANENTLY, f"see {location}", {"Location": location}, body=body)

    def _bytes(
        self,
        status: HTTPStatus,
        data: bytes,
        content_type: str,
        csp: str,
        extra: dict[str, str] | None = None,
        *,
        body: bool = True,
    ) -> None:
        self._start(status, content_type, len(data), csp, {"Cache-Control": "no-cache", **(extra or {})})
        if body:
            self.wfile.write(data)
            self._sent += len(data)

    def _start(
        self,
        status: HTTPStatus,
        content_type: str | None,
        length: int | None,
        csp: str,
        extra: dict[str, str],
    ) -> None:
        self._status = int(status)
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        elif status != HTTPStatus.NOT_MODIFIED:
            self.close_connection = True  # no length known: the end of the body is the end of the connection
        for key, value in {**SECURITY_HEADERS, "Content-Security-Policy": csp, **extra}.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    # ---- logging: one line per request ----------------------------------------------------------

    def handle_one_request(self) -> None:
        self._status, self._sent, self.requestline = 0, 0, ""
        started = time.monotonic()
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self._status = self._status or 499  # the client went away
        if self.requestline:
            log.info(
                '%s "%s %s" %d %d %.0fms',
                self.client_address[0],
                self.command,
                urlsplit(self.path or "").path,
                self._status,
                self._sent,
                (time.monotonic() - started) * 1000,
            )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # handle_one_request logs the request once it is answered

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("%s: " + format, self.client_address[0], *args)


def _etags(header: str | None) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compared as strong, as RFC 9110 says for
    If-None-Match)."""
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


# ---- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nejumi_eval.leaderboard.server",
        description="Serve the cluster's NejumiLeaderboards (read-only): an index and each one's "
        "page from the results store. Store credentials: the standard AWS variables.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--host", default="0.0.0.0", help="the address to listen on (default 0.0.0.0)")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="serve the leaderboards of NS only (repeatable; default: every namespace)",
    )
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, else in-cluster")
    parser.add_argument(
        "--path-style",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="path-style store addressing (default: path-style with $AWS_ENDPOINT_URL, else virtual-hosted)",
    )
    args = parser.parse_args(argv)
    for ns in args.namespace:
        if not (_NAMESPACE.fullmatch(ns) and len(ns) <= 63):
            parser.error(f"--namespace {ns!r}: not a namespace name")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not a port")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nejumi_eval.leaderboard.cluster import api_client

    try:
        client, _ = api_client(Path(args.kubeconfig) if args.kubeconfig else None)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = Server(
        (args.host, args.port), Leaderboards(client, args.namespace), Published(path_style=args.path_style)
    )
    # SIGTERM (the kubelet stopping the pod): stop accepting and exit 0. Requests in flight are cut
    # short (threads are daemons: an idle keep-alive connection must not hold the exit).
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    host, port = server.server_address[:2]
    scope = ", ".join(args.namespace) or "every namespace"
    log.info("serving NejumiLeaderboards of %s on http://%s:%s/", scope, host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
