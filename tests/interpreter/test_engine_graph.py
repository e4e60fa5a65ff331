"""The engine follows the spec's graph rules: order, conditions, joins, skips, errors, outputs."""

from __future__ import annotations

import pytest

from interpreter import DefinitionError, ParameterError, arun_workflow
from tests.support.definitions import edge, node, workflow

pytestmark = pytest.mark.usefixtures("engine")


async def test_chain_passes_outputs_downstream_and_evaluates_output() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("a", value=2),
                node("b", value="{{ nodes.a.output * 10 }}"),
                node("c", value="<{{ nodes.b.output }}>"),
            ],
            [edge("a", "b"), edge("b", "c")],
            output={"b": "{{ nodes.b.output }}", "c": "{{ nodes.c.output }}"},
        )
    )
    assert result.state == "completed"
    assert result.output == {"b": 20, "c": "<20>"}
    assert [n.status for n in result.nodes.values()] == ["completed"] * 3
    assert all(n.attempts == 1 for n in result.nodes.values())
    assert result.nodes["a"].finished_at <= result.nodes["b"].started_at  # type: ignore[operator]


async def test_when_picks_a_branch_and_skips_flow_on() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("start", value={"total": 150}),
                node("big", value="big"),
                node("small", value="small"),
                node("after_small", value="x"),
                node("after_after_small", value="y"),
            ],
            [
                edge("start", "big", when="{{ output.total > 100 }}"),
                edge("start", "small", when="{{ output.total <= 100 }}"),
                edge("small", "after_small"),
                edge("after_small", "after_after_small"),
            ],
        )
    )
    statuses = {k: v.status for k, v in result.nodes.items()}
    assert statuses == {
        "start": "completed",
        "big": "completed",
        "small": "skipped",
        "after_small": "skipped",
        "after_after_small": "skipped",
    }
    assert result.state == "completed"
    assert result.nodes["small"].attempts == 0


async def test_join_any_runs_when_one_branch_was_taken_and_join_all_does_not() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("start", value=1),
                node("yes", value="yes"),
                node("no", value="no"),
                node("any_join", value="{{ nodes.yes.output }}|{{ nodes.no.output }}"),
                node("all_join", value="never", join="all"),
            ],
            [
                edge("start", "yes", when="{{ true }}"),
                edge("start", "no", when="{{ false }}"),
                edge("yes", "any_join"),
                edge("no", "any_join"),
                edge("yes", "all_join"),
                edge("no", "all_join"),
            ],
        )
    )
    assert result.nodes["any_join"].status == "completed"
    assert result.nodes["any_join"].output == "yes|None"
    assert result.nodes["all_join"].status == "skipped"


async def test_join_all_runs_when_every_edge_was_taken() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("a", value=1),
                node("b", value=2),
                node("sum", value="{{ nodes.a.output + nodes.b.output }}", join="all"),
            ],
            [edge("a", "sum"), edge("b", "sum")],
            output="{{ nodes.sum.output }}",
        )
    )
    assert result.output == 3


async def test_error_edge_receives_the_failure_and_the_run_completes() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("broken", value="{{ params.missing.deeper }}"),
                node("on_success", value="unreachable"),
                node("handler", value="{{ error }}"),
            ],
            [edge("broken", "on_success"), edge("broken", "handler", on="error")],
            output="{{ nodes.handler.output }}",
        )
    )
    assert result.state == "completed"
    assert result.nodes["broken"].status == "failed"
    assert result.nodes["on_success"].status == "skipped"
    error = result.output
    assert set(error) == {"node", "type", "message", "attempts"}
    assert error["node"] == "broken"
    assert error["type"] == "TemplateError"
    assert "missing" in error["message"]
    assert error["attempts"] == 1
    assert result.nodes["broken"].error == error


