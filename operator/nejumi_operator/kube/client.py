"""One API client for the operator's own calls (kopf keeps its own connection for watching)."""

from __future__ import annotations

import os

from kubernetes import client, config

POOL = 32
"""Connections kept to the API server: as many as kopf's handler threads (`max_workers`), so a
burst of events never opens and discards connections (urllib3's default keeps 10)."""


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
