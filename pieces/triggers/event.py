"""The `trigger` template scope of a run: `trigger_scope`, and `webhook_scope` for a delivery.

Templates see the event that started a run as `trigger`:
`{"type", "id", "payload", "headers", "body", "received_at"}`. For a webhook (the REST contract's
names):
- `payload` is the parsed body: the JSON value for a JSON content type (`application/json`,
  `application/*+json`), an object of the fields for a form-encoded body (a repeated field becomes
  a list), `null` for any other content type;
- `body` is the raw body as text (its declared charset, else UTF-8; invalid bytes replaced), for
  text, XML or any format the payload does not parse;
- `headers` are the request headers with lower-case names, minus credentials (`Authorization`,
  `Proxy-Authorization`, `Cookie`), which must not end up in run records.
Other triggers have `body` null.

Example:
    ```python
    scope = webhook_scope(trigger_id="github", body=raw, headers=request.headers)
    scope["payload"]["action"], scope["headers"]["x-github-delivery"]
    ```
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from pieces.base import MAX_JSON_DEPTH, json_depth

DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
"""Headers left out of `trigger.headers`: credentials, never to be stored with a run."""


class PayloadError(ValueError):
    """The body does not parse as its content type says (e.g. invalid JSON); answer 400."""


def trigger_scope(
    *,
    trigger_type: str,
    trigger_id: str | None,
    payload: Any = None,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """The `trigger` name in templates, for any kind of trigger.

    Args:
        trigger_type: the trigger piece's key (`manual`, `schedule`, `webhook`, ...).
        trigger_id: the trigger entry's `id` in the workflow (None: started by hand).
        payload: the event's data (JSON-serialisable).
        headers: header-like metadata, already cleaned; `{}` when omitted.
        body: the raw request body as text (webhooks); None otherwise.
        received_at: when the event arrived (timezone-aware); defaults to now.

    Returns:
        `{"type", "id", "payload", "headers", "body", "received_at"}`, `received_at` as ISO 8601
        UTC.
    """
    moment = datetime.now(UTC) if received_at is None else received_at
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    return {
        "type": trigger_type,
        "id": trigger_id,
        "payload": payload,
        "headers": dict(headers or {}),
        "body": body,
        "received_at": moment.astimezone(UTC).isoformat(),
    }


def webhook_scope(
    *,
    trigger_id: str,
    body: bytes,
    headers: Mapping[str, str],
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """The `trigger` scope for a verified webhook delivery.

    Args:
        trigger_id: the trigger entry's `id`.
        body: the raw request body.
        headers: the request headers, any case; kept with lower-case names, credentials dropped.
        received_at: when the request arrived (timezone-aware); defaults to now.

    Raises:
        PayloadError: a JSON content type with a body that is not JSON.
    """
    kept = {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in DROPPED_HEADERS
    }
    content_type = kept.get("content-type")
    return trigger_scope(
        trigger_type="webhook",
        trigger_id=trigger_id,
        payload=parse_payload(body, content_type),
        headers=kept,
        body=body.decode(_content_type(content_type)[1], errors="replace"),
        received_at=received_at,
    )


def parse_payload(body: bytes, content_type: str | None) -> Any:
    """A request body as templates see it, chosen by its `Content-Type`.

    - `application/json` and `application/*+json`: the parsed JSON (`None` for an empty body),
      nested at most `MAX_JSON_DEPTH` arrays/objects deep;
    - `application/x-www-form-urlencoded` (Slack commands and interactions, HTML forms): an
      object of field to value, a list of values when a field repeats;
    - anything else, or no content type: `None` (templates read such a body as `trigger.body`).

    Raises:
        PayloadError: the content type says JSON but the body is not JSON, or is nested
            deeper than `MAX_JSON_DEPTH`.
    """
    media_type, charset = _content_type(content_type)
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        if not body.strip():
            return None
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except ValueError as exc:
            raise PayloadError(
                f"the body is not valid JSON although its content type is {media_type}: {exc}"
            ) from None
        except RecursionError:
            payload = None  # deeper than the parser goes: refused just below
            depth = MAX_JSON_DEPTH + 1
        else:
            depth = json_depth(payload)
        if depth > MAX_JSON_DEPTH:
            raise PayloadError(
                f"the JSON body is nested too deeply (more than {MAX_JSON_DEPTH} levels of "
                "arrays and objects)"
            )
        return payload
    if media_type != "application/x-www-form-urlencoded":
        return None
    text = body.decode(charset, errors="replace")
    form: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, encoding=charset):
        if name not in form:
            form[name] = value
        elif isinstance(form[name], list):
            form[name].append(value)
        else:
            form[name] = [form[name], value]
    return form


def _content_type(header: str | None) -> tuple[str, str]:
    """The media type in lower case and the codec of its charset (UTF-8 if none or unknown)."""
    if not header:
        return "", "utf-8"
    media_type, *params = header.split(";")
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            try:
                charset = codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                charset = "utf-8"
    return media_type.strip().lower(), charset


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
