"""Run parameters and the workflow's `parameters` schema.

Main entries: `prepare_parameters` (a run's parameters, defaults applied, then validated: a run
whose parameters do not validate is refused before anything runs, `ParameterError` with a JSON
Pointer into the parameters for each problem); for the validator, `parameters_schema_problems`
(the schema itself: meta-schema, references, defaults) and `impossible_read` (a template's
`params.x` that the schema rules out).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from interpreter.definition.problems import WHOLE_DOCUMENT, ParameterError, Problem, pointer
from interpreter.definition.schema import schema_problems, validator_for_schema
from pieces.base import MAX_JSON_DEPTH, json_depth


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A copy of `value` with `default`s from `schema` filled in, recursively through objects.

    Follows `properties` (and local `$ref`s into `$defs`); a missing object property with a
    default gets it, and nested objects present (or just defaulted) are filled in turn.
    """
    return _fill(schema, copy.deepcopy(value), schema)


def _fill(schema: Any, value: Any, root: dict[str, Any]) -> Any:
    if not isinstance(schema, dict):
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = {**root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}), **schema}
    if value is None and "default" in schema:
        value = copy.deepcopy(schema["default"])
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and isinstance(sub, dict) and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = _fill(sub, value[name], root)
        for sub in schema.get("allOf", []):
            value = _fill(sub, value, root)
    return value


def prepare_parameters(
    schema: dict[str, Any] | None, parameters: dict[str, Any] | None
) -> dict[str, Any]:
    """The run's parameters, defaults applied and validated against `schema`.

    Raises:
        ParameterError: listing every problem, with paths relative to the parameters object;
            also for parameters nested deeper than `MAX_JSON_DEPTH` arrays and objects.
    """
    given: dict[str, Any] = dict(parameters or {})
    if json_depth(given) > MAX_JSON_DEPTH:
        raise ParameterError(
            [
                Problem(
                    WHOLE_DOCUMENT,
                    f"the parameters nest more than {MAX_JSON_DEPTH} levels of arrays and "
                    "objects; flatten them",
                )
            ]
        )
    if not schema:
        return given
    filled = apply_defaults(schema, given)
    problems = schema_problems(validator_for_schema(schema), filled)
    if problems:
        raise ParameterError(problems)
    result: dict[str, Any] = filled
    return result


PathSchema = tuple[tuple[str | int, ...], dict[str, Any]]

# Keywords whose value is one subschema, a list of them, or a name -> subschema mapping.
_ONE = (
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "additionalItems",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _subschemas(schema: Any, path: tuple[str | int, ...] = ()) -> Iterator[PathSchema]:
    """`schema` and every subschema inside it, with its path (data such as `default`, `enum`
    or `examples` is not searched)."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for key in _ONE:
        yield from _subschemas(schema.get(key), (*path, key))
    for key in _LIST:
        value = schema.get(key)
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from _subschemas(item, (*path, key, index))
    for key in _MAP:
        value = schema.get(key)
        if isinstance(value, dict):
            for name, item in value.items():
                yield from _subschemas(item, (*path, key, name))


def parameters_schema_problems(schema: dict[str, Any], base: Sequence[str | int]) -> list[Problem]:
    """What is wrong with a workflow's `parameters` schema itself, with pointers under `base`.

    1. It must be a valid JSON Schema (Draft 2020-12 meta-schema).
    2. Every `$ref` must resolve: inside the schema (`#/$defs/...`) or to a published
       meta-schema; references are never fetched over the network.
    3. Every `default` must satisfy the schema it stands in: defaults are applied to runs that
       do not give the value, so a wrong one would refuse runs that gave no parameter at all.
    """
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    problems = [
        Problem(p.path, f"not a valid JSON Schema: {p.message}")
        for p in schema_problems(meta, schema, base)
    ]
    if problems:
        return problems
    validator = validator_for_schema(schema)
    broken: set[tuple[str | int, ...]] = set()
    for path, sub in _subschemas(schema):
        ref = sub.get("$ref")
        if isinstance(ref, str) and (reason := _unresolved(validator, ref)) is not None:
            broken.add(path)
            problems.append(
                Problem(
                    pointer(*base, *path, "$ref"),
                    f"`$ref` {ref!r} cannot be resolved ({reason}); refer to a definition "
                    'inside the parameters schema, e.g. "#/$defs/address"',
                )
            )
    for path, sub in _subschemas(schema):
        if "default" not in sub or any(path[: len(b)] == b for b in broken):
            continue
        # Checked as the member `default` of an object, so that messages name `default`.
        holder = validator.evolve(schema={"properties": {"default": sub}})
        try:
            found = schema_problems(holder, {"default": sub["default"]}, (*base, *path))
        except (Unresolvable, RecursionError):
            continue  # a reference further down is broken: reported at its own `$ref`
        problems.extend(
            Problem(
                p.path,
                f"{p.message}; a `default` must satisfy its own schema (it is applied to runs "
                "that do not give this value)",
            )
            for p in found
        )
    return problems


def _unresolved(validator: Draft202012Validator, ref: str) -> str | None:
    """Why `ref` does not resolve from the schema's root, or None when it does."""
    try:
        next(validator.evolve(schema={"$ref": ref}).iter_errors(None), None)
    except Unresolvable:
        if ref.startswith("#"):
            return "there is nothing at that place in the schema"
        return "it points outside the parameters schema, and references are never fetched"
    except RecursionError:
        return "it refers to itself"
    return None


@dataclass(frozen=True)
class ImpossibleRead:
    """A `params` look-up the parameters schema rules out (see `impossible_read`)."""

    keys: tuple[str, ...]
    """The keys up to the impossible one: `("limits", "rowz")` for `params.limits.rowz`."""
    declared: tuple[str, ...]
    """The property names the closed object declares."""


def impossible_read(schema: dict[str, Any], keys: Sequence[str]) -> ImpossibleRead | None:
    """Whether reading `params.<keys>` can never find a value, whatever the run is given.

    That is so when, along the keys, an object schema closes its properties
    (`"additionalProperties": false`) and neither `properties` nor `patternProperties` admits
    the next key. Only then: a property that is merely undeclared may still be given by the
    caller, and schemas composed with `allOf`/`anyOf`/... are not judged. Local `$ref`s are
    followed.
    """
    current: Any = schema
    for depth, key in enumerate(keys):
        current = _follow_refs(current, schema)
        if not isinstance(current, dict):
            return None
        properties = current.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        if key in properties:
            current = properties[key]
            continue
        if current.get("additionalProperties") is not False:
            return None
        patterns = current.get("patternProperties")
        if isinstance(patterns, dict) and any(_matches(p, key) for p in patterns):
            return None
        return ImpossibleRead(tuple(keys[: depth + 1]), tuple(sorted(properties)))
    return None


def _follow_refs(schema: Any, root: dict[str, Any]) -> Any:
    """A schema that is a bare local `$ref` (with annotations at most) replaced by its target."""
    seen: set[str] = set()
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if ref in seen or not ref.startswith("#/") or set(schema) - _ANNOTATIONS - {"$ref"}:
            return schema
        seen.add(ref)
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        schema = target
    return schema


_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment"})


def _matches(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return True  # cannot tell: assume the key may be admitted
