"""Landlock rules for the inner sandbox process, through ctypes: `abi_version`, `restrict`.

One ruleset handles every file-system right the running kernel's ABI knows (so anything not
granted below is refused), TCP bind and connect (ABI >= 4, no rule: all refused) and, from ABI 6,
the signal and abstract-UNIX-socket scopes (nothing outside the sandbox can be signalled or
connected to). Granted: read (files and directory listings) beneath the runtime directories,
read of a few single files and devices, write to `/dev/null` and `/dev/zero`, and read-write
beneath the private `/tmp`. Execute is granted nowhere.

Rights added by kernels newer than this module (ABI > 7) are not handled, hence not refused by
Landlock; the namespaces, the private root and seccomp still apply.
"""

from __future__ import annotations

import ctypes
import os

from . import libc

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

_FS_BY_ABI = {
    1: (1 << 13) - 1,
    2: (1 << 14) - 1,
    3: (1 << 15) - 1,
    4: (1 << 15) - 1,
    5: (1 << 16) - 1,
}
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
"""The only rights a rule on a non-directory may carry."""

READ = FS_READ_FILE | FS_READ_DIR
READ_WRITE = (
    READ
    | FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SYM
    | FS_REFER
    | FS_TRUNCATE
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class Rules:
    """What the sandbox may touch: paths (as seen inside the private root) and their rights."""

    def __init__(
        self,
        *,
        read_dirs: list[str] | None = None,
        read_files: list[str] | None = None,
        write_files: list[str] | None = None,
        write_dirs: list[str] | None = None,
    ) -> None:
        self.read_dirs = read_dirs or []
        self.read_files = read_files or []
        self.write_files = write_files or []
        self.write_dirs = write_dirs or []


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    try:
        return libc.syscall(
            "landlock_create_ruleset",
            libc.NR_LANDLOCK_CREATE_RULESET,
            None,
            0,
            CREATE_RULESET_VERSION,
        )
    except OSError:
        return 0


def handled_fs(abi: int) -> int:
    """Every file-system right known at ABI `abi`."""
    return _FS_BY_ABI.get(abi, _FS_BY_ABI[5]) if abi >= 1 else 0


def restrict(rules: Rules, *, fs: bool, net: bool, abi: int) -> dict[str, str]:
    """Restrict this process (and its future threads) with Landlock.

    Args:
        rules: the paths and rights to grant (file-system rules are ignored when `fs` is false).
        fs: handle file-system rights.
        net: handle TCP bind/connect (needs ABI >= 4).
        abi: from `abi_version()`.

    Returns:
        The status of `landlock_fs`, `landlock_net` and `landlock_scope`: `ok`, or why not.
        Layers not asked for are absent. Raises `OSError` when the ruleset cannot be applied.
    """
    status: dict[str, str] = {}
    if abi < 1:
        reason = "Landlock is not available in this kernel (or disabled at boot)"
        if fs:
            status["landlock_fs"] = reason
        if net:
            status["landlock_net"] = reason
        status["landlock_scope"] = reason
        return status
    attr = _RulesetAttr()
    size = 8
    if fs:
        attr.handled_access_fs = handled_fs(abi)
    if net:
        if abi >= 4:
            attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
            size = 16
        else:
            status["landlock_net"] = f"Landlock ABI {abi} has no network rules (needs 4)"
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    else:
        status["landlock_scope"] = f"Landlock ABI {abi} has no scopes (needs 6)"
    if not (attr.handled_access_fs or attr.handled_access_net or attr.scoped):
        return status
    ruleset = libc.syscall(
        "landlock_create_ruleset",
        libc.NR_LANDLOCK_CREATE_RULESET,
        ctypes.c_void_p(ctypes.addressof(attr)),
        size,
        0,
    )
    try:
        if fs:
            handled = attr.handled_access_fs
            for paths, rights in (
                (rules.read_dirs, READ),
                (rules.read_files, FS_READ_FILE),
                (rules.write_files, FS_READ_FILE | FS_WRITE_FILE),
                (rules.write_dirs, READ_WRITE),
            ):
                for path in paths:
                    _add_path_rule(ruleset, path, rights & handled)
        libc.syscall("landlock_restrict_self", libc.NR_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    if fs:
        status["landlock_fs"] = "ok"
    if attr.handled_access_net:
        status["landlock_net"] = "ok"
    if attr.scoped:
        status["landlock_scope"] = "ok"
    return status


def _add_path_rule(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        # Unreachable for this uid (e.g. under /root when there is no private root): there is
        # nothing to grant, and leaving the rule out only takes access away.
        return
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        libc.syscall(
            "landlock_add_rule",
            libc.NR_LANDLOCK_ADD_RULE,
            ruleset,
            RULE_PATH_BENEATH,
            ctypes.c_void_p(ctypes.addressof(rule)),
            0,
        )
    finally:
        os.close(fd)
