"""The run side: one generic Prefect flow that executes a valid definition.

- `services`: `RunServices` and the ports (secrets, workflow resolver, run recorder), each taking
  the tenant explicitly; how a run finds its services.
- `flow`: the `@flow` (`workflow_flow`), how a run ends, and child runs (`core.subworkflow`).
- `launch`: creating a flow run under the workflow's name and running it in this process.
- `execution`: `Execution` (what a whole run shares; stopping it) and each node's `NodeRecord`,
  changed only through `Execution.transition`, which feeds the run recorder.
- `scheduler`: `PlanRun`, which schedules one graph's nodes, and one attempt of a node.
- `attempts`: one attempt of a piece, for nodes and `core.map` items alike.
- `tasks`: the Prefect task runs (attempts, items, skip markers).
- `node_context`: the `PieceContext` a piece sees, and what control-flow pieces ask of the engine.
- `errors`: why a run stopped (`StopReason`), `NodeFailure`, and how failures are logged.
- `secrets`: secret providers for ad-hoc runs and the redactor that hides values everywhere.
- `resolvers`: `FileResolver`, how `core.subworkflow` finds workflows in files.
- `results`: `RunResult` and `NodeResult`, what a finished run reports.
- `approval`: pausing a run until a person resumes it (`core.approval`).
- `background`: delivering the summary artifact off the run's critical path.
"""
