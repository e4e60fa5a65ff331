"""The exported OpenAPI document (docs/openapi.json) is the API's own, and it keeps the
contract: every operation id of the spec, every error documented with the problem schema."""

from __future__ import annotations

import json
from pathlib import Path

from api.main import create_app
from api.openapi import openapi_document

EXPORTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

SPEC_OPERATIONS = {
    "createTenant", "createApiKey", "revokeApiKey",
    "createWorkflow", "listWorkflows", "getWorkflow", "updateWorkflow", "listWorkflowVersions",
    "getWorkflowVersion", "enableWorkflow", "disableWorkflow", "deleteWorkflow",
    "validateWorkflow",
    "startRun", "getRun", "listRuns", "listRunNodes", "cancelRun", "pauseRun", "resumeRun",
    "getWorkflowStats",
    "putSecret", "listSecrets", "deleteSecret",
    "listPieces", "getPiece",
    "deliverWebhook",
}  # fmt: skip


def test_the_exported_document_is_current() -> None:
    current = openapi_document(create_app(reconcile=False))
    assert EXPORTED.exists(), "run `make openapi` to export docs/openapi.json"
    exported = json.loads(EXPORTED.read_text())
    assert exported == current, "docs/openapi.json is stale: run `make openapi`"


def test_every_operation_of_the_spec_and_every_error_documented() -> None:
    document = json.loads(EXPORTED.read_text())
    operations = {
        operation["operationId"]: operation
        for path in document["paths"].values()
        for operation in path.values()
    }
    assert operations.keys() >= SPEC_OPERATIONS, SPEC_OPERATIONS - operations.keys()
    assert "Problem" in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for operation_id, operation in operations.items():
        if operation_id in ("healthz", "readyz"):
            continue
        errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
        assert "401" in errors, operation_id
        signed = operation_id == "deliverWebhook"  # by the sender's signature, not a key
        assert operation["security"] == ([] if signed else [{"bearer": []}]), operation_id
        assert ("signature" in errors["401"]["description"]) is signed, operation_id
        for code, response in errors.items():
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (operation_id, code)
