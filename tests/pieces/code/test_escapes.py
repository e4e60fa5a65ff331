"""Every escape attempt from `code.python` fails, and each test says exactly how.

The user code reports what each attempt did (see `ATTEMPT` in conftest); the tests assert the
precise refusal (exception and errno) and, where the attempt aims at something outside the
sandbox (a listener, a process, a file), that the target saw nothing or survived.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pieces.base import PieceError
from pieces.code.piece import OPEN_FILES, PROCESSES
from tests.pieces.code.conftest import (
    ATTEMPT,
    RunCode,
    assert_no_connection,
    cancel_once_running,
    process_status,
    sandbox_processes,
    threads_named,
)

SECRET = "altlas-canary-7f3a9c1e5b"

EPERM = {
    "raised": "PermissionError",
    "errno": errno.EPERM,
    "message": "[Errno 1] Operation not permitted",
}


def eperm(path: str) -> dict[str, object]:
    return {**EPERM, "message": f"[Errno 1] Operation not permitted: '{path}'"}


def eacces(path: str) -> dict[str, object]:
    return {
        "raised": "PermissionError",
        "errno": errno.EACCES,
        "message": f"[Errno 13] Permission denied: '{path}'",
    }


def enoent(path: str) -> dict[str, object]:
    return {
        "raised": "FileNotFoundError",
        "errno": errno.ENOENT,
        "message": f"[Errno 2] No such file or directory: '{path}'",
    }


# --- the worker's files and secrets ----------------------------------------------------------


async def test_cannot_read_etc_passwd(run_code: RunCode) -> None:
    code = ATTEMPT + "def main(inputs):\n    return attempt(lambda: open('/etc/passwd').read())\n"
    assert await run_code(code) == enoent("/etc/passwd")


async def test_cannot_read_proc_1_environ(run_code: RunCode) -> None:
    code = (
        ATTEMPT + "def main(inputs):\n    return attempt(lambda: open('/proc/1/environ').read())\n"
    )
    assert await run_code(code) == enoent("/proc/1/environ")


@pytest.fixture
def worker_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A secret in the worker's environment and in a file only the worker (root) can read."""
    monkeypatch.setenv("ALTLAS_SECRET_CANARY", SECRET)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    return secret_file


async def test_cannot_see_the_workers_secrets(run_code: RunCode, worker_secret: Path) -> None:
    code = (
        ATTEMPT
        + """
import os, sys

def main(inputs):
    worker = inputs["worker_pid"]
    return {
        "environ": dict(os.environ),
        "file": attempt(lambda: open(inputs["secret_file"]).read()),
        "worker_environ": attempt(lambda: open(f"/proc/{worker}/environ").read()),
        "self_environ": attempt(lambda: open("/proc/self/environ").read()),
        "argv": sys.argv,
    }
"""
    )
    result = await run_code(code, {"secret_file": str(worker_secret), "worker_pid": os.getpid()})
    assert result == {
        "environ": {},
        "file": enoent(str(worker_secret)),
        "worker_environ": enoent(f"/proc/{os.getpid()}/environ"),
        "self_environ": enoent("/proc/self/environ"),
        "argv": ["<code>"],
    }
    assert SECRET not in repr(result)


REPOSITORY = Path(__file__).resolve().parents[3]


async def test_the_repository_and_virtualenv_are_not_visible(run_code: RunCode) -> None:
    repo = REPOSITORY
    absent = [
        str(repo),
        str(repo / "pieces" / "code"),  # the sandbox's own source is not bound either
        str(repo / ".venv"),
        sys.prefix,
        "/home",
        "/var",
        "/etc/shadow",
        "/etc/hosts",
        "/root/.bashrc",
    ]
    # Parents of what is bound exist in the private root, but Landlock refuses listing them.
    unlistable = ["/", "/root", "/etc", "/usr"]
    code = (
        ATTEMPT
        + """
import os

def main(inputs):
    return {path: attempt(os.listdir, path) for path in inputs["paths"]}
"""
    )
    result = await run_code(code, {"paths": absent + unlistable})
    assert result == {
        **{path: enoent(path) for path in absent},
        **{path: eacces(path) for path in unlistable},
    }


