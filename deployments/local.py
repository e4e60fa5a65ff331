"""The embedded default on one machine: a local Prefect server on SQLite. Main entry: `LocalServer`.

`altlas-flows up` uses it to start (or reuse) a Prefect server on 127.0.0.1, with its database and
home under `ALTLAS_HOME` (default `./.altlas`), and every setting that would reach the internet off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from interpreter.settings import PREFECT_DEFAULTS


@dataclass
class LocalServer:
    """A Prefect server process on this machine (started by us, or found already running)."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 4200
    database_url: str | None = None
    """Prefect's own database; SQLite under `home` when None (the embedded default)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        """Where a server started by `start` records its process id (for `altlas-flows down`)."""
        return self.home / "prefect-server.pid"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def healthy(self) -> bool:
        """Whether a Prefect server answers at this address."""
        try:
            return httpx.get(f"{self.api_url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, *, timeout: float = 120.0) -> bool:
        """Start the server unless one already answers; True when this call started it.

        Raises:
            RuntimeError: the server did not become healthy within `timeout` seconds (its log
                is in `<home>/prefect-server.log`).
        """
        if self.healthy():
            return False
        self.home.mkdir(parents=True, exist_ok=True)
        log_path = self.home / "prefect-server.log"
        env = {
            **os.environ,
            **{k: os.environ.get(k, v) for k, v in PREFECT_DEFAULTS.items()},
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url
            or os.environ.get(
                "PREFECT_API_DATABASE_CONNECTION_URL",
                f"sqlite+aiosqlite:///{self.home / 'prefect' / 'prefect.db'}",
            ),
        }
        env.pop("PREFECT_API_URL", None)
        # The UI finds its API from these settings, not from `server start --port`.
        env["PREFECT_SERVER_API_HOST"] = self.host
        env["PREFECT_SERVER_API_PORT"] = str(self.port)
        env["PREFECT_UI_API_URL"] = self.api_url
        command = [
            sys.executable, "-m", "prefect", "server", "start",
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.pid_file.write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited; see {log_path}")
            if self.healthy():
                return True
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Prefect server did not start in {timeout:g}s; see {log_path}")

    def wait(self) -> None:
        """Block until the server this object started exits."""
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
        self.pid_file.unlink(missing_ok=True)

    def stop_recorded(self, *, timeout: float = 20.0) -> bool:
        """Stop a server an earlier `start` left running (`up --detach`); False if none was."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return False
        try:
            os.killpg(pid, signal.SIGTERM)  # the server and its workers share a session
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.healthy():
            time.sleep(0.2)
        if self.healthy():
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True
