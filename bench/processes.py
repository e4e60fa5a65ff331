"""Processes the benchmarks start (an API, a worker): started in a session of their own with
their output in a log file, stopped with their whole process group, and waited for."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def start_process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`command` in a new session, its output (both streams) in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 90) -> None:
    """SIGTERM to its process group; SIGKILL if it has not ended within `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answers(url: str) -> bool:
    """Whether `url` answers 200 within 2 s."""
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll `condition` every 0.1 s; RuntimeError(`message`) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.1)
