"""(b) Validate + plan time and peak memory for 1,000- and 10,000-node definitions.

"Plan" is parsing the validated document into the typed model with its graph (what a run does
before its first node). The baseline, in the same process, is validating the same document
against the JSON Schema alone with the reference `jsonschema` library: the ratio is our whole
validation and planning against that one pass. Template caches are cleared before every round,
as for a definition seen for the first time.
Target: 1,000 nodes under 100 ms.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from typing import Any

from interpreter.definition import templates
from interpreter.definition.model import Workflow
from interpreter.definition.schema import workflow_validator
from interpreter.definition.validation import validate_document

SIZES = (1_000, 10_000)
ROUNDS = 5


def definition(n: int) -> dict[str, Any]:
    """A realistic mix: a chain of templated transforms with a branch every tenth node."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for i in range(n):
        if i % 10 == 5:
            nodes.append({"id": f"n{i}", "piece": "core.delay", "input": {"seconds": 0}})
        else:
            value = "{{ nodes.n" + str(i - 1) + ".output }}" if i else {"start": True}
            nodes.append({"id": f"n{i}", "piece": "core.transform", "input": {"value": value}})
        if i:
            edge: dict[str, Any] = {"from": f"n{i - 1}", "to": f"n{i}"}
            if i % 10 == 1:
                edge["when"] = "{{ output is not none }}"
            edges.append(edge)
    return {"format": 1, "id": f"bench-{n}", "nodes": nodes, "edges": edges}


def _forget_templates() -> None:
    """Each round sees the templates for the first time, as a newly stored definition would."""
    for cached in (
        templates.compile_template,
        templates.references,
        templates.syntax_error,
        templates.renders_text_around,
    ):
        cached.cache_clear()


def _median_seconds(work: Any) -> float:
    times = []
    for _ in range(ROUNDS):
        _forget_templates()
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> dict[int, dict[str, float]]:
    validate_document(definition(10))  # warm caches: schema, registry, piece validators
    figures: dict[int, dict[str, float]] = {}
    for n in SIZES:
        document = definition(n)

        def validate_and_plan(document: dict[str, Any] = document) -> None:
            assert validate_document(document) == []
            Workflow.parse(document)

        def schema_only(document: dict[str, Any] = document) -> None:
            assert not list(workflow_validator().iter_errors(document))

        ours = _median_seconds(validate_and_plan)
        baseline = _median_seconds(schema_only)
        _forget_templates()
        tracemalloc.start()
        validate_and_plan()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures[n] = {"seconds": ours, "schema_only_s": baseline, "ratio": ours / baseline,
                      "peak_mib": peak / 2**20}  # fmt: skip
    print(f"\n(b) validate + plan, median of {ROUNDS} (target: 1,000 nodes under 100 ms)")
    for n, f in figures.items():
        print(
            f"  {n:>6} nodes  {f['seconds'] * 1000:8.1f} ms  (schema alone "
            f"{f['schema_only_s'] * 1000:.1f} ms, ratio {f['ratio']:.2f})  peak "
            f"{f['peak_mib']:.1f} MiB"
        )
    per_node = [figures[n]["seconds"] / n for n in SIZES]
    print(f"  scaling 10,000 vs 1,000 per node: {per_node[1] / per_node[0]:.2f} (1.00 = linear)")
    return figures
