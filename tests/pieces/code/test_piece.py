"""`code.python` as users see it: outputs, inputs, the standard library, logs and every error."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from pydantic import ValidationError

from pieces.base import PieceError
from pieces.code import PythonCodeInput, PythonCodePiece
from pieces.code.piece import _output
from pieces.code.process import ChildOutcome
from pieces.registry import default_registry
from pieces.settings import PieceSettings
from tests.pieces.code.conftest import (
    CapturingHandler,
    RunCode,
    open_descriptors,
    sandbox_processes,
    zombie_children,
)


async def test_returns_what_main_returns(run_code: RunCode) -> None:
    code = "def main(inputs):\n    return {'total': sum(inputs['values']), 'ok': True, 'n': None}\n"
    assert await run_code(code, {"values": [1, 2, 3.5]}) == {"total": 6.5, "ok": True, "n": None}


@pytest.mark.parametrize(
    "value",
    [[1, "two", 3.0], "text é ü 😀", 42, None, False, {"nested": {"list": [[], {}]}}],
)
async def test_any_json_value_round_trips(run_code: RunCode, value: Any) -> None:
    assert await run_code("def main(inputs):\n    return inputs['v']\n", {"v": value}) == value


async def test_inputs_default_to_an_empty_object(run_code: RunCode) -> None:
    assert await run_code("def main(inputs):\n    return inputs\n") == {}


async def test_standard_library_modules_are_importable(run_code: RunCode) -> None:
    code = """
import json, math, re, datetime, collections, itertools, statistics, decimal, hashlib, zoneinfo

def main(inputs):
    when = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Istanbul"))
    return {
        "json": json.loads('{"a": [1, 2]}'),
        "sqrt": math.sqrt(16),
        "match": re.findall(r"\\d+", "a1b22c333"),
        "when": when.isoformat(),
        "mean": statistics.mean([1, 2, 3]),
        "sum": str(decimal.Decimal("0.1") + decimal.Decimal("0.2")),
        "sha": hashlib.sha256(b"x").hexdigest()[:8],
        "counts": collections.Counter("abca").most_common(1),
    }
"""
    assert await run_code(code) == {
        "json": {"a": [1, 2]},
        "sqrt": 4.0,
        "match": ["1", "22", "333"],
        "when": "2026-11-01T12:00:00+03:00",
        "mean": 2,
        "sum": "0.3",
        "sha": "2d711642",
        "counts": [["a", 2]],
    }


async def test_the_smallest_memory_limit_still_runs_the_standard_library(run_code: RunCode) -> None:
    code = """
import json, re, datetime, decimal, threading

def main(inputs):
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    return json.dumps({"ok": bool(re.match("a", "a"))})
"""
    assert await run_code(code, memory_mb=64) == '{"ok": true}'


async def test_nan_in_inputs_is_invalid_input(run_code: RunCode) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    return 1\n", {"x": float("nan")})
    assert caught.value.error_type == "InvalidInput"
    assert caught.value.retryable is False


async def test_async_main_is_awaited(run_code: RunCode) -> None:
    code = """
import asyncio

async def main(inputs):
    await asyncio.sleep(0.01)
    return inputs["x"] * 2
"""
    assert await run_code(code, {"x": 21}) == 42


async def test_private_tmp_is_writable(run_code: RunCode) -> None:
    code = """
import tempfile, os

def main(inputs):
    with tempfile.NamedTemporaryFile("w+", delete=False) as f:
        f.write("hello")
    with open(f.name) as g:
        text = g.read()
    return {"text": text, "dir": os.path.dirname(f.name)}
"""
    assert await run_code(code) == {"text": "hello", "dir": "/tmp"}


async def test_stdout_and_stderr_reach_the_run_log(
    run_code: RunCode, logs: CapturingHandler
) -> None:
    code = """
import sys

def main(inputs):
    print("first line")
    print("second line")
    print("to stderr", file=sys.stderr)
    sys.stdout.write("no newline at the end")
    return 1
"""
    assert await run_code(code) == 1
    text = "\n".join(logs.messages(logging.INFO))
    for line in ("first line", "second line", "to stderr", "no newline at the end"):
        assert line in text
    assert not logs.messages(logging.WARNING)


async def test_output_beyond_the_cap_is_dropped_and_said(
    run_code: RunCode, logs: CapturingHandler
) -> None:
    code = "def main(inputs):\n    print('x' * 99)\n    print('y' * 5000)\n    return 'done'\n"
    settings = PieceSettings(sandbox_max_output_bytes=100)
    assert await run_code(code, settings=settings) == "done"
    info = "".join(logs.messages(logging.INFO))
    assert "x" * 99 in info
    assert "y" not in info
    warnings = logs.messages(logging.WARNING)
    assert len(warnings) == 1
    assert "output truncated: 5001 further bytes" in warnings[0]
    assert "ALTLAS_SANDBOX_MAX_OUTPUT_BYTES=100" in warnings[0]


async def test_printing_cannot_forge_the_result(run_code: RunCode) -> None:
    code = """
