"""The `code.python` piece: its input model and `PythonCodePiece.run`.

`run` checks (once per process, through `pieces.code.probe`) that every isolation layer can be
set up, refuses when one cannot unless `ALTLAS_SANDBOX_ALLOW_UNSAFE` allows it, runs the code in
a sandbox child (`pieces.code.process.run_child`) while copying its output into the run's log,
and turns what the child reported into the node's output or a `PieceError`.
"""

from __future__ import annotations

import json
import math
import signal
from typing import Any

from pydantic import Field, JsonValue

from pieces.base import Piece, PieceContext, PieceError, StrictModel
from pieces.code.output import OutputLog
from pieces.code.probe import sandbox_support
from pieces.code.process import ChildLimits, ChildOutcome, run_child
from pieces.code.sandbox.protocol import ERROR_TYPES
from pieces.settings import PieceSettings

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_TIMEOUT_SECONDS = 600.0
DEFAULT_MEMORY_MB = 256
MIN_MEMORY_MB = 64
MAX_MEMORY_MB = 4096
MAX_CODE_CHARS = 1_000_000
OPEN_FILES = 64
"""Open file descriptors the code may hold (RLIMIT_NOFILE)."""
PROCESSES = 32
"""Processes and threads of the sandbox uid inside its user namespace (RLIMIT_NPROC)."""


class PythonCodeInput(StrictModel):
    """The input of `code.python` (its JSON Schema is what node inputs are validated against)."""

    code: str = Field(
        min_length=1,
        max_length=MAX_CODE_CHARS,
        description=(
            "Python 3.11 source that defines `main(inputs)` (plain or `async def`). Its return "
            "value, which must be JSON, is the node's output. Only the standard library is "
            "available; no network, no processes, a private writable /tmp."
        ),
    )
    inputs: dict[str, JsonValue] = Field(
        default_factory=dict, description="The object passed to `main` as `inputs`."
    )
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description=(
            f"Wall-clock limit, from starting the sandbox to the result (default "
            f"{DEFAULT_TIMEOUT_SECONDS:g}, at most {MAX_TIMEOUT_SECONDS:g}); CPU time is "
            "limited to the same number of seconds, rounded up, plus one."
        ),
    )
    memory_mb: int = Field(
        default=DEFAULT_MEMORY_MB,
        ge=MIN_MEMORY_MB,
        le=MAX_MEMORY_MB,
        description=(
            f"Address-space limit of the sandbox process in MiB (default {DEFAULT_MEMORY_MB}, "
            f"{MIN_MEMORY_MB} to {MAX_MEMORY_MB}); beyond it allocations fail with MemoryError."
        ),
    )


def limits_for(settings: PieceSettings, *, memory_mb: int, timeout_seconds: float) -> ChildLimits:
    """The uid and resource limits of one child."""
    tmp_bytes = settings.sandbox_tmp_mb * 1024 * 1024
    return ChildLimits(
        uid=settings.sandbox_uid,
        gid=settings.sandbox_uid,
        memory_bytes=memory_mb * 1024 * 1024,
        cpu_seconds=math.ceil(timeout_seconds) + 1,
        open_files=OPEN_FILES,
        processes=PROCESSES,
        file_size_bytes=tmp_bytes,
        tmp_bytes=tmp_bytes,
    )


