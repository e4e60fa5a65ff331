"""Who the child is and what it can see: `isolate` (uid, namespaces, private root file system).

The outer sandbox process starts as the worker's user (root on our machines). When that is root:

1. `runtime_paths` and `plan_root` pick what the interpreter needs: its standard library and
   lib-dynload (from `sys.path`), the directories of the C libraries it loads,
   `/etc/ld.so.cache`, `/usr/share/zoneinfo` and a few device files.
2. Mount, PID, network, IPC and UTS namespaces are unshared (still as root, so they belong to
   the host's user namespace and nothing in the sandbox ever holds a capability over them).
3. `build_root` makes a read-only tmpfs holding only the planned paths (read-only binds), an
   empty read-only tmpfs over the standard library's `site-packages`, a size-limited writable
   `/tmp`, and pivots into it: nothing else of the host's file system is reachable afterwards.
   Doing this as root is what lets the interpreter live under a directory the sandbox uid could
   not walk (`/root`, mode 0700).
4. The process drops to the sandbox uid/gid (dropping every capability), then unshares a user
   namespace and maps the uid to itself.

A worker that is not root cannot do 2-3 before 4: it unshares all six namespaces at once (the
user namespace first, which grants the capabilities to mount inside it) and builds the root
there; the sandbox then keeps the worker's (unprivileged) uid.
"""

from __future__ import annotations

import os
import sys

from . import libc

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: the child must not import `typing`
if TYPE_CHECKING:
    from collections.abc import Callable

DEVICES_RW = ("/dev/null", "/dev/zero")
DEVICES_RO = ("/dev/urandom", "/dev/random")
EXTRA_FILES = ("/etc/ld.so.cache",)
EXTRA_DIRS = ("/usr/share/zoneinfo",)
HIDDEN_SUBDIRS = ("site-packages", "dist-packages")
STAGING = "/tmp"
"""Where the new root is assembled, inside the private mount namespace (any existing directory)."""


class RootPlan:
    """What the private root will hold. Paths are the same inside the root as on the host."""

    def __init__(self, dirs: list[str], files: list[str]) -> None:
        self.dirs = dirs
        self.files = files
        self.devices: list[str] = []
        self.hidden: list[str] = []
        self.symlinks: list[tuple[str, str]] = []


def _loaded_library_dirs() -> set[str]:
    """Directories of the C libraries mapped into this process (libc, libm, ...)."""
    dirs: set[str] = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                name = os.path.basename(path)
                if path.startswith("/") and ".so" in name and name.startswith(("libc.", "libm.")):
                    dirs.add(os.path.dirname(path))
    except OSError:
        pass
    return dirs


def _is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def runtime_paths() -> tuple[list[str], list[str]]:
    """The directories and files the interpreter reads at run time, as real paths.

    Returns:
        `(dirs, files)`: the existing `sys.path` entries (standard library, lib-dynload), the
        directories of the loaded C libraries (and the multiarch library directories, for the
        libraries extension modules load later), `/usr/share/zoneinfo`; and `/etc/ld.so.cache`
        plus any `sys.path` entry that is a file (a zipped standard library). Nested directories
        are folded into their parent; `/` itself is never included.
    """
    candidates = [p for p in sys.path if p and os.path.isabs(p)]
    candidates += sorted(_loaded_library_dirs())
    multiarch = getattr(sys.implementation, "_multiarch", "")
    if multiarch:
        candidates += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    candidates += list(EXTRA_DIRS)
    real: list[str] = []
    for path in candidates:
        resolved = os.path.realpath(path)
        if os.path.isdir(resolved) and resolved not in real:
            real.append(resolved)
    real = sorted((path for path in real if path != "/"), key=len)  # never the whole host
    dirs: list[str] = []
    for path in real:
        if not any(_is_within(path, kept) for kept in dirs):
            dirs.append(path)
    files = [
        os.path.realpath(f)
        for f in [*EXTRA_FILES, *(p for p in sys.path if p and os.path.isabs(p))]
        if os.path.isfile(f)
    ]
    return dirs, sorted(set(files))


def plan_root(dirs: list[str], files: list[str]) -> RootPlan:
    """Describe the private root: `dirs` and `files` read-only, device files, hidden dirs."""
    plan = RootPlan(dirs=list(dirs), files=list(files))
    plan.hidden = [
        os.path.join(path, sub)
        for path in dirs
        for sub in HIDDEN_SUBDIRS
        if os.path.isdir(os.path.join(path, sub))
    ]
    plan.devices = [path for path in DEVICES_RW + DEVICES_RO if os.path.exists(path)]
    # Top-level symlinks such as /lib -> usr/lib (merged /usr): ld.so.cache names libraries
    # through them.
    for name in os.listdir("/"):
        full = "/" + name
        if os.path.islink(full):
            plan.symlinks.append((full, os.readlink(full)))
    return plan