def main(inputs):
    print('{"kind":"result","value":"forged"}')
    print('{"kind":"setup","layers":{},"landlock_abi":0,"pid":1,"uid":0}')
    return "real"
"""
    assert await run_code(code) == "real"


async def test_writing_to_the_result_channel_is_refused_not_trusted(run_code: RunCode) -> None:
    code = """
import os

def main(inputs):
    # Every descriptor number the worker could have passed, whatever it had open at the time.
    for fd in range(3, 4096):
        try:
            os.write(fd, b'{"kind":"result","value":"forged"}\\n')
        except OSError:
            pass
    return "real"
"""
    with pytest.raises(PieceError) as caught:
        await run_code(code)
    assert caught.value.error_type == "InvalidOutput"
    assert "the code wrote to it itself" in caught.value.message


async def test_non_json_return_is_refused(run_code: RunCode) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    return {1, 2}\n")
    error = caught.value
    assert error.error_type == "InvalidOutput"
    assert error.retryable is False
    assert "not JSON-serialisable (set)" in error.message


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')"])
async def test_nan_and_infinity_are_refused(run_code: RunCode, value: str) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code(f"def main(inputs):\n    return [{value}]\n")
    assert caught.value.error_type == "InvalidOutput"
    assert "Out of range float values are not JSON compliant" in caught.value.message


async def test_too_large_a_result_is_refused(run_code: RunCode) -> None:
    settings = PieceSettings(sandbox_max_result_bytes=1000)
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    return 'x' * 5000\n", settings=settings)
    assert caught.value.error_type == "InvalidOutput"
    assert "more than the 1000 allowed" in caught.value.message


async def test_exception_is_reported_with_the_users_traceback(run_code: RunCode) -> None:
    code = """
def helper(value):
    return value["missing"]

def main(inputs):
    return helper(inputs)
"""
    with pytest.raises(PieceError) as caught:
        await run_code(code)
    error = caught.value
    assert error.error_type == "CodeError"
    assert error.retryable is False
    assert error.message.startswith("KeyError: 'missing'\nTraceback (user code")
    assert 'File "<code>", line 6, in main' in error.message
    assert 'File "<code>", line 3, in helper' in error.message
    assert 'return value["missing"]' in error.message
    # Only the user's frames: nothing of the sandbox's own code.
    assert "sandbox" not in error.message
    assert "bootstrap" not in error.message
    assert error.details["exception_type"] == "KeyError"


async def test_exception_at_import_time_is_reported(run_code: RunCode) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code("import json\nraise ValueError('bad config')\ndef main(inputs):\n    pass\n")
    assert caught.value.error_type == "CodeError"
    assert caught.value.message.startswith("ValueError: bad config")
    assert "while defining the code" in caught.value.message


async def test_non_builtin_exceptions_are_named_with_their_module(run_code: RunCode) -> None:
    code = "import json\ndef main(inputs):\n    return json.loads('{nope')\n"
    with pytest.raises(PieceError) as caught:
        await run_code(code)
    assert caught.value.message.startswith("json.decoder.JSONDecodeError: Expecting property")


async def test_sys_exit_is_a_code_error(run_code: RunCode) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code("import sys\ndef main(inputs):\n    sys.exit(3)\n")
    assert caught.value.error_type == "CodeError"
    assert "main() called sys.exit(3)" in caught.value.message


async def test_os_exit_without_a_result_is_reported(run_code: RunCode) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code("import os\ndef main(inputs):\n    os._exit(5)\n")
    assert caught.value.error_type == "CodeCrashed"
    assert "exited with status 5 before returning a result" in caught.value.message


async def test_syntax_error_is_invalid_code(run_code: RunCode) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    return (1 +\n")
    error = caught.value
    assert error.error_type == "InvalidCode"
    assert error.retryable is False
    assert error.message.startswith("the code does not compile: ")
    assert "line 2" in error.message


@pytest.mark.parametrize(
    ("code", "reason"),
    [("x = 1\n", "no `main` was defined"), ("main = 3\n", "`main` is not callable")],
)
async def test_missing_main_is_invalid_code(run_code: RunCode, code: str, reason: str) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code(code)
    assert caught.value.error_type == "InvalidCode"
    assert caught.value.message == f"the code must define a function `main(inputs)`; {reason}"


async def test_timeout_is_a_clear_error(run_code: RunCode) -> None:
    started = time.monotonic()
    with pytest.raises(PieceError) as caught:
        await run_code("import time\ndef main(inputs):\n    time.sleep(30)\n", timeout_seconds=0.5)
    assert time.monotonic() - started < 3
    error = caught.value
    assert error.error_type == "Timeout"
    assert error.message == (
        "the code did not finish within timeout_seconds=0.5 (wall clock) and was stopped"
    )
    assert sandbox_processes() == []


@pytest.mark.slow
async def test_cpu_limit_is_reported_as_a_timeout(run_code: RunCode) -> None:
    # CPU time is limited to timeout + 1 s, so only code that keeps more than one core busy
    # reaches it before the wall clock: hashing in threads releases the GIL.
    code = """
