"""The probe, the refusal when a layer is missing, the unsafe setting, and each layer on its own.

The probe's answer is patched to pretend layers are missing; the child then does not set them
up (exactly what happens on a kernel without them), which also shows that every remaining layer
still stops an attempt by itself: defence in depth, one layer at a time.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import replace

import pytest

import pieces.code.piece as piece_module
from pieces.base import PieceError
from pieces.code import SandboxSupport, forget_sandbox_support, limits_for, sandbox_support
from pieces.code.piece import PROCESSES
from pieces.code.process import ChildLimits
from pieces.code.sandbox.protocol import LAYERS
from pieces.settings import PieceSettings
from tests.pieces.code.conftest import (
    ATTEMPT,
    CapturingHandler,
    RunCode,
    cancel_once_running,
    sandbox_processes,
    threads_named,
)

UNSAFE = PieceSettings(sandbox_allow_unsafe=True)
Pretend = Callable[..., None]


@pytest.fixture
def pretend_missing(monkeypatch: pytest.MonkeyPatch) -> Pretend:
    """Make the piece believe the probe found `layers` missing (name -> reason)."""

    def pretend(layers: dict[str, str] | None = None, *, failure: str | None = None) -> None:
        async def fake(limits: ChildLimits) -> SandboxSupport:
            real = await sandbox_support(limits)
            if failure is not None:
                return SandboxSupport(failure=failure)
            return replace(real, layers={**real.layers, **(layers or {})})

        monkeypatch.setattr(piece_module, "sandbox_support", fake)

    return pretend


async def test_every_layer_works_on_this_machine() -> None:
    forget_sandbox_support()
    support = await sandbox_support(limits_for(PieceSettings(), memory_mb=256, timeout_seconds=30))
    assert support.failure is None
    assert support.missing == {}
    assert {name: support.layers[name] for name in LAYERS} == dict.fromkeys(LAYERS, "ok")
    assert support.layers["landlock_scope"] == "ok"
    assert support.landlock_abi >= 6
    # Cached: the second call does not start another probe.
    again = await sandbox_support(limits_for(PieceSettings(), memory_mb=256, timeout_seconds=30))
    assert again is support


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_missing_layer_is_refused(
    run_code: RunCode, pretend_missing: Pretend, layer: str
) -> None:
    pretend_missing({layer: "not in this kernel"})
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    return 1\n")
    error = caught.value
    assert error.error_type == "SandboxUnavailable"
    assert error.retryable is False
    assert f"missing isolation layers: {layer} (not in this kernel)." in error.message
    assert "ALTLAS_SANDBOX_ALLOW_UNSAFE=true (unsafe)" in error.message
    assert error.details == {"missing": {layer: "not in this kernel"}}


async def test_a_failed_probe_refuses_with_its_reason(
    run_code: RunCode, pretend_missing: Pretend
) -> None:
    pretend_missing(failure="the sandbox probe failed: boom")
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    return 1\n")
    assert caught.value.error_type == "SandboxUnavailable"
    assert caught.value.details["missing"] == dict.fromkeys(
        LAYERS, "the sandbox probe failed: boom"
    )


async def test_unsafe_setting_runs_with_what_is_left_and_warns(
    run_code: RunCode, pretend_missing: Pretend, logs: CapturingHandler
) -> None:
    pretend_missing({"seccomp": "no filter support"})
    assert await run_code("def main(inputs):\n    return 'ran'\n", settings=UNSAFE) == "ran"
    assert logs.messages(logging.WARNING) == [
        "UNSAFE: running user code without these isolation layers because "
        "ALTLAS_SANDBOX_ALLOW_UNSAFE=true: seccomp (no filter support)"
    ]


async def test_landlock_alone_refuses_tcp_connect(
    run_code: RunCode, pretend_missing: Pretend, tcp_listener: socket.socket
) -> None:
    pretend_missing({"seccomp": "pretend"})
    code = (
        ATTEMPT
        + """
import socket

def main(inputs):
    return attempt(socket.create_connection, ("127.0.0.1", inputs["port"]), timeout=2)
"""
    )
    result = await run_code(code, {"port": tcp_listener.getsockname()[1]}, settings=UNSAFE)
    assert result["raised"] == "PermissionError"
    assert result["errno"] == errno.EACCES


async def test_network_namespace_alone_has_no_route(
    run_code: RunCode, pretend_missing: Pretend, tcp_listener: socket.socket
) -> None:
    pretend_missing({"seccomp": "pretend", "landlock_net": "pretend"})
    code = (
        ATTEMPT
        + """
