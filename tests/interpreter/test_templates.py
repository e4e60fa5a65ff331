"""Templates: native types, text rendering, the sandbox, output bounds and static references."""

from __future__ import annotations

from typing import Any

import pytest

from interpreter.definition.templates import (
    TemplateEvaluationError,
    as_one_expression,
    references,
    render,
    render_string,
    renders_text_around,
    syntax_error,
    truthy,
    whole_expression,
)

SCOPE: dict[str, Any] = {
    "params": {"items": [1, 2, 3], "name": "ada", "n": 5},
    "nodes": {"fetch": {"output": {"total": 150, "rows": [{"a": 1}]}}},
    "run": {"scheduled_at": "2026-11-22T02:00:00+03:00"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ params.items }}", [1, 2, 3]),
        ("  {{ params.n }}  ", "  5  "),  # text around it: a string (spec: "exactly one")
        ("{{ params.n > 3 }}", True),
        ("{{ nodes.fetch.output }}", {"total": 150, "rows": [{"a": 1}]}),
        ("{{ none }}", None),
        ("n={{ params.n }}", "n=5"),
        ("{{ params.n }}{{ params.n }}", "55"),
        ("{{ run.scheduled_at[:10] }}", "2026-11-22"),
        ("{% for i in params.items %}{{ i }},{% endfor %}", "1,2,3,"),
        ("{{ params | tojson }}", '{"items": [1, 2, 3], "name": "ada", "n": 5}'),
        ("{{ '{\"x\": 1}' | fromjson }}", {"x": 1}),
        ("no template here", "no template here"),
    ],
)
def test_render_keeps_native_types_for_whole_expressions(source: str, expected: Any) -> None:
    assert render_string(source, SCOPE) == expected


def test_render_walks_json_and_can_skip_deferred_keys() -> None:
    value = {"a": ["{{ params.n }}", {"b": "{{ params.name }}"}], "later": "{{ item }}"}
    assert render(value, SCOPE, skip=frozenset({"later"})) == {
        "a": [5, {"b": "ada"}],
        "later": "{{ item }}",
    }


@pytest.mark.parametrize(
    "source",
    [
        "{{ params.__class__ }}",
        "{{ params.items.append(4) }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 'x' * 100000000 }}",
        "{{ params.name.ljust(100000000) }}",
        "{{ '%999999999s' % 'a' }}",
        "{{ '{:99999999}'.format(1) }}",
        "{{ 'a' | center(1000000000) }}",
        "{{ range(100000000) | list }}",
        "{{ 9 ** 9999999 }}",
        "{{ ('a' * 900000) ~ ('b' * 900000) }}",
        "{% set x = 'y' * 1000 %}{% for i in range(100000) %}{{ x }}{% endfor %}",
    ],
)
def test_sandbox_refuses_internals_mutation_and_unbounded_output(source: str) -> None:
    with pytest.raises(TemplateEvaluationError) as caught:
        render_string(source, SCOPE)
    assert caught.value.error_type == "TemplateError"
    assert caught.value.retryable is False


def test_undefined_names_and_attributes_are_errors_not_empty_strings() -> None:
    with pytest.raises(TemplateEvaluationError, match="no attribute 'missing'"):
        render_string("x{{ params.missing }}", SCOPE)
    with pytest.raises(TemplateEvaluationError, match="'nope' is undefined"):
        render_string("{{ nope }}", SCOPE)
    assert render_string("{{ params.missing is defined }}", SCOPE) is False


def test_an_inline_if_without_else_is_null_not_an_error() -> None:
    assert render_string("{{ params.n if params.n > 10 }}", SCOPE) is None
    assert render_string("{{ params.n if params.n > 1 }}", SCOPE) == 5
    assert render_string("n={{ params.n if params.n > 10 }}.", SCOPE) == "n=."
    with pytest.raises(TemplateEvaluationError, match="no attribute 'missing'"):
        render_string("{{ params.missing if true }}", SCOPE)


def test_whole_expression_detection() -> None:
    assert whole_expression("{{ a }}") == " a "
    assert whole_expression("{{ a }} {{ b }}") is None
    assert whole_expression("x {{ a }}") is None
    assert whole_expression("{{ '}}' }}") is None
    # "Exactly one {{ }}": surrounding whitespace is text, so the result is a string.
    assert whole_expression("{{ a }} ") is None
    assert whole_expression("\n{{ a }}") is None
    assert whole_expression("{{ a }}\n") is None
    assert render({"v": "{{ 1 }} "}, {}) == {"v": "1 "}


def test_truthiness_of_when_results() -> None:
    assert truthy(True)
    assert truthy("yes")
    assert truthy([0])
    assert truthy(1)
    assert not any(truthy(v) for v in (False, 0, "", "false", "False", " 0 ", "none", None, []))


def test_references_are_found_statically() -> None:
    refs = references(
        "{{ nodes.a.output }} {{ nodes['b'].output }} {{ secrets.tok }} "
        "{% for x in params.l %}{{ x }}{% endfor %}"
    )
    assert refs.nodes == {"a", "b"}
    assert refs.secrets == {"tok"}
    assert refs.names == {"nodes", "secrets", "params"}
    assert not refs.dynamic_nodes
    assert references("{{ nodes[params.which].output }}").dynamic_nodes


def test_syntax_errors_are_described() -> None:
    assert syntax_error("{{ ok }}") is None
    message = syntax_error("{% for x in y %}")
    assert message is not None
    assert message.startswith("template syntax error")


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("{{ params.a.b }}", {("a",), ("a", "b")}),
        ("x {{ params['a']['b'] }} {{ params.c }}", {("a",), ("a", "b"), ("c",)}),
        ("{{ params.a[0].b }}", {("a",)}),  # cut at the first key that is not a name
        ("{{ params.a[key].b }}", {("a",)}),
        ("{{ params.get('x') }}", set()),  # a method of the mapping, not a key
        ("{{ params.a.items() | list }}", {("a",)}),
        ("{{ params.x | default(1) }}", {("x",)}),
        ("{{ params }}", set()),
        ("{% set params = {} %}{{ params.x }}", set()),  # a local name, not the parameters
    ],
)
def test_params_reads_are_found_statically(source: str, reads: set[tuple[str, ...]]) -> None:
    assert references(source).params == reads


@pytest.mark.parametrize(
    ("source", "text", "rewrite"),
    [
        ("{{ a }} and {{ b }}", True, "{{ a and b }}"),
        ("{{ a }} {{ b }}", True, None),  # "True False": not one expression
        ("{{ a }}{{ b }}", True, None),
        ("x {{ a }}", True, None),
        ("{{ a > 1 }}", False, "{{ a > 1 }}"),
        ("  {{ a }}\n", False, "{{ a }}"),  # white space alone: truthy() strips it
        ("{% if a %}yes{% endif %}", False, None),  # statements decide what renders
        ("{{ a }}{# why #}", False, None),
    ],
)
def test_conditions_written_as_text_are_recognised(
    source: str, text: bool, rewrite: str | None
) -> None:
    assert renders_text_around(source) is text
    assert as_one_expression(source) == rewrite
