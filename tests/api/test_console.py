"""The `altlas-flows` command line: quick for the interpreter's commands (building the parser
imports neither the service nor Prefect), and clear when a server command has no store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.store.migrate import head_revision, upgrade_sync
from tests.support.cli import ROOT, run_cli


def test_the_parser_imports_no_service_and_no_prefect() -> None:
    probe = (
        "import sys; from api.console import build_parser; build_parser(); "
        "heavy = sorted(m for m in ('fastapi', 'prefect', 'sqlalchemy', 'api.main') "
        "if m in sys.modules); print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_server_command_on_an_unmigrated_store_says_what_to_run(
    command: str, tmp_path: Path
) -> None:
    """Started outside a data folder `up` or `db upgrade` prepared, `api` and `worker` stop at
    once with what to run, and leave no empty database behind."""
    home = tmp_path / "home"
    env = {**os.environ, "ALTLAS_HOME": str(home)}
    env.pop("ALTLAS_DATABASE_URL", None)
    done = run_cli(command, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"there is no database at {home / 'altlas.db'}" in done.stderr
    assert "altlas-flows db upgrade" in done.stderr
    assert not (home / "altlas.db").exists()

    # A store an older release left behind is refused the same way, with its revision.
    upgrade_sync(f"sqlite:///{home / 'altlas.db'}", "0001")
    behind = run_cli(command, env=env, timeout=120)
    assert behind.returncode == 2, behind.stdout + behind.stderr
    assert f"is at revision 0001, not {head_revision()}" in behind.stderr
