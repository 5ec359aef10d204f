"""Which failures are whose: the map from exceptions to `nejumi-eval` exit codes.

The operator reads the exit code (and the summary) to set the resource's condition reason, so the
classes below are the contract: configuration (the user must change the resource), infrastructure
(data, server, an endpoint that does not answer: retrying or fixing the environment may help),
and bugs. An endpoint that answers but does not know the model, or refuses the key, is configuration.
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
    "unwrap",
]


class InputError(ValueError):
    """A user-supplied file or value that cannot be used."""


class InfrastructureError(RuntimeError):
    """The environment failed the run: a model server that would not start, a lost endpoint."""


def unwrap(exc: BaseException) -> BaseException:
    """The error a person should read out of a (nested) task-group `ExceptionGroup`: the first one
    with an exit code of its own (configuration, infrastructure), else the first leaf."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = [unwrap(e) for e in exc.exceptions]
    typed = [e for e in leaves if classify(e) != EXIT_BUG]
    return (typed or leaves)[0]


def classify(exc: BaseException) -> int:
    """Exit code for an exception that ended a run (task groups unwrapped)."""
    if isinstance(exc, BaseExceptionGroup):
        return classify(unwrap(exc))
    from nejumi_eval.api.v1alpha1.spec import ConfigError
    from nejumi_eval.runtime.client.errors import EndpointAuthError, InferenceClientError, ModelNotFoundError
    from nejumi_eval.runtime.fetch import DataError

    # A model name the endpoint does not serve, a wrong base URL path or a rejected key is the
    # spec's (or its Secret's) fault: no retry of the pod can fix it, so it fails the Job at once.
    if isinstance(exc, ConfigError | InputError | ModelNotFoundError | EndpointAuthError):
        return EXIT_CONFIG
    if isinstance(exc, DataError | InferenceClientError | InfrastructureError):
        return EXIT_INFRA
    return EXIT_BUG
