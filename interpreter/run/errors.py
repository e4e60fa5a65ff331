"""How a run stops and how a node fails, and how those are reported in the logs.

- `StopReason` and `RunStopped`: a run stopped from outside its nodes (cancelled, or past its
  deadline). The reason is a typed value the flow reads back; never parsed out of a message.
- `NodeFailure`: what a failed attempt raises to Prefect (a `PieceError` carrying the node's
  error record), so Prefect records the task run as failed and applies the retry policy.
- `quiet_expected_failures`: the engine logs one clear line for each ordinary failure itself; this
  keeps Prefect's task engine from adding a traceback of the engine's own code for it.
"""

from __future__ import annotations

import enum
import functools
import logging
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from pieces.base import PieceError


class StopReason(enum.StrEnum):
    """Why a run stopped before its nodes were done."""

    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class RunStopped(Exception):
    """Raised inside a node attempt when the run is cancelled or timed out."""

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class NodeFailure(PieceError):
    """A failed attempt of a node (or of one `core.map` item): type and message, redacted.

    `error` is the node's error record `{"node", "type", "message", "attempts"}`; `retryable`
    is what Prefect's retry condition reads. Make one with `node_failure`.
    """

    def __init__(self, error: dict[str, Any], *, retryable: bool) -> None:
        super().__init__(str(error["message"]), error_type=str(error["type"]), retryable=retryable)
        self.error = error


@functools.lru_cache(maxsize=256)
def _failure_class(error_type: str) -> type[NodeFailure]:
    return type(error_type, (NodeFailure,), {"__module__": __name__})


def node_failure(error: dict[str, Any], *, retryable: bool) -> NodeFailure:
    """A `NodeFailure` whose class is named after the error's type.

    Prefect describes a failed task run's state by the exception's class ("... exception
    SecretNotFound: secret 'x' is not defined"): that should be the node's error type, not an
    engine class.
    """
    return _failure_class(str(error["type"]))(error, retryable=retryable)


def input_error(piece: str, exc: PydanticValidationError) -> PieceError:
    """The node error for an input that fails the piece's model once templates are evaluated."""
    details = "; ".join(
        f"{'/'.join(str(p) for p in err['loc']) or '(input)'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
    return PieceError(
        f"input of piece {piece!r} is invalid after evaluating templates: {details}",
        error_type="InvalidInput",
        retryable=False,
    )


class _ExpectedFailureFilter(logging.Filter):
    """Drops Prefect's own records about a `NodeFailure` or `RunStopped` raised by a task run.

    Prefect's task engine logs every exception a task raises at ERROR with a traceback, which
    for an ordinary node failure shows only the engine's frames. The engine has already logged
    one line naming the node and the cause (and the traceback at DEBUG).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], NodeFailure | RunStopped):
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, NodeFailure | RunStopped) for arg in args)


_FILTER = _ExpectedFailureFilter()


def quiet_expected_failures() -> None:
    """Install the filter on Prefect's task run logger (once; cheap to call again)."""
    logger = logging.getLogger("prefect.task_runs")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
