"""Which failures are whose: the map from exceptions to `nejumi-eval` exit codes.

The operator reads the exit code (and the summary) to set the resource's condition reason, so the
classes below are the contract: configuration (the user must change the resource), infrastructure
(data, server, endpoint: retrying or fixing the environment may help), and bugs.
"""

from __future__ import annotations

from nejumi_eval.api.v1alpha1.contract import EXIT_BUG, EXIT_CONFIG, EXIT_INFRA, EXIT_OK

__all__ = [
    "EXIT_BUG",
    "EXIT_CONFIG",
    "EXIT_INFRA",
    "EXIT_OK",
    "InfrastructureError",
    "InputError",
    "classify",
]


class InputError(ValueError):
    """A user-supplied file or value that cannot be used."""


class InfrastructureError(RuntimeError):
    """The environment failed the run: a model server that would not start, a lost endpoint."""


def classify(exc: BaseException) -> int:
    """Exit code for an exception that ended a run."""
    from nejumi_eval.api.v1alpha1.spec import ConfigError
    from nejumi_eval.runtime.client.errors import InferenceClientError
    from nejumi_eval.runtime.fetch import DataError

    if isinstance(exc, ConfigError | InputError):
        return EXIT_CONFIG
    if isinstance(exc, DataError | InferenceClientError | InfrastructureError):
        return EXIT_INFRA
    return EXIT_BUG
