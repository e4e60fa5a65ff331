"""Fixtures for `code.python`: run code through the piece with a capturing logger.

`run_code(code, inputs, ...)` runs the piece exactly as a node would (input validation, the
cached probe, one sandbox child) and returns the output; `logs` holds what it logged. Escape
tests put `ATTEMPT` in front of their code: `attempt(f, *args)` returns what happened as JSON
(`{"raised": name, "errno": n, "message": text}` or `{"returned": repr}`) so that each test can
assert exactly how an attempt was refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from pieces.code import PythonCodePiece
from pieces.settings import PieceSettings
from pieces.testing import StandaloneContext, run_piece

ATTEMPT = """
def attempt(action, *args, **kwargs):
    try:
        value = action(*args, **kwargs)
    except BaseException as exc:
        return {
            "raised": type(exc).__name__,
            "errno": getattr(exc, "errno", None),
            "message": str(exc),
        }
    return {"returned": repr(value)}

"""

RunCode = Callable[..., Awaitable[Any]]


class CapturingHandler(logging.Handler):
    """Keeps every record it receives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int | None = None) -> list[str]:
        """The formatted messages, optionally of one level only."""
        return [r.getMessage() for r in self.records if level is None or r.levelno == level]


@pytest.fixture
def logs() -> Iterator[CapturingHandler]:
    """What the piece logged during the test."""
    handler = CapturingHandler()
    logger = logging.getLogger("altlas.test.code_python")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    """A real TCP listener on 127.0.0.1; the test fails if anything connected to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    with pytest.raises(BlockingIOError):  # nobody ever connected
        server.accept()
    server.close()


def assert_no_connection(server: socket.socket) -> None:
    """Nothing is waiting to be accepted on `server`."""
    with pytest.raises(BlockingIOError):
        server.accept()


@pytest.fixture
def run_code(logs: CapturingHandler) -> RunCode:
    """Run `code` through the `code.python` piece; extra keywords are input fields, except
    `settings` (a `PieceSettings`)."""

    async def run(
        code: str,
        inputs: dict[str, Any] | None = None,
        *,
        settings: PieceSettings | None = None,
        **fields: Any,
    ) -> Any:
        context = StandaloneContext(
            logger=logging.getLogger("altlas.test.code_python"),
            settings=settings or PieceSettings(),
        )
        return await run_piece(
            PythonCodePiece, {"code": code, "inputs": inputs or {}, **fields}, context=context
        )

    return run


def sandbox_processes() -> list[str]:
    """Processes on this host that belong to a `code.python` sandbox (outer or inner): their
    command line runs `sandbox.bootstrap`. Each entry is `pid: command line`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "sandbox.bootstrap" in cmdline:
            found.append(f"{name}: {cmdline[:120]}")
    return found


def threads_named(marker: str) -> list[str]:
    """Threads on this host whose name (`comm`) is `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().strip() == marker:
                        found.append(f"{pid}/{tid}")
            except OSError:
                continue
    return found


def process_status(pid: int) -> dict[str, str]:
    """`/proc/PID/status` as `{field: value}`; empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


async def cancel_once_running(task: asyncio.Future[Any], marker: str, count: int = 1) -> None:
    """Wait until `count` threads named `marker` run, cancel `task` and wait for it to end."""
    deadline = time.monotonic() + 10
    while len(threads_named(marker)) < count:
        assert time.monotonic() < deadline, f"{marker!r} never started"
        assert not task.done(), task
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def open_descriptors() -> int:
    """How many file descriptors this (worker) process holds."""
    return len(os.listdir("/proc/self/fd"))


def zombie_children() -> list[int]:
    """This process's children that exited but were never reaped."""
    zombies = []
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        for pid in f.read().split():
            status = process_status(int(pid))
            if status.get("State", "").startswith("Z"):
                zombies.append(int(pid))
    return zombies