async def test_only_the_runtime_is_readable(run_code: RunCode) -> None:
    code = (
        ATTEMPT
        + """
import os

def main(inputs):
    stdlib = os.path.dirname(os.__file__)
    return {
        "listing_root": attempt(os.listdir, "/"),
        "stdlib_readable": len(open(os.__file__).read()) > 0,
        "site_packages": attempt(os.listdir, os.path.join(stdlib, "site-packages")),
    }
"""
    )
    result = await run_code(code)
    assert result["listing_root"] == eacces("/")  # Landlock: no rule for "/"
    assert result["stdlib_readable"] is True
    assert result["site_packages"] == {"returned": "[]"}  # hidden under an empty tmpfs


# --- network -----------------------------------------------------------------------------------


async def test_cannot_connect_to_localhost(run_code: RunCode, tcp_listener: socket.socket) -> None:
    code = (
        ATTEMPT
        + """
import signal
import socket

def main(inputs):
    return attempt(socket.create_connection, ("127.0.0.1", inputs["port"]), timeout=2)
"""
    )
    assert await run_code(code, {"port": tcp_listener.getsockname()[1]}) == EPERM


async def test_cannot_connect_to_cloud_metadata(run_code: RunCode) -> None:
    code = (
        ATTEMPT
        + """
import socket, urllib.request

def main(inputs):
    return {
        "socket": attempt(socket.create_connection, ("169.254.169.254", 80), timeout=2),
        "urllib": attempt(urllib.request.urlopen, "http://169.254.169.254/", timeout=2),
        "ipv6": attempt(socket.socket, socket.AF_INET6, socket.SOCK_STREAM),
    }
"""
    )
    result = await run_code(code)
    assert result["socket"] == EPERM
    assert result["urllib"]["raised"] == "URLError"
    assert "Operation not permitted" in result["urllib"]["message"]
    assert result["ipv6"] == EPERM


async def test_cannot_send_udp_to_port_53(run_code: RunCode) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    code = (
        ATTEMPT
        + """
import signal
import socket

def send(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return s.sendto(b"\\x12\\x34 query", (host, port))

def main(inputs):
    return {
        "dns_public": attempt(send, "8.8.8.8", 53),
        "dns_local": attempt(send, "127.0.0.53", 53),
        "local_receiver": attempt(send, "127.0.0.1", inputs["port"]),
        "resolve": attempt(socket.getaddrinfo, "example.com", 80),
    }
"""
    )
    try:
        result = await run_code(code, {"port": receiver.getsockname()[1]})
        with pytest.raises(BlockingIOError):
            receiver.recv(100)
    finally:
        receiver.close()
    assert result["dns_public"] == EPERM
    assert result["dns_local"] == EPERM
    assert result["local_receiver"] == EPERM
    assert result["resolve"]["raised"] == "gaierror"


async def test_unix_sockets_cannot_reach_the_host(run_code: RunCode, tmp_path: Path) -> None:
    host_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host_socket.bind(str(tmp_path / "host.sock"))
    host_socket.listen(1)
    host_socket.setblocking(False)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(b"\0altlas-test-abstract")
    abstract.listen(1)
    abstract.setblocking(False)
    code = (
        ATTEMPT
        + """
import signal
import socket

def connect(address):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(address)

def main(inputs):
    return {
        "path": attempt(connect, inputs["path"]),
        "abstract": attempt(connect, b"\\0altlas-test-abstract"),
        "pair": attempt(lambda: [s.close() for s in socket.socketpair()]),
    }
"""
    )
    try:
        result = await run_code(code, {"path": str(tmp_path / "host.sock")})
        for server in (host_socket, abstract):
            assert_no_connection(server)
    finally:
        host_socket.close()
        abstract.close()
    assert result["path"]["raised"] == "FileNotFoundError"
    # A new network namespace has its own abstract socket names; Landlock's scope refuses
    # them too.
    assert result["abstract"]["raised"] in {"ConnectionRefusedError", "PermissionError"}
    assert result["pair"] == {"returned": "[None, None]"}  # in-sandbox socket pairs still work


