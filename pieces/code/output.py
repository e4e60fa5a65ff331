"""User code's stdout and stderr, copied into the run's log under a byte cap: `OutputLog`."""

from __future__ import annotations

import codecs
import logging

PARTIAL_LINE_LIMIT = 8192
"""A line longer than this is logged in pieces rather than held back."""


class OutputLog:
    """Turns chunks of output into log records: complete lines, one record per chunk.

    The first `max_bytes` bytes are logged; the rest is counted and dropped, and `close` says
    so in a warning. Bytes that are not UTF-8 are shown as U+FFFD.

    Args:
        logger: the run's logger (`PieceContext.logger`).
        max_bytes: `ALTLAS_SANDBOX_MAX_OUTPUT_BYTES`.
    """

    def __init__(
        self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger], max_bytes: int
    ) -> None:
        self.logger = logger
        self.max_bytes = max_bytes
        self.logged = 0
        self.dropped = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of output as it arrives."""
        room = self.max_bytes - self.logged
        kept = chunk[: max(room, 0)]
        self.logged += len(kept)
        self.dropped += len(chunk) - len(kept)
        if not kept:
            return
        text = self._partial + self._decoder.decode(kept)
        complete, newline, rest = text.rpartition("\n")
        if not newline:
            complete, rest = "", text
        if len(rest) > PARTIAL_LINE_LIMIT:
            complete, rest = (complete + newline + rest) if complete else rest, ""
        self._partial = rest
        if complete:
            self.logger.info("%s", complete)

    def close(self) -> None:
        """Log what is left and, when output was dropped, a warning saying how much."""
        text = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if text:
            self.logger.info("%s", text)
        if self.dropped:
            self.logger.warning(
                "output truncated: %d further bytes of stdout/stderr were dropped "
                "(ALTLAS_SANDBOX_MAX_OUTPUT_BYTES=%d)",
                self.dropped,
                self.max_bytes,
            )
