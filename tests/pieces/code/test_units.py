"""Unit tests of the sandbox's small parts: its JSON codec, the BPF assembler, the output log."""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import pytest

from pieces.code.output import PARTIAL_LINE_LIMIT, OutputLog
from pieces.code.process import ChildOutcome, _frames, _parse, _PipeReader
from pieces.code.sandbox import jsonio, landlock, seccomp
from tests.pieces.code.conftest import CapturingHandler

# --- jsonio: the child's JSON without the `json` package ------------------------------------------

VALUES: list[Any] = [
    None,
    True,
    0,
    -12345678901234567890,
    1.5,
    1e300,
    "",
    'é 😀 "quoted" \\ \n\t\x00',
    [],
    {},
    {"a": [1, {"b": None}], "": "empty key"},
    [[[[[]]]]],
]


@pytest.mark.parametrize("value", VALUES)
def test_jsonio_matches_json(value: Any) -> None:
    assert jsonio._encode is not None, "the _json accelerator is in use on this Python"
    text = jsonio.dumps(value)
    assert text == json.dumps(value, allow_nan=False, separators=(",", ":"))
    assert jsonio.loads(text) == value
    assert jsonio.loads(f" \n {text} \t\n") == value


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ({1, 2}, TypeError),
        (b"x", TypeError),
    ],
)
def test_jsonio_refuses_what_json_cannot_hold(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        jsonio.dumps(value)


def test_jsonio_converts_keys_like_json() -> None:
    keys = {1: "a", 2.5: "b", None: "c", False: "d"}
    assert jsonio.dumps(keys) == json.dumps(keys, separators=(",", ":"))


def test_jsonio_refuses_cycles() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonio.dumps(cycle)


@pytest.mark.parametrize("text", ["", "{", "[1,]", "NaN", "[Infinity]", "1 2", "{'a': 1}"])
def test_jsonio_refuses_invalid_documents(text: str) -> None:
    with pytest.raises(ValueError, match=r"JSON|Expecting"):
        jsonio.loads(text)


# --- seccomp: the filter program ------------------------------------------------------------------


def _program(code: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("<HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]


def test_filter_starts_with_the_architecture_check() -> None:
    program = _program(seccomp.build(seccomp.X86_64, own_pid=1))
    assert program[0] == (0x20, 0, 0, 4)  # load seccomp_data.arch
    assert program[1] == (0x15, 1, 0, seccomp.AUDIT_ARCH_X86_64)
    assert program[2] == (0x06, 0, 0, seccomp.RET_KILL_PROCESS)
    assert program[3] == (0x20, 0, 0, 0)  # load seccomp_data.nr
    assert program[4] == (0x35, 0, 1, seccomp.X32_SYSCALL_BIT)
    assert program[5] == (0x06, 0, 0, seccomp.RET_KILL_PROCESS)
    assert program[-1] == (0x06, 0, 0, seccomp.RET_ALLOW)


def test_every_jump_lands_inside_the_program() -> None:
    program = _program(seccomp.build(seccomp.X86_64, own_pid=4242))
    for index, (code, jt, jf, _) in enumerate(program):
        if code & 0x07 == 0x05:  # a jump
            assert index + 1 + max(jt, jf) < len(program)
        else:
            assert (jt, jf) == (0, 0)


def _run_filter(code: bytes, nr: int, args: tuple[int, ...] = (), arch: int = 0xC000003E) -> int:
    """Interpret the classic-BPF subset the filter uses over one `seccomp_data`."""
    values = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *values)
    program = _program(code)
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = program[pc]
        if op == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif op == 0x06:
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
            pc += 1 + (jt if taken else jf)


@pytest.mark.parametrize(
    ("nr", "args", "expected"),
    [
        (39, (), seccomp.RET_ALLOW),  # getpid
        (57, (), seccomp.RET_ERRNO | 1),  # fork
        (59, (), seccomp.RET_ERRNO | 1),  # execve
        (101, (), seccomp.RET_ERRNO | 1),  # ptrace
        (435, (), seccomp.RET_ERRNO | 38),  # clone3: ENOSYS, so libc falls back to clone
        (56, (0x3D0F00,), seccomp.RET_ALLOW),  # clone as pthread_create calls it
        (56, (0x01200011,), seccomp.RET_ERRNO | 1),  # clone as fork calls it
        (56, (0x3D0F00 | 0x10000000,), seccomp.RET_ERRNO | 1),  # thread + CLONE_NEWUSER
        (41, (1, 1, 0), seccomp.RET_ALLOW),  # socket(AF_UNIX)
        (41, (2, 1, 0), seccomp.RET_ERRNO | 1),  # socket(AF_INET)
        (41, (10, 2, 0), seccomp.RET_ERRNO | 1),  # socket(AF_INET6, SOCK_DGRAM)
        (41, (16, 3, 0), seccomp.RET_ERRNO | 1),  # socket(AF_NETLINK)
        (41, (2 | 1 << 32, 1, 0), seccomp.RET_ERRNO | 1),  # high bits do not hide AF_INET
        (53, (2, 1, 0), seccomp.RET_ERRNO | 1),  # socketpair(AF_INET)
        (62, (4242, 15), seccomp.RET_ALLOW),  # kill(own pid)
        (62, (1, 9), seccomp.RET_ERRNO | 1),  # kill(another pid)
        (62, (0, 9), seccomp.RET_ERRNO | 1),  # kill(own process group)
        (62, (2**32 - 1, 9), seccomp.RET_ERRNO | 1),  # kill(-1): everyone
        (234, (4242, 4243, 10), seccomp.RET_ALLOW),  # tgkill on our own threads
        (234, (7, 7, 10), seccomp.RET_ERRNO | 1),
        (16, (0, 0x5412, 0), seccomp.RET_ERRNO | 1),  # ioctl(TIOCSTI)
        (16, (0, 0x5401, 0), seccomp.RET_ALLOW),  # ioctl(TCGETS)
        (39 | 0x40000000, (), seccomp.RET_KILL_PROCESS),  # x32
    ],
)
def test_filter_decisions(nr: int, args: tuple[int, ...], expected: int) -> None:
    code = seccomp.build(seccomp.X86_64, own_pid=4242)
    assert _run_filter(code, nr, args) == expected


def test_other_architectures_are_killed() -> None:
    code = seccomp.build(seccomp.X86_64, own_pid=1)
    assert _run_filter(code, 39, arch=0x40000003) == seccomp.RET_KILL_PROCESS  # i386
    assert _run_filter(code, 39, arch=0xC00000B7) == seccomp.RET_KILL_PROCESS  # aarch64


def test_every_denied_call_is_refused() -> None:
    code = seccomp.build(seccomp.X86_64, own_pid=1)
    for name, nr in seccomp.X86_64.denied.items():
        assert _run_filter(code, nr) == seccomp.RET_ERRNO | 1, name


def test_an_architecture_without_a_table_cannot_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp.libc, "MACHINE", "riscv64")
    with pytest.raises(OSError, match="no seccomp system call table for architecture riscv64"):
        seccomp.install(1)


# --- landlock: rights by ABI ----------------------------------------------------------------------


def test_landlock_handles_every_right_the_abi_knows() -> None:
    assert landlock.handled_fs(0) == 0
    assert landlock.handled_fs(1) == (1 << 13) - 1
    assert landlock.handled_fs(3) & landlock.FS_TRUNCATE
    assert not landlock.handled_fs(4) & landlock.FS_IOCTL_DEV
    assert landlock.handled_fs(7) == (1 << 16) - 1
    assert not landlock.READ & landlock.FS_EXECUTE
    assert not landlock.READ_WRITE & (landlock.FS_EXECUTE | landlock.FS_MAKE_CHAR)


def test_landlock_without_kernel_support_says_why() -> None:
    status = landlock.restrict(landlock.Rules(), fs=True, net=True, abi=0)
    assert status == dict.fromkeys(
        ("landlock_fs", "landlock_net", "landlock_scope"),
        "Landlock is not available in this kernel (or disabled at boot)",
    )


# --- the output log -------------------------------------------------------------------------------


def _log(max_bytes: int = 1000) -> tuple[OutputLog, CapturingHandler]:
    handler = CapturingHandler()
    logger = logging.getLogger(f"altlas.test.output.{id(handler)}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return OutputLog(logger, max_bytes), handler


def test_output_is_logged_by_complete_lines() -> None:
    log, handler = _log()
    log.feed(b"one\ntw")
    log.feed(b"o\nthree")
    log.close()
    assert handler.messages() == ["one", "two", "three"]


def test_a_character_split_across_chunks_is_kept_whole() -> None:
    log, handler = _log()
    encoded = "é😀\n".encode()
    for i in range(len(encoded)):
        log.feed(encoded[i : i + 1])
    log.close()
    assert handler.messages() == ["é😀"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    log, handler = _log()
    log.feed(b"bad \xff byte\n")
    log.close()
    assert handler.messages() == ["bad \ufffd byte"]


def test_a_very_long_line_is_not_held_back() -> None:
    log, handler = _log(max_bytes=10 * PARTIAL_LINE_LIMIT)
    log.feed(b"x" * (PARTIAL_LINE_LIMIT + 1))
    assert handler.messages() == ["x" * (PARTIAL_LINE_LIMIT + 1)]


def test_output_past_the_cap_is_counted_and_reported() -> None:
    log, handler = _log(max_bytes=5)
    log.feed(b"12345678\n")
    log.feed(b"more\n")
    log.close()
    assert handler.messages(logging.INFO) == ["12345"]
    assert handler.messages(logging.WARNING) == [
        "output truncated: 9 further bytes of stdout/stderr were dropped "
        "(ALTLAS_SANDBOX_MAX_OUTPUT_BYTES=5)"
    ]


# --- frames ---------------------------------------------------------------------------------------


class _Read:
    """Stands in for a `_PipeReader` that has finished."""

    def __init__(self, data: bytes, dropped: int = 0) -> None:
        self.data = bytearray(data)
        self.dropped = dropped


def _parsed(control: bytes, result: bytes, dropped: int = 0, limit: int = 100) -> ChildOutcome:
    outcome = ChildOutcome()
    _parse(outcome, _Read(control), _Read(result, dropped), limit)  # type: ignore[arg-type]
    return outcome


SETUP = b'{"kind":"setup","layers":{},"landlock_abi":7,"pid":1,"uid":65534}\n'


def test_frames_are_read_in_order() -> None:
    outcome = _parsed(
        b'{"kind":"forked","pid":7}\n{"kind":"exited","code":0,"cpu":0.01}\n',
        SETUP + b'{"kind":"result","value":[1]}\n',
    )
    assert outcome.setup is not None
    assert outcome.result == {"kind": "result", "value": [1]}
    assert outcome.exit_frame() == {"kind": "exited", "code": 0, "cpu": 0.01}
    assert outcome.protocol_error is None


@pytest.mark.parametrize(
    ("result", "dropped", "problem"),
    [
        (SETUP + b"not json\n", 0, "the result channel held something that is not JSON"),
        (SETUP + b"[1]\n", 0, "the result channel held something that is not JSON"),
        (SETUP + b'{"kind":"result","value":1}\n' * 2, 0, "held 2 results"),
        (SETUP + b'{"kind":"result","value":"' + b"x" * 90 + b'"}', 5000, "more than the 100"),
    ],
)
def test_a_bad_result_channel_is_a_protocol_error(
    result: bytes, dropped: int, problem: str
) -> None:
    outcome = _parsed(b"", result, dropped)
    assert outcome.protocol_error is not None
    assert problem in outcome.protocol_error
    assert outcome.result is None


def test_deeply_nested_results_do_not_crash_the_worker() -> None:
    outcome = _parsed(b"", SETUP + b"[" * 200_000 + b"\n", limit=10**6)
    assert outcome.protocol_error is not None
    assert "not JSON" in outcome.protocol_error


def test_a_setup_frame_alone_means_no_result() -> None:
    outcome = _parsed(b"", SETUP)
    assert outcome.setup is not None
    assert outcome.result is None
    assert outcome.protocol_error is None


def test_frames_must_be_objects() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        _frames(b"[]\n")
    assert _PipeReader  # the reader itself is exercised by every sandbox run
