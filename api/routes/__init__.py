"""The REST routes, thin: parse, dispatch a command or call a query, return a schema.

- `tenants`: operator routes (tenants, API keys).
- `workflows`: stored workflows, versions, validation, starting runs, statistics.
- `runs`: reading runs and their nodes; cancel, pause, resume.
- `secrets`: a tenant's secrets.
- `hooks`: webhook deliveries (signed by the sender; no API key).
- `pieces`: the catalogue.
- `health`: `/healthz` and `/readyz`.
"""
