"""Run parameters: defaults from the workflow's `parameters` schema applied, then validated.

Main entry: `prepare_parameters`. A run whose parameters do not validate is refused before anything
runs (`ParameterError`, with a JSON Pointer into the parameters for each problem).
"""

from __future__ import annotations

import copy
from typing import Any

from interpreter.definition.problems import ParameterError
from interpreter.definition.schema import schema_problems, validator_for_schema


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
        ParameterError: listing every problem, with paths relative to the parameters object.
    """
    given: dict[str, Any] = dict(parameters or {})
    if not schema:
        return given
    filled = apply_defaults(schema, given)
    problems = schema_problems(validator_for_schema(schema), filled)
    if problems:
        raise ParameterError(problems)
    result: dict[str, Any] = filled
    return result
