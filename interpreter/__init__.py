"""ALT_LAS workflow interpreter: validate JSON workflow definitions and run them as Prefect flows.

Main entries: `validate` (all problems at once, with JSON Pointers) and `run_workflow` (one
ad-hoc run, waited for). Deployments and the API use `interpreter.run.flow.workflow_flow` directly.

Importing this package does not import Prefect (validation needs none of it); `run_workflow`
and `arun_workflow` load it on first use.

Example:
    ```python
    from interpreter import validate, run_workflow

    problems = validate("definitions/examples/chain.json")
    result = run_workflow("definitions/examples/chain.json", {"name": "Ada"})
    ```
"""

from typing import TYPE_CHECKING, Any

from interpreter.settings import apply_prefect_defaults

apply_prefect_defaults()  # before anything imports Prefect

from interpreter.definition.problems import (  # noqa: E402
    DefinitionError,
    DefinitionFileError,
    ParameterError,
    Problem,
)
from interpreter.definition.validation import validate  # noqa: E402
from interpreter.run.results import NodeResult, RunResult  # noqa: E402

if TYPE_CHECKING:
    from interpreter.runner import arun_workflow, run_workflow

__all__ = [
    "DefinitionError",
    "DefinitionFileError",
    "NodeResult",
    "ParameterError",
    "Problem",
    "RunResult",
    "arun_workflow",
    "run_workflow",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name in ("run_workflow", "arun_workflow"):
        from interpreter import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'interpreter' has no attribute {name!r}")