# --- processes -----------------------------------------------------------------------------------


async def test_cannot_spawn_a_shell_or_subprocess(run_code: RunCode) -> None:
    code = (
        ATTEMPT
        + """
import os, subprocess, sys, pty

def main(inputs):
    return {
        "system": os.system("touch /tmp/ran"),
        "ran": os.path.exists("/tmp/ran"),
        "subprocess": attempt(subprocess.run, ["/bin/sh", "-c", "id"]),
        "execv": attempt(os.execv, sys.executable, [sys.executable, "-c", "pass"]),
        "execv_sh": attempt(os.execv, "/bin/sh", ["/bin/sh"]),
        "posix_spawn": attempt(os.posix_spawn, sys.executable, [sys.executable], {}),
        "fork": attempt(os.fork),
        "forkpty": attempt(pty.fork),
        "popen": attempt(lambda: os.popen("id").read()),
        "executable": sys.executable,
    }
"""
    )
    result = await run_code(code)
    assert result["system"] == 127 << 8  # the shell could not be started
    assert result["ran"] is False
    assert result["subprocess"] == EPERM
    assert result["execv"] == EPERM
    assert result["execv_sh"] == EPERM
    assert result["posix_spawn"] == eperm(result["executable"])
    assert result["fork"] == EPERM
    assert result["forkpty"] == {
        "raised": "OSError",
        "errno": None,
        "message": "out of pty devices",
    }
    assert result["popen"] == EPERM


async def test_multiprocessing_cannot_start_workers(run_code: RunCode) -> None:
    code = (
        ATTEMPT
        + """
import multiprocessing

def main(inputs):
    return attempt(lambda: multiprocessing.get_context("fork").Process(target=print).start())
"""
    )
    assert await run_code(code) == EPERM


async def test_fork_bomb_stops_at_the_first_fork(run_code: RunCode) -> None:
    code = (
        ATTEMPT
        + """
import os

def bomb():
    while True:
        os.fork()

def main(inputs):
    return attempt(bomb)
"""
    )
    assert await run_code(code) == EPERM


async def test_thread_bomb_stops_at_the_process_limit(run_code: RunCode) -> None:
    code = """
import threading

def main(inputs):
    stop = threading.Event()
    started = 0
    try:
        while started < 10_000:
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    except RuntimeError as exc:
        error = str(exc)
    stop.set()
    return {"started": started, "error": error}
"""
    result = await run_code(code)
    assert result["error"] == "can't start new thread"
    # RLIMIT_NPROC counts the sandbox's tasks: the outer process, the main thread, the rest.
    assert result["started"] == PROCESSES - 2


async def test_ptrace_and_namespace_calls_are_refused(run_code: RunCode) -> None:
    code = """
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)

def call(name, *args):
    ctypes.set_errno(0)
    result = getattr(libc, name)(*args)
    return [result, ctypes.get_errno()]

def main(inputs):
    worker = inputs["worker_pid"]
    return {
        "ptrace_attach_worker": call("ptrace", 16, worker, None, None),
        "ptrace_traceme": call("ptrace", 0, 0, None, None),
        "unshare_user": call("unshare", 0x10000000),
        "unshare_net": call("unshare", 0x40000000),
        "setns": call("setns", 0, 0),
        "mount": call("mount", b"none", b"/tmp", b"tmpfs", 0, None),
        "chroot": call("chroot", b"/tmp"),
        "bpf": call("syscall", 321, 0, None, 0),
        "perf": call("syscall", 298, None, 0, -1, -1, 0),
        "keyctl": call("syscall", 250, 0, 0, 0, 0, 0),
        "process_vm_readv": call("syscall", 310, worker, None, 0, None, 0, 0),
        "kexec": call("syscall", 246, 0, 0, None, 0),
        "io_uring": call("syscall", 425, 8, None),
        "clone_newuser": call("syscall", 56, 0x10000000 | 17, None, None, None, None),
        "setuid_root": call("setuid", 0),
    }
"""
    result = await run_code(code, {"worker_pid": os.getpid()})
    refused = {name: value for name, value in result.items() if name != "setuid_root"}
    assert refused == {name: [-1, errno.EPERM] for name in refused}
    # Root does not exist in the sandbox's user namespace (only 65534 is mapped).
    assert result["setuid_root"] == [-1, errno.EINVAL]


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process started by the test that user code will try to signal."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