import socket

def main(inputs):
    return {
        "local": attempt(socket.create_connection, ("127.0.0.1", inputs["port"]), timeout=2),
        "metadata": attempt(socket.create_connection, ("169.254.169.254", 80), timeout=2),
    }
"""
    )
    result = await run_code(code, {"port": tcp_listener.getsockname()[1]}, settings=UNSAFE)
    assert result["local"]["errno"] == errno.ENETUNREACH  # loopback is down, nothing else exists
    assert result["metadata"]["errno"] == errno.ENETUNREACH


@pytest.mark.parametrize(
    ("missing", "refusal"),
    [
        # Landlock alone: the host's tree is there (as uid 65534 the interpreter's modules under
        # /root are not even reachable, so only builtins are used), but nothing may be opened.
        ("filesystem", ("PermissionError", errno.EACCES)),
        # The private root alone: the files simply do not exist.
        ("landlock_fs", ("FileNotFoundError", errno.ENOENT)),
    ],
)
async def test_each_file_system_layer_alone_protects_the_hosts_files(
    run_code: RunCode, pretend_missing: Pretend, missing: str, refusal: tuple[str, int]
) -> None:
    pretend_missing({missing: "pretend"})
    code = (
        ATTEMPT
        + """
def main(inputs):
    return {
        "passwd": attempt(lambda: open("/etc/passwd").read()),
        "environ": attempt(lambda: open("/proc/1/environ").read()),
        "repo": attempt(lambda: open(inputs["repo_file"]).read()),
    }
"""
    )
    result = await run_code(code, {"repo_file": __file__}, settings=UNSAFE)
    for name, attempt in result.items():
        assert (attempt["raised"], attempt["errno"]) == refusal, name


async def test_without_seccomp_forks_stay_bounded_and_die_with_the_node(
    run_code: RunCode, pretend_missing: Pretend
) -> None:
    pretend_missing({"seccomp": "pretend"})
    code = """
import ctypes, os, time

def main(inputs):
    children = 0
    try:
        while children < 1000:
            if os.fork() == 0:
                os.setsid()  # allowed without seccomp: leaves the worker's process group
                ctypes.CDLL(None).prctl(15, inputs["marker"].encode(), 0, 0, 0)
                time.sleep(3600)
                os._exit(0)
            children += 1
    except OSError as exc:
        return {"children": children, "errno": exc.errno}
    return {"children": children, "errno": None}
"""
    marker = "forkmark"
    result = await run_code(code, {"marker": marker}, settings=UNSAFE)
    assert result["errno"] == errno.EAGAIN  # RLIMIT_NPROC
    assert 0 < result["children"] < PROCESSES
    # The PID namespace's init returned: the kernel killed every child, setsid or not.
    assert threads_named(marker) == []
    assert sandbox_processes() == []


async def test_without_seccomp_a_timed_out_tree_is_killed(
    run_code: RunCode, pretend_missing: Pretend
) -> None:
    pretend_missing({"seccomp": "pretend"})
    code = """
import ctypes, os, time

def main(inputs):
    if os.fork() == 0:
        os.setsid()
        ctypes.CDLL(None).prctl(15, inputs["marker"].encode(), 0, 0, 0)
    time.sleep(3600)
"""
    marker = "treemark"
    with pytest.raises(PieceError) as caught:
        await run_code(code, {"marker": marker}, settings=UNSAFE, timeout_seconds=1)
    assert caught.value.error_type == "Timeout"
    assert threads_named(marker) == []
    assert sandbox_processes() == []


async def test_without_seccomp_a_cancelled_tree_is_killed(
    run_code: RunCode, pretend_missing: Pretend
) -> None:
    pretend_missing({"seccomp": "pretend"})
    code = """
import ctypes, os, time

def main(inputs):
    for _ in range(3):
        if os.fork() == 0:
            os.setsid()
            ctypes.CDLL(None).prctl(15, inputs["marker"].encode(), 0, 0, 0)
            time.sleep(3600)
    time.sleep(3600)
"""
    marker = "cancmark"
    task = asyncio.ensure_future(run_code(code, {"marker": marker}, settings=UNSAFE))
    await cancel_once_running(task, marker, count=3)
    assert threads_named(marker) == []
    assert sandbox_processes() == []
