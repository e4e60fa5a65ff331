"""The `altlas-flows` command line stays quick for the interpreter's commands: building the
parser imports neither the service (FastAPI, the store) nor Prefect."""

from __future__ import annotations

import subprocess
import sys

from tests.support.cli import ROOT


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