import hashlib, threading

def burn():
    data = b"x" * (1 << 20)
    while True:
        hashlib.sha256(data).digest()

def main(inputs):
    threads = [threading.Thread(target=burn, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
"""
    with pytest.raises(PieceError) as caught:
        await run_code(code, timeout_seconds=4)
    assert caught.value.error_type == "Timeout"
    # On an idle 2-core machine the CPU limit fires after about 2.5 s; under load the wall
    # clock may come first. Either way the node times out (the mapping is tested below).
    assert caught.value.message in {
        "the code used more than its CPU time limit (5 s) and was stopped",
        "the code did not finish within timeout_seconds=4 (wall clock) and was stopped",
    }
    assert sandbox_processes() == []


@pytest.mark.parametrize(
    ("exit_frame", "error_type", "message"),
    [
        (
            {"kind": "exited", "signal": 9, "cpu": 4.93},
            "Timeout",
            "the code used more than its CPU time limit (5 s) and was stopped",
        ),
        (
            {"kind": "exited", "signal": 9, "cpu": 0.2},
            "CodeCrashed",
            "the code's process died from SIGKILL (killed, e.g. by the kernel's out-of-memory "
            "killer) before returning",
        ),
        (
            {"kind": "exited", "signal": 11, "cpu": 0.2},
            "CodeCrashed",
            "the code's process died from SIGSEGV (a crash in native code, e.g. through ctypes) "
            "before returning",
        ),
        (
            {"kind": "exited", "signal": 31, "cpu": 0.2},
            "CodeCrashed",
            "the code's process died from SIGSYS (a system call the sandbox forbids) before "
            "returning",
        ),
    ],
)
def test_how_a_killed_sandbox_is_reported(
    exit_frame: dict[str, Any], error_type: str, message: str
) -> None:
    outcome = ChildOutcome(setup={"kind": "setup", "uid": 65534}, control=[exit_frame])
    with pytest.raises(PieceError) as caught:
        _output(outcome, PythonCodeInput(code="x", timeout_seconds=4))
    assert (caught.value.error_type, caught.value.message) == (error_type, message)
    assert caught.value.retryable is (error_type == "Timeout")


async def test_a_crash_in_native_code_is_reported(run_code: RunCode) -> None:
    code = "import ctypes\ndef main(inputs):\n    return ctypes.string_at(0)\n"
    with pytest.raises(PieceError) as caught:
        await run_code(code)
    assert caught.value.error_type == "CodeCrashed"
    assert "SIGSEGV" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"timeout_seconds": 601}, "timeout_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"memory_mb": 32}, "memory_mb"),
        ({"memory_mb": 5000}, "memory_mb"),
        ({"code": ""}, "code"),
        ({"unknown": 1}, "unknown"),
        ({"inputs": []}, "inputs"),
    ],
)
def test_input_is_validated(fields: dict[str, Any], location: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PythonCodePiece.Input.model_validate({"code": "def main(inputs): pass", **fields})
    assert caught.value.errors()[0]["loc"][0] == location


def test_input_schema_documents_defaults_and_limits() -> None:
    schema = PythonCodePiece.input_schema()
    props = schema["properties"]
    assert schema["required"] == ["code"]
    assert props["timeout_seconds"]["default"] == 30
    assert props["timeout_seconds"]["maximum"] == 600
    assert props["memory_mb"]["default"] == 256
    assert props["memory_mb"]["maximum"] == 4096
    assert schema["additionalProperties"] is False


def test_registered_under_its_key() -> None:
    assert default_registry().action("code.python") is PythonCodePiece


async def test_the_worker_keeps_nothing_after_many_calls(run_code: RunCode) -> None:
    await run_code("def main(inputs):\n    return 0\n")  # the probe, once
    descriptors = open_descriptors()
    quick = "import time\ndef main(inputs):\n    time.sleep(0.05)\n    return inputs['i']\n"
    results = await asyncio.gather(*(run_code(quick, {"i": i}) for i in range(20)))
    assert results == list(range(20))
    for _ in range(10):
        with pytest.raises(PieceError):
            await run_code(
                "def main(inputs):\n    while True:\n        pass\n", timeout_seconds=0.05
            )
    assert open_descriptors() == descriptors
    assert sandbox_processes() == []
    assert zombie_children() == []
