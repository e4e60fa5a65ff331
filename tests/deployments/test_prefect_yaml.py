"""`prefect.yaml`: `prefect deploy --all` deploys the engine's generic flow without a network,
and Prefect's own process worker runs the deployment.

Everything runs as a user runs it: Prefect's command line in processes of their own, against the
session's Prefect server, with the real file from the repository's top level and its real work
pool (`altlas-process`, which no other test uses). What the commands made is read back through
Prefect's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from interpreter import run_workflow, validate
from interpreter.settings import PREFECT_DEFAULTS
from tests.support.cli import ROOT

PREFECT_YAML = ROOT / "prefect.yaml"
CHAIN_EXAMPLE = ROOT / "definitions" / "examples" / "chain.json"
POOL = "altlas-process"
DEPLOYMENT = "altlas-workflow/chain"
ENTRYPOINT = "deployments/entrypoint.py:workflow_flow"
PULL_STEP = "prefect.deployments.steps.set_working_directory"


def chain_deployment() -> dict[str, Any]:
    """The deployment `chain` as `prefect.yaml` declares it."""
    document = yaml.safe_load(PREFECT_YAML.read_text())
    (found,) = [d for d in document["deployments"] if d["name"] == "chain"]
    deployment: dict[str, Any] = found
    return deployment


def chain_example() -> dict[str, Any]:
    """definitions/examples/chain.json, without its `$schema` line."""
    definition: dict[str, Any] = json.loads(CHAIN_EXAMPLE.read_text())
    definition.pop("$schema")
    return definition


def parenthesised(value: Any) -> Any:
    """`value` with every template Prefect's deploy command would fill, `{{ name }}`, written
    as `{{ (name) }}` (found with Prefect's own placeholder pattern)."""
    from prefect.utilities.templating import PLACEHOLDER_CAPTURE_REGEX

    if isinstance(value, str):
        return PLACEHOLDER_CAPTURE_REGEX.sub(lambda m: "{{ (" + m.group(2) + ") }}", value)
    if isinstance(value, dict):
        return {key: parenthesised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [parenthesised(item) for item in value]
    return value


def test_the_inline_definition_is_the_chain_example_in_a_form_prefect_leaves_alone(
    prefect_server: str,
) -> None:
    from prefect.utilities.templating import find_placeholders

    example = chain_example()
    assert find_placeholders(example)  # the example itself would be blanked by `prefect deploy`
    definition = chain_deployment()["parameters"]["definition"]
    assert definition == parenthesised(example)
    assert find_placeholders(definition) == set()
    assert validate(definition) == []
    ran, original = run_workflow(definition), run_workflow(example)
    assert ran.state == original.state == "completed"
    assert ran.output == original.output == {"text": "HELLO, WORLD!", "length": 13}


def prefect_command(
    *args: str, env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`prefect ARGS...` (the command next to this Python) in `cwd` with exactly `env`."""
    prefect = str(Path(sys.executable).parent / "prefect")
    return subprocess.run(
        [prefect, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def user_environment(api_url: str, prefect_home: Path) -> dict[str, str]:
    """A user's shell: none of this test process's Prefect settings, only the offline defaults
    every ALT_LAS process applies (`PREFECT_DEFAULTS`), the server, and a Prefect home of its
    own (so no profile of the machine applies, and nothing is written to ~/.prefect)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env.update(PREFECT_DEFAULTS)
    env["PREFECT_API_URL"] = api_url
    env["PREFECT_HOME"] = str(prefect_home)
    env["COLUMNS"] = "200"  # Rich wraps Prefect's messages at 80 columns otherwise
    return env


def repository_state() -> tuple[bytes, set[str]]:
    """What `prefect deploy` might write: prefect.yaml, and files or folders at the top."""
    return PREFECT_YAML.read_bytes(), {path.name for path in ROOT.iterdir()}


async def until(check: Callable[[], Awaitable[Any]], *, within: float) -> Any:
    """Wait for `check()` to return something truthy; return it."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.3)
    return found


async def remove_deployment_and_pool() -> None:
    """Delete what the test made on the session's server (the flow run stays)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        with contextlib.suppress(ObjectNotFound):
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            await client.delete_deployment(deployment.id)
        with contextlib.suppress(ObjectNotFound):
            await client.delete_work_pool(POOL)


@pytest.mark.slow
async def test_prefect_deploy_all_deploys_offline_and_a_process_worker_runs_the_deployment(
    prefect_server: str, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    env = user_environment(prefect_server, tmp_path / "prefect-home")
    declared = chain_deployment()

    async def prefect(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        done = await asyncio.to_thread(prefect_command, *args, env=env, cwd=cwd, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    try:
        # The documented order: the pool first (`prefect deploy` refuses a missing one).
        await prefect("work-pool", "create", "--type", "process", POOL)
        before = repository_state()
        deployed = await prefect("--no-prompt", "deploy", "--all")
        assert f"Deployment '{DEPLOYMENT}' successfully created" in deployed.stdout
        assert repository_state() == before  # it saved nothing: no .prefect/, same file

        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            assert deployment.entrypoint == ENTRYPOINT
            assert deployment.work_pool_name == POOL
            assert deployment.work_queue_name == "default"
            assert deployment.parameters == declared["parameters"]  # Prefect changed nothing
            assert deployment.parameters["tenant"] == "demo"
            assert sorted(deployment.tags) == ["altlas", "tenant:demo", "workflow:chain"]
            assert deployment.job_variables == {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}}
            assert deployment.pull_steps == [{PULL_STEP: {"directory": str(ROOT)}}]
            assert deployment.schedules == []
            created = await client.create_flow_run_from_deployment(deployment.id)

        # Started elsewhere: the pull step, not the worker's directory, finds this clone.
        worker = await prefect(
            "worker", "start", "--pool", POOL, "--type", "process", "--run-once", cwd=tmp_path
        )
        assert "Traceback" not in worker.stdout + worker.stderr, worker.stdout + worker.stderr

        async with get_client() as client:
            flow_run = await client.read_flow_run(created.id)
            assert flow_run.state is not None
            assert flow_run.state.name == "Completed", flow_run.state.message
            assert flow_run.name == "Greeting chain"  # the engine named it after the workflow
            assert flow_run.parameters == declared["parameters"]
            assert {"altlas", "tenant:demo", "workflow:chain"} <= set(flow_run.tags)

            async def three_task_runs() -> list[Any] | None:
                found = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[created.id]))
                )
                return found if len(found) >= 3 else None

            task_runs = await until(three_task_runs, within=30)
            assert sorted(t.name for t in task_runs) == ["greet", "measure", "shout"]
            assert {t.state.name for t in task_runs} == {"Completed"}
    finally:
        await remove_deployment_and_pool()
