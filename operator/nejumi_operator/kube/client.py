"""One API client for the operator's own calls (kopf keeps its own connection for watching)."""

from __future__ import annotations

import os

from kubernetes import client, config


def make_api_client() -> client.ApiClient:
    """In a pod: the ServiceAccount; elsewhere: $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        # $KUBECONFIG read now: the client library reads it once, at import time.
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
