"""Which Prefect server runs use when nothing names one. Main entry: `use_local_server_if_running`.

Both the Python API (`run_workflow`, `arun_workflow`) and `altlas-flows run` call it before a run,
so that they agree: an explicit `PREFECT_API_URL` (environment, Prefect profile or settings
context) wins; otherwise the local server `altlas-flows up` started on 127.0.0.1 (port
`ALTLAS_LOCAL_PREFECT_PORT`, default 4200) is used when it answers; otherwise Prefect starts a
temporary server for the process, which is said once on stderr.

Prefect reads its settings into a global context when it is imported, so setting
`os.environ["PREFECT_API_URL"]` afterwards changes nothing by itself: the global context is
rebuilt from the environment after the variable is set (`refresh_global_settings_context`).

The probe is cheap when nothing listens: a refused connection to 127.0.0.1 fails at once, and
an answer is waited for at most `ANSWER_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import threading
from typing import Literal

from interpreter.settings import get_engine_settings

LOCAL_HOST = "127.0.0.1"
CONNECT_TIMEOUT_SECONDS = 0.5
ANSWER_TIMEOUT_SECONDS = 1.5

Answer = Literal["free", "prefect", "other"]
"""What answers on a port: nothing, a Prefect server, or something else."""

_lock = threading.Lock()
_announced = False


def local_port() -> int:
    """The port of the local Prefect server (`ALTLAS_LOCAL_PREFECT_PORT`, default 4200)."""
    return get_engine_settings().local_prefect_port


def local_api_url(port: int | None = None) -> str:
    """The API URL of the local Prefect server on `port` (default: `local_port()`)."""
    return f"http://{LOCAL_HOST}:{port or local_port()}/api"


def probe(port: int, host: str = LOCAL_HOST, *, timeout: float = ANSWER_TIMEOUT_SECONDS) -> Answer:
    """What answers on `host:port`: "free" when nothing listens, "prefect" when a Prefect
    server's health check (`GET /api/health`) answers `true`, "other" for anything else
    (another program, or a server too busy to answer within `timeout` seconds)."""
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS)
    except ConnectionRefusedError:
        return "free"
    except OSError:
        return "other"
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.sock = sock
    try:
        sock.settimeout(timeout)
        connection.request("GET", "/api/health", headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(64)
    except (OSError, http.client.HTTPException):
        return "other"
    finally:
        connection.close()
    return "prefect" if response.status == 200 and body.strip() == b"true" else "other"


def use_local_server_if_running() -> str | None:
    """Choose the Prefect server for the runs of this process; return its API URL, or None
    when Prefect is to start a temporary one.

    In order: inside a flow or task run, whatever that run uses; `PREFECT_API_URL` in the
    environment (also when set after Prefect was imported); the API URL of Prefect's active
    profile or settings context; the local server on 127.0.0.1:`ALTLAS_LOCAL_PREFECT_PORT`
    when a Prefect server answers there (it is then set as `PREFECT_API_URL`). Otherwise it
    says once on stderr that Prefect starts a temporary server.
    """
    with _lock:
        return _choose()


def _choose() -> str | None:
    global _announced

    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
        return configured  # a nested run uses its parent's server
    explicit = os.environ.get("PREFECT_API_URL")
    if explicit:
        if configured != explicit:  # set after Prefect read its settings
            _refresh_prefect_settings()
        return explicit
    if configured:
        return configured
    port = local_port()
    if probe(port) == "prefect":
        url = local_api_url(port)
        os.environ["PREFECT_API_URL"] = url
        _refresh_prefect_settings()
        return url
    if not _announced:
        _announced = True
        sys.stderr.write(
            f"altlas: no Prefect server answers at {LOCAL_HOST}:{port} and PREFECT_API_URL is "
            "not set: Prefect starts a temporary server for this process (about 15 s; its runs "
            "are gone when the process ends). Start one with `altlas-flows up`.\n"
        )
        sys.stderr.flush()
    return None


def _refresh_prefect_settings() -> None:
    """Let Prefect's global settings context pick up the environment as it is now."""
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
