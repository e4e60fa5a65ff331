"""Runs the user's code inside the finished sandbox and turns the outcome into a frame: `run`.

The code is compiled under the file name `<code>` and executed as module `__altlas_code__`;
`main(inputs)` is called (awaited, when it is a coroutine function) and its return value is
serialised to JSON here, inside the sandbox, so a value that is not JSON is the user's error.
Error frames carry the exception type, its message and a traceback limited to the user's frames.
"""

from __future__ import annotations

import builtins

from .jsonio import dumps
from .protocol import USER_FILENAME, encode

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: the child must not import `typing`
if TYPE_CHECKING:
    from typing import Any

    from .protocol import ResultFrame

MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_FRAMES = 12


def error_frame(kind: str, message: str, **details: Any) -> bytes:
    frame: ResultFrame = {"kind": "error", "type": kind, "message": message, "details": details}
    return encode(frame)


def _exception_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _exception_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<the exception's message could not be shown>"
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "... (truncated)"
    return text


def _user_traceback(exc: BaseException, code: str) -> str:
    try:
        import linecache
        import traceback

        linecache.cache[USER_FILENAME] = (len(code), None, code.splitlines(True), USER_FILENAME)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == USER_FILENAME]
        frames = frames[-MAX_TRACEBACK_FRAMES:]
        return "".join(traceback.format_list(frames)).rstrip()
    except Exception:
        return ""


def _code_error(exc: BaseException, during: str, code: str) -> bytes:
    name = _exception_name(exc)
    text = _exception_text(exc)
    trace = _user_traceback(exc, code)
    message = f"{name}: {text}" if text else name
    if trace:
        message += f"\nTraceback ({during}, most recent call last):\n{trace}"
    return error_frame("CodeError", message, exception_type=name, traceback=trace)


def _await(value: Any) -> Any:
    import asyncio

    async def wait() -> Any:
        return await value

    return asyncio.run(wait())


def run(code: str, inputs: Any) -> bytes:
    """Run `code`'s `main(inputs)` and return one encoded `result` or `error` frame."""
    try:
        compiled = compile(code, USER_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        line = (exc.text or "").rstrip("\n")
        message = f"the code does not compile: {exc.msg} ({where})"
        if line.strip():
            message += f"\n    {line.strip()}"
        return error_frame("InvalidCode", message, line=exc.lineno, column=exc.offset)
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
        return error_frame("InvalidCode", f"the code does not compile: {_exception_text(exc)}")
    namespace: dict[str, Any] = {"__name__": "__altlas_code__", "__builtins__": builtins}
    try:
        exec(compiled, namespace)
    except BaseException as exc:
        return _code_error(exc, "while defining the code", code)
    main = namespace.get("main")
    if not callable(main):
        return error_frame(
            "InvalidCode",
            "the code must define a function `main(inputs)`; "
            + ("`main` is not callable" if "main" in namespace else "no `main` was defined"),
        )
    try:
        value = main(inputs)
        if hasattr(type(value), "__await__"):  # a coroutine: `async def main`
            value = _await(value)
    except SystemExit as exc:
        return error_frame(
            "CodeError",
            f"main() called sys.exit({exc.code!r}); return a value instead",
            exception_type="SystemExit",
        )
    except BaseException as exc:
        return _code_error(exc, "user code", code)
    try:
        text = dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        return error_frame(
            "InvalidOutput",
            f"main() returned a value that is not JSON-serialisable "
            f"({type(value).__name__}): {_exception_text(exc)}",
        )
    return b'{"kind":"result","value":' + text.encode() + b"}\n"
