"""Webhook signature verifiers, one per scheme: `verify_github`, `verify_stripe`, ... .

Each verifier checks one provider's signing scheme over the *raw* request body, compares digests
with `hmac.compare_digest`, accepts several candidate secrets (key rotation on our side) and
several signatures in one header where the scheme allows it (rotation on the sender's side),
and checks the signed timestamp against a tolerance, either way, where the scheme carries one.

Failures raise `WebhookVerificationError`, whose message names the header and what is wrong
with it (missing, malformed, timestamp outside the tolerance, no matching signature) and never
contains a digest computed here or a secret. Unusable secrets raise `WebhookSecretError`.

| scheme              | signature header(s)                      | signed bytes              |
|---------------------|------------------------------------------|---------------------------|
| `github`            | `X-Hub-Signature-256: sha256=<hex>`      | `{body}`                  |
| `stripe`            | `Stripe-Signature: t=<ts>,v1=<hex>,...`  | `{t}.{body}`              |
| `standard-webhooks` | `webhook-id`, `webhook-timestamp`,       | `{id}.{timestamp}.{body}` |
|                     | `webhook-signature: v1,<b64> ...`        |                           |
| `slack`             | `X-Slack-Request-Timestamp`,             | `v0:{timestamp}:{body}`   |
|                     | `X-Slack-Signature: v0=<hex>`            |                           |
| `hmac-sha256`       | configured header: `[prefix]<hex/b64>`   | `{body}`                  |
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, NoReturn

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_STANDARD_WEBHOOKS_PREFIX = "whsec_"


class FailureReason(StrEnum):
    """Why a request failed verification; stable names for logs and API answers."""

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    TIMESTAMP_OUT_OF_TOLERANCE = "timestamp_out_of_tolerance"
    NO_MATCHING_SIGNATURE = "no_matching_signature"


class WebhookVerificationError(Exception):
    """A request is not what its signature headers claim; the API answers it with 401.

    Attributes:
        scheme: the verification scheme (`github`, `stripe`, ...).
        reason: what kind of failure, a `FailureReason`.
        message: for people; names the header and the problem, never a digest or a secret.
    """

    def __init__(self, scheme: str, reason: FailureReason, message: str) -> None:
        super().__init__(f"{scheme}: {message}")
        self.scheme = scheme
        self.reason = reason
        self.message = message


class WebhookSecretError(ValueError):
    """The secrets given cannot be used (none at all, or not in the scheme's format).

    This is the receiver's configuration problem, not the sender's: answer it with a server
    error that asks for the tenant secret to be fixed, not with 401.
    """


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with lower-case names, so that look-ups ignore case as HTTP requires."""
    return {name.lower(): value for name, value in headers.items()}


def verify_github(*, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Verify GitHub's `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 of the body.

    GitHub signs no timestamp, so this scheme cannot bound replays: give the trigger a
    `dedupe_key` on the `X-GitHub-Delivery` header.

    Args:
        body: the raw request body, exactly as received.
        headers: the request headers; names are matched case-insensitively.
        secrets: candidate secret values; the request passes when any of them signed it.

    Raises:
        WebhookVerificationError: the header is missing or malformed, or no secret matches.
        WebhookSecretError: `secrets` holds no value.

    Example:
        ```python
        verify_github(body=b"Hello, World!", secrets=["It's a Secret to Everybody"],
                      headers={"X-Hub-Signature-256": "sha256=757107ea0e...43e17"})
        ```
    """
    scheme, header = "github", "X-Hub-Signature-256"
    keys = _secret_values(secrets)
    algorithm, _, digest = _required(scheme, headers, header).partition("=")
    if algorithm != "sha256":
        _malformed(scheme, header, "sha256=<64 hex digits>")
    provided = _hex_digest(scheme, header, digest, "sha256=<64 hex digits>")
    _require_match(scheme, [_hmac(key, body) for key in keys], [provided])


def verify_stripe(
    *,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance_seconds: int,
    now: datetime | None = None,
) -> None:
    """Verify Stripe's `Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]`.

    The signed bytes are `{t}.{body}`, the key is the endpoint's signing secret exactly as
    Stripe shows it (`whsec_...`, used as text, not decoded). While an endpoint secret is being
    rolled Stripe sends one `v1` entry per active secret; `v0` and unknown entries are ignored.

    Args:
        body: the raw request body.
        headers: the request headers (names case-insensitive).
        secrets: candidate secret values.
        tolerance_seconds: how far `t` may lie from `now`, in the past or the future.
        now: the time to check `t` against (timezone-aware); defaults to the clock.

    Raises:
        WebhookVerificationError: missing or malformed header, no matching signature, or `t`
            outside the tolerance.
        WebhookSecretError: `secrets` holds no value.
    """
    scheme, header, shape = "stripe", "Stripe-Signature", "t=<unix time>,v1=<64 hex digits>"
    moment = _unix_now(now)
    keys = _secret_values(secrets)
    timestamps: list[str] = []
    provided: list[bytes] = []
    for element in _required(scheme, headers, header).split(","):
        name, separator, value = element.strip().partition("=")
        if not separator:
            _malformed(scheme, header, shape)
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            provided.append(_hex_digest(scheme, header, value, shape))
    if len(timestamps) != 1:
        _malformed(scheme, header, shape + " with exactly one t=")
    if not provided:
        _malformed(scheme, header, shape + " with at least one v1=")
    timestamp = _parse_timestamp(scheme, f"{header} t=", timestamps[0])
    signed = f"{timestamps[0]}.".encode() + body
    _require_match(scheme, [_hmac(key, signed) for key in keys], provided)
    _check_tolerance(scheme, timestamp, moment, tolerance_seconds)


def verify_standard_webhooks(
    *,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance_seconds: int,
    now: datetime | None = None,
) -> None:
    """Verify a Standard Webhooks request (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

    The signed bytes are `{webhook-id}.{webhook-timestamp}.{body}`, the key is the base64 part
    of a `whsec_<base64>` secret, decoded (a secret without the prefix is taken as base64).
    `webhook-signature` is a space-separated list of `<version>,<base64>` entries: every `v1`
    entry is tried (senders list several while rotating); `v1a` (asymmetric ed25519) entries
    are not supported and skipped. Svix's `svix-id`/`svix-timestamp`/`svix-signature` names
    are accepted when the `webhook-` ones are absent.

    Raises:
        WebhookVerificationError: missing or malformed header, no matching signature, or the
            timestamp outside the tolerance.
        WebhookSecretError: `secrets` holds no value, or a value is not `whsec_<base64>`.
    """
    scheme = "standard-webhooks"
    moment = _unix_now(now)
    keys = [_standard_webhooks_key(key, index) for index, key in enumerate(_secret_values(secrets))]
    lowered = lower_headers(headers)
    svix = "webhook-signature" not in lowered and "svix-signature" in lowered
    prefix = "svix-" if svix else "webhook-"
    message_id = _required(scheme, lowered, f"{prefix}id")
    raw_timestamp = _required(scheme, lowered, f"{prefix}timestamp")
    timestamp = _parse_timestamp(scheme, f"{prefix}timestamp", raw_timestamp)
    provided: list[bytes] = []
    for entry in _required(scheme, lowered, f"{prefix}signature").split():
        version, _, encoded = entry.partition(",")
        if version == "v1":
            try:
                provided.append(base64.b64decode(encoded, validate=True))
            except binascii.Error:
                continue  # one bad entry must not hide a good one next to it
    if not provided:
        _malformed(scheme, f"{prefix}signature", "v1,<base64> (space-separated if several)")
    signed = f"{message_id}.{raw_timestamp}.".encode() + body
    _require_match(scheme, [_hmac(key, signed) for key in keys], provided)
    _check_tolerance(scheme, timestamp, moment, tolerance_seconds)


def verify_slack(
    *,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance_seconds: int,
    now: datetime | None = None,
) -> None:
    """Verify Slack's `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`.

    The key is the app's signing secret as text. Slack sends one signature; rotate by passing
    the old and the new signing secret in `secrets`.

    Raises:
        WebhookVerificationError: missing or malformed header, no matching signature, or the
            timestamp outside the tolerance.
        WebhookSecretError: `secrets` holds no value.
    """
    scheme, header, stamp = "slack", "X-Slack-Signature", "X-Slack-Request-Timestamp"
    moment = _unix_now(now)
    keys = _secret_values(secrets)
    raw_timestamp = _required(scheme, headers, stamp)
    timestamp = _parse_timestamp(scheme, stamp, raw_timestamp)
    version, _, digest = _required(scheme, headers, header).partition("=")
    if version != "v0":
        _malformed(scheme, header, "v0=<64 hex digits>")
    provided = _hex_digest(scheme, header, digest, "v0=<64 hex digits>")
    signed = f"v0:{raw_timestamp}:".encode() + body
    _require_match(scheme, [_hmac(key, signed) for key in keys], [provided])
    _check_tolerance(scheme, timestamp, moment, tolerance_seconds)


def verify_hmac_sha256(
    *,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    header: str,
    encoding: Literal["hex", "base64"],
    prefix: str,
) -> None:
    """Verify a generic HMAC-SHA256 of the raw body, carried in one header.

    The header holds `prefix` then the digest: 64 hex digits (either case) or standard base64.
    No timestamp is signed, so this scheme cannot bound replays: use the trigger's `dedupe_key`.

    Raises:
        WebhookVerificationError: the header is missing or malformed, or no secret matches.
        WebhookSecretError: `secrets` holds no value.
    """
    scheme = "hmac-sha256"
    keys = _secret_values(secrets)
    value = _required(scheme, headers, header)
    shape = f"{prefix}<{'64 hex digits' if encoding == 'hex' else 'base64 digest'}>"
    if not value.startswith(prefix):
        _malformed(scheme, header, shape)
    digest = value[len(prefix) :]
    if encoding == "hex":
        provided = _hex_digest(scheme, header, digest, shape)
    else:
        provided = _base64_digest(scheme, header, digest, shape)
    _require_match(scheme, [_hmac(key, body) for key in keys], [provided])


def _secret_values(secrets: Sequence[str]) -> list[bytes]:
    if isinstance(secrets, str | bytes):
        raise TypeError("secrets must be a sequence of secret values, not a single string")
    keys = [secret.encode() for secret in secrets if secret]
    if not keys:
        raise WebhookSecretError(
            "no secret value to verify with: set the tenant secret that the trigger's "
            "verify.secret names"
        )
    return keys


def _standard_webhooks_key(secret: bytes, index: int) -> bytes:
    text = secret.removeprefix(_STANDARD_WEBHOOKS_PREFIX.encode())
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise WebhookSecretError(
            f"secret value #{index + 1} is not a Standard Webhooks secret: expected whsec_<base64>"
        ) from None


def _required(scheme: str, headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted and value.strip():
            return value.strip()
    raise WebhookVerificationError(
        scheme, FailureReason.MISSING_HEADER, f"header {name} is missing"
    )


def _malformed(scheme: str, header: str, shape: str) -> NoReturn:
    raise WebhookVerificationError(
        scheme, FailureReason.MALFORMED_HEADER, f"header {header} must look like {shape}"
    )


def _hex_digest(scheme: str, header: str, text: str, shape: str) -> bytes:
    if not _HEX_SHA256.fullmatch(text):
        _malformed(scheme, header, shape)
    return bytes.fromhex(text)


def _base64_digest(scheme: str, header: str, text: str, shape: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        _malformed(scheme, header, shape)


def _parse_timestamp(scheme: str, header: str, text: str) -> int:
    if not _UNIX_SECONDS.fullmatch(text):
        _malformed(scheme, header, "a Unix time in whole seconds")
    return int(text)


def _check_tolerance(scheme: str, timestamp: int, now: int, tolerance: int) -> None:
    if abs(now - timestamp) <= tolerance:
        return
    when = f"{now - timestamp} s old" if timestamp < now else f"{timestamp - now} s in the future"
    raise WebhookVerificationError(
        scheme,
        FailureReason.TIMESTAMP_OUT_OF_TOLERANCE,
        f"the signed timestamp is {when}; the tolerance is {tolerance} s",
    )


def _require_match(scheme: str, expected: Iterable[bytes], provided: Sequence[bytes]) -> None:
    matched = False
    count = 0
    for candidate in expected:
        count += 1
        for signature in provided:
            # No early exit: every pair is compared, each in constant time.
            matched |= hmac.compare_digest(candidate, signature)
    if not matched:
        raise WebhookVerificationError(
            scheme,
            FailureReason.NO_MATCHING_SIGNATURE,
            f"no signature matched ({len(provided)} signature(s) checked against {count} "
            "secret(s)); check the secret, and that the body reaches us unmodified",
        )


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _unix_now(now: datetime | None) -> int:
    if now is None:
        return int(datetime.now(UTC).timestamp())
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return int(now.timestamp())
