"""The sandbox child's entry point, `main`: sets the layers up in order, then runs the user's code.

Two processes make up the sandbox:

- the *outer* process (started by the worker, as the worker's user) sets up the `uid`,
  `namespaces` and `filesystem` layers (`namespaces.isolate`: as root, namespaces and the private
  root first, then the uid drop and the user namespace), forks, drops what capabilities it has
  left and only waits, reporting the inner process's host PID, exit and CPU time on
  `control_fd`;
- the *inner* process is init of the new PID namespace (when it dies, the kernel kills every
  process in the namespace). It ties its life to the outer process, drops every capability,
  sets the rlimits and `no_new_privs`, applies Landlock and seccomp, reports the layers on
  `result_fd` (the `setup` frame), and only then reads the user's code and inputs and runs them.

A layer listed in `skip` is not attempted (the worker knows it is missing and the unsafe setting
allows that); any other layer that fails stops the run with a `SandboxUnavailable` frame before
user code is read. In `probe` mode every layer is attempted and reported, and nothing is run.
"""

from __future__ import annotations

import os
import sys

from . import jsonio, landlock, namespaces, privileges, runner, seccomp
from .protocol import LAYERS, OK, SKIPPED, USER_FILENAME, encode

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: the child must not import `typing`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .protocol import ChildConfig, ControlFrame, SetupFrame


class _Layers:
    """Outcome of each layer: `ok`, `skipped` or why it failed."""

    def __init__(self, skip: list[str]) -> None:
        self.skip = set(skip)
        self.status: dict[str, str] = {}

    def attempt(self, name: str, action: Callable[[], object]) -> bool:
        if name in self.skip:
            self.status[name] = SKIPPED
            return False
        try:
            action()
        except Exception as exc:
            self.status[name] = f"{type(exc).__name__}: {exc}"
            return False
        self.status[name] = OK
        return True

    def missing(self) -> dict[str, str]:
        return {
            name: self.status.get(name, "not attempted")
            for name in LAYERS
            if self.status.get(name) not in (OK, SKIPPED)
        }


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _control(fd: int, frame: ControlFrame) -> None:
    try:
        _write_all(fd, encode(frame))
    except OSError:
        return  # the worker has gone away: nobody is left to tell


def main(argument: str) -> None:
    """Run the sandbox child described by the JSON `ChildConfig` in `argument`; never returns."""
    config: ChildConfig = jsonio.loads(argument)
    # The launcher put this package's directory first on sys.path; everything is imported now,
    # and the directory must not become part of the private root.
    del sys.path[0]
    layers = _Layers(config["skip"])
    control_fd = config["control_fd"]
    try:
        dirs, files = namespaces.runtime_paths()
        plan = namespaces.plan_root(dirs, files)
        layers.status.update(
            namespaces.isolate(
                plan,
                uid=config["uid"],
                gid=config["gid"],
                tmp_bytes=config["tmp_bytes"],
                skip=layers.skip,
            )
        )
        lifeline_read, lifeline_write = os.pipe()
        pid = os.fork()
    except BaseException as exc:
        _control(control_fd, {"kind": "error", "message": f"{type(exc).__name__}: {exc}"})
        os._exit(70)
    if pid == 0:
        os.close(control_fd)
        os.close(lifeline_write)
        _inner(config, layers, lifeline_read, dirs, files)
    else:
        os.close(lifeline_read)
        _outer(config, pid)


