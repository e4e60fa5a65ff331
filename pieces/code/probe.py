"""Which isolation layers this worker can set up, probed once per process: `sandbox_support`.

The probe is a real sandbox child in `probe` mode: it sets up every layer exactly as a run
would, reports each one's status and exits without running anything. The answer is cached for
the life of the worker process (`forget_sandbox_support` clears it, for tests). The probe also
byte-compiles the child's modules once, so that every later child starts from `.pyc` files.
"""

from __future__ import annotations

import asyncio
import compileall
import threading
from dataclasses import dataclass, field

from pieces.code.process import SANDBOX_PARENT, ChildLimits, run_child
from pieces.code.sandbox.protocol import EXTRA_LAYERS, LAYERS, OK

PROBE_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SandboxSupport:
    """The outcome of the probe.

    Attributes:
        layers: each layer's status (`ok` or why it cannot be set up), extra layers included.
        landlock_abi: the kernel's Landlock ABI version (0: none).
        failure: why the probe itself failed, when it did (then every layer counts as missing).
        elapsed: how long the probe child took, spawn to exit, in seconds.
    """

    layers: dict[str, str] = field(default_factory=dict)
    landlock_abi: int = 0
    failure: str | None = None
    elapsed: float = 0.0

    @property
    def missing(self) -> dict[str, str]:
        """Required layers that cannot be set up, with the reason."""
        return {
            name: self.layers.get(name) or self.failure or "not reported by the probe"
            for name in LAYERS
            if self.layers.get(name) != OK
        }

    def describe_missing(self) -> str:
        """`layer (reason), ...` for error messages and warnings."""
        return ", ".join(f"{name} ({reason})" for name, reason in self.missing.items())


_lock = threading.Lock()
_cached: SandboxSupport | None = None


async def sandbox_support(limits: ChildLimits) -> SandboxSupport:
    """The cached probe result; the first call runs the probe (in a thread, one at a time)."""
    if _cached is not None:
        return _cached
    return await asyncio.to_thread(_probe_once, limits)


def forget_sandbox_support() -> None:
    """Drop the cached probe result (tests)."""
    global _cached
    with _lock:
        _cached = None


def _probe_once(limits: ChildLimits) -> SandboxSupport:
    global _cached
    with _lock:
        if _cached is None:
            compileall.compile_dir(SANDBOX_PARENT + "/sandbox", quiet=2)
            _cached = asyncio.run(_probe(limits))
        return _cached


async def _probe(limits: ChildLimits) -> SandboxSupport:
    output = bytearray()
    try:
        outcome = await run_child(
            mode="probe",
            limits=limits,
            skip=[],
            request=b"{}",
            deadline_seconds=PROBE_TIMEOUT_SECONDS,
            max_result_bytes=64 * 1024,
            on_output=lambda chunk: output.extend(chunk[: 4096 - len(output)]),
        )
    except OSError as exc:
        return SandboxSupport(failure=f"the sandbox child could not be started: {exc}")
    setup = outcome.setup
    if setup is None:
        detail = outcome.control_error() or output.decode(errors="replace").strip()
        if outcome.timed_out:
            detail = f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
        return SandboxSupport(
            failure=f"the sandbox probe failed: {detail or 'it exited without reporting'}",
            elapsed=outcome.elapsed,
        )
    reported = setup.get("layers")
    layers = {
        name: str(status)
        for name, status in (reported.items() if isinstance(reported, dict) else ())
        if name in LAYERS or name in EXTRA_LAYERS
    }
    if setup.get("uid") == 0:
        layers["uid"] = "the sandbox still runs as root"
    abi = setup.get("landlock_abi")
    return SandboxSupport(
        layers=layers,
        landlock_abi=abi if isinstance(abi, int) else 0,
        elapsed=outcome.elapsed,
    )
