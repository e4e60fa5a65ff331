"""Starting one sandbox child from the worker and supervising it to the end: `run_child`.

The child is a fresh interpreter (`python -I -S -B -u`, empty environment, its own session and
process group) running `sandbox.bootstrap`. The worker hands it the request in a memfd and reads
three pipes without blocking its event loop: `control` (outer process: the inner PID and how it
ended), `result` (inner process: the setup frame, then the result) and the merged
stdout/stderr, which is passed on as it arrives.

Whatever happens — the result arrives, the deadline passes, or the coroutine is cancelled — the
child's whole process tree is gone when `run_child` returns or raises: the inner process (init of
the sandbox's PID namespace, whose death ends every process in it) is killed through a pidfd and
the outer process group with `killpg`, and both pidfds are awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pieces.code.sandbox import protocol

SANDBOX_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(protocol.__file__)))
"""The directory holding the `sandbox` package; the child imports `sandbox` from it."""

KILL_WAIT_SECONDS = 5.0
"""How long to wait for a killed tree to be gone before giving up (it takes milliseconds)."""

REAP_WAIT_SECONDS = 1.0
"""After killing the inner process, how long the outer one gets to reap it and exit by itself."""

CONTROL_LIMIT = 64 * 1024


def interpreter() -> str:
    """The Python executable for the child: the base interpreter, not a virtualenv's wrapper."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def child_command(config: protocol.ChildConfig) -> list[str]:
    """The command line that starts a sandbox child with `config`."""
    return [
        interpreter(),
        "-I",
        "-S",
        "-B",
        "-u",
        "-c",
        protocol.LAUNCHER,
        SANDBOX_PARENT,
        json.dumps(config, separators=(",", ":")),
    ]


@dataclass(frozen=True)
class ChildLimits:
    """The limits and identity one child runs under (see `protocol.ChildConfig`)."""

    uid: int
    gid: int
    memory_bytes: int
    cpu_seconds: int
    open_files: int
    processes: int
    file_size_bytes: int
    tmp_bytes: int


@dataclass
class ChildOutcome:
    """What the worker learned from one child.

    Attributes:
        setup: the inner process's `setup` frame (layer statuses), when it got that far.
        result: the `result` or `error` frame that followed it.
        protocol_error: why the result channel could not be read (too large, malformed).
        control: the outer process's frames (`forked`, `exited` or `error`).
        timed_out: the deadline passed and the tree was killed.
        killed: the worker killed the tree (deadline or cancellation).
        elapsed: seconds from spawn to the end.
    """

    setup: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    protocol_error: str | None = None
    control: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False
    killed: bool = False
    elapsed: float = 0.0

    def exit_frame(self) -> dict[str, Any] | None:
        """The outer process's report of how the inner process ended."""
        return next((f for f in self.control if f.get("kind") == "exited"), None)

    def control_error(self) -> str | None:
        """The outer process's own failure, if it had one."""
        frame = next((f for f in self.control if f.get("kind") == "error"), None)
        return str(frame.get("message")) if frame else None


