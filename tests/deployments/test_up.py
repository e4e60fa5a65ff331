"""`altlas-flows up` / `down`: the embedded default as the README's first command starts it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.support.cli import run_cli

pytestmark = pytest.mark.slow


def altlas(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["ALTLAS_HOME"] = str(home)
    return run_cli(*args, env=env, timeout=timeout)


def test_up_starts_sqlite_prefect_runs_examples_and_down_stops_it(tmp_path: Path) -> None:
    port = free_port()
    up = altlas("up", "--detach", "--port", str(port), home=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Prefect UI:  http://127.0.0.1:{port}" in up.stdout
        ran = dict(re.findall(r"example (\S+)\s+(completed|failed|not run)", up.stdout))
        assert ran["chain"] == "completed"
        assert ran["map"] == "completed"
        assert ran["error-edge"] == "completed"
        assert ran["order-sync"] == "not run"  # needs `since`: listed, not run
        assert (tmp_path / "prefect" / "prefect.db").is_file()  # the embedded SQLite default
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
    finally:
        down = altlas("down", "--port", str(port), home=tmp_path)
    assert down.returncode == 0
    assert "stopped" in down.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
    assert "no local server" in altlas("down", "--port", str(port), home=tmp_path).stdout
