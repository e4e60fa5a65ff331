"""The seccomp filter of the inner sandbox process, a classic-BPF program built by hand: `install`.

The filter:

- kills the process on any architecture other than the one it was built for (e.g. 32-bit
  `int 0x80` calls on x86_64) and on x32 system calls;
- refuses with `EPERM` every system call that creates processes or runs programs (`fork`,
  `vfork`, `execve`, `execveat`, and `clone` without `CLONE_THREAD` or with a namespace flag),
  that reaches other processes (`ptrace`, `process_vm_*`, `kcmp`, `pidfd_*`, `kill`/`tgkill`
  and friends aimed at any process but this one), that changes namespaces, mounts or the system
  (`unshare`, `setns`, `mount` and the new mount API, `pivot_root`, `chroot`, `reboot`,
  `kexec_*`, modules, swap, clocks, host name, `acct`, `quotactl`, `syslog`, ...), that opens
  kernel attack surface (`bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*`, `keyctl`,
  `add_key`, `request_key`, `open_by_handle_at`, `personality`, ...), that holds memory the
  address-space limit does not count (`memfd_create`, `memfd_secret`, System V `shmget`/`shmat`
  and `msgget`: through them a node could fill the host's RAM), that leaves the process group
  the worker kills (`setsid`, `setpgid`), and `socket`/`socketpair` of any family but
  `AF_UNIX`; `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)` too;
- answers `clone3` with `ENOSYS` (its flags are in memory a filter cannot read), so that the C
  library falls back to `clone`, whose flags the filter checks;
- allows everything else.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from . import libc

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: the child must not import `typing`
if TYPE_CHECKING:
    from collections.abc import Sequence

# BPF opcodes
_LD_W_ABS = 0x00 | 0x00 | 0x20
_JEQ_K = 0x05 | 0x10 | 0x00
_JGE_K = 0x05 | 0x30 | 0x00
_JSET_K = 0x05 | 0x40 | 0x00
_RET_K = 0x06 | 0x00

RET_KILL_PROCESS = 0x80000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

SECCOMP_MODE_FILTER = 2

# struct seccomp_data offsets (little-endian: an argument's low 32 bits come first)
_NR = 0
_ARCH = 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index


AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

CLONE_THREAD = 0x00010000
CLONE_NAMESPACE_FLAGS = (
    0x00000080  # CLONE_NEWTIME
    | 0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
AF_UNIX = 1
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


class SyscallTable:
    """The system call numbers the filter needs, for one architecture."""

    def __init__(
        self,
        *,
        audit_arch: int,
        denied: dict[str, int],
        clone: int,
        clone3: int,
        socket: int,
        socketpair: int,
        ioctl: int,
        kill: int,
        tgkill: int,
        rt_sigqueueinfo: int,
        rt_tgsigqueueinfo: int,
    ) -> None:
        self.audit_arch = audit_arch
        self.denied = denied
        self.clone = clone
        self.clone3 = clone3
        self.socket = socket
        self.socketpair = socketpair
        self.ioctl = ioctl
        self.kill = kill
        self.tgkill = tgkill
        self.rt_sigqueueinfo = rt_sigqueueinfo
        self.rt_tgsigqueueinfo = rt_tgsigqueueinfo


X86_64 = SyscallTable(
    audit_arch=AUDIT_ARCH_X86_64,
    denied={
        "fork": 57,
        "vfork": 58,
        "execve": 59,
        "execveat": 322,
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "process_madvise": 440,
        "process_mrelease": 448,
        "kcmp": 312,
        "pidfd_open": 434,
        "pidfd_getfd": 438,
        "pidfd_send_signal": 424,
        "tkill": 200,
        "migrate_pages": 256,
        "move_pages": 279,
        "setsid": 112,
        "setpgid": 109,
        "unshare": 272,
        "setns": 308,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "chroot": 161,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "open_tree_attr": 467,
        "listmount": 458,
        "statmount": 457,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "create_module": 174,
        "get_kernel_syms": 177,
        "query_module": 178,
        "reboot": 169,
        "swapon": 167,
        "swapoff": 168,
        "acct": 163,
        "settimeofday": 164,
        "clock_settime": 227,
        "clock_adjtime": 305,
        "adjtimex": 159,
        "sethostname": 170,
        "setdomainname": 171,
        "iopl": 172,
        "ioperm": 173,
        "modify_ldt": 154,
        "quotactl": 179,
        "quotactl_fd": 443,
        "nfsservctl": 180,
        "_sysctl": 156,
        "syslog": 103,
        "vhangup": 153,
        "uselib": 134,
        "personality": 135,
        "lookup_dcookie": 212,
        "name_to_handle_at": 303,
        "open_by_handle_at": 304,
        "fanotify_init": 300,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "memfd_create": 319,
        "memfd_secret": 447,
        "shmget": 29,
        "shmat": 30,
        "msgget": 68,
    },
    clone=56,
    clone3=435,
    socket=41,
    socketpair=53,
    ioctl=16,
    kill=62,
    tgkill=234,
    rt_sigqueueinfo=129,
    rt_tgsigqueueinfo=297,
)

TABLES: dict[str, SyscallTable] = {"x86_64": X86_64}
"""Architectures the filter can be built for (`platform.machine()` names)."""


class _Insn:
    """One BPF instruction; a jump target is a relative offset or a label name."""

    __slots__ = ("code", "jf", "jt", "k")

    def __init__(self, code: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        self.code, self.k, self.jt, self.jf = code, k, jt, jf


class _Label:
    """A position in the program that jumps can name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _errno(number: int) -> int:
    return RET_ERRNO | number


