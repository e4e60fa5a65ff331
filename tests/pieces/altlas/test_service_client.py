"""The contract both pieces share (pieces.altlas.client): headers, tokens, idempotency, errors,
time-out and answer size, exercised through the pieces against the reference services."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pydantic
import pytest

from pieces.altlas import AiOrchestratorPiece, OsIntegrationPiece
from pieces.altlas.client import idempotency_key, parse_retry_after
from pieces.base import PieceError
from pieces.settings import PieceSettings
from pieces.testing import StandaloneContext, run_piece
from tests.pieces.altlas.conftest import MakeContext, RunningService
from tests.pieces.altlas.reference_services import Fault

ECHO = {"task": "echo", "input": {"n": 1}}
WRITE = {"action": "fs.write", "arguments": {"path": "/once.txt", "content": "x"}}


async def fails(context: StandaloneContext, node: dict[str, Any] = ECHO) -> PieceError:
    """Run the AI Orchestrator piece, expecting a PieceError."""
    with pytest.raises(PieceError) as info:
        await run_piece(AiOrchestratorPiece, node, context=context)
    return info.value


# --- headers and tokens ---------------------------------------------------------------------------


async def test_each_call_carries_token_tenant_run_and_idempotency_headers(
    make_context: MakeContext, ai_service: RunningService, os_service: RunningService
) -> None:
    context = make_context(tenant="globex", run_id="0b7c-run", node_id="ask")
    await run_piece(AiOrchestratorPiece, ECHO, context=context)
    await run_piece(OsIntegrationPiece, WRITE, context=context)
    for service, token in ((ai_service, "ai-token-globex"), (os_service, "os-token-globex")):
        headers = service.state.requests[-1].headers
        assert headers["authorization"] == f"Bearer {token}"
        assert headers["x-altlas-tenant"] == "globex"
        assert headers["x-altlas-run-id"] == "0b7c-run"
        assert headers["idempotency-key"] == "0b7c-run:ask"
        assert headers["content-type"] == "application/json"
        assert headers["accept"] == "application/json"


async def test_without_the_secret_no_token_is_sent_and_the_error_names_the_secret(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    error = await fails(make_context(secrets={}))
    assert "authorization" not in ai_service.state.requests[-1].headers
    assert (error.error_type, error.retryable) == ("Unauthorized", False)
    assert error.message == (
        "AI Orchestrator POST /v1/tasks answered 401 (unauthorized): a bearer token is required; "
        "no token was sent: set the tenant secret 'ai_orchestrator_token'"
    )


async def test_an_unauthenticated_service_works_without_the_secret(
    make_context: MakeContext, os_service: RunningService
) -> None:
    os_service.state.tokens = None
    answer = await run_piece(OsIntegrationPiece, WRITE, context=make_context(secrets={}))
    assert answer["result"] == {"path": "/once.txt", "bytes": 1}
    assert "authorization" not in os_service.state.requests[-1].headers


@pytest.mark.parametrize(
    ("token", "status"), [("stolen-or-revoked", 401), ("ai-token-globex", 403)]
)
async def test_a_refused_token_is_unauthorized_and_never_shown(
    make_context: MakeContext, caplog: pytest.LogCaptureFixture, token: str, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    error = await fails(make_context(tenant="acme", secrets={"ai_orchestrator_token": token}))
    assert (error.error_type, error.retryable) == ("Unauthorized", False)
    assert error.details["status"] == status
    assert "the token in tenant secret 'ai_orchestrator_token' was refused" in error.message
    assert token not in error.message + json.dumps(error.details) + caplog.text


async def test_the_token_is_stripped_and_not_logged_on_success(
    make_context: MakeContext, ai_service: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    context = make_context(secrets={"ai_orchestrator_token": " ai-token-acme\n"})
    await run_piece(AiOrchestratorPiece, ECHO, context=context)
    assert ai_service.state.requests[-1].headers["authorization"] == "Bearer ai-token-acme"
    assert "AI Orchestrator POST /v1/tasks -> 200 in" in caplog.text
    assert "ai-token-acme" not in caplog.text


# --- idempotency --------------------------------------------------------------------------------


async def test_idempotency_key_is_stable_across_attempts_and_distinct_per_node_and_run(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    ai_service.state.fail_next(Fault(status=503))
    contexts = [
        make_context(run_id="r1", node_id="ask", attempt=1),
        make_context(run_id="r1", node_id="ask", attempt=2),
        make_context(run_id="r1", node_id="other"),
        make_context(run_id="r2", node_id="ask"),
    ]
    await fails(contexts[0])
    for context in contexts[1:]:
        await run_piece(AiOrchestratorPiece, ECHO, context=context)
    keys = [r.headers["idempotency-key"] for r in ai_service.state.requests]
    assert keys == ["r1:ask", "r1:ask", "r1:other", "r2:ask"]
    assert ai_service.state.executions == 3  # the 503 executed nothing


async def test_a_retry_after_a_lost_answer_does_not_execute_twice(
    make_context: MakeContext, os_service: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # The service executes for 2 s; the first attempt gives up after 0.2 s. The second asks
    # while the first still executes, and may wait long enough for the "in progress" answer
    # even on a loaded machine.
    os_service.state.execute_delay_seconds = 2.0

    first = make_context(node_id="write", attempt=1, service_timeout_seconds=0.2)
    with pytest.raises(PieceError) as timed_out:
        await run_piece(OsIntegrationPiece, WRITE, context=first)
    assert (timed_out.value.error_type, timed_out.value.retryable) == ("Timeout", True)

    second = make_context(node_id="write", attempt=2, service_timeout_seconds=1.5)
    with pytest.raises(PieceError) as in_progress:
        await run_piece(OsIntegrationPiece, WRITE, context=second)
    assert in_progress.value.error_type == "ServiceUnavailable"
    assert in_progress.value.retryable is True
    assert in_progress.value.retry_after_seconds == 1.0
    assert in_progress.value.details["code"] == "request_in_progress"

    await asyncio.sleep(2.5)  # the first execution (2 s from its start) finishes on the service
    answer = await run_piece(OsIntegrationPiece, WRITE, context=make_context(node_id="write"))
    assert answer == {"action": "fs.write", "result": {"path": "/once.txt", "bytes": 1}}
    assert os_service.state.executions == 1
    assert len({r.headers["idempotency-key"] for r in os_service.state.requests}) == 1
    assert "(replayed by the service)" in caplog.text


async def test_a_reused_key_with_another_request_is_refused(
    make_context: MakeContext, os_service: RunningService
) -> None:
    await run_piece(OsIntegrationPiece, WRITE, context=make_context())
    changed = {"action": "fs.write", "arguments": {"path": "/once.txt", "content": "y"}}
    with pytest.raises(PieceError) as info:
        await run_piece(OsIntegrationPiece, changed, context=make_context(attempt=2))
    assert (info.value.error_type, info.value.retryable) == ("ServiceError", False)
    assert info.value.details["code"] == "idempotency_key_reused"
    assert os_service.state.executions == 1


def test_idempotency_key_is_always_a_valid_header_value() -> None:
    assert idempotency_key("r1", "each[3]") == "r1:each[3]"
    assert idempotency_key("a:b c", "n\u00e9\n") == "a%3Ab%20c:n%C3%A9%0A"


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (500, "ServiceError", True),
        (501, "ServiceError", True),
        (502, "ServiceUnavailable", True),
        (503, "ServiceUnavailable", True),
        (504, "ServiceUnavailable", True),
        (408, "ServiceUnavailable", True),
        (429, "ServiceUnavailable", True),
        (400, "ServiceError", False),
        (404, "ServiceError", False),
        (401, "Unauthorized", False),
        (403, "Unauthorized", False),
        (307, "ServiceError", False),
    ],
)
async def test_status_mapping(
    make_context: MakeContext,
    ai_service: RunningService,
    status: int,
    error_type: str,
    retryable: bool,
) -> None:
    ai_service.state.fail_next(Fault(status=status))
    error = await fails(make_context())
    assert (error.error_type, error.retryable) == (error_type, retryable)
    assert error.message.startswith(f"AI Orchestrator POST /v1/tasks answered {status} ")
    assert error.details["status"] == status
    assert ai_service.state.executions == 0


async def test_retry_after_seconds_and_http_date_are_honoured(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    later = format_datetime(datetime.fromtimestamp(datetime.now(UTC).timestamp() + 30, UTC), True)
    ai_service.state.fail_next(
        Fault(status=429, retry_after="7"),
        Fault(status=503, retry_after=later),
        Fault(status=400, retry_after="7"),
    )
    limited, unavailable, refused = [await fails(make_context()) for _ in range(3)]
    assert (limited.error_type, limited.retry_after_seconds) == ("ServiceUnavailable", 7.0)
    assert unavailable.retry_after_seconds is not None
    assert 25 < unavailable.retry_after_seconds <= 30
    assert refused.retry_after_seconds is None  # not retried at all


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("Sun, 22 Nov 2026 12:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Sun, 22 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-5") is None
    assert parse_retry_after("soon") is None


async def test_an_error_answer_that_is_not_the_documented_document_is_excerpted(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    page = b"<html><body>502 Bad Gateway</body></html>" + b" " * 10_000
    ai_service.state.fail_next(Fault(status=502, body=page, content_type="text/html"))
    error = await fails(make_context())
    assert error.message == (
        "AI Orchestrator POST /v1/tasks answered 502: <html><body>502 Bad Gateway</body></html>"
    )
    assert "code" not in error.details


async def test_a_slow_service_times_out(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    ai_service.state.fail_next(Fault(status=200, delay_seconds=1.0))
    started = asyncio.get_running_loop().time()
    error = await fails(make_context(service_timeout_seconds=0.25))
    assert asyncio.get_running_loop().time() - started < 0.9
    assert (error.error_type, error.retryable) == ("Timeout", True)
    assert error.message.startswith(
        "AI Orchestrator POST /v1/tasks: no complete answer within 0.25 s"
    )
    assert error.details["timeout_seconds"] == 0.25


async def test_the_time_out_covers_a_slowly_dripping_answer(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    # Every byte comes well within the time-out, the whole answer far beyond it.
    ai_service.state.fail_next(
        Fault(
            status=200,
            body=b" " * 20 + b"{}",
            chunked=True,
            chunk_bytes=1,
            chunk_delay_seconds=0.05,
        )
    )
    started = asyncio.get_running_loop().time()
    error = await fails(make_context(service_timeout_seconds=0.3))
    assert asyncio.get_running_loop().time() - started < 0.9
    assert error.error_type == "Timeout"


async def test_an_unreachable_service_is_unavailable(make_context: MakeContext) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await fails(make_context(ai_orchestrator_url=f"http://127.0.0.1:{port}"))
    assert (error.error_type, error.retryable) == ("ServiceUnavailable", True)
    assert (
        error.message
        == "AI Orchestrator POST /v1/tasks: could not reach the service (ConnectError)"
    )
    assert "127.0.0.1" not in error.message


# --- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversize_answer_is_invalid(
    make_context: MakeContext, ai_service: RunningService, chunked: bool
) -> None:
    big = json.dumps({"output": "x" * 5000}).encode()
    ai_service.state.fail_next(Fault(status=200, body=big, chunked=chunked))
    error = await fails(make_context(service_max_response_bytes=4096))
    assert (error.error_type, error.retryable) == ("InvalidResponse", False)
    assert error.message == (
        "AI Orchestrator POST /v1/tasks: the answer is larger than 4096 bytes "
        "(ALTLAS_SERVICE_MAX_RESPONSE_BYTES)"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>hello</html>", "the answer is not JSON"),
        (b'{"output": NaN}', "the answer is not JSON"),
        (b"\xff\xfe{}", "the answer is not JSON"),
        (b"[1, 2]", "the answer is JSON list, not an object"),
        (b"", "the answer is not JSON"),
    ],
)
async def test_an_answer_that_is_not_a_json_object_is_invalid(
    make_context: MakeContext, ai_service: RunningService, body: bytes, reason: str
) -> None:
    ai_service.state.fail_next(Fault(status=200, body=body, content_type="text/html"))
    error = await fails(make_context())
    assert (error.error_type, error.retryable) == ("InvalidResponse", False)
    assert error.message.startswith(f"AI Orchestrator POST /v1/tasks: {reason}")


async def test_a_base_url_with_a_trailing_slash_works(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    context = make_context(ai_orchestrator_url=ai_service.url + "/")
    assert (await run_piece(AiOrchestratorPiece, ECHO, context=context))["output"] == {"n": 1}
    assert ai_service.state.requests[-1].path == "/v1/tasks"


@pytest.mark.parametrize(
    "url", ["ftp://svc", "http://user:secret@svc", "http://svc?x=1", "svc:8100", "http://"]
)
def test_settings_refuse_unusable_service_urls(url: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        PieceSettings(os_integration_url=url)
