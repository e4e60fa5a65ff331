"""The validator: every problem at once, each at an exact JSON Pointer, with a helpful message."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from interpreter import Problem, validate
from interpreter.definition.problems import DefinitionFileError


def base() -> dict[str, Any]:
    return {
        "format": 1,
        "id": "wf",
        "nodes": [
            {"id": "a", "piece": "core.transform", "input": {"value": 1}},
            {"id": "b", "piece": "core.transform", "input": {"value": "{{ nodes.a.output }}"}},
            {"id": "c", "piece": "core.delay", "input": {"seconds": 1}},
        ],
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
    }


def with_changes(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(base())
    for dotted, value in changes.items():
        target: Any = document
        parts = dotted.split("__")
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        last = parts[-1]
        if value is DELETE:
            del target[int(last) if isinstance(target, list) else last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return document


DELETE = object()

# (name, document, [(pointer, fragment of the message)])
CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("missing format", with_changes(format=DELETE), [("/format", "required")]),
    ("wrong format", with_changes(format=2), [("/format", "must be 1")]),
    ("bad workflow id", with_changes(id="Order Sync"), [("/id", "slug")]),
    ("missing nodes", with_changes(nodes=DELETE, edges=[]), [("/nodes", "required")]),
    ("empty nodes", with_changes(nodes=[], edges=[]), [("/nodes", "non-empty")]),
    ("unknown top-level field", with_changes(nodez=[]), [("/nodez", "did you mean `nodes`")]),
    (
        "bad node id",
        with_changes(nodes__2__id="C-node", edges=[{"from": "a", "to": "b"}]),
        [("/nodes/2/id", "node id")],
    ),
    ("node without piece", with_changes(nodes__2__piece=DELETE), [("/nodes/2/piece", "required")]),
    (
        "malformed piece key",
        with_changes(nodes__2__piece="delay"),
        [("/nodes/2/piece", "namespace.name")],
    ),
    (
        "unknown piece",
        with_changes(nodes__2__piece="htp.request"),
        [("/nodes/2/piece", "did you mean 'http.request'")],
    ),
    (
        "unknown node field",
        with_changes(nodes__0__retires={}),
        [("/nodes/0/retires", "did you mean `retry`")],
    ),
    ("bad on_error", with_changes(nodes__0__on_error="ignore"), [("/nodes/0/on_error", "one of")]),
    ("bad join", with_changes(nodes__0__join="some"), [("/nodes/0/join", "one of")]),
    (
        "zero max_attempts",
        with_changes(nodes__0__retry={"max_attempts": 0}),
        [("/nodes/0/retry/max_attempts", "at least 1")],
    ),
    (
        "bad backoff",
        with_changes(nodes__0__retry={"backoff": "linear"}),
        [("/nodes/0/retry/backoff", "one of")],
    ),
    (
        "jitter above 1",
        with_changes(nodes__0__retry={"jitter": 1.5}),
        [("/nodes/0/retry/jitter", "at most 1")],
    ),
    (
        "negative timeout",
        with_changes(nodes__0__timeout_seconds=-1),
        [("/nodes/0/timeout_seconds", "greater than 0")],
    ),
    (
        "workflow timeout zero",
        with_changes(timeout_seconds=0),
        [("/timeout_seconds", "greater than 0")],
    ),
    (
        "concurrency limit zero",
        with_changes(concurrency={"limit": 0}),
        [("/concurrency/limit", "at least 1")],
    ),
    (
        "defaults unknown field",
        with_changes(defaults={"retries": 3}),
        [("/defaults/retries", "unknown field")],
    ),
    (
        "duplicate node id",
        with_changes(nodes__2__id="a", edges=[{"from": "a", "to": "b"}]),
        [("/nodes/2/id", "duplicate node id 'a'")],
    ),
    # c loses its only incoming edge, so it becomes an entry node: only the edge is wrong.
    (
        "edge to unknown node",
        with_changes(edges__1__to="zz"),
        [("/edges/1/to", "unknown node 'zz'")],
    ),
    (
        "edge from unknown node",
        with_changes(edges__0__from="zz"),
        [("/edges/0/from", "unknown node 'zz'")],
    ),
    ("edge missing to", with_changes(edges__0__to=DELETE), [("/edges/0/to", "required")]),
    ("edge bad on", with_changes(edges__0__on="failure"), [("/edges/0/on", "one of")]),
    (
        "when on an error edge",
        with_changes(edges__0__on="error", edges__0__when="{{ true }}"),
        [("/edges/0/when", "error edge cannot have `when`")],
    ),
    (
        "cycle",
        with_changes(
            edges=[{"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "b"}]
        ),
        [("/edges/2", "cycle: b -> c -> b")],
    ),
    (
        "self loop",
        with_changes(
            edges=[{"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "c"}]
        ),
        [("/edges/2", "cycle: c -> c")],
    ),
    (
        "cycle no entry reaches",
        with_changes(edges=[{"from": "b", "to": "c"}, {"from": "c", "to": "b"}]),
        [
            ("/edges/1", "cycle: b -> c -> b"),
            ("/nodes/1", "cannot be reached"),
            # No path leads from a to b, cycle or not: the template's problem is reported too.
            ("/nodes/1/input/value", "not upstream of 'b'"),
            ("/nodes/2", "cannot be reached"),
        ],
    ),
    (
        "input violates piece schema",
        with_changes(nodes__2__input={"seconds": -5}),
        [("/nodes/2/input/seconds", "at least 0")],
    ),
    (
        "input wrong type",
        with_changes(nodes__2__input={"seconds": "soon"}),
        [("/nodes/2/input/seconds", "must be a number")],
    ),
    (
        "input missing field",
        with_changes(nodes__2__input={}),
        [("/nodes/2/input/seconds", "required")],
    ),
    (
        "input unknown field",
        with_changes(nodes__2__input={"seconds": 1, "secs": 2}),
        [("/nodes/2/input/secs", "unknown field")],
    ),
    (
        "whole template checked at run time",
        with_changes(nodes__2__input={"seconds": "{{ nodes.b.output }}"}),
        [],
    ),
    (
        "template syntax error",
        with_changes(nodes__1__input={"value": "{{ nodes.a.output + }}"}),
        [("/nodes/1/input/value", "syntax")],
    ),
    (
        "unknown top-level name",
        with_changes(nodes__1__input={"value": "{{ param.x }}"}),
        [("/nodes/1/input/value", "unknown name 'param'")],
    ),
    (
        "unknown node in template",
        with_changes(nodes__1__input={"value": "{{ nodes.zz.output }}"}),
        [("/nodes/1/input/value", "unknown node 'zz'")],
    ),
    (
        "not an ancestor",
        with_changes(nodes__1__input={"value": "{{ nodes.c.output }}"}),
        [("/nodes/1/input/value", "not upstream")],
    ),
    (
        "own output",
        with_changes(nodes__1__input={"value": "{{ nodes.b.output }}"}),
        [("/nodes/1/input/value", "its own output")],
    ),
    (
        "error outside error target",
        with_changes(nodes__1__input={"value": "{{ error.message }}"}),
        [("/nodes/1/input/value", "`error` exists only")],
    ),
    (
        "output outside when",
        with_changes(nodes__1__input={"value": "{{ output }}"}),
        [("/nodes/1/input/value", "`output` exists only")],
    ),
    (
        "item outside map",
        with_changes(nodes__1__input={"value": "{{ item }}"}),
        [("/nodes/1/input/value", "only inside core.map")],
    ),
    (
        "when names a later node",
        with_changes(edges__0__when="{{ nodes.c.output }}"),
        [("/edges/0/when", "not upstream")],
    ),
    (
        "top-level output unknown node",
        with_changes(output="{{ nodes.zz.output }}"),
        [("/output", "unknown node 'zz'")],
    ),
    (
        "parameters not a schema",
        with_changes(parameters={"type": "objekt"}),
        [("/parameters/type", "not a valid JSON Schema")],
    ),
    (
        "parameters not an object",
        with_changes(parameters=[1]),
        [("/parameters", "JSON Schema object")],
    ),
    (
        "schedule with cron and interval",
        with_changes(
            triggers=[{"id": "t", "type": "schedule", "cron": "0 2 * * *", "interval_seconds": 60}]
        ),
        [("/triggers/0", "exactly one of `cron`, `interval_seconds` or `rrule`")],
    ),
    (
        "schedule with none",
        with_changes(triggers=[{"id": "t", "type": "schedule"}]),
        [("/triggers/0", "exactly one of")],
    ),
    (
        "unknown time zone",
        with_changes(
            triggers=[
                {"id": "t", "type": "schedule", "cron": "0 2 * * *", "timezone": "Europe/Istanbull"}
            ]
        ),
        [("/triggers/0/timezone", "time zone")],
    ),
    (
        "bad cron",
        with_changes(triggers=[{"id": "t", "type": "schedule", "cron": "99 2 * * *"}]),
        [("/triggers/0/cron", "")],
    ),
    (
        "unknown trigger type",
        with_changes(triggers=[{"id": "t", "type": "carrier-pigeon"}]),
        [("/triggers/0/type", "known trigger types: manual, schedule, webhook")],
    ),
    (
        "duplicate trigger id",
        with_changes(triggers=[{"id": "t", "type": "manual"}, {"id": "t", "type": "manual"}]),
        [("/triggers/1/id", "duplicate trigger id")],
    ),
    (
        "webhook without secret",
        with_changes(triggers=[{"id": "gh", "type": "webhook", "verify": {"scheme": "github"}}]),
        [("/triggers/0/verify/secret", "required")],
    ),
    (
        "webhook bad scheme",
        with_changes(
            triggers=[
                {"id": "gh", "type": "webhook", "verify": {"scheme": "gitlab", "secret": "s"}}
            ]
        ),
        [("/triggers/0/verify/scheme", "one of")],
    ),
    (
        "manual trigger with a cron",
        with_changes(triggers=[{"id": "m", "type": "manual", "cron": "0 2 * * *"}]),
        [("/triggers/0/cron", "unknown field")],
    ),
    (
        "parameter default of the wrong type",
        with_changes(
            parameters={"type": "object", "properties": {"name": {"type": "string", "default": 5}}}
        ),
        [("/parameters/properties/name/default", "`default` must be a string, got integer 5")],
    ),
    (
        "nested parameter default out of range",
        with_changes(
            parameters={
                "type": "object",
                "properties": {
                    "limits": {
                        "type": "object",
                        "default": {},
                        "properties": {"rows": {"type": "integer", "minimum": 1, "default": 0}},
                    }
                },
            }
        ),
        [("/parameters/properties/limits/properties/rows/default", "`default` must be at least 1")],
    ),
    (
        "parameter default in $defs with a bad format",
        with_changes(
            parameters={
                "type": "object",
                "$defs": {"day": {"type": "string", "format": "date", "default": "tomorrow"}},
                "properties": {"since": {"$ref": "#/$defs/day"}},
            }
        ),
        [("/parameters/$defs/day/default", "`default` must be a valid date")],
    ),
    (
        "parameter default that fits a referenced schema",
        with_changes(
            parameters={
                "type": "object",
                "$defs": {"day": {"type": "string", "format": "date"}},
                "properties": {"since": {"$ref": "#/$defs/day", "default": "2026-01-01"}},
            }
        ),
        [],
    ),
    (
        "parameters $ref to nowhere",
        with_changes(
            parameters={"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
        ),
        [("/parameters/properties/a/$ref", "cannot be resolved")],
    ),
    (
        "parameters $ref over the network",
        with_changes(
            parameters={"properties": {"a": {"$ref": "http://169.254.169.254/latest/schema"}}}
        ),
        [("/parameters/properties/a/$ref", "references are never fetched")],
    ),
    (
        "template reads a parameter a closed schema rules out",
        with_changes(
            parameters={
                "type": "object",
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}},
            },
            nodes__1__input={"value": "hello {{ params.nmae }}"},
        ),
        [("/nodes/1/input/value", "no property `nmae` and allows no others (addition")],
    ),
    (
        "template reads a nested parameter a closed object rules out",
        with_changes(
            parameters={
                "type": "object",
                "$defs": {
                    "limits": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"rows": {"type": "integer"}},
                    }
                },
                "properties": {"limits": {"$ref": "#/$defs/limits"}},
            },
            edges__0__when="{{ params['limits'].rowz > 1 }}",
        ),
        [("/edges/0/when", "`params.limits` has no property `rowz`")],
    ),
    (
        "template reads an undeclared parameter of an open schema",
        with_changes(
            parameters={"type": "object", "properties": {"name": {"type": "string"}}},
            nodes__1__input={"value": "{{ params.other | default(params.get('x')) }}"},
        ),
        [],
    ),
    (
        "when written as text around templates",
        with_changes(edges__0__when="{{ output.ok }} and {{ output.big }}"),
        [("/edges/0/when", 'write it as one expression: "{{ output.ok and output.big }}"')],
    ),
    (
        "when with a label before its template",
        with_changes(edges__0__when="ok: {{ output.ok }}"),
        [("/edges/0/when", "write the whole condition inside one {{ }}")],
    ),
    (
        "when with spaces around one template",
        with_changes(edges__0__when=" {{ output.ok }}\n"),
        [],
    ),
    (
        "webhook filter written as text",
        with_changes(
            triggers=[
                {
                    "id": "gh",
                    "type": "webhook",
                    "verify": {"scheme": "none"},
                    "filter": "{{ trigger.payload.a }} {{ trigger.payload.b }}",
                }
            ]
        ),
        [("/triggers/0/filter", "`filter` has text around its templates")],
    ),
    (
        "trigger template names a node",
        with_changes(
            triggers=[{"id": "m", "type": "manual", "parameters": {"x": "{{ nodes.a.output }}"}}]
        ),
        [("/triggers/0/parameters/x", "unknown name 'nodes'")],
    ),
]


@pytest.mark.parametrize(("name", "document", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_definition_reports_exact_pointers(
    name: str, document: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    problems = validate(document)
    assert [p.path for p in problems] == [path for path, _ in expected], problems
    for problem, (_, fragment) in zip(problems, expected, strict=True):
        assert fragment in problem.message, (problem, fragment)


def test_all_problems_are_reported_at_once() -> None:
    document = with_changes(
        id="Bad",
        nodes__0__on_error="nope",
        nodes__1__input={"value": "{{ nodes.zz.output }}"},
        nodes__2__piece="nope.piece",
        edges__1__to="qq",
    )
    paths = [p.path for p in validate(document)]
    assert paths == [
        "/edges/1/to",
        "/id",
        "/nodes/0/on_error",
        "/nodes/1/input/value",
        "/nodes/2/piece",
    ]


def chain_of(*ids: str, edges: list[tuple[str, str]], reads: dict[str, str]) -> dict[str, Any]:
    """Transform nodes `ids`; node k of `reads` has the template `{{ nodes.<v>.output }}`."""
    return {
        "format": 1,
        "id": "wf",
        "nodes": [
            {
                "id": node_id,
                "piece": "core.transform",
                "input": {"value": "{{ nodes." + reads[node_id] + ".output }}"}
                if node_id in reads
                else {"value": 1},
            }
            for node_id in ids
        ],
        "edges": [{"from": a, "to": b} for a, b in edges],
    }


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            # An edge to an unknown node cannot make b upstream of c: both problems reported.
            chain_of(
                "a", "b", "c", edges=[("a", "b"), ("a", "c"), ("a", "ghost")], reads={"c": "b"}
            ),
            ["/edges/2/to", "/nodes/2/input/value"],
            id="unknown target elsewhere",
        ),
        pytest.param(
            # `a -> ghost` may have meant `a -> c`: c reading a is then the edge's fault alone.
            chain_of("a", "b", "c", edges=[("a", "b"), ("a", "ghost")], reads={"c": "a"}),
            ["/edges/1/to"],
            id="unknown target may have been the reader",
        ),
        pytest.param(
            # `ghost -> c` may have meant `b -> c`: c may read anything, b may not read c.
            chain_of("a", "b", "c", edges=[("a", "b"), ("ghost", "c")], reads={"c": "b", "b": "c"}),
            ["/edges/1/from", "/nodes/1/input/value"],
            id="unknown source",
        ),
        pytest.param(
            # A cycle b <-> c elsewhere does not make d upstream of a.
            chain_of(
                "a", "b", "c", "d",
                edges=[("a", "b"), ("b", "c"), ("c", "b"), ("a", "d")],
                reads={"a": "d", "b": "c"},
            ),
            ["/edges/2", "/nodes/0/input/value"],
            id="cycle elsewhere",
        ),
    ],
)  # fmt: skip
def test_a_broken_graph_does_not_hide_template_problems(
    document: dict[str, Any], expected: list[str]
) -> None:
    """Upstream checks still run on a graph with a cycle or a dangling edge, and report what no
    repair of the graph could make valid (found by an independent check against the spec)."""
    assert [p.path for p in validate(document)] == expected


def test_map_inner_input_and_sub_graph_are_checked() -> None:
    document = with_changes(
        nodes__2={
            "id": "c",
            "piece": "core.map",
            "input": {
                "items": "{{ nodes.b.output }}",
                "piece": "core.delay",
                "input": {"seconds": "{{ item }}", "extra": 1},
            },
        }
    )
    assert [(p.path, "unknown field" in p.message) for p in validate(document)] == [
        ("/nodes/2/input/input/extra", True)
    ]
    sub = with_changes(
        nodes__2={
            "id": "c",
            "piece": "core.map",
            "input": {
                "items": [1, 2],
                "workflow": {
                    "nodes": [
                        {
                            "id": "x",
                            "piece": "core.transform",
                            "input": {"value": "{{ item }} {{ nodes.a.output }}"},
                        },
                        {"id": "y", "piece": "core.nope"},
                    ],
                    "edges": [{"from": "x", "to": "zz"}],
                },
            },
        }
    )
    problems = validate(sub)
    assert [p.path for p in problems] == [
        "/nodes/2/input/workflow/edges/0/to",
        "/nodes/2/input/workflow/nodes/0/input/value",  # `nodes.a` is outside the sub-graph
        "/nodes/2/input/workflow/nodes/1/piece",
    ]


def test_map_needs_exactly_one_of_piece_or_workflow() -> None:
    document = with_changes(nodes__2={"id": "c", "piece": "core.map", "input": {"items": [1]}})
    problems = validate(document)
    assert [p.path for p in problems] == ["/nodes/2/input"]
    assert "exactly one of" in problems[0].message


def test_validate_accepts_a_dict_json_text_or_a_path(tmp_path: Path) -> None:
    document = base()
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(document))
    assert (
        validate(document)
        == validate(json.dumps(document))
        == validate(path)
        == validate(str(path))
        == []
    )
    with pytest.raises(DefinitionFileError, match="cannot read"):  # not an invalid definition
        validate(tmp_path / "missing.json")
    assert validate("[1, 2]") == [
        Problem("", "a workflow definition must be a JSON object, got an array")
    ]
    assert "not valid JSON" in validate('{"format": 1,')[0].message


def test_validation_does_not_modify_the_definition() -> None:
    document = base()
    snapshot = copy.deepcopy(document)
    validate(document)
    assert document == snapshot
