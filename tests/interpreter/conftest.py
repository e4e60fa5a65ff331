"""Fixtures for engine tests: the session's Prefect server and a real local HTTP service."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="session")
def service() -> Iterator[RunningService]:
    """The test HTTP service; `http.request` may reach 127.0.0.1 while it runs."""
    from pieces.settings import get_piece_settings

    previous = os.environ.get("ALTLAS_HTTP_ALLOW_PRIVATE")
    os.environ["ALTLAS_HTTP_ALLOW_PRIVATE"] = "127.0.0.1/32"
    get_piece_settings.cache_clear()
    with running_service(free_port()) as running:
        yield running
    if previous is None:
        os.environ.pop("ALTLAS_HTTP_ALLOW_PRIVATE", None)
    else:
        os.environ["ALTLAS_HTTP_ALLOW_PRIVATE"] = previous
    get_piece_settings.cache_clear()


@pytest.fixture
def engine(prefect_server: str) -> str:
    """Name this in a test that runs workflows: it needs the Prefect server."""
    return prefect_server
