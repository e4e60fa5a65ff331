"""Bridge to Prefect scheduling and the local engine: deployments, the `altlas-flows` CLI, `up`."""
