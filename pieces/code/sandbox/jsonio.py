"""JSON for the sandbox child, `loads` and `dumps`, without importing the `json` package.

`import json` pulls in `re`, `enum`, `functools` and `collections`: about 7 ms of every sandbox
start, a fifth of its cost. The C accelerator `_json` behind `json` does the real work; this
module drives it directly with the settings `json.loads` / `json.dumps(allow_nan=False,
separators=(",", ":"))` use, and falls back to `json` if the accelerator is missing or changed.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: the child must not import `typing`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _not_serialisable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _ScannerContext:
    """The attributes `_json.make_scanner` reads (those of a default `json.JSONDecoder`)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_refuse_constant)


_scan: Callable[[str, int], tuple[Any, int]] | None
_encode: Callable[[Any], str] | None
try:
    import _json

    # typeshed types the context as a scanner; any object with these attributes will do.
    _scan = _json.make_scanner(_ScannerContext())  # type: ignore[arg-type]

    def _c_encode(value: Any) -> str:
        encoder = _json.make_encoder(
            {},
            _not_serialisable,
            _json.encode_basestring_ascii,
            None,
            ":",
            ",",
            False,
            False,
            False,
        )
        return "".join(encoder(value, 0))

    _encode = _c_encode
    if _encode({"a": [1, 2.5, None, True, "\u00e9"]}) != '{"a":[1,2.5,null,true,"\\u00e9"]}':
        raise ValueError("unexpected _json behaviour")
except Exception:  # a Python without the accelerator, or one whose private API changed
    _scan = _encode = None


def loads(text: str) -> Any:
    """Parse one JSON document (as `json.loads`, without NaN or Infinity)."""
    if _scan is None:
        import json

        return json.loads(text, parse_constant=_refuse_constant)
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"invalid JSON at character {exc.value}") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError(f"extra data after the JSON document at character {end}")
    return value


def dumps(value: Any) -> str:
    """Serialise `value` compactly, ASCII only; `ValueError` for NaN/Infinity or a cycle,
    `TypeError` for values JSON cannot hold."""
    if _encode is None:
        import json

        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    return _encode(value)
