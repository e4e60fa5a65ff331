"""The REST facade's request and response bodies: one family per resource.

Each resource has its `Create` / `Update` (requests), `Public` (what the API answers) and a list
form `{data, count}` (`common.Page`), as `../shared/spec/rest-api.md` names them.

- `common`: `Page[T]`, the problem body (for the OpenAPI document).
- `tenants`: tenants and API keys (operator routes).
- `workflows`: stored workflows, their versions and triggers, validation results.
- `runs`: starting runs, `Run`, `NodeRun`, resume input, workflow statistics.
- `secrets`: secret values in, secret names out.
- `hooks`: what a webhook delivery is answered.
- `pieces`: the pieces catalogue.
"""
