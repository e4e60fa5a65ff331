"""The run side: one generic Prefect flow that executes a valid definition.

- `flow`: the `@flow` (`workflow_flow`), how a run ends, and child runs (`core.subworkflow`).
- `engine`: `Execution` (what a whole run shares) and `PlanRun` (schedules one graph's nodes).
- `context`: the run services and their ports; the `PieceContext` a piece sees.
- `secrets`: secret providers and the redactor that hides their values everywhere.
- `resolvers`: how `core.subworkflow` finds other workflows (files, for ad-hoc runs).
- `results`: `RunResult` and `NodeResult`, what a finished run reports.
- `approval`: pausing a run until a person resumes it (`core.approval`).
- `background`: delivering the summary artifact off the run's critical path.
"""
