"""Messages read as sentences in every combination of their parts, and say how to fix."""

from __future__ import annotations

from typing import Any

import pytest

from interpreter import ParameterError, validate
from interpreter.definition.parameters import prepare_parameters
from interpreter.definition.schema import unknown_field_message


@pytest.mark.parametrize(
    ("name", "allowed", "complete", "expected"),
    [
        (
            "secs",
            ["seconds"],
            True,
            "unknown field `secs`; did you mean `seconds`? Allowed here: seconds.",
        ),
        ("secs", ["seconds"], False, "unknown field `secs`; did you mean `seconds`?"),
        ("zzz", ["b", "a"], True, "unknown field `zzz`; allowed here: a, b."),
        ("zzz", ["a", "b"], False, "unknown field `zzz`; fields allowed here include: a, b."),
        ("zzz", [], True, "unknown field `zzz`; remove it (no fields are allowed here)."),
        ("zzz", [], False, "unknown field `zzz`; remove it or correct its name."),
    ],
)
def test_unknown_field_message_in_every_combination(
    name: str, allowed: list[str], complete: bool, expected: str
) -> None:
    message = unknown_field_message(name, allowed, complete=complete)
    assert message == expected
    assert "?." not in message
    assert ".." not in message


def parameter_problems(schema: dict[str, Any], given: dict[str, Any]) -> list[str]:
    with pytest.raises(ParameterError) as caught:
        prepare_parameters(schema, given)
    return [p.message for p in caught.value.problems]


def test_unknown_field_messages_from_real_schemas() -> None:
    def messages(**extra: Any) -> list[str]:
        document = {
            "format": 1,
            "id": "wf",
            "nodes": [{"id": "a", "piece": "core.delay", "input": {"seconds": 1}}],
        }
        document.update(extra)
        return [p.message for p in validate(document)]

    assert messages(nodez=1) == [
        "unknown field `nodez`; did you mean `nodes`? Allowed here: $schema, concurrency, "
        "defaults, description, edges, format, id, name, nodes, output, parameters, tags, "
        "timeout_seconds, triggers."
    ]
    assert messages(triggers=[{"id": "t", "type": "manual", "cron": "0 2 * * *"}]) == [
        "unknown field `cron`; allowed here: dedupe_key, filter, id, parameters, type."
    ]
    # `additionalProperties` sees only its siblings: a pattern makes the list incomplete.
    closed = {"additionalProperties": False}
    assert parameter_problems(closed, {"a": 1}) == [
        "unknown field `a`; remove it (no fields are allowed here)."
    ]
    patterned = {
        "properties": {"name": {}},
        "patternProperties": {"^x-": {}},
        "additionalProperties": False,
    }
    assert parameter_problems(patterned, {"nmae": 1}) == [
        "unknown field `nmae`; did you mean `name`?"
    ]
    assert parameter_problems(patterned, {"zzz": 1}) == [
        "unknown field `zzz`; fields allowed here include: name."
    ]


def test_a_closed_parameters_schema_names_the_read_and_the_fix() -> None:
    document = {
        "format": 1,
        "id": "wf",
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "limits": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"rows": {"type": "integer"}},
                },
                "empty": {"type": "object", "additionalProperties": False},
            },
        },
        "nodes": [
            {
                "id": "a",
                "piece": "core.transform",
                "input": {
                    "value": [
                        "{{ params.nmae }}",
                        "{{ params.limits.zzz.deeper }}",
                        "{{ params.empty.x }}",
                        "{{ params.name.upper() }}",  # a method: not a property
                    ]
                },
            }
        ],
    }
    assert [(p.path, p.message) for p in validate(document)] == [
        (
            "/nodes/0/input/value/0",
            "template reads `params.nmae`, but the parameters schema has no property `nmae` "
            "and allows no others (additionalProperties: false); did you mean `params.name`?",
        ),
        (
            "/nodes/0/input/value/1",
            "template reads `params.limits.zzz`, but `params.limits` has no property `zzz` "
            "and allows no others (additionalProperties: false); read one of rows, or "
            "declare `zzz`",
        ),
        (
            "/nodes/0/input/value/2",
            "template reads `params.empty.x`, but `params.empty` has no property `x` and "
            "allows no others (additionalProperties: false); declare `x` under its "
            "`properties`",
        ),
    ]


def test_a_when_written_as_text_says_how_to_write_it() -> None:
    document = {
        "format": 1,
        "id": "wf",
        "nodes": [
            {"id": "a", "piece": "core.transform", "input": {"value": {"ok": True}}},
            {"id": "b", "piece": "core.transform", "input": {"value": 1}},
        ],
        "edges": [{"from": "a", "to": "b", "when": "{{ output.ok }} and {{ output.big }}"}],
    }
    [problem] = validate(document)
    assert problem.path == "/edges/0/when"
    assert problem.message == (
        '`when` has text around its templates, so it renders to a string such as "True and '
        'False", which counts as true: it would almost always hold; write it as one '
        'expression: "{{ output.ok and output.big }}"'
    )
