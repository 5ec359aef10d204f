"""The NejumiEvaluation API: names, condition types and reasons, the status model, the CRD generator."""

from nejumi_operator.api.names import (
    API_VERSION,
    GROUP,
    KIND,
    LABEL_EVALUATION,
    LABEL_QUEUE,
    PLURAL,
    SHORT_NAME,
    SINGULAR,
    VERSION,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "LABEL_EVALUATION",
    "LABEL_QUEUE",
    "PLURAL",
    "SHORT_NAME",
    "SINGULAR",
    "VERSION",
]