async def test_cannot_signal_other_processes(
    run_code: RunCode, victim: subprocess.Popen[bytes]
) -> None:
    code = (
        ATTEMPT
        + """
import os, signal

def main(inputs):
    return {
        "worker": attempt(os.kill, inputs["worker_pid"], signal.SIGKILL),
        "victim": attempt(os.kill, inputs["victim_pid"], signal.SIGKILL),
        "everyone": attempt(os.kill, -1, signal.SIGKILL),
        "my_group": attempt(os.killpg, 0, signal.SIGKILL),
        "pid_1": attempt(os.kill, 1, signal.SIGTERM),
        "my_pid": os.getpid(),
        "parent": os.getppid(),
        "still_running": True,
    }
"""
    )
    result = await run_code(code, {"worker_pid": os.getpid(), "victim_pid": victim.pid})
    assert result["worker"] == EPERM
    assert result["victim"] == EPERM
    assert result["everyone"] == EPERM
    assert result["my_group"] == EPERM
    # pid 1 is the sandbox itself (init of its own PID namespace): the host's init is not even
    # visible, and a namespace init ignores signals it has no handler for.
    assert result["pid_1"] == {"returned": "None"}
    assert result["my_pid"] == 1
    assert result["parent"] == 0
    assert result["still_running"] is True
    assert victim.poll() is None


async def test_cannot_leave_the_process_group_the_worker_kills(run_code: RunCode) -> None:
    code = (
        ATTEMPT
        + """
import os

def main(inputs):
    return {"setsid": attempt(os.setsid), "setpgid": attempt(os.setpgid, 0, 0)}
"""
    )
    assert await run_code(code) == {"setsid": EPERM, "setpgid": EPERM}


# --- resources ---------------------------------------------------------------------------------


async def test_memory_bomb_hits_the_memory_limit(run_code: RunCode) -> None:
    code = """
def main(inputs):
    chunks = []
    try:
        while True:
            chunks.append(bytearray(8 * 1024 * 1024))
    except MemoryError:
        allocated = len(chunks) * 8
    chunks.clear()
    try:
        bytearray(10 ** 12)
        huge = "allocated"
    except MemoryError:
        huge = "MemoryError"
    return {"allocated_mb": allocated, "huge": huge}
"""
    result = await run_code(code, memory_mb=128)
    assert result["huge"] == "MemoryError"
    assert 0 < result["allocated_mb"] < 128


async def test_memory_outside_the_address_space_is_refused(run_code: RunCode) -> None:
    """memfds and System V shared memory hold memory that `RLIMIT_AS` does not count: a node
    could fill the host's RAM through them, whatever its `memory_mb`."""
    code = (
        ATTEMPT
        + """
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)

def call(name, *args):
    if getattr(libc, name)(*args) == -1:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))

def main(inputs):
    return {
        "memfd_create": attempt(os.memfd_create, "hold"),
        "shmget": attempt(call, "shmget", 0, 1 << 20, 0o1600),
        "msgget": attempt(call, "msgget", 0, 0o1600),
    }
"""
    )
    assert await run_code(code, memory_mb=64) == {
        "memfd_create": EPERM,
        "shmget": EPERM,
        "msgget": EPERM,
    }