def _assemble(program: Sequence[_Insn | _Label]) -> bytes:
    """Resolve label jumps to relative offsets and pack `struct sock_filter`s."""
    positions: dict[str, int] = {}
    index = 0
    for item in program:
        if isinstance(item, _Label):
            positions[item.name] = index
        else:
            index += 1
    out = bytearray()
    index = 0
    for item in program:
        if isinstance(item, _Label):
            continue
        offsets = []
        for target in (item.jt, item.jf):
            offset = target if isinstance(target, int) else positions[target] - index - 1
            if not 0 <= offset <= 255:
                raise ValueError(f"BPF jump out of range at instruction {index}")
            offsets.append(offset)
        out += struct.pack("<HBBI", item.code, offsets[0], offsets[1], item.k & 0xFFFFFFFF)
        index += 1
    if index > 4096:
        raise ValueError("BPF program too long")
    return bytes(out)


def build(table: SyscallTable, own_pid: int) -> bytes:
    """The filter for `table`, letting signals reach only `own_pid` (this process)."""
    deny = _errno(errno.EPERM)
    p: list[_Insn | _Label] = [
        _Insn(_LD_W_ABS, _ARCH),
        _Insn(_JEQ_K, table.audit_arch, 1, 0),
        _Insn(_RET_K, RET_KILL_PROCESS),
        _Insn(_LD_W_ABS, _NR),
        _Insn(_JGE_K, X32_SYSCALL_BIT, 0, 1),
        _Insn(_RET_K, RET_KILL_PROCESS),
    ]
    for number in sorted(set(table.denied.values())):
        p += [_Insn(_JEQ_K, number, 0, 1), _Insn(_RET_K, deny)]
    p += [_Insn(_JEQ_K, table.clone3, 0, 1), _Insn(_RET_K, _errno(errno.ENOSYS))]

    def check_arg(nr: int, arg: int, name: str, body: list[_Insn | _Label]) -> None:
        p.extend([_Insn(_JEQ_K, nr, 0, f"after_{name}"), _Insn(_LD_W_ABS, _arg_low(arg))])
        p.extend(body)
        p.append(_Label(f"after_{name}"))

    allow, refuse = _Insn(_RET_K, RET_ALLOW), _Insn(_RET_K, deny)
    # clone: threads only, and no namespace flags.
    check_arg(
        table.clone,
        0,
        "clone",
        [
            _Insn(_JSET_K, CLONE_NAMESPACE_FLAGS, "clone_refuse", 0),
            _Insn(_JSET_K, CLONE_THREAD, 0, "clone_refuse"),
            allow,
            _Label("clone_refuse"),
            refuse,
        ],
    )
    for name, nr in (("socket", table.socket), ("socketpair", table.socketpair)):
        check_arg(nr, 0, name, [_Insn(_JEQ_K, AF_UNIX, 0, 1), allow, refuse])
    check_arg(
        table.ioctl,
        1,
        "ioctl",
        [_Insn(_JEQ_K, TIOCSTI, 1, 0), _Insn(_JEQ_K, TIOCLINUX, 0, 1), refuse, allow],
    )
    for name, nr in (
        ("kill", table.kill),
        ("tgkill", table.tgkill),
        ("rt_sigqueueinfo", table.rt_sigqueueinfo),
        ("rt_tgsigqueueinfo", table.rt_tgsigqueueinfo),
    ):
        check_arg(nr, 0, name, [_Insn(_JEQ_K, own_pid, 0, 1), allow, refuse])
    p.append(_Insn(_RET_K, RET_ALLOW))
    return _assemble(p)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install(own_pid: int) -> None:
    """Install the filter for this machine's architecture on the calling (single) thread.

    Needs `no_new_privs` first. Raises `OSError` when the architecture has no table or the
    kernel refuses the filter.
    """
    table = TABLES.get(libc.MACHINE)
    if table is None:
        raise OSError(0, f"no seccomp system call table for architecture {libc.MACHINE}")
    code = build(table, own_pid)
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len=len(code) // 8, filter=ctypes.cast(buffer, ctypes.c_void_p).value)
    libc.prctl_pointer(
        libc.PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_void_p(ctypes.addressof(prog))
    )
