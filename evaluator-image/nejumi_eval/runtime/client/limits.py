"""How big one answer may be: the text kept (cut at a character boundary) and the HTTP body read.

Why: nothing else bounds an answer. A server that ignores ``max_tokens`` (a bug, a proxy, a
misconfigured template that never stops) once answered 2 MB per request, and every answer was
then written into the response cache, the per-question tables, W&B's copies of them, the next
turn's prompt and the judge's prompt: a 58-request run wrote 1 GB and sent every 2 MB answer to
the judge. The cap is applied once, where the client receives the reply, so every later copy is
bounded by it and the judge never sees more than it.

Two limits:

- **The answer's text**, in UTF-8 bytes: :func:`answer_cap` of the request's ``max_tokens``. A
  server honouring ``max_tokens`` never reaches it, so a real answer is never cut; an answer that
  does is cut (:func:`truncate_utf8`) and flagged (``InferenceResult.truncated_from_bytes``), and
  the run counts it in its summary and terminal lines, never silently.
- **The HTTP body**, in bytes (:data:`MAX_BODY_BYTES`): read through a counting stream and
  abandoned past the limit, so a runaway server cannot make the client buffer gigabytes. Such a
  request fails (it is counted and scored like any failed request), since a JSON body cut short
  has no answer to keep. Between the two limits, an oversized answer is read whole, then cut.
"""

from __future__ import annotations

BYTES_PER_TOKEN = 16
"""The most UTF-8 bytes a generated token is credited with. A token decodes to 1 to ~4 bytes on
average (a CJK character is 3 bytes, an English word piece 3 to 6); 16 leaves several times that,
so only a server producing far more than it was asked for is cut."""
MIN_ANSWER_BYTES = 64 * 1024
"""The cap never goes below this: a small budget (jaster's 3-token answers) still leaves room for
a tokenizer that splits unusually, and 64 KiB is nothing to store or to send to a judge."""
MAX_ANSWER_BYTES = 1024 * 1024
"""The hard ceiling, whatever ``max_tokens`` says (1 MiB is 65,536 tokens at 16 bytes each)."""
MAX_BODY_BYTES = 16 * 1024 * 1024
"""The most of one HTTP response body the client reads. 16 × the text ceiling: a JSON body carries
its text escaped (up to 6 bytes per character as ``\\uXXXX``), so any answer within the text ceiling
fits, and so does a moderately oversized one (it is then cut, not failed). At most this much per
request in flight is ever held in memory."""


def answer_cap(max_tokens: int | None, ceiling: int = MAX_ANSWER_BYTES) -> int:
    """The most UTF-8 bytes of text kept from one answer to a request asking for `max_tokens`:
    ``max(MIN_ANSWER_BYTES, max_tokens × BYTES_PER_TOKEN)``, at most `ceiling` (the client's
    setting; a test lowers it). No `max_tokens` (not a generation request): the ceiling."""
    if max_tokens is None:
        return ceiling
    return min(ceiling, max(MIN_ANSWER_BYTES, max_tokens * BYTES_PER_TOKEN))


def truncate_utf8(text: str, limit: int) -> tuple[str, int | None]:
    """`text` cut to at most `limit` bytes of UTF-8, at a character boundary, and its size in
    bytes before the cut (None when it fits and is returned as it is).

    Lone surrogates (JSON may carry ``\\ud800``) are measured and kept as 3 bytes each, as
    ``surrogatepass`` encodes them, so no text is refused or altered below the limit.
    """
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes: it fits, nothing to encode
        return text, None
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, None
    cut = max(limit, 0)
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # a continuation byte: back to the character's start
        cut -= 1
    return data[:cut].decode("utf-8", "surrogatepass"), len(data)


class ResponseTooLargeError(Exception):
    """A response body over the client's byte limit; it was not read further."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        self.limit = limit
        self.declared = declared
        size = f"of {declared:,} bytes (its Content-Length) " if declared is not None else ""
        super().__init__(f"response body {size}over the {limit:,}-byte limit: not read further")