async def test_memory_bomb_without_recovery_is_a_code_error(run_code: RunCode) -> None:
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    return 'x' * 10 ** 10\n", memory_mb=128)
    assert caught.value.error_type == "CodeError"
    assert caught.value.message.startswith("MemoryError")


async def test_infinite_loop_is_stopped_by_the_wall_clock(run_code: RunCode) -> None:
    started = time.monotonic()
    with pytest.raises(PieceError) as caught:
        await run_code("def main(inputs):\n    while True:\n        pass\n", timeout_seconds=1)
    assert caught.value.error_type == "Timeout"
    assert time.monotonic() - started < 3
    assert sandbox_processes() == []


async def test_sleeping_past_the_limit_is_stopped(run_code: RunCode) -> None:
    started = time.monotonic()
    with pytest.raises(PieceError) as caught:
        await run_code("import time\ndef main(inputs):\n    time.sleep(3600)\n", timeout_seconds=1)
    assert caught.value.error_type == "Timeout"
    assert time.monotonic() - started < 3
    assert sandbox_processes() == []


async def test_filling_the_disk_stops_at_the_private_tmp(run_code: RunCode) -> None:
    code = (
        ATTEMPT
        + """
import os

def fill(path):
    written = 0
    block = b"x" * (1024 * 1024)
    try:
        with open(path, "wb") as f:
            while written < 1024 * 1024 * 1024:
                f.write(block)
                f.flush()
                written += len(block)
    except OSError as exc:
        return {"written_mb": written // (1024 * 1024), "errno": exc.errno}
    return {"written_mb": written // (1024 * 1024), "errno": None}

def main(inputs):
    return {
        "tmp": fill("/tmp/fill"),
        "root": attempt(open, "/fill", "wb"),
        "stdlib": attempt(open, os.path.join(os.path.dirname(os.__file__), "fill"), "wb"),
        "dev_shm": attempt(open, "/dev/shm/fill", "wb"),
        "var_tmp": attempt(open, "/var/tmp/fill", "wb"),
    }
"""
    )
    host_free_before = os.statvfs("/").f_bavail
    result = await run_code(code)
    assert result["tmp"]["errno"] in {errno.ENOSPC, errno.EFBIG}
    assert result["tmp"]["written_mb"] <= 16
    assert result["root"]["errno"] in {errno.EROFS, errno.EACCES}
    assert result["stdlib"]["errno"] in {errno.EROFS, errno.EACCES}
    assert result["dev_shm"]["errno"] == errno.ENOENT
    assert result["var_tmp"]["errno"] == errno.ENOENT
    # Nothing landed on the host's disk (allowing for other activity on the machine).
    assert host_free_before - os.statvfs("/").f_bavail < 4096


async def test_exhausting_file_descriptors_stops_at_the_limit(run_code: RunCode) -> None:
    code = """
def main(inputs):
    files = []
    try:
        while len(files) < 100_000:
            files.append(open("/dev/null"))
    except OSError as exc:
        return {"opened": len(files), "errno": exc.errno}
    return {"opened": len(files), "errno": None}
"""
    result = await run_code(code)
    assert result["errno"] == errno.EMFILE
    assert 0 < result["opened"] < OPEN_FILES


# --- nothing outlives the node -------------------------------------------------------------------

MARKER_CODE = """
import ctypes, threading, time

libc = ctypes.CDLL(None)

def linger(name):
    libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: a name the test looks for
    while True:
        time.sleep(0.05)

def main(inputs):
    thread = threading.Thread(target=linger, args=(inputs["marker"],), daemon=False)
    thread.start()
    time.sleep(0.2)
    if inputs.get("hang"):
        time.sleep(3600)
    return "returned while a thread keeps running"
"""


async def test_no_process_outlives_a_node_that_returned(run_code: RunCode) -> None:
    marker = f"linger{os.getpid() % 10000}"
    result = await run_code(MARKER_CODE, {"marker": marker})
    assert result == "returned while a thread keeps running"
    assert threads_named(marker) == []
    assert sandbox_processes() == []


