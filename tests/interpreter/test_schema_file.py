"""The schema file stays the single source of truth and in step with the trigger pieces."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from interpreter.definition.schema import builtin_trigger_defs, workflow_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "definitions" / "workflow.schema.json"


def test_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_builtin_trigger_definitions_match_the_trigger_pieces() -> None:
    committed = workflow_schema()["$defs"]
    generated = builtin_trigger_defs()
    for name, definition in generated.items():
        assert committed.get(name) == definition, (
            f"$defs/{name} in definitions/workflow.schema.json is out of date: run `make schema`"
        )


def test_installed_package_ships_the_schema() -> None:
    from importlib import resources

    shipped = resources.files("definitions").joinpath("workflow.schema.json").read_text()
    assert json.loads(shipped) == json.loads(SCHEMA_PATH.read_text())


def test_fast_and_reference_validators_agree_on_every_corpus_document() -> None:
    """jsonschema-rs only ever accepts documents early; jsonschema explains the rest. They must
    agree, or the fast path would let through what the reference rejects."""
    import jsonschema_rs

    from interpreter.definition.schema import workflow_validator
    from tests.interpreter.test_validation import CASES

    fast = jsonschema_rs.validator_for(workflow_schema())
    reference = workflow_validator()
    examples = [
        json.loads(p.read_text()) for p in sorted(SCHEMA_PATH.parent.glob("examples/*.json"))
    ]
    documents = [case[1] for case in CASES] + examples
    assert len(documents) > 60
    for document in documents:
        assert fast.is_valid(document) == reference.is_valid(document), document
