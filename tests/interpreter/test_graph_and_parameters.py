"""Graph algorithms and parameter preparation, which the validator and the engine share."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from referencing.exceptions import Unresolvable

from interpreter.definition.graph import Graph
from interpreter.definition.parameters import (
    apply_defaults,
    impossible_read,
    parameters_schema_problems,
    prepare_parameters,
)
from interpreter.definition.problems import ParameterError


def test_topological_order_is_stable_and_none_on_cycles() -> None:
    graph = Graph(["c", "a", "b"], [("a", "b"), ("c", "b")])
    assert graph.topological_order() == ["c", "a", "b"]
    assert graph.entries == ["c", "a"]
    assert Graph(["a", "b"], [("a", "b"), ("b", "a")]).topological_order() is None


def test_cycles_are_listed_once_per_component_in_cycle_order() -> None:
    graph = Graph(
        ["a", "b", "c", "d", "e"],
        [("a", "b"), ("b", "c"), ("c", "a"), ("d", "d"), ("c", "e")],
    )
    assert graph.cycles() == [["a", "b", "c"], ["d"]]


def test_unreachable_nodes_and_ancestry() -> None:
    graph = Graph(["s", "a", "b", "x", "y"], [("s", "a"), ("a", "b"), ("x", "y"), ("y", "x")])
    assert graph.unreachable() == ["x", "y"]
    assert graph.is_ancestor("s", "b")
    assert not graph.is_ancestor("b", "s")
    assert not graph.is_ancestor("a", "a")
    assert not graph.is_ancestor("zz", "a")


def test_large_graphs_do_not_recurse() -> None:
    n = 20_000
    chain = Graph([f"n{i}" for i in range(n)], [(f"n{i}", f"n{i + 1}") for i in range(n - 1)])
    assert chain.cycles() == []
    assert chain.is_ancestor("n0", f"n{n - 1}")
    ring = Graph(chain.node_ids, [*chain.edges, (f"n{n - 1}", "n0")])
    assert len(ring.cycles()[0]) == n


SCHEMA = {
    "type": "object",
    "properties": {
        "since": {"type": "string", "format": "date"},
        "limit": {"type": "integer", "default": 10},
        "options": {
            "type": "object",
            "default": {},
            "properties": {"mode": {"enum": ["fast", "safe"], "default": "safe"}},
        },
        "ref": {"$ref": "#/$defs/thing"},
    },
    "required": ["since"],
    "$defs": {"thing": {"type": "object", "properties": {"k": {"default": "v"}}}},
}


def test_defaults_are_applied_recursively_without_touching_the_input() -> None:
    given = {"since": "2026-01-01", "ref": {}}
    filled = apply_defaults(SCHEMA, given)
    assert filled == {
        "since": "2026-01-01",
        "limit": 10,
        "options": {"mode": "safe"},
        "ref": {"k": "v"},
    }
    assert given == {"since": "2026-01-01", "ref": {}}


def test_invalid_parameters_list_every_problem_with_pointers() -> None:
    with pytest.raises(ParameterError) as caught:
        prepare_parameters(
            SCHEMA, {"since": "yesterday", "limit": "ten", "options": {"mode": "slow"}}
        )
    assert sorted(p.path for p in caught.value.problems) == ["/limit", "/options/mode", "/since"]
    assert "valid date" in str(caught.value)


def test_no_schema_means_parameters_pass_through() -> None:
    assert prepare_parameters(None, {"x": 1}) == {"x": 1}


def test_a_remote_reference_in_a_parameters_schema_is_never_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`jsonschema` would fetch it (a request from the engine or the API server to wherever
    the definition points); the engine's validators resolve references locally only."""
    fetched: list[Any] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: fetched.append(a))
    schema = {"properties": {"a": {"$ref": "http://169.254.169.254/latest/meta-data"}}}
    with pytest.raises(Unresolvable):
        prepare_parameters(schema, {"a": 1})
    [problem] = parameters_schema_problems(schema, ("parameters",))
    assert problem.path == "/parameters/properties/a/$ref"
    assert fetched == []
    # The JSON Schema meta-schemas are known without fetching.
    meta = {"properties": {"s": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}}
    assert parameters_schema_problems(meta, ("parameters",)) == []


def test_impossible_reads_only_where_the_schema_closes_its_properties() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "$defs": {"open": {"type": "object"}},
        "properties": {
            "a": {"$ref": "#/$defs/open"},
            "b": {
                "type": "object",
                "additionalProperties": False,
                "patternProperties": {"^x-": {}},
                "properties": {"c": {}},
            },
        },
    }
    assert impossible_read(schema, ["a", "anything"]) is None  # `a` is open
    assert impossible_read(schema, ["b", "x-any"]) is None  # a pattern admits it
    found = impossible_read(schema, ["b", "d", "e"])
    assert found is not None
    assert (found.keys, found.declared) == (("b", "d"), ("c",))
    assert impossible_read(schema, ["z"]) is not None
    assert impossible_read({"type": "object"}, ["z"]) is None  # may be given by the caller
