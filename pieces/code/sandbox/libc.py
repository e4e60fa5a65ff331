"""The system calls the sandbox needs that Python 3.11's `os` lacks, through ctypes: `syscall`.

Every wrapper raises `OSError` (with the call's name) on failure. Integer arguments are passed as
`c_long` so that 64-bit values and pointers survive the C variadic call.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

MACHINE = os.uname().machine
"""The CPU architecture (`x86_64`, `aarch64`, ...)."""

# Numbers that differ between architectures (Landlock's 444-446 are the same everywhere).
_NR_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_NR_CAPSET = {"x86_64": 126, "aarch64": 91}

NR_LANDLOCK_CREATE_RULESET = 444
NR_LANDLOCK_ADD_RULE = 445
NR_LANDLOCK_RESTRICT_SELF = 446

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def _arg(value: int | bytes | str | ctypes.c_void_p | None) -> object:
    if value is None:
        return ctypes.c_void_p(None)
    if isinstance(value, str):
        return ctypes.c_char_p(os.fsencode(value))
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    if isinstance(value, int):
        return ctypes.c_long(value)
    return value


def _check(name: str, result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def syscall(name: str, number: int, *args: int | bytes | str | ctypes.c_void_p | None) -> int:
    """Call system call `number` (`name` is for the error message); raise `OSError` on -1."""
    return _check(name, int(_syscall(ctypes.c_long(number), *(_arg(a) for a in args))))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """`prctl(2)`."""
    return _check(
        "prctl",
        int(
            _libc.prctl(
                ctypes.c_int(option),
                ctypes.c_ulong(arg2),
                ctypes.c_ulong(arg3),
                ctypes.c_ulong(arg4),
                ctypes.c_ulong(arg5),
            )
        ),
    )


def prctl_pointer(option: int, arg2: int, pointer: ctypes.c_void_p) -> int:
    """`prctl(2)` whose third argument is a pointer (seccomp)."""
    return _check("prctl", int(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), pointer)))


M_ARENA_MAX = -8


def mallopt(param: int, value: int) -> None:
    """`mallopt(3)`; it returns 1 on success and 0 (without errno) on failure."""
    if _libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
        raise OSError(0, f"mallopt({param}, {value}) failed")


def unshare(flags: int) -> None:
    """`unshare(2)`."""
    _check("unshare", int(_libc.unshare(ctypes.c_int(flags))))


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    """`mount(2)`."""
    _check(
        f"mount {target}",
        int(
            _libc.mount(_arg(source), _arg(target), _arg(fstype), ctypes.c_ulong(flags), _arg(data))
        ),
    )


def umount2(target: str, flags: int) -> None:
    """`umount2(2)`."""
    _check(f"umount2 {target}", int(_libc.umount2(_arg(target), ctypes.c_int(flags))))


def sethostname(name: str) -> None:
    """`sethostname(2)`."""
    raw = name.encode()
    _check("sethostname", int(_libc.sethostname(ctypes.c_char_p(raw), ctypes.c_size_t(len(raw)))))


def pivot_root(new_root: str, put_old: str) -> None:
    """`pivot_root(2)` (no glibc wrapper)."""
    if MACHINE not in _NR_PIVOT_ROOT:
        raise OSError(0, f"pivot_root: no system call number for {MACHINE}")
    syscall("pivot_root", _NR_PIVOT_ROOT[MACHINE], new_root, put_old)


def clear_capabilities() -> None:
    """`capset(2)` with empty effective, permitted and inheritable sets (version 3 header)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}: all zero
    if MACHINE not in _NR_CAPSET:
        raise OSError(0, f"capset: no system call number for {MACHINE}")
    syscall(
        "capset",
        _NR_CAPSET[MACHINE],
        ctypes.c_void_p(ctypes.addressof(header)),
        ctypes.c_void_p(ctypes.addressof(data)),
    )
