"""The definition side: what a workflow document is and whether it is valid. Imports no Prefect.

- `problems`: `Problem` (a JSON Pointer and a message), `DefinitionError`, `ParameterError`,
  `DefinitionFileError` (a file that cannot be read), and how text shows the whole document.
- `schema`: the JSON Schema of the format (`definitions/workflow.schema.json`) and the problems it
  finds, worded for people.
- `validation`: loading a document (dict, JSON text, file) and `validate`: the schema, then every
  semantic check, all problems at once.
- `graph`: nodes and edges as adjacency lists: topological order, cycles, reachability.
- `model`: the typed, parsed form of a valid document (`Workflow`, `Node`, `Edge`, `Plan`).
- `parameters`: applying a workflow's `parameters` schema (defaults, validation) to a run's input;
  checking the schema itself (references, defaults) and the `params.x` templates read.
- `identifiers`: the workflow and tenant id patterns, `check_tenant_id`.
- `templates`: the sandboxed Jinja2 templates (`{{ ... }}`) and the names they reference.
"""
