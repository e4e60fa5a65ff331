"""Reference implementations of the ALT_LAS service contract (`docs/altlas-services.md`).

Main entries: `ai_orchestrator_app`, `os_integration_app` and `serve` (runs an app on 127.0.0.1 on
a free port, in a thread). Both apps do what the contract says a real service does — bearer tokens
tied to tenants, required headers, the idempotency rules, the error document — with small
deterministic behaviours behind them, so that answers depend on requests:

- AI Orchestrator (`POST /v1/tasks`): tasks `echo`, `summarise` (the first N words) and `classify`
  (the label whose keywords occur most often), models `altlas-small` (default) and `altlas-large`.
- OS Integration (`POST /v1/actions`): a per-tenant in-memory file system behind `fs.write`,
  `fs.read`, `fs.list` and `fs.delete`.

Tests steer a service through its `ServiceState`: it records every request, counts executions, and
can be told to misbehave (`Fault`: any status, `Retry-After`, a raw or streamed body, a delay) or to
execute slowly. Run both for manual experiments with
`python -m tests.pieces.altlas.reference_services` (tokens are printed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

AI_TOKENS = {
    "ai-token-acme": "acme",
    "ai-token-globex": "globex",
    "ai-token-default": "default",
}
"""Bearer tokens the reference AI Orchestrator accepts, and the tenant each belongs to."""
OS_TOKENS = {
    "os-token-acme": "acme",
    "os-token-globex": "globex",
    "os-token-default": "default",
}
"""Bearer tokens the reference OS Integration service accepts, and the tenant each belongs to."""

Outcome = tuple[int, dict[str, Any]]
"""What an operation produced: the HTTP status and the JSON document to answer."""


class ContractError(Exception):
    """An error answer in the documented form `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def outcome(self) -> Outcome:
        return self.status, {"error": {"code": self.code, "message": self.message}}


@dataclass
class Fault:
    """One scripted misbehaviour, answered *before* the request is executed or remembered.

    Attributes:
        status: the HTTP status to answer.
        retry_after: a `Retry-After` header value, if any.
        body: raw bytes to answer instead of the documented error document.
        content_type: the `Content-Type` of `body`.
        chunked: stream `body` without a `Content-Length`, in chunks of `chunk_bytes`.
        chunk_delay_seconds: with `chunked`, wait this long before each chunk (a dripping answer).
        delay_seconds: wait this long before answering (a slow service).
    """

    status: int = 500
    retry_after: str | None = None
    body: bytes | None = None
    content_type: str = "application/json"
    chunked: bool = False
    chunk_bytes: int = 65536
    chunk_delay_seconds: float = 0.0
    delay_seconds: float = 0.0

    def response(self) -> Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        if self.body is None:
            error = ContractError(self.status, "injected_fault", "fault injected by the test")
            return _json(*error.outcome(), headers=headers)
        if self.chunked:
            data, size, pause = self.body, self.chunk_bytes, self.chunk_delay_seconds

            async def chunks() -> Any:
                for start in range(0, len(data), size):
                    await asyncio.sleep(pause)
                    yield data[start : start + size]

            return StreamingResponse(
                chunks(), self.status, headers=headers, media_type=self.content_type
            )
        return Response(self.body, self.status, headers=headers, media_type=self.content_type)


@dataclass
class Recorded:
    """A request as the service received it (header names in lower case)."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Stored:
    fingerprint: str
    status: int
    document: dict[str, Any]


@dataclass
class ServiceState:
    """What one reference service knows; tests read and steer it.

    Attributes:
        tokens: bearer token -> tenant; `None` runs the service without authentication.
        requests: every request received, in order.
        executions: how many requests were actually executed (replays and faults do not count).
        faults: misbehaviours to answer the next requests with, one each, in order.
        execute_delay_seconds: how long each execution takes (while its key is "in progress").
    """

    tokens: dict[str, str] | None
    requests: list[Recorded] = field(default_factory=list)
    executions: int = 0
    faults: deque[Fault] = field(default_factory=deque)
    execute_delay_seconds: float = 0.0
    remembered: dict[tuple[str, str], _Stored | None] = field(default_factory=dict)
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    def fail_next(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, one each."""
        self.faults.extend(faults)

    def reset(self, *, tokens: dict[str, str] | None) -> None:
        """Forget everything (requests, executions, faults, remembered keys, files); new tokens."""
        self.tokens = tokens
        self.requests.clear()
        self.executions = 0
        self.faults.clear()
        self.execute_delay_seconds = 0.0
        self.remembered.clear()
        self.files.clear()


Operation = Callable[[ServiceState, str, dict[str, Any]], Outcome]
"""Executes a validated request for a tenant: `(state, tenant, body) -> (status, document)`."""


def _json(status: int, document: Any, *, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(document, status, headers=headers)


def _authenticate(state: ServiceState, request: Request) -> str:
    """The tenant the request acts for, after the contract's header and token checks."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if state.tokens is not None and (scheme.lower() != "bearer" or not token):
        raise ContractError(401, "unauthorized", "a bearer token is required")
    if state.tokens is not None and token not in state.tokens:
        raise ContractError(401, "unauthorized", "the bearer token is not valid")
    for name in ("X-Altlas-Tenant", "X-Altlas-Run-Id", "Idempotency-Key"):
        if not request.headers.get(name):
            raise ContractError(400, "missing_header", f"the {name} header is required")
    tenant = request.headers["x-altlas-tenant"]
    if state.tokens is not None and state.tokens[token] != tenant:
        raise ContractError(403, "forbidden", f"the token does not belong to tenant {tenant!r}")
    return tenant


async def _handle(state: ServiceState, request: Request, operation: Operation) -> Response:
    """Everything the contract asks of an endpoint around the operation itself."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    state.requests.append(Recorded(request.url.path, dict(request.headers), body))
    try:
        tenant = _authenticate(state, request)
    except ContractError as error:
        return _json(*error.outcome())
    if state.faults:
        fault = state.faults.popleft()
        await asyncio.sleep(fault.delay_seconds)
        return fault.response()
    if not isinstance(body, dict):
        return _json(
            *ContractError(400, "invalid_json", "the body must be a JSON object").outcome()
        )
    slot = (tenant, request.headers["idempotency-key"])
    fingerprint = hashlib.sha256(
        request.url.path.encode() + json.dumps(body, sort_keys=True).encode()
    ).hexdigest()
    if slot in state.remembered:
        return _replay(state.remembered[slot], fingerprint)
    state.remembered[slot] = None  # in progress
    try:
        await asyncio.sleep(state.execute_delay_seconds)
        state.executions += 1
        try:
            status, document = operation(state, tenant, body)
        except ContractError as error:
            status, document = error.outcome()
    except BaseException:
        del state.remembered[slot]
        raise
    if status >= 500:
        del state.remembered[slot]  # a failure is not remembered: a retry executes anew
    else:
        state.remembered[slot] = _Stored(fingerprint, status, document)
    return _json(status, document)


def _replay(stored: _Stored | None, fingerprint: str) -> Response:
    if stored is None:
        error = ContractError(409, "request_in_progress", "a request with this key is running")
        return _json(*error.outcome(), headers={"Retry-After": "1"})
    if stored.fingerprint != fingerprint:
        error = ContractError(
            422, "idempotency_key_reused", "this key was used with a different request"
        )
        return _json(*error.outcome())
    return _json(stored.status, stored.document, headers={"Idempotent-Replayed": "true"})


def _app(title: str, path: str, state: ServiceState, operation: Operation) -> FastAPI:
    app = FastAPI(title=title, openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def contract_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else "http_error"
        return _json(*ContractError(exc.status_code, code, str(exc.detail)).outcome())

    @app.post(path)
    async def endpoint(request: Request) -> Response:
        return await _handle(state, request, operation)

    return app


# --- AI Orchestrator ----------------------------------------------------------------------------

MODELS = ("altlas-small", "altlas-large")
WORD = re.compile(r"\w+")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ContractError(422, "invalid_input", f"{what} must be a string")
    return value


def _summarise(value: Any) -> dict[str, Any]:
    spec = value if isinstance(value, dict) else {"text": value}
    words = _text(spec.get("text"), "input.text").split()
    limit = spec.get("max_words", 20)
    if not isinstance(limit, int) or limit < 1:
        raise ContractError(422, "invalid_input", "input.max_words must be an integer >= 1")
    return {
        "summary": " ".join(words[:limit]),
        "words": len(words),
        "truncated": len(words) > limit,
    }


def _classify(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("labels"), dict):
        raise ContractError(422, "invalid_input", "input must be {text, labels: {label: [words]}}")
    found = [w.lower() for w in WORD.findall(_text(value.get("text"), "input.text"))]
    scores = {
        label: sum(found.count(str(k).lower()) for k in keywords)
        for label, keywords in value["labels"].items()
    }
    best = max(scores, key=lambda label: scores[label], default=None)
    return {"label": best if best is not None and scores[best] > 0 else None, "scores": scores}


TASKS: dict[str, Callable[[Any], Any]] = {
    "echo": lambda value: value,
    "summarise": _summarise,
    "classify": _classify,
}


def run_task(state: ServiceState, tenant: str, body: dict[str, Any]) -> Outcome:
    """`POST /v1/tasks`: run `task` on `input` with `model`."""
    task, model = body.get("task"), body.get("model", MODELS[0])
    if "input" not in body or not isinstance(task, str):
        raise ContractError(422, "invalid_request", "the body must hold `task` and `input`")
    if task not in TASKS:
        raise ContractError(
            422, "unknown_task", f"task {task!r} is unknown; known: {sorted(TASKS)}"
        )
    if model not in MODELS:
        raise ContractError(422, "unknown_model", f"model {model!r} is unknown; known: {MODELS}")
    return 200, {"task": task, "model": model, "output": TASKS[task](body["input"])}


def ai_orchestrator_app(state: ServiceState) -> FastAPI:
    """The reference AI Orchestrator."""
    return _app("ALT_LAS AI Orchestrator (reference)", "/v1/tasks", state, run_task)


# --- OS Integration -----------------------------------------------------------------------------


def _path(arguments: dict[str, Any], default: str | None = None) -> str:
    path = arguments.get("path", default)
    if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
        raise ContractError(422, "invalid_arguments", "`path` must be an absolute path without ..")
    return path


def _existing(files: dict[str, str], path: str) -> str:
    if path not in files:
        raise ContractError(404, "not_found", f"no file at {path}")
    return path


def _fs_write(files: dict[str, str], arguments: dict[str, Any]) -> dict[str, Any]:
    path = _path(arguments)
    files[path] = _text(arguments.get("content"), "`content`")
    return {"path": path, "bytes": len(files[path].encode())}


def _fs_list(files: dict[str, str], arguments: dict[str, Any]) -> dict[str, Any]:
    folder = _path(arguments, "/").rstrip("/") + "/"
    names = {p[len(folder) :].split("/")[0] for p in files if p.startswith(folder)}
    return {"path": folder, "entries": sorted(names)}


def _fs_read(files: dict[str, str], arguments: dict[str, Any]) -> dict[str, Any]:
    path = _existing(files, _path(arguments))
    return {"path": path, "content": files[path]}


def _fs_delete(files: dict[str, str], arguments: dict[str, Any]) -> dict[str, Any]:
    del files[_existing(files, _path(arguments))]
    return {"path": arguments["path"], "deleted": True}


ACTIONS: dict[str, Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]] = {
    "fs.write": _fs_write,
    "fs.read": _fs_read,
    "fs.list": _fs_list,
    "fs.delete": _fs_delete,
}


def perform_action(state: ServiceState, tenant: str, body: dict[str, Any]) -> Outcome:
    """`POST /v1/actions`: perform `action` with `arguments` in the tenant's sandbox."""
    action, arguments = body.get("action"), body.get("arguments", {})
    if not isinstance(action, str) or not isinstance(arguments, dict):
        raise ContractError(422, "invalid_request", "the body must hold `action` and `arguments`")
    if action not in ACTIONS:
        raise ContractError(
            422, "unknown_action", f"action {action!r} is unknown; known: {sorted(ACTIONS)}"
        )
    result = ACTIONS[action](state.files.setdefault(tenant, {}), arguments)
    return 200, {"action": action, "result": result}


def os_integration_app(state: ServiceState) -> FastAPI:
    """The reference OS Integration service."""
    return _app("ALT_LAS OS Integration (reference)", "/v1/actions", state, perform_action)


# --- serving ------------------------------------------------------------------------------------


@contextmanager
def serve(app: FastAPI, *, port: int = 0) -> Iterator[str]:
    """Run `app` on 127.0.0.1 in a thread (on a free port unless given); yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    # log_config=None: see tests/support/service.py (uvicorn's dictConfig can deadlock Prefect).
    config = uvicorn.Config(
        app, log_level="warning", log_config=None, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise RuntimeError("the reference service did not start within 5 s")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


if __name__ == "__main__":
    with (
        serve(ai_orchestrator_app(ServiceState(tokens=AI_TOKENS)), port=8100) as ai_url,
        serve(os_integration_app(ServiceState(tokens=OS_TOKENS)), port=8200) as os_url,
    ):
        print(f"AI Orchestrator at {ai_url}, tokens {AI_TOKENS}")
        print(f"OS Integration at {os_url}, tokens {OS_TOKENS}")
        threading.Event().wait()