async def test_failure_without_error_edge_fails_run_but_independent_paths_finish() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("broken", value="{{ params.nope }}"),
                node("downstream", value="x"),
                node("independent", "core.delay", input={"seconds": 0.2}),
                node("after_independent", value="{{ nodes.independent.output.slept }}"),
            ],
            [edge("broken", "downstream"), edge("independent", "after_independent")],
        )
    )
    assert result.state == "failed"
    assert result.error is not None
    assert result.error["type"] == "NodeFailed"
    assert "'broken'" in result.error["message"]
    assert result.nodes["downstream"].status == "skipped"
    assert result.nodes["after_independent"].status == "completed"
    assert result.nodes["after_independent"].output == 0.2
    assert result.output is None


async def test_on_error_continue_resolves_with_error_output_and_takes_success_edges() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("soft", value="{{ params.nope }}", on_error="continue"),
                node("next", value="{{ nodes.soft.output.error.type }}"),
                node("guarded", value="ran"),
            ],
            [edge("soft", "next"), edge("soft", "guarded", when="{{ 'error' not in output }}")],
        )
    )
    assert result.state == "completed"
    soft = result.nodes["soft"]
    assert soft.status == "completed"
    assert soft.output == {"error": soft.error}
    assert soft.error is not None
    assert soft.error["type"] == "TemplateError"
    assert result.nodes["next"].output == "TemplateError"
    assert result.nodes["guarded"].status == "skipped"


async def test_an_edge_condition_that_cannot_be_evaluated_fails_its_source() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("a", value={"x": 1}),
                node("b", value="b"),
                node("handler", value="{{ error.type }}"),
            ],
            [edge("a", "b", when="{{ output.missing > 1 }}"), edge("a", "handler", on="error")],
            output="{{ nodes.handler.output }}",
        )
    )
    assert result.nodes["a"].status == "failed"
    assert result.output == "TemplateError"
    assert result.nodes["b"].status == "skipped"


async def test_output_template_error_fails_the_run() -> None:
    result = await arun_workflow(workflow([node("a", value=1)], output="{{ nodes.a.output.nope }}"))
    assert result.state == "failed"
    assert result.error is not None
    assert result.error["type"] == "TemplateError"


async def test_native_types_survive_whole_templates() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("a", value={"list": [1, 2], "flag": True}),
                node("b", value="{{ nodes.a.output.list }}"),
            ],
            [edge("a", "b")],
            output={"native": "{{ nodes.b.output }}", "text": "n={{ nodes.b.output }}"},
        )
    )
    assert result.output == {"native": [1, 2], "text": "n=[1, 2]"}


async def test_parameters_defaults_applied_and_trigger_and_run_in_scope() -> None:
    result = await arun_workflow(
        workflow(
            [
                node(
                    "a",
                    value={
                        "p": "{{ params }}",
                        "t": "{{ trigger.type }}",
                        "run": "{{ run.workflow_id }}",
                    },
                )
            ],
            id="scope-check",
            parameters={"type": "object", "properties": {"n": {"type": "integer", "default": 7}}},
        ),
        tenant="acme",
    )
    assert result.nodes["a"].output == {"p": {"n": 7}, "t": "manual", "run": "scope-check"}
    assert result.tenant == "acme"


async def test_invalid_parameters_are_refused_before_anything_runs(engine: str) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    definition = workflow(
        [node("a", value=1)],
        id="refuse-params",
        parameters={
            "type": "object",
            "properties": {"since": {"type": "string", "format": "date"}},
            "required": ["since"],
        },
    )
    with pytest.raises(ParameterError) as caught:
        await arun_workflow(definition, {"since": "not-a-date"})
    assert [p.path for p in caught.value.problems] == ["/since"]
    with pytest.raises(ParameterError) as missing:
        await arun_workflow(definition, {})
    assert [p.path for p in missing.value.problems] == ["/since"]
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["refuse-params"]))
        )
    assert runs == []


async def test_invalid_definition_raises_definition_error_with_every_problem() -> None:
    with pytest.raises(DefinitionError) as caught:
        await arun_workflow(
            {
                "format": 1,
                "id": "bad",
                "nodes": [{"id": "a", "piece": "nope.piece"}],
                "edges": [{"from": "a", "to": "b"}],
            }
        )
    assert [p.path for p in caught.value.problems] == ["/edges/0/to", "/nodes/0/piece"]