class _PipeReader:
    """Reads a non-blocking pipe on the event loop until end-of-file, keeping at most `limit`
    bytes and passing every chunk to `on_data`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        limit: int,
        on_data: Callable[[bytes], None] | None = None,
    ) -> None:
        self.loop, self.fd, self.limit, self.on_data = loop, fd, limit, on_data
        self.data = bytearray()
        self.dropped = 0
        self.done: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._ready)

    def _ready(self) -> None:
        self.read_available()

    def read_available(self) -> None:
        """Read what the pipe holds now; close at end-of-file."""
        while self.fd >= 0:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            room = max(0, self.limit - len(self.data))
            self.data += chunk[:room]
            self.dropped += len(chunk) - min(room, len(chunk))
            if self.on_data is not None:
                self.on_data(chunk)

    def close(self) -> None:
        """Stop reading and close the pipe."""
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.done.done():
            self.done.set_result(None)


def _frames(data: bytes) -> list[dict[str, Any]]:
    frames = []
    for line in bytes(data).split(b"\n"):
        if line.strip():
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError("a frame is not a JSON object")
            frames.append(value)
    return frames


def _pidfd_readable(loop: asyncio.AbstractEventLoop, pidfd: int) -> asyncio.Future[None]:
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        loop.remove_reader(pidfd)
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, ready)
    return done


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class _Child:
    """One running child: its pipes, pidfds and the kill logic."""

    def __init__(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.loop = loop
        self.pidfd = os.pidfd_open(proc.pid)
        self.exited = _pidfd_readable(loop, self.pidfd)
        self.inner_pidfd: int | None = None

    def note_control(self, data: bytes) -> None:
        """Open a pidfd on the inner process as soon as the outer one reports it."""
        if self.inner_pidfd is not None or b'"forked"' not in data:
            return
        for line in data.split(b"\n"):
            try:
                frame = json.loads(line)
            except ValueError:
                continue
            if isinstance(frame, dict) and frame.get("kind") == "forked":
                self._open_inner(frame.get("pid"))

    def _open_inner(self, pid: object) -> None:
        if not isinstance(pid, int) or pid <= 1:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        # The pid could have been reaped and reused before pidfd_open: keep the pidfd only if it
        # names a child of our (not yet reaped, hence not reused) outer process.
        if _parent_of(pid) == self.proc.pid:
            self.inner_pidfd = pidfd
        else:
            os.close(pidfd)

    async def stop(self) -> None:
        """Kill the whole tree and wait until it is gone (see the module docstring).

        The inner process (PID-namespace init: its death ends every process in the namespace)
        is killed first, so that the outer process reaps it and exits by itself, leaving no
        orphan for the worker's own init to reap; then the outer process group is killed in case
        it has not. Safe to call when the child has already exited.
        """
        if self.inner_pidfd is not None and not self.exited.done():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.inner_pidfd, signal.SIGKILL)
            try:
                await asyncio.wait({self.exited}, timeout=REAP_WAIT_SECONDS)
            except asyncio.CancelledError:
                self._kill_group()
                self._wait_gone_blocking()
                raise
        self._kill_group()
        await self._wait_gone()

    def _kill_group(self) -> None:
        if self.proc.returncode is None:
            # The outer process leads its own group (start_new_session) and is not reaped yet,
            # so its pid, and the group id, cannot have been reused.
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def _wait_gone(self) -> None:
        """Wait until both processes have exited, then reap the outer one."""
        waits = {self.exited}
        if self.inner_pidfd is not None:
            waits.add(_pidfd_readable(self.loop, self.inner_pidfd))
        try:
            # asyncio.wait, unlike gather, leaves the futures alone when this task is cancelled.
            await asyncio.wait(waits, timeout=KILL_WAIT_SECONDS)
        except asyncio.CancelledError:
            self._wait_gone_blocking()
            raise
        finally:
            for fd in {self.pidfd, self.inner_pidfd}:
                if fd is not None:
                    self.loop.remove_reader(fd)
        self._reap()

    def _reap(self) -> None:
        # The outer process has exited (or, stuck in the kernel, ignores SIGKILL for now:
        # then Popen reaps it later rather than blocking the event loop here).
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=0.5)

    def _wait_gone_blocking(self) -> None:
        fds = [fd for fd in (self.pidfd, self.inner_pidfd) if fd is not None]
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while fds and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(fds, [], [], left)
            fds = [fd for fd in fds if fd not in readable]
        for fd in {self.pidfd, self.inner_pidfd}:
            if fd is not None:
                self.loop.remove_reader(fd)
        self._reap()

    def close(self) -> None:
        """Close the pidfds."""
        for fd in (self.pidfd, self.inner_pidfd):
            if fd is not None:
                os.close(fd)
        self.inner_pidfd = None


async def run_child(
    *,
    mode: str,
    limits: ChildLimits,
    skip: list[str],
    request: bytes,
    deadline_seconds: float,
    max_result_bytes: int,
    on_output: Callable[[bytes], None],
) -> ChildOutcome:
    """Run one sandbox child to its end and report what it said.

    Args:
        mode: `run` (run the request) or `probe` (set up every layer, report, run nothing).
        limits: uid and resource limits.
        skip: layers the child must not attempt.
        request: the JSON request (`{"code", "inputs"}`), handed over in a memfd.
        deadline_seconds: wall-clock limit in seconds, from spawn to the end.
        max_result_bytes: the largest result frame kept; a larger one is a protocol error.
        on_output: called with each chunk of the child's stdout/stderr as it arrives.

    Returns:
        The frames read; raises only for failures to start the child (`OSError`). The child
        and everything it started are gone when this returns or raises, cancellation included.
    """
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    request_fd = os.memfd_create("altlas-code-request", os.MFD_CLOEXEC)
    pipes: list[int] = []
    try:
        _write_all(request_fd, request)
        for _ in range(3):
            pipes += os.pipe2(os.O_CLOEXEC)
        control_r, control_w, result_r, result_w, output_r, output_w = pipes
        config: protocol.ChildConfig = {
            "mode": "probe" if mode == "probe" else "run",
            "uid": limits.uid,
            "gid": limits.gid,
            "skip": list(skip),
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "open_files": limits.open_files,
            "processes": limits.processes,
            "file_size_bytes": limits.file_size_bytes,
            "tmp_bytes": limits.tmp_bytes,
            "request_fd": request_fd,
            "control_fd": control_w,
            "result_fd": result_w,
        }
        # Started synchronously on purpose (vfork + exec: about a millisecond): a cancellation
        # can then never leave a child behind that nobody tracks.
        proc = subprocess.Popen(  # noqa: ASYNC220
            child_command(config),
            stdin=subprocess.DEVNULL,
            stdout=output_w,
            stderr=output_w,
            pass_fds=(request_fd, control_w, result_w),
            env={},
            cwd="/",
            start_new_session=True,
        )
    except BaseException:
        for fd in [request_fd, *pipes]:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    for fd in (request_fd, control_w, result_w, output_w):
        os.close(fd)
    child = _Child(proc, loop)
    control = _PipeReader(loop, control_r, CONTROL_LIMIT, child.note_control)
    result = _PipeReader(loop, result_r, max_result_bytes + 4096)
    output = _PipeReader(loop, output_r, 0, on_output)
    outcome = ChildOutcome()
    try:
        waits = {child.exited, control.done, result.done, output.done}
        _, pending = await asyncio.wait(waits, timeout=deadline_seconds)
        outcome.timed_out = bool(pending)
    finally:
        if not (child.exited.done() and output.fd < 0 and result.fd < 0):
            control.read_available()
            outcome.killed = True
        try:
            await child.stop()
        finally:
            for reader in (control, result, output):
                reader.read_available()
                reader.close()
            child.close()
    outcome.elapsed = time.monotonic() - started
    _parse(outcome, control, result, max_result_bytes)
    return outcome


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _parse(
    outcome: ChildOutcome, control: _PipeReader, result: _PipeReader, max_result_bytes: int
) -> None:
    try:
        outcome.control = _frames(bytes(control.data))
    except ValueError as exc:
        outcome.control = [{"kind": "error", "message": f"unreadable control frame: {exc}"}]
    data = bytes(result.data)
    first, _, rest = data.partition(b"\n")
    try:
        setup = json.loads(first) if first.strip() else None
    except ValueError:
        setup = None
    if isinstance(setup, dict) and setup.get("kind") == "setup":
        outcome.setup = setup
    else:
        rest = data
    if result.dropped or len(rest) > max_result_bytes + 1024:
        size = len(rest) + result.dropped
        outcome.protocol_error = (
            f"the result is {size} bytes, more than the {max_result_bytes} allowed "
            "(ALTLAS_SANDBOX_MAX_RESULT_BYTES)"
        )
        return
    try:
        frames = _frames(rest)
    except (ValueError, RecursionError) as exc:
        outcome.protocol_error = f"the result channel held something that is not JSON ({exc})"
        return
    if len(frames) > 1:
        outcome.protocol_error = (
            f"the result channel held {len(frames)} results: the code wrote to it itself"
        )
    elif frames:
        outcome.result = frames[0]
