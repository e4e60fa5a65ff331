"""One attempt of a piece, written once for nodes and `core.map` items: `attempt_piece`.

An attempt renders the input templates, checks the result against the piece's input model, tells
the recorder the attempt started (with the rendered input), and runs the piece under the
attempt's time-out while watching the run's stop signal. `failure` turns what an attempt raised
into the `NodeFailure` Prefect sees, and `log_failure` writes the one log line a failure gets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from interpreter.definition import templates
from interpreter.run.errors import NodeFailure, input_error, node_failure
from interpreter.run.execution import Execution, NodeRecord
from interpreter.run.services import NodePhase
from pieces.base import Piece, PieceContext, PieceError, json_output


async def attempt_piece(
    execution: Execution,
    record: NodeRecord,
    piece: Piece[Any, Any],
    raw_input: Any,
    scope: dict[str, Any],
    *,
    limit: float | None,
    context_for: Callable[[dict[str, Any]], PieceContext],
) -> Any:
    """Run `piece` once on `raw_input` rendered in `scope`; return its JSON output.

    Raises:
        RunStopped: the run was cancelled or timed out meanwhile.
        PieceError: the input is invalid, the piece failed, or the attempt timed out.
    """
    rendered = templates.render(raw_input, scope, skip=piece.deferred_inputs)
    try:
        model = piece.parse_input(rendered)  # the rule validation applies to literal inputs
    except PydanticValidationError as exc:
        raise input_error(piece.key, exc) from None
    execution.transition(record, NodePhase.STARTED, "running", recorded_input=rendered)
    work = piece.run(context_for(scope), model)
    return json_output(await execution.guarded(work, limit, f"attempt {record.attempts}"))


def failure(execution: Execution, record: NodeRecord, exc: Exception) -> NodeFailure:
    """The `NodeFailure` for what an attempt raised: the node's error record, redacted."""
    if isinstance(exc, NodeFailure):
        return exc
    retryable = bool(getattr(exc, "retryable", True))
    return node_failure(execution.error_record(record, exc), retryable=retryable)


def log_failure(
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    execution: Execution,
    record: NodeRecord,
    exc: Exception,
    *,
    level: int,
    retry_in: float | None = None,
    of: int = 1,
) -> None:
    """One line naming the node and the cause; the traceback of where it was raised only at
    DEBUG (it shows the engine's and the piece's frames, not the workflow's mistake)."""
    error = record.error or execution.error_record(record, exc)
    cause = f"{error['type']}: {error['message']}"
    if isinstance(exc, PieceError) and exc.details:
        details = execution.redactor.value(exc.details)
        cause += f" (details: {json.dumps(details, default=str, ensure_ascii=False)})"
    if retry_in is not None:
        logger.log(
            level,
            "node %r: attempt %d of %d failed: %s; retrying in %.1fs",
            record.label,
            record.attempts,
            of,
            cause,
            retry_in,
        )
    else:
        after = f" after {record.attempts} attempts" if record.attempts > 1 else ""
        logger.log(level, "node %r failed%s: %s", record.label, after, cause)
    logger.debug("node %r: where the failure was raised", record.label, exc_info=exc)
