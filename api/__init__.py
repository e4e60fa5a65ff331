"""The REST facade (FastAPI) over the engine: tenant-scoped definitions with versions, webhook
and REST triggers, run queries and commands. Not built yet: it is the subject of a later issue;
until then workflows run through `interpreter.run_workflow` and `altlas-flows run`."""