async def test_no_process_outlives_a_timed_out_node(run_code: RunCode) -> None:
    marker = f"timeout{os.getpid() % 10000}"
    with pytest.raises(PieceError) as caught:
        await run_code(MARKER_CODE, {"marker": marker, "hang": True}, timeout_seconds=1)
    assert caught.value.error_type == "Timeout"
    assert threads_named(marker) == []
    assert sandbox_processes() == []


async def test_no_process_outlives_a_cancelled_node(run_code: RunCode) -> None:
    marker = f"cancel{os.getpid() % 10000}"
    task = asyncio.ensure_future(run_code(MARKER_CODE, {"marker": marker, "hang": True}))
    await cancel_once_running(task, marker)
    # Checked at once: the tree must be gone when the cancelled coroutine finishes.
    assert threads_named(marker) == []
    assert sandbox_processes() == []


async def test_concurrent_nodes_are_isolated_from_each_other(run_code: RunCode) -> None:
    code = """
import os, time

def main(inputs):
    with open("/tmp/mine", "w") as f:
        f.write(inputs["name"])
    time.sleep(0.3)
    seen = open("/tmp/mine").read()
    return {"seen": seen, "files": sorted(os.listdir("/tmp")), "pid": os.getpid()}
"""
    results = await asyncio.gather(*(run_code(code, {"name": f"node{i}"}) for i in range(4)))
    for i, result in enumerate(results):
        assert result == {"seen": f"node{i}", "files": ["mine"], "pid": 1}
    assert sandbox_processes() == []


async def test_the_sandbox_runs_unprivileged_with_no_capabilities(run_code: RunCode) -> None:
    """Checked from outside, through /proc, once user code runs (every layer is in place)."""
    marker = f"privmark{os.getpid() % 1000}"
    code = """
import ctypes, time

def main(inputs):
    ctypes.CDLL(None).prctl(15, inputs["marker"].encode(), 0, 0, 0)
    time.sleep(2)
"""
    task = asyncio.ensure_future(run_code(code, {"marker": marker}, timeout_seconds=10))
    status: dict[str, str] = {}
    deadline = time.monotonic() + 10
    while not status:
        assert time.monotonic() < deadline, "the sandbox's code never ran"
        await asyncio.sleep(0.05)
        for thread in threads_named(marker):
            status = process_status(int(thread.split("/")[0]))
    await task
    assert status["NSpid"].split()[-1] == "1"  # init of its own PID namespace
    assert status["Uid"].split() == ["65534"] * 4
    assert status["Gid"].split() == ["65534"] * 4
    assert status["Groups"].strip() == ""
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, caps
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # filter mode


async def test_x32_system_calls_kill_the_sandbox(run_code: RunCode) -> None:
    # getpid through the x32 ABI (number | 0x40000000): a way around a filter that only
    # checks x86_64 numbers. The filter kills the process instead.
    code = (
        "import ctypes\ndef main(inputs):\n    return ctypes.CDLL(None).syscall(0x40000000 | 39)\n"
    )
    with pytest.raises(PieceError) as caught:
        await run_code(code)
    assert caught.value.error_type == "CodeCrashed"
    assert caught.value.details == {"signal": signal.SIGSYS}


async def test_32_bit_system_calls_kill_the_sandbox(run_code: RunCode) -> None:
    # `int 0x80` enters the kernel's i386 ABI, whose numbers differ (1 is exit there, 57 is
    # setpgid...): the filter checks the architecture field first and kills the process.
    code = """
import ctypes, mmap

def main(inputs):
    # mov eax, 20 (i386 getpid); int 0x80; ret
    machine_code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(machine_code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()
"""
    with pytest.raises(PieceError) as caught:
        await run_code(code)
    assert caught.value.error_type == "CodeCrashed"
    assert caught.value.details == {"signal": signal.SIGSYS}
