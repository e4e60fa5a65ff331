"""Bridge to Prefect scheduling and the local engine: deployments, the worker, the CLI, `up`.

Modules:
- `cli`: the `altlas-flows` command line (`up`, `down`, the interpreter's commands, `worker`).
- `local`: the embedded default on one machine, a local Prefect server (`LocalServer`).
- `sync`: stored workflows → Prefect deployments and schedules, idempotently (`reconcile`,
  `sync_workflow`, `remove_workflow`, `ensure_work_pool`); never imports `api`.
- `runner`: the warm worker that claims and executes a work pool's flow runs in a long-lived
  process (`WarmRunner`, `run_worker`, `ensure_zombie_automation`); see docs/worker.md.
- `entrypoint`: the generic flow as the entrypoint Prefect's own workers load.

The dependency rule is `pieces` ← `interpreter` ← `deployments` ← `api`: nothing here imports
`api`. Importing `sync` or `runner` does not import Prefect (the CLI parser imports `runner`);
their functions do.
"""
