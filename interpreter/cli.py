"""The interpreter's commands: `validate`, `run`, `pieces list` and `pieces show`.

Main entry: `add_commands(subparsers)`; `api.console` composes these with the commands that
start servers, and is what the `altlas-flows` console script runs.

Exit codes: 0 success; 1 invalid definitions (`validate`) or a run that did not complete (`run`);
2 bad usage: a file that cannot be read, an invalid `--tenant`, an invalid definition or invalid
parameters given to `run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from interpreter.definition.identifiers import check_tenant_id
from interpreter.definition.problems import (
    DefinitionError,
    DefinitionFileError,
    ParameterError,
    display_pointer,
)
from interpreter.definition.validation import load_definition, validate_document
from interpreter.local_server import use_local_server_if_running


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register this module's commands on an `argparse` sub-parser collection."""
    check = subparsers.add_parser(
        "validate", help="check workflow definitions", description="Check workflow definitions."
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(handler=cmd_validate)

    run = subparsers.add_parser(
        "run",
        help="run a workflow once and print the result as JSON",
        description="Run a workflow definition once as a Prefect flow run; print the result.",
    )
    run.add_argument("file", metavar="FILE")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter (VALUE is JSON unless the parameters schema says string)",
    )
    run.add_argument("--params-json", metavar="JSON", help="all parameters as a JSON object")
    run.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a secret for this run (else ALTLAS_SECRET_<NAME>)",
    )
    run.add_argument("--tenant", default="default")
    run.set_defaults(handler=cmd_run)

    pieces = subparsers.add_parser("pieces", help="list installed pieces or show one")
    pieces_sub = pieces.add_subparsers(dest="pieces_command", required=True)
    listing = pieces_sub.add_parser("list", help="the catalogue of installed pieces")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    listing.set_defaults(handler=cmd_pieces_list)
    show = pieces_sub.add_parser("show", help="one piece: metadata and input schema")
    show.add_argument("key")
    show.set_defaults(handler=cmd_pieces_show)


