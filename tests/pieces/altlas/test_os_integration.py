"""`altlas.os_integration` against the reference OS Integration service: actions and tenants."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from pieces.altlas import OsIntegrationPiece
from pieces.base import PieceError
from pieces.registry import PieceRegistry
from pieces.testing import run_piece
from tests.pieces.altlas.conftest import MakeContext, RunningService, declared_entry_point


async def act(context_args: dict[str, Any], make_context: MakeContext, **node: Any) -> Any:
    return await run_piece(OsIntegrationPiece, node, context=make_context(**context_args))


async def test_write_list_read_delete(make_context: MakeContext) -> None:
    write = await act(
        {"node_id": "write"},
        make_context,
        action="fs.write",
        arguments={"path": "/reports/today.txt", "content": "çok iyi"},
    )
    listed = await act(
        {"node_id": "list"}, make_context, action="fs.list", arguments={"path": "/reports"}
    )
    read = await act(
        {"node_id": "read"},
        make_context,
        action="fs.read",
        arguments={"path": "/reports/today.txt"},
    )
    deleted = await act(
        {"node_id": "delete"},
        make_context,
        action="fs.delete",
        arguments={"path": "/reports/today.txt"},
    )
    assert write == {"action": "fs.write", "result": {"path": "/reports/today.txt", "bytes": 8}}
    assert listed == {
        "action": "fs.list",
        "result": {"path": "/reports/", "entries": ["today.txt"]},
    }
    assert read["result"] == {"path": "/reports/today.txt", "content": "çok iyi"}
    assert deleted["result"] == {"path": "/reports/today.txt", "deleted": True}


async def test_tenants_do_not_see_each_others_files(make_context: MakeContext) -> None:
    await act(
        {"tenant": "acme"},
        make_context,
        action="fs.write",
        arguments={"path": "/a", "content": "x"},
    )
    with pytest.raises(PieceError) as info:
        await act({"tenant": "globex"}, make_context, action="fs.read", arguments={"path": "/a"})
    assert (info.value.error_type, info.value.retryable) == ("ServiceError", False)
    assert (
        info.value.message
        == "OS Integration POST /v1/actions answered 404 (not_found): no file at /a"
    )


@pytest.mark.parametrize(
    ("action", "arguments", "code"),
    [
        ("fs.format", {}, "unknown_action"),
        ("fs.read", {"path": "../etc/passwd"}, "invalid_arguments"),
    ],
)
async def test_refused_actions_are_service_errors(
    make_context: MakeContext, action: str, arguments: dict[str, Any], code: str
) -> None:
    with pytest.raises(PieceError) as info:
        await act({}, make_context, action=action, arguments=arguments)
    assert info.value.details["code"] == code
    assert info.value.details["status"] == 422
    assert info.value.retryable is False


async def test_arguments_default_to_an_empty_object(
    make_context: MakeContext, os_service: RunningService
) -> None:
    answer = await act({}, make_context, action="fs.list")
    assert answer == {"action": "fs.list", "result": {"path": "/", "entries": []}}
    assert os_service.state.requests[-1].body == {"action": "fs.list", "arguments": {}}


@pytest.mark.parametrize(
    "node_input",
    [
        {"arguments": {}},
        {"action": "Rm -rf", "arguments": {}},
        {"action": "fs.read", "arguments": ["/a"]},
        {"action": "fs.read", "args": {}},
    ],
)
def test_input_model_refuses_malformed_nodes(node_input: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        OsIntegrationPiece.Input.model_validate(node_input)


def test_piece_declares_its_optional_token_and_is_registered() -> None:
    assert [(s.name, s.optional) for s in OsIntegrationPiece.secrets] == [
        ("os_integration_token", True)
    ]
    registry = PieceRegistry()
    registry.register(declared_entry_point("altlas.os_integration").load())
    assert registry.action("altlas.os_integration") is OsIntegrationPiece
