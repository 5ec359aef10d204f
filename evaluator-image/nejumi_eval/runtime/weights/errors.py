"""What can go wrong getting a model's weights, as the evaluator's typed errors (`nejumi_eval.errors`).

- The source cannot be used as written (no such repository, revision, bucket or folder; a gated or
  private model without a token that has access; a store that refuses the key) → `WeightsSourceError`,
  exit 2: the spec or its Secret must change.
- The source could not be read (network, hub or store failing after retries; a lock held too long)
  → `WeightsUnavailable`, exit 3: retrying or fixing the environment may help.
- A downloaded file is not the file the source lists → `WeightsDigestMismatch`, exit 3: the cache
  entry is never marked complete, so the next fetch downloads it again.

Every message names the source URI; none names a token or a key.
"""

from __future__ import annotations

from nejumi_eval.errors import InfrastructureError, InputError


class WeightsSourceError(InputError):
    """The weights' source, as written, cannot be used (exit 2)."""


class WeightsUnavailable(InfrastructureError):
    """The weights could not be read from their source, or the cache could not be filled (exit 3)."""


class WeightsDigestMismatch(WeightsUnavailable):
    """A file's bytes are not the ones its source lists (exit 3)."""

    def __init__(self, uri: str, file: str, kind: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{uri}: {file} has {kind} {actual}, but the source lists {expected}; the download is "
            "discarded (never marked complete): retry, and if it persists the source's copy is damaged"
        )
        self.uri, self.file, self.kind, self.expected, self.actual = uri, file, kind, expected, actual


class CacheLockTimeout(WeightsUnavailable):
    """Another process held a cache entry's lock longer than the caller would wait (exit 3)."""