# --- validate ----------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """`altlas-flows validate FILE... [--format json]`.

    Text output is `FILE: POINTER: MESSAGE` per problem, the whole document's pointer `""`
    shown as `(document)`; JSON output keeps `""`. A file that cannot be read is not an invalid
    definition: it is reported on stderr (`cannot read FILE: REASON`), the other files are
    still checked, and the exit code is 2.
    """
    rows: list[dict[str, str]] = []
    unreadable = False
    for file in args.files:
        try:
            document, problems = load_definition(file)
        except DefinitionFileError as exc:
            sys.stderr.write(f"altlas-flows validate: {exc}\n")
            unreadable = True
            continue
        if document is not None:
            problems = validate_document(document)
        rows.extend({"file": file, **p.as_dict()} for p in problems)
        if args.format == "text":
            if problems:
                for problem in problems:
                    out.write(f"{file}: {display_pointer(problem.path)}: {problem.message}\n")
            else:
                out.write(f"{file}: valid\n")
    if args.format == "json":
        out.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    if unreadable:
        return 2
    return 1 if rows else 0


# --- run ---------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """`altlas-flows run FILE [--param k=v]... [--params-json JSON]`.

    Exits with 2, before anything runs, when `--tenant` is not a tenant id, FILE cannot be
    read (`cannot read FILE: REASON`), the definition is invalid or the parameters are.
    """
    try:
        check_tenant_id(args.tenant, field="--tenant")
        document, problems = load_definition(args.file)
    except (ValueError, DefinitionFileError) as exc:
        sys.stderr.write(f"altlas-flows run: {exc}\n")
        return 2
    if document is None:
        _print_problems(DefinitionError(problems))
        return 2
    try:
        parameters = parse_parameters(document, args.param, args.params_json)
        secrets = _pairs(args.secret, "--secret")
    except ValueError as exc:
        sys.stderr.write(f"altlas-flows run: {exc}\n")
        return 2
    use_local_server_if_running()
    from interpreter.runner import run_workflow

    try:
        result = run_workflow(document, parameters, secrets=secrets, tenant=args.tenant)
    except (DefinitionError, ParameterError) as exc:
        _print_problems(exc)
        return 2
    out.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return 0 if result.state == "completed" else 1


def parse_parameters(
    document: dict[str, Any], pairs: Sequence[str], params_json: str | None
) -> dict[str, Any]:
    """Parameters from `--params-json` then `--param KEY=VALUE` (later ones win).

    A VALUE is read as JSON (`5`, `true`, `[1,2]`) unless the workflow's parameters schema
    declares that property a string, or it is not valid JSON; then it stays text.
    """
    parameters: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--params-json is not valid JSON: {exc.msg}") from None
        if not isinstance(loaded, dict):
            raise ValueError("--params-json must be a JSON object")
        parameters.update(loaded)
    properties = (document.get("parameters") or {}).get("properties") or {}
    for key, text in _pairs(pairs, "--param").items():
        declared = properties.get(key, {}).get("type") if isinstance(properties, dict) else None
        if declared == "string":
            parameters[key] = text
            continue
        try:
            parameters[key] = json.loads(text)
        except json.JSONDecodeError:
            parameters[key] = text
    return parameters


def _pairs(items: Sequence[str], option: str) -> dict[str, str]:
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} takes KEY=VALUE, got {item!r}")
        found[key] = value
    return found


def _print_problems(exc: DefinitionError | ParameterError) -> None:
    sys.stderr.write(f"{exc}\n")


# --- pieces ------------------------------------------------------------------------------------


def cmd_pieces_list(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """`altlas-flows pieces list`: every installed action and trigger piece."""
    from pieces.registry import default_registry

    registry = default_registry()
    rows = [
        {
            "key": piece.key,
            "kind": piece.kind.value,
            "version": piece.version,
            "category": piece.category,
            "title": piece.title(),
            "origin": registry.origin(piece.key),
        }
        for piece in [*registry.actions(), *registry.triggers()]
    ]
    if args.format == "json":
        problems = [vars(p) for p in registry.problems]
        out.write(json.dumps({"pieces": rows, "problems": problems}, indent=2) + "\n")
        return 0
    width = max((len(r["key"]) for r in rows), default=10)
    for row in rows:
        out.write(
            f"{row['key']:<{width}}  {row['kind']:<7}  {row['version']:<8}  "
            f"{row['category']:<10}  {row['title']}  [{row['origin']}]\n"
        )
    for problem in registry.problems:
        out.write(f"not loaded: {problem.entry_point} ({problem.distribution}): {problem.reason}\n")
    return 0


def cmd_pieces_show(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """`altlas-flows pieces show KEY`: metadata, secrets and the input (or config) schema."""
    from pieces.base import Piece
    from pieces.registry import UnknownPieceError, default_registry

    registry = default_registry()
    try:
        piece = registry.any(args.key)
    except UnknownPieceError as exc:
        sys.stderr.write(
            f"altlas-flows pieces show: {exc} "
            "(`altlas-flows pieces list` shows the installed pieces)\n"
        )
        return 2
    info: dict[str, Any] = {
        "key": piece.key,
        "kind": piece.kind.value,
        "version": piece.version,
        "display_name": piece.title(),
        "description": piece.description,
        "category": piece.category,
        "origin": registry.origin(piece.key),
        "secrets": [vars(s) for s in piece.secrets],
    }
    if isinstance(piece, type) and issubclass(piece, Piece):
        info["defaults"] = {
            "retry": piece.default_retry,
            "timeout_seconds": piece.default_timeout_seconds,
        }
        info["input_schema"] = piece.input_schema()
        info["output_schema"] = piece.output_schema()
    else:
        info["config_schema"] = piece.config_schema()
    out.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the interpreter's commands alone (the full CLI is `api.console:main`)."""
    parser = argparse.ArgumentParser(prog="altlas-flows")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code