def _outer(config: ChildConfig, pid: int) -> None:
    """Wait for the inner process and report how it ended; hold the lifeline until then."""
    for fd in (config["result_fd"], config["request_fd"]):
        os.close(fd)
    # Nothing is left for this process to do but wait: it keeps no capability either (those it
    # holds in the sandbox's user namespace included).
    try:  # noqa: SIM105 (contextlib would cost every sandbox start its import)
        privileges.drop_capabilities()
    except OSError:
        pass  # no user namespace (unsafe mode): the uid change already dropped them
    control_fd = config["control_fd"]
    _control(control_fd, {"kind": "forked", "pid": pid})
    _, status, usage = os.wait4(pid, 0)
    cpu = round(usage.ru_utime + usage.ru_stime, 3)
    if os.WIFSIGNALED(status):
        _control(control_fd, {"kind": "exited", "signal": os.WTERMSIG(status), "cpu": cpu})
    else:
        _control(
            control_fd, {"kind": "exited", "code": os.waitstatus_to_exitcode(status), "cpu": cpu}
        )
    os._exit(0)


def _inner(
    config: ChildConfig, layers: _Layers, lifeline: int, dirs: list[str], files: list[str]
) -> None:
    """Finish the sandbox in the inner process, report it, then run the user's code."""
    result_fd = config["result_fd"]
    try:
        privileges.die_with_parent(lifeline)
        layers.attempt("capabilities", privileges.drop_capabilities)
        limits = privileges.Limits(
            memory_bytes=config["memory_bytes"],
            cpu_seconds=config["cpu_seconds"],
            open_files=config["open_files"],
            processes=config["processes"],
            file_size_bytes=config["file_size_bytes"],
        )
        layers.attempt("rlimits", lambda: privileges.set_rlimits(limits))
        layers.attempt("no_new_privs", privileges.set_no_new_privs)
        abi = landlock.abi_version()
        _apply_landlock(layers, abi, dirs, files)
        pid = os.getpid()
        layers.attempt("seccomp", lambda: seccomp.install(pid))
        missing = layers.missing()
        setup: SetupFrame = {
            "kind": "setup",
            "layers": layers.status,
            "landlock_abi": abi,
            "pid": pid,
            "uid": os.getuid(),
        }
        _write_all(result_fd, encode(setup))
        if config["mode"] == "probe":
            os._exit(0)
        if missing:
            names = ", ".join(f"{name} ({why})" for name, why in missing.items())
            frame = runner.error_frame(
                "SandboxUnavailable", f"isolation layers could not be set up: {names}"
            )
            _write_all(result_fd, frame)
            os._exit(0)
        request = _read_request(config["request_fd"])
    except BaseException as exc:
        try:
            _write_all(
                result_fd, runner.error_frame("SandboxError", f"{type(exc).__name__}: {exc}")
            )
        finally:
            os._exit(70)
    os.environ.clear()
    sys.argv = [USER_FILENAME]
    try:
        frame = runner.run(request["code"], request["inputs"])
    except MemoryError:
        frame = runner.error_frame("CodeError", "MemoryError: the code ran out of memory")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    try:
        _write_all(result_fd, frame)
    except OSError:
        os._exit(71)  # the code closed the result channel: the worker reports no result
    os._exit(0)


def _apply_landlock(layers: _Layers, abi: int, dirs: list[str], files: list[str]) -> None:
    fs = "landlock_fs" not in layers.skip
    net = "landlock_net" not in layers.skip
    private_root = layers.status.get("filesystem") == OK
    rules = landlock.Rules(
        read_dirs=dirs,
        read_files=files + [p for p in namespaces.DEVICES_RO if os.path.exists(p)],
        write_files=[p for p in namespaces.DEVICES_RW if os.path.exists(p)],
        write_dirs=["/tmp"] if private_root else [],
    )
    for name, wanted in (("landlock_fs", fs), ("landlock_net", net)):
        if not wanted:
            layers.status[name] = SKIPPED
    if not (fs or net):
        return
    try:
        layers.status.update(landlock.restrict(rules, fs=fs, net=net, abi=abi))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        for name, wanted in (("landlock_fs", fs), ("landlock_net", net)):
            if wanted:
                layers.status[name] = reason


def _read_request(fd: int) -> dict[str, Any]:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    os.close(fd)
    request: dict[str, Any] = jsonio.loads(b"".join(chunks).decode())
    return request
