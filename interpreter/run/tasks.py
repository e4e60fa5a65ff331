"""The Prefect task runs of a workflow: one per node attempt or `core.map` item, and skip markers.

Main entries: `node_task` (a node's task, with its retries), `item_task`, `run_task` (run one in
the current flow run and return its final state) and `mark_skipped`.

Every task run executes `piece_task`, whose body is a coroutine function the scheduler hands it
(`work`): the engine, not the task, knows what an attempt is. `upstream` names the nodes the task
came after; with the links `run_task` declares, the Prefect UI draws the graph's edges.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import RunInput, TaskRun, TaskRunResult
from prefect.states import Completed
from prefect.task_engine import run_task_async
from prefect.tasks import Task

from interpreter.run.errors import NodeFailure

AttemptWork = Callable[[], Awaitable[Any]]


@task(cache_policy=NO_CACHE, persist_result=False, log_prints=False)
async def piece_task(work: AttemptWork, upstream: list[str]) -> Any:
    """One attempt of one workflow node, or one `core.map` item (named after it)."""
    return await work()


@task(cache_policy=NO_CACHE, persist_result=False)
async def skipped_node(reason: str, upstream: list[str]) -> State:
    """Marks a skipped node in the Prefect UI: a Completed state named "Skipped"."""
    return Completed(name="Skipped", message=reason)


async def run_task(
    task_object: Task[Any, Any], parameters: dict[str, Any], links: set[TaskRunResult]
) -> State:
    """Run a task in this flow run and return its final state; `links` are upstream task runs
    recorded as the task run's `upstream` input.

    (Prefect's `wait_for` would record the same links but resolves every upstream state
    synchronously first: 1.6 ms per node.)
    """
    dependencies: dict[str, set[RunInput]] = {"upstream": set(links)}
    state = await run_task_async(
        task_object,
        parameters=parameters,
        return_type="state",
        dependencies=dependencies if links else None,
    )
    if not isinstance(state, State):
        raise TypeError(f"Prefect returned {type(state).__name__}, not a task run state")
    return state


def _retry_condition(task: Task[Any, Any], task_run: TaskRun, state: State) -> bool:
    """Prefect retries a node's attempt only when the failure says another try could help."""
    failure = state.data
    return not isinstance(failure, NodeFailure) or failure.retryable


_TASK_CACHE: OrderedDict[tuple[str, int], Task[Any, Any]] = OrderedDict()
_TASK_CACHE_SIZE = 4096


def node_task(label: str, max_attempts: int) -> Task[Any, Any]:
    """`piece_task` named for one node with its number of retries, reused across runs.

    Prefect retries immediately: the delay is waited out inside the failed attempt
    (`PlanRun._wait_before_retry`), where a run's deadline or cancellation can cut it short.
    """
    key = (label, max_attempts)
    found = _TASK_CACHE.get(key)
    if found is None:
        found = piece_task.with_options(
            name=label,
            task_run_name=label,
            retries=max_attempts - 1,
            retry_delay_seconds=0,
            retry_condition_fn=_retry_condition,
        )
        _TASK_CACHE[key] = found
        if len(_TASK_CACHE) > _TASK_CACHE_SIZE:
            _TASK_CACHE.popitem(last=False)
    else:
        _TASK_CACHE.move_to_end(key)
    return found


def item_task(label: str) -> Task[Any, Any]:
    """`piece_task` named for one `core.map` item (`map_node[3]`); items are not retried."""
    return piece_task.with_options(name=label, task_run_name=label)


async def mark_skipped(
    label: str, reason: str, upstream: list[str], links: set[TaskRunResult]
) -> None:
    marker = skipped_node.with_options(name=label, task_run_name=label)
    await run_task(marker, {"reason": reason, "upstream": upstream}, links)
