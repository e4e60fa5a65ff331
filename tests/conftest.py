"""Test-wide set-up: isolated settings, async tests on asyncio, and one Prefect server per session.

Environment is fixed *before* anything imports Prefect or the pieces, so no test depends on the
developer's own Prefect profile, and only this engine's built-in pieces load (third-party pieces
installed on the machine are ignored unless a test allows them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["ALTLAS_PIECES_ALLOW"] = ""
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every `async def` test runs on asyncio (anyio's plugin, `anyio_mode = "auto"`)."""
    return "asyncio"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect server (SQLite, temporary), started once and shared by the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
