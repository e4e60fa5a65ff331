"""Fixtures of the end-to-end tests of the store-backed run services: the session's Prefect
server (as in `tests/interpreter`), next to the `database` fixture of `tests/api`."""

from __future__ import annotations

import pytest


@pytest.fixture
def engine(prefect_server: str) -> str:
    """Name this in a test that runs workflows: it needs the Prefect server."""
    return prefect_server
