"""Queries: what the API and the command line read, each a function of the tenant.

- `workflows`: a workflow (current or one version), lists, versions.
- `runs`: GetRun, ListRuns (active or by state), ListRunNodes, WorkflowStats.
- `catalogue`: the pieces catalogue.
"""
