"""A 1,000-node workflow runs without a thread or a coroutine per waiting node."""

from __future__ import annotations

import asyncio
import threading

import pytest

from interpreter import arun_workflow
from tests.support.definitions import edge, node, workflow

pytestmark = [pytest.mark.usefixtures("engine"), pytest.mark.slow]

CHAINS, LENGTH = 4, 250


def chains() -> dict[str, object]:
    nodes, edges = [], []
    for c in range(CHAINS):
        for i in range(LENGTH):
            previous = f"c{c}_{i - 1}"
            value = f"{{{{ nodes.{previous}.output + 1 }}}}" if i else 1
            nodes.append(node(f"c{c}_{i}", value=value))
            if i:
                edges.append(edge(previous, f"c{c}_{i}"))
    output = " + ".join(f"nodes.c{c}_{LENGTH - 1}.output" for c in range(CHAINS))
    return workflow(nodes, edges, id="thousand", output=f"{{{{ {output} }}}}")


async def test_thousand_node_workflow_holds_only_running_nodes() -> None:
    definition = chains()
    assert len(definition["nodes"]) == 1000  # type: ignore[arg-type]
    threads_before = threading.active_count()
    peak = {"tasks": 0, "threads": 0}
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            peak["tasks"] = max(peak["tasks"], len(asyncio.all_tasks()))
            peak["threads"] = max(peak["threads"], threading.active_count())
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    try:
        result = await arun_workflow(definition)
    finally:
        done.set()
        await sampler
    assert result.state == "completed", result.error
    assert result.output == CHAINS * LENGTH
    assert all(n.status == "completed" for n in result.nodes.values())
    # At most the 4 running nodes (each: a node task, its piece, its cancel watch) plus the
    # run's own few tasks: nothing for the 996 waiting nodes.
    assert peak["tasks"] < 40, peak
    assert peak["threads"] - threads_before < 15, (threads_before, peak)
