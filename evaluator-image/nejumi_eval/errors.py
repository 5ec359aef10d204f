"""Which failures are whose: the map from exceptions to `nejumi-eval` exit codes.

The operator reads the exit code (and the summary) to set the resource's condition reason, so the
classes are the contract: configuration (the user must change the resource), infrastructure (data,
server, an endpoint that does not answer: retrying or fixing the environment may help), and bugs.
An endpoint that answers but does not know the model, or refuses the key, is configuration.

Each typed error says its own exit code (class attribute `EXIT_CODE_ATTR`, next to where it is
defined: the spec's ConfigError, the client's errors, the data fetcher's), so this module imports
nothing above it and needs no list of them; an exception without one is a bug.
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


EXIT_CODE_ATTR = "nejumi_exit_code"
"""The class attribute a typed error carries its exit code in."""


class InputError(ValueError):
    """A user-supplied file or value that cannot be used."""

    nejumi_exit_code = EXIT_CONFIG


class InfrastructureError(RuntimeError):
    """The environment failed the run: a model server that would not start, a lost endpoint."""

    nejumi_exit_code = EXIT_INFRA


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
    return int(getattr(type(exc), EXIT_CODE_ATTR, EXIT_BUG))
