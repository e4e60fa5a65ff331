"""What the inner sandbox process may still do: `drop_capabilities`, `set_rlimits`, and more.

`set_no_new_privs` forbids privilege gains.

Also `die_with_parent`, which ties the inner process (the PID namespace's init, whose death
kills every process in the namespace) to the outer one, so killing the outer process group is
enough to end the whole tree.
"""

from __future__ import annotations

import errno
import os
import resource
import select

from . import libc

SIGKILL = 9  # the `signal` module would import `enum`: too slow for every sandbox start


class Limits:
    """Resource limits of the inner process (soft = hard)."""

    def __init__(
        self,
        *,
        memory_bytes: int,
        cpu_seconds: int,
        open_files: int,
        processes: int,
        file_size_bytes: int,
    ) -> None:
        self.memory_bytes = memory_bytes
        self.cpu_seconds = cpu_seconds
        self.open_files = open_files
        self.processes = processes
        self.file_size_bytes = file_size_bytes


def die_with_parent(lifeline_fd: int) -> None:
    """Get SIGKILL when the outer process dies; exit at once if it already has.

    `lifeline_fd` is the read end of a pipe whose write end only the outer process holds: it
    reads as end-of-file once the outer process is gone. Call this after the last change of uid
    (the kernel clears the parent-death signal on credential changes).
    """
    libc.prctl(libc.PR_SET_PDEATHSIG, SIGKILL)
    readable, _, _ = select.select([lifeline_fd], [], [], 0)
    if readable:
        os._exit(70)
    os.close(lifeline_fd)


def drop_capabilities() -> None:
    """Clear the ambient, bounding, effective, permitted and inheritable capability sets.

    In a new user namespace the process holds every capability *of that namespace*; none of them
    reaches the host, and they are dropped here all the same. Without a user namespace (unsafe
    mode) the uid change already dropped them and the bounding set cannot be changed; that is
    harmless because nothing is executed afterwards (seccomp refuses `execve`).
    """
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(64):
        try:
            libc.prctl(libc.PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # past the last capability this kernel knows
                break
            if exc.errno != errno.EPERM:
                raise
    libc.clear_capabilities()


def set_rlimits(limits: Limits) -> None:
    """Set CPU, address-space, open-file, process, file-size and core limits (soft = hard).

    Past the CPU limit the kernel sends SIGKILL (SIGXCPU would be ignored: the inner process is
    its PID namespace's init); the outer process reports the CPU time used, so the worker can
    tell a CPU kill from any other. The process limit counts threads too; set it after the user
    namespace exists so that it counts this sandbox's own processes, not every process of the
    uid on the host.
    """
    # glibc gives each new thread its own malloc arena, reserving 64 MiB of address space:
    # with an address-space limit that would allow only a handful of threads. One arena.
    libc.mallopt(libc.M_ARENA_MAX, 1)
    for which, value in (
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MEMLOCK, 0),
        (resource.RLIMIT_MSGQUEUE, 0),
    ):
        resource.setrlimit(which, (value, value))


def set_no_new_privs() -> None:
    """`PR_SET_NO_NEW_PRIVS`: no set-uid or file-capability gain, ever; required by seccomp."""
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    if libc.prctl(libc.PR_GET_NO_NEW_PRIVS) != 1:
        raise OSError(0, "no_new_privs did not stick")
