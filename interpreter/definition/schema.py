"""The workflow JSON Schema, and translation of `jsonschema` errors into `Problem`s.

Main entries: `workflow_schema()`, `schema_problems(validator, instance, base)`.

The schema file `definitions/workflow.schema.json` is the single source of truth for the format's
shape. Subschemas may carry an `x-message`: when such a subschema fails, that message replaces
`jsonschema`'s generic one (like ajv-errors), so a user reads how to fix the field; `x-path`
names the member the problem is reported at when the failing subschema is its parent's.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema_specifications import (  # type: ignore[import-untyped]  # no stubs
    REGISTRY as SPECIFICATIONS,
)

from interpreter.definition.problems import Problem, pointer

_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


@lru_cache(maxsize=1)
def workflow_schema() -> dict[str, Any]:
    """The workflow JSON Schema (Draft 2020-12), loaded from the `definitions` package data."""
    text = resources.files("definitions").joinpath("workflow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def workflow_validator() -> Draft202012Validator:
    """A compiled validator for whole workflow documents."""
    return Draft202012Validator(workflow_schema(), format_checker=FormatChecker())


@lru_cache(maxsize=1)
def _fast_workflow_validator() -> Any:
    return jsonschema_rs.validator_for(workflow_schema())


def workflow_schema_problems(document: Any) -> list[Problem]:
    """Schema problems of a whole workflow document.

    A valid document is accepted by `jsonschema-rs` (compiled, ~200x faster on large
    definitions); only an invalid one is walked by `jsonschema`, whose errors we translate.
    Both read the same schema file; a test checks they agree on every case of our corpus.
    """
    if _fast_workflow_validator().is_valid(document):
        return []
    return schema_problems(workflow_validator(), document)


@lru_cache(maxsize=1)
def graph_validator() -> Draft202012Validator:
    """A compiled validator for sub-graphs (`{nodes, edges, output}`: `core.map`'s `workflow`)."""
    schema = workflow_schema()
    return Draft202012Validator(
        {"$ref": "#/$defs/graph", "$defs": schema["$defs"]}, format_checker=FormatChecker()
    )


def validator_for_schema(schema: dict[str, Any]) -> Draft202012Validator:
    """A Draft 2020-12 validator for a user's schema that also checks `format` (dates, ...).

    A `$ref` resolves inside `schema`, or to the published JSON Schema meta-schemas; never over
    the network (`jsonschema` would otherwise fetch any `http(s)://` reference it meets, from
    the engine or the API server: a request to wherever the document points).
    """
    return Draft202012Validator(schema, format_checker=FormatChecker(), registry=SPECIFICATIONS)


def schema_problems(
    validator: Validator,
    instance: Any,
    base: Sequence[str | int] = (),
    *,
    ignore: Iterable[tuple[str | int, ...]] = (),
) -> list[Problem]:
    """Every schema violation in `instance` as problems, paths prefixed with `base`.

    Args:
        ignore: instance paths (relative to `instance`) at or below which errors are dropped:
            values that are whole templates, checked at run time instead.
    """
    ignored = tuple(ignore)
    problems: list[Problem] = []
    root = validator.schema if isinstance(validator.schema, dict) else {}
    for error in validator.iter_errors(instance):
        for path, message in _translate(error, root):
            if any(path[: len(prefix)] == prefix for prefix in ignored):
                continue
            problems.append(Problem(pointer(*base, *path), message))
    return problems


def _translate(
    error: ValidationError, root: dict[str, Any]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("x-message")
    if isinstance(schema.get("x-path"), str):
        path = (*path, schema["x-path"])
    if error.validator == "required":
        missing = _quoted(error.message)[:1] or ["?"]
        yield (*path, missing[0]), custom or f"`{missing[0]}` is required"
        return
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed, complete = _allowed_properties(error, root)
        # With `patternProperties` the message also quotes the patterns, after the names.
        names = re.split(r" do(?:es)? not match any of the regexes", error.message)[0]
        for name in _quoted(names):
            yield (*path, name), unknown_field_message(name, allowed, complete=complete)
        return
    if custom:
        yield path, custom
        return
    if error.validator in ("oneOf", "anyOf") and error.context:
        yield from _translate(best_match(error.context), root)
        return
    yield path, _friendly(error, path)


def unknown_field_message(name: str, allowed: Iterable[str], *, complete: bool = True) -> str:
    """The message for an unknown field: a did-you-mean and the allowed names, when known.

    One clause after a semicolon, then whole sentences, whichever parts apply:
    "unknown field `secs`; did you mean `seconds`? Allowed here: seconds.",
    "unknown field `x`; allowed here: a, b.",
    "unknown field `x`; remove it (no fields are allowed here)."

    Args:
        allowed: the names the object takes.
        complete: whether `allowed` is all of them (not when the schema composes others).
    """
    names = sorted(allowed)
    listing = ", ".join(names)
    hint = difflib.get_close_matches(name, names, n=1)
    if hint:
        listed = f" Allowed here: {listing}." if complete else ""
        return f"unknown field `{name}`; did you mean `{hint[0]}`?{listed}"
    if names:
        lead = "allowed here" if complete else "fields allowed here include"
        return f"unknown field `{name}`; {lead}: {listing}."
    if complete:
        return f"unknown field `{name}`; remove it (no fields are allowed here)."
    return f"unknown field `{name}`; remove it or correct its name."


# Subschemas whose evaluated properties count for a sibling `unevaluatedProperties`.
_COMPOSING = ("allOf", "anyOf", "oneOf", "if", "then", "else", "dependentSchemas")


def _allowed_properties(error: ValidationError, root: dict[str, Any]) -> tuple[set[str], bool]:
    """The property names the failing schema admits, and whether that list is complete.

    `additionalProperties` sees only its siblings `properties` and `patternProperties`;
    `unevaluatedProperties` also sees what a `$ref` or a composing subschema evaluates.
    """
    schema = error.schema if isinstance(error.schema, dict) else {}
    names = set(schema.get("properties", {}))
    complete = "patternProperties" not in schema
    if error.validator == "unevaluatedProperties":
        parts = [schema]
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
            if ref.startswith("#/$defs/") and isinstance(target, dict):
                names |= set(target.get("properties", {}))
                parts.append(target)
                complete = complete and "$ref" not in target and "patternProperties" not in target
            else:
                complete = False
        complete = complete and not any(_evaluates_properties(part) for part in parts)
    return names, complete


def _evaluates_properties(schema: dict[str, Any]) -> bool:
    """Whether a composing subschema of `schema` may evaluate properties (not just require)."""
    subschemas: list[Any] = []
    for key in _COMPOSING:
        value = schema.get(key)
        if isinstance(value, list):
            subschemas.extend(value)
        elif isinstance(value, dict):
            subschemas.extend(value.values() if key == "dependentSchemas" else [value])
    keys = ("properties", "patternProperties", "additionalProperties", "$ref", *_COMPOSING)
    return any(isinstance(sub, dict) and any(k in sub for k in keys) for sub in subschemas)


def _quoted(message: str) -> list[str]:
    return [m.replace("\\'", "'") for m in _QUOTED.findall(message)]


def _field(path: tuple[str | int, ...]) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return f"`{part}`"
    return "this value"


def _friendly(error: ValidationError, path: tuple[str | int, ...]) -> str:
    name = _field(path)
    value: Any = error.validator_value
    got = _describe(error.instance)
    match error.validator:
        case "type":
            expected = " or ".join(value) if isinstance(value, list) else value
            return f"{name} must be {_article(str(expected))}, got {got}"
        case "enum":
            options = ", ".join(json.dumps(v) for v in value)
            hint = ""
            if isinstance(error.instance, str):
                close = difflib.get_close_matches(
                    error.instance, [v for v in value if isinstance(v, str)], n=1
                )
                hint = f"; did you mean {json.dumps(close[0])}?" if close else ""
            return f"{name} must be one of {options}, got {got}{hint}"
        case "const":
            return f"{name} must be {json.dumps(value)}, got {got}"
        case "minimum":
            return f"{name} must be at least {value}, got {got}"
        case "maximum":
            return f"{name} must be at most {value}, got {got}"
        case "exclusiveMinimum":
            return f"{name} must be greater than {value}, got {got}"
        case "exclusiveMaximum":
            return f"{name} must be less than {value}, got {got}"
        case "minLength":
            return f"{name} must have at least {value} character(s)"
        case "maxLength":
            return f"{name} must have at most {value} characters"
        case "minItems":
            return f"{name} must have at least {value} item(s)"
        case "maxItems":
            return f"{name} must have at most {value} items"
        case "uniqueItems":
            return f"{name} must not repeat items"
        case "pattern":
            return f"{name} must match the pattern {value}, got {got}"
        case "format":
            return f"{name} must be a valid {value}, got {got}"
        case _:
            return f"{name}: {error.message}"


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    return f"{kind} {text}"


BUILTIN_TRIGGERS = ("manual", "schedule", "webhook")


def builtin_trigger_defs() -> dict[str, Any]:
    """The `$defs` of `workflow.schema.json` that describe the built-in trigger types.

    They are generated from each trigger piece's `Config` model, so the schema file and the
    pieces cannot drift apart: `make schema` rewrites them in the file
    (`write_builtin_trigger_defs`) and a test fails when the committed file differs.
    """
    from pieces.registry import PieceRegistry

    registry = PieceRegistry.from_entry_points(allow=())
    defs: dict[str, Any] = {}
    for kind in BUILTIN_TRIGGERS:
        config = registry.trigger(kind).config_schema()
        prefix = f"trigger_{kind}"
        local = {f"{prefix}_{name}": sub for name, sub in config.pop("$defs", {}).items()}
        config = _rewrite_refs(config, prefix)
        entry: dict[str, Any] = {"$ref": "#/$defs/trigger_common", "unevaluatedProperties": False}
        for key in ("description", "properties", "required", "oneOf", "allOf"):
            if key in config:
                entry[key] = config[key]
        if "oneOf" in entry:
            fields = [f"`{branch['required'][0]}`" for branch in entry["oneOf"]]
            entry["x-message"] = (
                f"a {kind} trigger needs exactly one of {', '.join(fields[:-1])} or {fields[-1]}"
            )
        defs[prefix] = entry
        defs.update(_rewrite_refs(local, prefix))
    return defs


def _rewrite_refs(value: Any, prefix: str) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                f"#/$defs/{prefix}_{v.removeprefix('#/$defs/')}"
                if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                else _rewrite_refs(v, prefix)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(v, prefix) for v in value]
    return value


def write_builtin_trigger_defs(path: str) -> None:
    """Rewrite the built-in trigger `$defs` of the schema file at `path` (keeps the rest)."""
    with open(path, encoding="utf-8") as handle:
        schema = json.load(handle)
    defs = schema["$defs"]
    for name in [n for n in defs if n.startswith(tuple(f"trigger_{k}" for k in BUILTIN_TRIGGERS))]:
        del defs[name]
    defs.update(builtin_trigger_defs())
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
