"""The Python API and the CLI find the local Prefect server alike (`interpreter.local_server`).

Each run goes to the server an explicit setting names, else to the one `altlas-flows up` started
on 127.0.0.1:`ALTLAS_LOCAL_PREFECT_PORT`, and only else to a temporary server Prefect starts.
The session's real Prefect server, on a free port, plays the local server here.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from interpreter.local_server import probe
from tests.conftest import PREFECT_PORT, free_port
from tests.support.cli import ROOT

README_GREETING = {
    "format": 1,
    "id": "greeting",
    "name": "Greeting",
    "parameters": {
        "type": "object",
        "properties": {"name": {"type": "string", "default": "world"}},
    },
    "nodes": [
        {"id": "greet", "piece": "core.transform", "input": {"value": "Hello, {{ params.name }}!"}},
        {
            "id": "shout",
            "piece": "core.transform",
            "input": {"value": "{{ nodes.greet.output | upper }}"},
        },
    ],
    "edges": [{"from": "greet", "to": "shout"}],
    "output": "{{ nodes.shout.output }}",
}

README_SNIPPET = """
from interpreter import validate, run_workflow

assert validate("greeting.json") == []
result = run_workflow("greeting.json", {"name": "Ada"})
print(result.state, result.output, result.nodes["greet"].attempts)   # completed HELLO, ADA! 1
print(result.flow_run_id)
"""


def python(
    code: str, *, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh Python process, as a user's script would run."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def user_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who set no PREFECT_API_URL and has no Prefect profile of their
    own (a fresh PREFECT_HOME), with the local server on the session server's port."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PYTHONPATH"] = str(ROOT)  # this checkout, whatever the folder the script runs in
    env["ALTLAS_LOCAL_PREFECT_PORT"] = str(PREFECT_PORT)
    env.update(extra)
    return env


@pytest.fixture
def not_prefect() -> Iterator[int]:
    """A port where an HTTP server that is not Prefect answers 200 to everything."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_probe_tells_nothing_prefect_and_something_else_apart(
    prefect_server: str, not_prefect: int
) -> None:
    started = time.monotonic()
    assert probe(free_port()) == "free"
    assert time.monotonic() - started < 0.2  # a refused connection costs nothing
    assert probe(PREFECT_PORT) == "prefect"
    assert probe(not_prefect) == "other"


def test_readme_snippet_runs_on_the_local_server_without_a_temporary_one(
    prefect_server: str, tmp_path: Path
) -> None:
    (tmp_path / "greeting.json").write_text(json.dumps(README_GREETING))
    done = python(README_SNIPPET, cwd=tmp_path, env=user_environment(tmp_path))
    assert done.returncode == 0, done.stderr
    printed, flow_run_id = done.stdout.splitlines()
    assert printed == "completed HELLO, ADA! 1"
    assert "temporary" not in done.stderr.lower(), done.stderr  # ours or Prefect's own notice
    assert "Still processing items" not in done.stderr, done.stderr
    # The run was recorded on the local server (the session's), where the UI shows it.
    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
        flow = client.read_flow(flow_run.flow_id)
    assert flow_run.name == "Greeting"
    assert flow.name == "greeting"


def test_explicit_settings_win_and_a_missing_server_is_announced_once(
    prefect_server: str, tmp_path: Path
) -> None:
    local = f"http://127.0.0.1:{PREFECT_PORT}/api"
    explicit = f"http://localhost:{PREFECT_PORT}/api"  # the same server, told apart by name
    done = python(
        f"""
        import json, os, sys
        import interpreter.runner  # Prefect is imported (and has read its settings) first
        from interpreter.local_server import use_local_server_if_running as choose
        from interpreter.settings import get_engine_settings
        from prefect.settings import get_current_settings

        def report(step, chosen):
            api_url = get_current_settings().api.url
            env = os.environ.get("PREFECT_API_URL")
            print(json.dumps({{"step": step, "chosen": chosen, "prefect": api_url, "env": env}}))

        report("nothing answers", choose())
        report("nothing answers again", choose())
        os.environ["ALTLAS_LOCAL_PREFECT_PORT"] = "{PREFECT_PORT}"
        get_engine_settings.cache_clear()
        report("the local server answers", choose())
        os.environ["PREFECT_API_URL"] = "{explicit}"  # set after Prefect read its settings
        report("explicit", choose())
        """,
        cwd=tmp_path,
        env=user_environment(tmp_path, ALTLAS_LOCAL_PREFECT_PORT=str(free_port())),
    )
    assert done.returncode == 0, done.stderr
    steps = {row.pop("step"): row for row in map(json.loads, done.stdout.splitlines())}
    nothing = {"chosen": None, "prefect": None, "env": None}
    assert steps["nothing answers"] == nothing
    assert steps["nothing answers again"] == nothing
    assert done.stderr.count("Prefect starts a temporary server") == 1, done.stderr
    assert steps["the local server answers"] == {"chosen": local, "prefect": local, "env": local}
    assert steps["explicit"] == {"chosen": explicit, "prefect": explicit, "env": explicit}


def test_a_prefect_profile_wins_over_the_local_server(prefect_server: str, tmp_path: Path) -> None:
    profile_url = f"http://localhost:{PREFECT_PORT}/api"
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "profiles.toml").write_text(
        f'active = "mine"\n\n[profiles.mine]\nPREFECT_API_URL = "{profile_url}"\n'
    )
    done = python(
        """
        import json, os
        from interpreter.local_server import use_local_server_if_running
        from prefect.settings import get_current_settings

        chosen = use_local_server_if_running()
        api_url = get_current_settings().api.url
        print(json.dumps([chosen, api_url, os.environ.get("PREFECT_API_URL")]))
        """,
        cwd=ROOT,
        env=user_environment(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [profile_url, profile_url, None]
