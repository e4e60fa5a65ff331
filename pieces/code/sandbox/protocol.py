"""What the worker and the sandbox child agree on: `ChildConfig`, the layer names, the frames.

The worker starts the child with one JSON argument (`ChildConfig`, trusted: written by the
worker) and passes the user's code and inputs in a memfd (`request_fd`). Two pipes come back:

- `control_fd`, written only by the outer sandbox process, which never runs user code: the
  host PID of the inner process and how it ended (`ControlFrame`).
- `result_fd`, written by the inner process: one `setup` frame once every layer is in place
  (before any user code runs), then one `result` or `error` frame (`ResultFrame`).

Frames are single-line JSON objects separated by newlines. User code could write to
`result_fd` itself, but it cannot write to `control_fd` (closed before user code runs), and
what it could forge is no more than what `main` could return anyway; the worker checks every
frame's shape and size.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: the child must not import `typing`
if TYPE_CHECKING:
    from typing import Any

LAYERS: tuple[str, ...] = (
    "uid",
    "namespaces",
    "filesystem",
    "rlimits",
    "no_new_privs",
    "capabilities",
    "landlock_fs",
    "landlock_net",
    "seccomp",
)
"""Isolation layers, in the order they are set up. Each must work unless the unsafe setting
allows running without it.

- `uid`: the child runs as an unprivileged uid (the worker's own when it is not root).
- `namespaces`: new user, mount, PID, network, IPC and UTS namespaces.
- `filesystem`: a private read-only root holding only the interpreter's standard library, the
  shared libraries it loads, a few device files and a size-limited `/tmp` (needs `namespaces`).
- `rlimits`: CPU time, address space, open files, processes/threads, file size, no core dumps.
- `no_new_privs`: `PR_SET_NO_NEW_PRIVS`.
- `capabilities`: every capability dropped (effective, permitted, inheritable, bounding, ambient).
- `landlock_fs`: Landlock file-system rules (read-only runtime, read-write `/tmp`, nothing else).
- `landlock_net`: Landlock network rules (no TCP bind or connect; Landlock ABI >= 4).
- `seccomp`: the seccomp filter (no new processes, no exec, no inet sockets, no ptrace, ...).
"""

EXTRA_LAYERS: tuple[str, ...] = ("landlock_scope",)
"""Layers used when the kernel has them but not required: `landlock_scope` (ABI >= 6) stops
signals and abstract UNIX sockets from crossing the sandbox boundary."""

ERROR_TYPES: frozenset[str] = frozenset(
    {"CodeError", "InvalidCode", "InvalidOutput", "SandboxUnavailable", "SandboxError"}
)
"""Error types the child may report in an `error` frame; anything else is a protocol error."""

LAUNCHER = (
    "import sys;sys.path[0:0]=[sys.argv[1]];from sandbox.bootstrap import main;main(sys.argv[2])"
)
"""The `-c` program of the child: import this package from its directory and run it."""

USER_FILENAME = "<code>"
"""The file name user code is compiled under; tracebacks keep only frames from this file."""


if TYPE_CHECKING:
    from typing import Literal, TypedDict

    class ChildConfig(TypedDict):
        """The child's configuration, passed as its JSON argument."""

        mode: Literal["run", "probe"]
        uid: int
        gid: int
        skip: list[str]
        memory_bytes: int
        cpu_seconds: int
        open_files: int
        processes: int
        file_size_bytes: int
        tmp_bytes: int
        request_fd: int
        control_fd: int
        result_fd: int

    class SetupFrame(TypedDict):
        """Written by the inner process once every layer is set up, before user code runs."""

        kind: Literal["setup"]
        layers: dict[str, str]
        landlock_abi: int
        pid: int
        uid: int

    class ResultFrame(TypedDict, total=False):
        """The outcome of `main`: `kind` is `result` (with `value`) or `error`."""

        kind: Literal["result", "error"]
        value: Any
        type: str
        message: str
        details: dict[str, Any]

    class ControlFrame(TypedDict, total=False):
        """Written by the outer process: `forked` (with `pid`), `exited` (with `code` or
        `signal`, and the CPU seconds used), or `error` (with `message`) when it failed before
        starting the inner process."""

        kind: Literal["forked", "exited", "error"]
        pid: int
        code: int
        signal: int
        cpu: float
        message: str


OK = "ok"
"""The status of a layer that was set up; any other status string says why it was not."""

SKIPPED = "skipped"
"""The status of a layer the worker told the child not to attempt (known missing, unsafe on)."""


def encode(frame: Any) -> bytes:
    """One frame as a line of JSON (non-ASCII escaped, no NaN)."""
    from .jsonio import dumps

    return dumps(frame).encode() + b"\n"
