"""`altlas-flows up` / `down`: the whole engine as the README's first command starts it.

`down` stops exactly the server it names, found by the port it answers on, from any folder; it
never signals a process that is not a Prefect server, nor one a stale record names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.local import ServerProcess
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
def test_up_starts_the_whole_engine_and_down_stops_all_of_it(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ports = ("--port", str(port), "--api-port", str(api_port))
    api = f"http://127.0.0.1:{api_port}"
    up = altlas("up", "--detach", *ports, home=home)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # It checked first, then said what is true, in the order it started things.
        assert up.stdout.startswith(f"starting the Prefect server at http://127.0.0.1:{port} ")
        assert "starting the api ..." in up.stdout
        assert "starting the worker ..." in up.stdout
        assert "already running" not in up.stdout
        assert f"REST API:     {api}/v1  (docs: {api}/docs)" in up.stdout
        assert f"Prefect UI:   http://127.0.0.1:{port}" in up.stdout
        # The examples are stored workflows of the demo tenant, run through the API's path.
        ran = dict(re.findall(r"example (\S+)\s+(\w+)", up.stdout))
        assert ran["chain"] == "completed"
        assert ran["map"] == "completed"
        assert "order-sync" not in ran  # needs `since`: stored, not run
        assert (home / "prefect" / "prefect.db").is_file()  # the embedded SQLite defaults
        assert (home / "altlas.db").is_file()
        assert oct((home / "secret.key").stat().st_mode & 0o777) == "0o600"
        assert httpx.get(f"{api}/docs", timeout=10).status_code == 200
        # A sync route served from Prefect's thread pool, just after the examples' runs: on a
        # loaded 2-core CI machine it once took over 10 s, so the wait is generous.
        ui_settings = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=60).json()
        assert ui_settings["api_url"] == f"http://127.0.0.1:{port}/api"
        assert "Traceback" not in up.stderr, up.stderr

        # The printed curl line works as printed and starts a run the worker completes.
        match = re.search(r"Start a run:\n(.+?)\nIt keeps running", up.stdout, re.S)
        assert match is not None, up.stdout
        curl = match.group(1).replace("\\\n", " ")
        started = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=30, cwd=elsewhere
        )
        run = json.loads(started.stdout)
        assert run["state"] == "accepted"
        key = re.search(r"API key \(shown once\): (\S+)", up.stdout)
        assert key is not None
        client = httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {key.group(1)}"}, timeout=10
        )
        final = wait_for_run(client, run["id"])
        assert final["state"] == "completed", final
        assert final["output"] == {"text": "HELLO, ADA!", "length": 11}
        assert final["ui_url"].startswith(f"http://127.0.0.1:{port}/runs/flow-run/")
        nodes = client.get(f"/v1/runs/{run['id']}/nodes").json()
        assert [n["node_id"] for n in nodes["data"]] == ["greet", "shout", "measure"]
        runs_before = client.get("/v1/runs").json()["count"]

        # A second `up` reuses all of it, and keeps the data folder's workflows and runs.
        again = altlas("up", "--detach", *ports, home=home)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(
            f"using the Prefect server already running at http://127.0.0.1:{port} "
        )
        assert f"using the api already running (at {api})" in again.stdout
        assert "using the worker already running (pid" in again.stdout
        new_key = re.search(r"API key \(shown once\): (\S+)", again.stdout)
        assert new_key is not None
        client.headers["Authorization"] = f"Bearer {new_key.group(1)}"
        assert client.get("/v1/runs").json()["count"] >= runs_before
        assert client.get("/v1/workflows/chain").status_code == 200
        recorded = json.loads((home / "service-processes.json").read_text())
        pids = [row["pid"] for row in recorded]
        assert sorted(row["name"] for row in recorded) == ["api", "worker"]
    finally:
        down = altlas("down", "--port", str(port), home=home, cwd=elsewhere)
    assert down.returncode == 0, down.stderr
    assert "stopped the worker (pid" in down.stdout
    assert "stopped the api (pid" in down.stdout
    assert f"stopped the Prefect server at http://127.0.0.1:{port}" in down.stdout
    assert probe(port) == "free"
    assert probe(api_port) == "free"
    assert all(ServerProcess.of(pid) is None for pid in pids)  # nothing left behind
    gone = altlas("down", "--port", str(port), home=home)
    assert gone.returncode == 0
    assert gone.stdout.endswith(f"no Prefect server answers at 127.0.0.1:{port}: nothing to stop\n")


def wait_for_run(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["state"] in {"completed", "failed", "timed_out", "cancelled", "crashed"}:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.2)


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
    assert "then the Prefect server answering on 127.0.0.1:PORT" in text
    assert "--port PORT port the Prefect server answers on (default" in text
    top = " ".join(run_cli("--help", env=env, timeout=60).stdout.split())
    assert "stop what `up` started: the worker, the API, the Prefect server" in top
    up = " ".join(run_cli("up", "--help", env=env, timeout=60).stdout.split())
    assert "--detach return once ready; keep it running" in up
    assert "--api-port API_PORT port of the REST API" in up
