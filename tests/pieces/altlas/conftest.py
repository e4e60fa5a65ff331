"""Fixtures for the ALT_LAS service pieces: both reference services running on 127.0.0.1.

`ai_service` and `os_service` start once per session (uvicorn in a thread, free ports) and are reset
before every test; `make_context` builds the `StandaloneContext` a node would get, with settings
pointing at them and the tenant's tokens as secrets.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from pieces.base import RunInfo
from pieces.registry import ENTRY_POINT_GROUP
from pieces.settings import PieceSettings
from pieces.testing import StandaloneContext
from tests.pieces.altlas.reference_services import (
    AI_TOKENS,
    OS_TOKENS,
    ServiceState,
    ai_orchestrator_app,
    os_integration_app,
    serve,
)


@dataclass
class RunningService:
    """A reference service: its base URL and its state (requests, faults, executions)."""

    url: str
    state: ServiceState
    tokens: dict[str, str]

    def token_of(self, tenant: str) -> str:
        """The token the service accepts for `tenant`."""
        return next(token for token, owner in self.tokens.items() if owner == tenant)


@pytest.fixture(scope="session")
def _ai_running() -> Iterator[RunningService]:
    state = ServiceState(tokens=AI_TOKENS)
    with serve(ai_orchestrator_app(state)) as url:
        yield RunningService(url, state, AI_TOKENS)


@pytest.fixture(scope="session")
def _os_running() -> Iterator[RunningService]:
    state = ServiceState(tokens=OS_TOKENS)
    with serve(os_integration_app(state)) as url:
        yield RunningService(url, state, OS_TOKENS)


@pytest.fixture
def ai_service(_ai_running: RunningService) -> RunningService:
    """The reference AI Orchestrator, fresh for this test."""
    _ai_running.state.reset(tokens=AI_TOKENS)
    return _ai_running


@pytest.fixture
def os_service(_os_running: RunningService) -> RunningService:
    """The reference OS Integration service, fresh for this test."""
    _os_running.state.reset(tokens=OS_TOKENS)
    return _os_running


def declared_entry_point(key: str) -> EntryPoint:
    """The `altlas.pieces` entry point pyproject.toml declares for `key` (read from the source, so
    the test does not depend on when the package's metadata was last installed)."""
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    value = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP][key]
    return EntryPoint(key, value, ENTRY_POINT_GROUP)


MakeContext = Callable[..., StandaloneContext]


@pytest.fixture
def make_context(ai_service: RunningService, os_service: RunningService) -> MakeContext:
    """Build a node's context: `make_context(tenant=..., run_id=..., node_id=..., attempt=...,
    secrets=..., **settings)`; by default the tenant's tokens for both services are its secrets."""

    def build(
        *,
        tenant: str = "acme",
        run_id: str = "run-1",
        node_id: str = "node",
        attempt: int = 1,
        secrets: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> StandaloneContext:
        if secrets is None:
            secrets = {
                "ai_orchestrator_token": ai_service.token_of(tenant),
                "os_integration_token": os_service.token_of(tenant),
            }
        values: dict[str, Any] = {
            "ai_orchestrator_url": ai_service.url,
            "os_integration_url": os_service.url,
            "service_timeout_seconds": 5.0,
        }
        values.update(settings)
        return StandaloneContext(
            node_id=node_id,
            attempt=attempt,
            run=RunInfo(
                id=run_id,
                workflow_id="wf",
                version="1",
                tenant=tenant,
                started_at=datetime.now(UTC).isoformat(),
            ),
            settings=PieceSettings(**values),
            secrets=secrets,
        )

    return build