def drop_uid(uid: int, gid: int) -> None:
    """Become `uid`/`gid` with no supplementary groups (root only: this drops every capability)."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if 0 in os.getresuid():
        raise OSError(0, "still root after setresuid")


_OTHER_NAMESPACES = (
    libc.CLONE_NEWNS | libc.CLONE_NEWPID | libc.CLONE_NEWNET | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS
)


def _write_id_maps(proc_self: int) -> None:
    """Map our uid and gid to themselves in the user namespace we just entered.

    `proc_self` is a directory descriptor of `/proc/<our pid>`, opened while /proc was still
    reachable. A uid change made the process non-dumpable, which makes those files root-owned:
    become dumpable just long enough to write them.
    """
    uid, gid = os.geteuid(), os.getegid()
    libc.prctl(libc.PR_SET_DUMPABLE, 1)
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1\n"),
            ("gid_map", f"{gid} {gid} 1\n"),
        ):
            fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc_self)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
    finally:
        libc.prctl(libc.PR_SET_DUMPABLE, 0)


def isolate(
    plan: RootPlan, *, uid: int, gid: int, tmp_bytes: int, skip: set[str]
) -> dict[str, str]:
    """Set up the `uid`, `namespaces` and `filesystem` layers (see the module docstring).

    Args:
        plan: from `plan_root`.
        uid, gid: the sandbox's ids when the worker is root.
        tmp_bytes: size of the private `/tmp`.
        skip: layers not to attempt.

    Returns:
        Each layer's status: `ok`, `skipped`, or why it failed. The PID namespace applies to the
        children forked afterwards: the first becomes its init.
    """
    status: dict[str, str] = {}
    want_ns = "namespaces" not in skip
    want_fs = want_ns and "filesystem" not in skip

    def attempt(name: str, action: Callable[[], object]) -> bool:
        try:
            action()
        except Exception as exc:
            status[name] = f"{type(exc).__name__}: {exc}"
            return False
        status[name] = "ok"
        return True

    if os.geteuid() == 0:
        proc_self = os.open("/proc/self", os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            ns_ok = want_ns and attempt("namespaces", _unshare_as_root)
            if ns_ok and want_fs:
                attempt("filesystem", lambda: build_root(plan, tmp_bytes))
            if "uid" in skip:
                status["uid"] = "skipped"
            uid_ok = "uid" not in skip and attempt("uid", lambda: drop_uid(uid, gid))
            if ns_ok and uid_ok:
                attempt("namespaces", lambda: _enter_user_namespace(proc_self))
            elif ns_ok:
                status["namespaces"] = "the user namespace needs the uid layer"
        finally:
            os.close(proc_self)
    else:
        status["uid"] = "ok"  # already unprivileged: the sandbox keeps the worker's uid
        ns_ok = want_ns and attempt("namespaces", _unshare_unprivileged)
        if ns_ok and want_fs:
            attempt("filesystem", lambda: build_root(plan, tmp_bytes))
    if not want_ns:
        status["namespaces"] = "skipped"
    if "filesystem" not in status:
        status["filesystem"] = "skipped" if "filesystem" in skip else "needs the namespaces layer"
    return status


def _unshare_as_root() -> None:
    libc.unshare(_OTHER_NAMESPACES)
    libc.sethostname("sandbox")


def _enter_user_namespace(proc_self: int) -> None:
    libc.unshare(libc.CLONE_NEWUSER)
    _write_id_maps(proc_self)


def _unshare_unprivileged() -> None:
    libc.unshare(libc.CLONE_NEWUSER | _OTHER_NAMESPACES)
    proc_self = os.open("/proc/self", os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _write_id_maps(proc_self)
    finally:
        os.close(proc_self)
    libc.sethostname("sandbox")


def _locked_flags(path: str) -> int:
    """Mount flags a bind of `path` inherits and may not drop when remounted (e.g. noexec)."""
    flags = os.statvfs(path).f_flag
    return libc.MS_NOEXEC if flags & os.ST_NOEXEC else 0


def _bind(path: str, *, directory: bool, read_only: bool) -> None:
    target = STAGING + path
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if directory:
        os.makedirs(target, mode=0o755, exist_ok=True)
    elif not os.path.exists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    libc.mount(path, target, None, libc.MS_BIND, None)
    if read_only:
        flags = libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV
        libc.mount(None, target, None, flags | _locked_flags(path), None)


def build_root(plan: RootPlan, tmp_bytes: int) -> None:
    """Assemble the private root described by `plan` and pivot into it; cwd becomes `/tmp`."""
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE, None)
    libc.mount(
        "tmpfs", STAGING, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "size=1m,nr_inodes=4096,mode=755"
    )
    for link, target in plan.symlinks:
        os.symlink(target, STAGING + link)
    for path in plan.dirs:
        _bind(path, directory=True, read_only=True)
    for path in plan.files:
        _bind(path, directory=False, read_only=True)
    for path in plan.devices:
        _bind(path, directory=False, read_only=False)
    for path in plan.hidden:
        libc.mount(
            "tmpfs",
            STAGING + path,
            "tmpfs",
            libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
            "size=4k,nr_inodes=2,mode=555",
        )
    os.makedirs(STAGING + "/tmp", mode=0o755, exist_ok=True)
    libc.mount(
        "tmpfs",
        STAGING + "/tmp",
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
        f"size={tmp_bytes},nr_inodes=4096,mode=1777",
    )
    libc.mount(
        None,
        STAGING,
        None,
        libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV,
        None,
    )
    os.chdir(STAGING)
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/tmp")