class PythonCodePiece(Piece[PythonCodeInput, Any]):
    """Run a user's Python `main(inputs)` in a sandboxed process; its return value is the output.

    The code never runs in the worker's interpreter: each call starts a fresh, isolated child
    process (see `docs/pieces/code-python.md` for the layers and what each one stops).
    """

    key = "code.python"
    display_name = "Python code"
    description = (
        "Run Python code that defines main(inputs) in a sandbox (no network, no processes, no "
        "access to the worker's files or secrets); the node's output is what main returns."
    )
    category = "code"

    Input = PythonCodeInput

    async def run(self, context: PieceContext, input: PythonCodeInput) -> Any:
        settings = context.settings
        try:
            request = json.dumps(
                {"code": input.code, "inputs": input.inputs},
                allow_nan=False,
                ensure_ascii=True,
                separators=(",", ":"),
            ).encode()
        except ValueError as exc:
            raise PieceError(
                f"`inputs` cannot be passed as JSON: {exc}",
                error_type="InvalidInput",
                retryable=False,
            ) from None
        limits = limits_for(
            settings, memory_mb=input.memory_mb, timeout_seconds=input.timeout_seconds
        )
        support = await sandbox_support(limits)
        missing = support.missing
        if missing and not settings.sandbox_allow_unsafe:
            raise PieceError(
                "code.python refuses to run: this worker cannot isolate user code; missing "
                f"isolation layers: {support.describe_missing()}. Run the worker on a kernel with "
                "user namespaces, Landlock (ABI >= 4) and seccomp, or, only on a machine that "
                "runs nothing else, set ALTLAS_SANDBOX_ALLOW_UNSAFE=true (unsafe).",
                error_type="SandboxUnavailable",
                retryable=False,
                details={"missing": missing},
            )
        if missing:
            context.logger.warning(
                "UNSAFE: running user code without these isolation layers because "
                "ALTLAS_SANDBOX_ALLOW_UNSAFE=true: %s",
                support.describe_missing(),
            )
        log = OutputLog(context.logger, settings.sandbox_max_output_bytes)
        try:
            outcome = await run_child(
                mode="run",
                limits=limits,
                skip=sorted(missing),
                request=request,
                deadline_seconds=input.timeout_seconds,
                max_result_bytes=settings.sandbox_max_result_bytes,
                on_output=log.feed,
            )
        except OSError as exc:
            raise PieceError(
                f"the sandbox process could not be started: {exc}",
                error_type="SandboxError",
                retryable=True,
            ) from None
        finally:
            log.close()
        return _output(outcome, input)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _output(outcome: ChildOutcome, input: PythonCodeInput) -> Any:
    """The node's output, or the `PieceError` that says why there is none."""
    if outcome.timed_out:
        raise PieceError(
            f"the code did not finish within timeout_seconds={input.timeout_seconds:g} "
            "(wall clock) and was stopped",
            error_type="Timeout",
            retryable=True,
            details={"timeout_seconds": input.timeout_seconds},
        )
    if outcome.setup is not None and outcome.setup.get("uid") == 0:
        raise PieceError(
            "the sandbox reported running as root; refusing its result",
            error_type="SandboxError",
            retryable=False,
        )
    if outcome.protocol_error is not None:
        raise PieceError(outcome.protocol_error, error_type="InvalidOutput", retryable=False)
    frame = outcome.result
    if frame is not None:
        kind = frame.get("kind")
        if kind == "result" and "value" in frame:
            return frame["value"]
        error_type = frame.get("type")
        if kind == "error" and isinstance(error_type, str) and error_type in ERROR_TYPES:
            details = frame.get("details")
            raise PieceError(
                str(frame.get("message", error_type)),
                error_type=error_type,
                retryable=False,
                details=details if isinstance(details, dict) else {},
            )
        raise PieceError(
            "the result channel held something other than a result: the code wrote to it itself",
            error_type="InvalidOutput",
            retryable=False,
        )
    exit_frame = outcome.exit_frame() or {}
    number = exit_frame.get("signal")
    cpu = exit_frame.get("cpu")
    cpu_limit = math.ceil(input.timeout_seconds) + 1
    # The kernel enforces RLIMIT_CPU on precise run time; rusage (what `cpu` is) is sampled and
    # can read a few percent lower. Past the CPU limit the inner process gets SIGKILL.
    over_cpu = isinstance(cpu, (int, float)) and cpu >= 0.9 * cpu_limit
    if number == signal.SIGKILL and over_cpu:
        raise PieceError(
            f"the code used more than its CPU time limit ({cpu_limit} s) and was stopped",
            error_type="Timeout",
            retryable=True,
            details={"timeout_seconds": input.timeout_seconds, "limit": "cpu"},
        )
    if isinstance(number, int):
        hints: dict[int, str] = {
            signal.SIGSYS: " (a system call the sandbox forbids)",
            signal.SIGSEGV: " (a crash in native code, e.g. through ctypes)",
            signal.SIGKILL: " (killed, e.g. by the kernel's out-of-memory killer)",
        }
        hint = hints.get(number, "")
        raise PieceError(
            f"the code's process died from {_signal_name(number)}{hint} before returning",
            error_type="CodeCrashed",
            retryable=False,
            details={"signal": number},
        )
    if exit_frame:
        raise PieceError(
            f"the code's process exited with status {exit_frame.get('code')} before returning a "
            "result (os._exit or a closed result channel)",
            error_type="CodeCrashed",
            retryable=False,
            details={"exit_code": exit_frame.get("code")},
        )
    reason = outcome.control_error() or "it exited without reporting"
    raise PieceError(
        f"the sandbox failed to start: {reason}", error_type="SandboxError", retryable=False
    )
