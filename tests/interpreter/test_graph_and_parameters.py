"""Graph algorithms and parameter preparation, which the validator and the engine share."""

from __future__ import annotations

import pytest

from interpreter.definition.graph import Graph
from interpreter.definition.parameters import apply_defaults, prepare_parameters
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
