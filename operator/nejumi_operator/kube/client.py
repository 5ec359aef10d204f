"""The operator's connections to the API server: one API client for its own calls, and kopf's
session (kopf watches and patches through it) with a bounded number of connections."""

from __future__ import annotations

import os
from collections.abc import Sequence

import aiohttp
import kopf
from kubernetes import client, config

POOL = 32
"""Connections kept to the API server for the operator's own calls: as many as run at once (kopf's
16 handler threads, the 12 status syncs' threads, a few more), so a burst never opens and discards
connections (urllib3's default keeps 10)."""

KOPF_REQUESTS = 32
"""kopf's own requests at once besides its watches (mostly its patches of evaluations' annotations).
kopf's built-in session has no limit: 500 evaluations created at once against a busy API server had
it open hundreds of TLS connections, each with asyncio's 256 KiB read buffer, and the process kept
that memory. Over the limit a request waits for a free connection."""
WATCHES_PER_NAMESPACE = 5  # NejumiEvaluations, NejumiLeaderboards, Jobs, pods, ConfigMaps
CLUSTER_WATCHES = 2  # kopf's own: CustomResourceDefinitions and Namespaces


def make_api_client() -> client.ApiClient:
    """In a pod: the ServiceAccount; elsewhere: $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
        api = client.ApiClient()
    except config.ConfigException:
        # $KUBECONFIG read now: the client library reads it once, at import time.
        api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = POOL
    return api


def kopf_connections(namespaces: Sequence[str] | None) -> int:
    """How many connections kopf's session may hold at once: its requests and one per watch (a
    watch holds its connection for as long as it runs). 0 (no limit, kopf's own choice) when the
    namespaces are not known or are patterns (`team-*`, `!kube-system`): then so is the number of
    watches."""
    if namespaces is None or any(c in name for name in namespaces for c in "*?[]!,"):
        return 0
    return KOPF_REQUESTS + CLUSTER_WATCHES + WATCHES_PER_NAMESPACE * max(1, len(namespaces))


def kopf_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """kopf's session for these credentials (what kopf would build, `kopf.AiohttpSession`: kopf
    owns and closes it), with at most `limit` connections (0: no limit). Must be called on the
    event loop (an async login handler)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
        aiohttp_session=session,
    )
