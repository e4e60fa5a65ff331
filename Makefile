# ALT_LAS Workflow Engine: the two commands a newcomer needs, and a few for developers.
#   make up     install, then start the engine on its embedded default (SQLite, local Prefect server,
#               the example workflows run) and print where the UI and API docs are
#   make test   install, then run the whole test suite (lint, types, tests)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint types pytest bench schema openapi clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=...); found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/altlas-flows up

test: $(STAMP) lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

schema: $(STAMP)
	$(BIN)/python -c 'from interpreter.definition.schema import write_builtin_trigger_defs as w; w("definitions/workflow.schema.json")'

openapi: $(STAMP)
	$(BIN)/python -m api.openapi docs/openapi.json

clean:
	rm -rf $(VENV) .altlas .pytest_cache .mypy_cache .ruff_cache
