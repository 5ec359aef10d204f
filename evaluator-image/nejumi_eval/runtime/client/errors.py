"""Typed errors for configuration mistakes that no retry can heal.

These are raised (and end the run) instead of being returned as flagged results: a wrong URL,
unknown model or bad key would otherwise turn every sample into a silent ``""``.
"""

from __future__ import annotations

from nejumi_eval.api.v1alpha1.contract import EXIT_CONFIG, EXIT_INFRA


class InferenceClientError(Exception):
    """Base class: the endpoint or model is misconfigured; the run cannot go on. Infrastructure
    (exit 3) unless a subclass says the spec is at fault."""

    nejumi_exit_code = EXIT_INFRA


class EndpointUnreachableError(InferenceClientError):
    """Nothing answers at the base URL (connection refused, DNS, timeouts on every attempt)."""


class ModelNotFoundError(InferenceClientError):
    """The server answered 404 / does not serve the model name (or the base URL path is wrong): the
    spec's fault (exit 2), which no retry of the pod can fix."""

    nejumi_exit_code = EXIT_CONFIG


class EndpointAuthError(InferenceClientError):
    """401/403: the API key is missing, wrong, or lacks access to the model: the spec's or its
    Secret's fault (exit 2)."""

    nejumi_exit_code = EXIT_CONFIG
