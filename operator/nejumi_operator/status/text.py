"""Messages as a person reads them in a status or an Event: clipped to what the API stores, one
sentence where a line is wanted, and without a terminal's progress bars."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 1024
SENTENCE_LIMIT = 300


def clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_LIMIT else "…" + text[-(MESSAGE_LIMIT - 1) :]


def clip_bytes(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` within `limit` bytes of UTF-8, its end kept (where a failure's cause is): what an
    Event's message may hold (the API server counts bytes; a condition's message, characters). A
    Japanese answer quoted in a message is three bytes a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return "…" + raw[-(limit - len("…".encode())) :].decode("utf-8", "ignore")


_PROGRESS_BAR = re.compile(
    r"\d+%\|[^|]*\||\|\s*\d+/\d+\s*\[|\bit/s\b|\d+(?:\.\d+)?s/it\b"  # tqdm bars
    r"|^progress: "  # the evaluator's plain progress lines (nejumi_eval.pipeline.Steps)
)


def readable(text: str) -> str:
    """A log tail as a terminal shows it: carriage-return overwrites resolved, progress lines (tqdm
    bars, `progress: jaster 812/1920 · …`) and blank lines dropped."""
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.split("\r")[-1].strip()
        if line and not _PROGRESS_BAR.search(line):
            lines.append(line)
    return "\n".join(lines)


def sentence(text: str) -> str:
    """One clean line for a message in progress (a retry's cause): the last readable line."""
    lines = readable(text).splitlines()
    line = lines[-1] if lines else ""
    return line if len(line) <= SENTENCE_LIMIT else line[: SENTENCE_LIMIT - 1] + "…"
