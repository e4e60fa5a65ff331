"""`altlas-flows up` / `down`: the embedded default as the README's first command starts it.

`down` stops exactly the server it names, found by the port it answers on, from any folder; it
never signals a process that is not a Prefect server, nor one a stale record names.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.local import ServerProcess, listening_process
from interpreter.local_server import probe
from tests.conftest import free_port
from tests.support.cli import ROOT, run_cli


def altlas(
    *args: str, home: Path, cwd: Path = ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["ALTLAS_HOME"] = str(home)
    return run_cli(*args, env=env, timeout=timeout, cwd=cwd)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a Prefect server (in a session of its own)."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def other_http_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A web server that is not Prefect, listening on a free port of 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while probe(port) == "free":
            assert process.poll() is None, "http.server did not start"
        yield process, port
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_up_starts_sqlite_prefect_runs_examples_and_down_stops_it_from_anywhere(
    tmp_path: Path,
) -> None:
    port = free_port()
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    up = altlas("up", "--detach", "--port", str(port), home=home)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # It checked first, then said what is true.
        assert up.stdout.startswith(f"starting the Prefect server at http://127.0.0.1:{port} ")
        assert "already running" not in up.stdout
        assert f"Prefect UI:  http://127.0.0.1:{port}" in up.stdout
        ran = dict(re.findall(r"example (\S+)\s+(completed|failed|not run)", up.stdout))
        assert ran["chain"] == "completed"
        assert ran["map"] == "completed"
        assert ran["error-edge"] == "completed"
        assert ran["order-sync"] == "not run"  # needs `since`: listed, not run
        assert (home / "prefect" / "prefect.db").is_file()  # the embedded SQLite default
        ui = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert ui.status_code == 200
        assert "<html" in ui.text.lower()
        # The UI must call this server's API, not the default port's.
        ui_settings = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()
        assert ui_settings["api_url"] == f"http://127.0.0.1:{port}/api"
        runs = httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/filter", json={}, timeout=10)
        assert {run["name"] for run in runs.json()} >= {"Greeting chain", "Price list"}
        # Every example run's summary artifact arrived, though `up --detach` exits right after.
        artifacts = httpx.post(
            f"http://127.0.0.1:{port}/api/artifacts/filter", json={}, timeout=10
        ).json()
        assert {a["flow_run_id"] for a in artifacts} == {r["id"] for r in runs.json()}
        assert "Traceback" not in up.stderr, up.stderr
        assert "WARNING" not in up.stdout + up.stderr

        # The hint works as printed, from any folder: absolute paths, the venv's altlas-flows.
        hint = re.search(r"Run a workflow: (.+)", up.stdout)
        assert hint is not None, up.stdout
        words = shlex.split(hint.group(1))
        assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
        command = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
        assert Path(command[0]).is_absolute()
        assert os.access(command[0], os.X_OK)
        assert Path(command[-1]).is_absolute()
        assert Path(command[-1]).is_file()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
        as_printed = subprocess.run(
            command,
            env={**env, **assignments},
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert as_printed.returncode == 0, as_printed.stderr
        assert json.loads(as_printed.stdout)["state"] == "completed"

        # A second `up` sees the running server and says so, instead of "starting".
        server = listening_process(port)
        assert server is not None
        again = altlas("up", "--detach", "--no-examples", "--port", str(port), home=home)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(
            f"using the Prefect server already running at http://127.0.0.1:{port} "
            f"(pid {server.pid}, data in {home})"
        )
        assert "starting" not in again.stdout
        record = json.loads((home / "prefect-server.json").read_text())
        assert (record["pid"], record["port"]) == (server.pid, port)
        assert record["start_ticks"] == server.start_ticks
    finally:
        # From another folder, whose own ALTLAS_HOME knows nothing about this server.
        down = altlas("down", "--port", str(port), home=elsewhere / ".altlas", cwd=elsewhere)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == (
        f"stopped the Prefect server at http://127.0.0.1:{port} (pid {server.pid}, data in {home})"
    )
    assert probe(port) == "free"
    assert not server.still_running()
    assert not (home / "prefect-server.json").exists()
    gone = altlas("down", "--port", str(port), home=home)
    assert gone.returncode == 0
    assert gone.stdout == f"no Prefect server answers at 127.0.0.1:{port}: nothing to stop\n"


def test_down_leaves_what_is_not_a_prefect_server_alone_and_says_what_it_is(
    tmp_path: Path, other_http_server: tuple[subprocess.Popen[bytes], int]
) -> None:
    process, port = other_http_server
    home = tmp_path / "home"
    home.mkdir()
    (home / "prefect-server.pid").write_text(str(process.pid))  # the old kind of record
    down = altlas("down", "--port", str(port), home=home, timeout=60)
    assert down.returncode == 1
    assert f"127.0.0.1:{port} is answered by process {process.pid}" in down.stderr
    assert "http.server" in down.stderr
    assert "which is not a Prefect server: left alone" in down.stderr
    assert f"kill {process.pid}" in down.stderr
    assert process.poll() is None  # not signalled
    assert not (home / "prefect-server.pid").exists()
    up = altlas("up", "--port", str(port), home=home, timeout=60)
    assert up.returncode == 1
    assert f"127.0.0.1:{port} is taken by process {process.pid}" in up.stderr
    assert "up --port N" in up.stderr
    assert "starting" not in up.stdout
    assert process.poll() is None


def test_down_removes_stale_records_and_never_signals_what_they_name(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    alive = ServerProcess.of(sleeper.pid)
    assert alive is not None
    record = home / "prefect-server.json"
    # The pid was reused: the process running under it started at another time.
    reused = {"pid": sleeper.pid, "port": port, "start_ticks": alive.start_ticks - 1}
    record.write_text(json.dumps(reused))
    down = altlas("down", "--port", str(port), home=home, timeout=60)
    assert down.returncode == 0, down.stderr
    assert f"removed the stale record {record} (pid {sleeper.pid} now belongs" in down.stdout
    assert "sleep 300" in down.stdout
    assert sleeper.poll() is None
    assert not record.exists()
    # The process is gone.
    gone = subprocess.Popen(["true"])
    gone.wait()
    record.write_text(json.dumps({"pid": gone.pid, "port": port, "start_ticks": 1}))
    down = altlas("down", "--port", str(port), home=home, timeout=60)
    assert f"(process {gone.pid} is gone); nothing was stopped" in down.stdout
    assert not record.exists()


def test_up_and_down_have_help() -> None:
    env = dict(os.environ)
    down = run_cli("down", "--help", env=env, timeout=60)
    assert down.returncode == 0
    text = " ".join(down.stdout.split())
    assert "Stop the Prefect server answering on 127.0.0.1:PORT" in text
    assert "--port PORT port the server answers on (default" in text
    top = run_cli("--help", env=env, timeout=60)
    assert "stop the local Prefect server" in top.stdout
    up = " ".join(run_cli("up", "--help", env=env, timeout=60).stdout.split())
    assert "--detach return once ready and keep the server running" in up
