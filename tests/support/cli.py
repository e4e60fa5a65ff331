"""`altlas-flows` run as a user runs it: a real subprocess, by default from the repository root."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run `altlas-flows ARGS...` in `cwd` with exactly the environment `env`; capture output."""
    return subprocess.run(
        [sys.executable, "-m", "api.console", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(env),
    )
