"""The `webhook` trigger: `WebhookConfig`, and `verify_request` and `delivery_id`, which the API
calls per delivery.

`verify` picks the signature scheme and names the tenant secret holding the signing secret;
`tolerance_seconds` bounds how old (or how far in the future) a signed timestamp may be. The
verifiers themselves live in `pieces.triggers.signatures`; the `trigger` template scope built
from a verified request in `pieces.triggers.event`.

Example:
    ```python
    config = WebhookConfig.model_validate({"verify": {"scheme": "github", "secret": "gh_hook"}})
    verify_request(config, body=raw_body, headers=request.headers,
                   secrets=[tenant_secret("gh_hook")])   # raises WebhookVerificationError
    ```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from pieces.base import StrictModel, TriggerPiece, TriggerStrategy
from pieces.triggers._schema import not_null
from pieces.triggers.signatures import (
    verify_github,
    verify_hmac_sha256,
    verify_slack,
    verify_standard_webhooks,
    verify_stripe,
)

DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_HMAC_HEADER = "X-Signature"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"

Scheme = Literal["github", "stripe", "standard-webhooks", "slack", "hmac-sha256", "none"]


class VerifyConfig(StrictModel):
    """`verify`: the signature scheme and the tenant secret it is checked with."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"scheme": {"const": "none"}}, "required": ["scheme"]},
                    "then": {"properties": {"secret": False}},
                    "else": {"required": ["secret"]},
                },
                {
                    "if": {
                        "properties": {"scheme": {"const": "hmac-sha256"}},
                        "required": ["scheme"],
                    },
                    "else": {"properties": {"header": False, "encoding": False, "prefix": False}},
                },
            ]
        }
    )

    scheme: Scheme = Field(
        description=(
            "github (X-Hub-Signature-256), stripe (Stripe-Signature), standard-webhooks "
            "(webhook-id/-timestamp/-signature), slack (v0), hmac-sha256 (a header of your "
            "choice) or none."
        )
    )
    secret: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=not_null(minLength=1),
        description=(
            "Name of the tenant secret holding the signing secret (not the value); required "
            "unless scheme is none."
        ),
    )
    header: str | SkipJsonSchema[None] = Field(
        default=None,
        pattern=HEADER_NAME_PATTERN,
        json_schema_extra=not_null(pattern=HEADER_NAME_PATTERN),
        description=f"hmac-sha256 only: the header carrying the signature ({DEFAULT_HMAC_HEADER}).",
    )
    encoding: Literal["hex", "base64"] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=not_null(),
        description="hmac-sha256 only: how the digest is written, hex (default) or base64.",
    )
    prefix: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=not_null(),
        description="hmac-sha256 only: text before the digest, e.g. `sha256=`; default none.",
    )

    @field_validator("secret")
    @classmethod
    def _secret_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("`secret` is empty: give the name of a tenant secret")
        return value

    @model_validator(mode="after")
    def _fields_fit_scheme(self) -> VerifyConfig:
        if self.scheme == "none" and self.secret is not None:
            raise ValueError("scheme `none` verifies nothing and takes no `secret`")
        if self.scheme != "none" and self.secret is None:
            raise ValueError(
                f"scheme `{self.scheme}` needs `secret`: the name of the tenant secret that "
                "holds the signing secret"
            )
        extra = [
            name for name in ("header", "encoding", "prefix") if getattr(self, name) is not None
        ]
        if extra and self.scheme != "hmac-sha256":
            names = " and ".join(f"`{name}`" for name in extra)
            verb = "is" if len(extra) == 1 else "are"
            raise ValueError(f"{names} {verb} only for scheme `hmac-sha256`, not `{self.scheme}`")
        return self


class WebhookConfig(StrictModel):
    """The `webhook` trigger's own fields."""

    verify: VerifyConfig = Field(
        description="How deliveries are authenticated: `scheme` and the `secret` it uses."
    )
    tolerance_seconds: int = Field(
        default=DEFAULT_TOLERANCE_SECONDS,
        ge=1,
        description=(
            "How far a signed timestamp may lie from our clock, either way, before a delivery "
            "is refused as a replay (stripe, standard-webhooks, slack)."
        ),
    )

    @property
    def secret_name(self) -> str | None:
        """The tenant secret to resolve before verifying; `None` for scheme `none`."""
        return self.verify.secret


def verify_request(
    config: WebhookConfig,
    *,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    now: datetime | None = None,
) -> None:
    """Check that a delivery was signed by the holder of the trigger's secret.

    Args:
        config: the trigger's validated fields.
        body: the raw request body, exactly as received (never a re-serialised parse).
        headers: the request headers; names are matched case-insensitively.
        secrets: the values to try, in any order: the tenant secret named by
            `config.secret_name` and, during a rotation, its previous value.
            Ignored for scheme `none`.
        now: the time to check signed timestamps against (timezone-aware); defaults to the clock.

    Raises:
        WebhookVerificationError: the delivery is not authentic or too old/new; its message
            says which header is missing or malformed, or that no signature matched.
        WebhookSecretError: no usable secret value was given.

    Example:
        ```python
        try:
            verify_request(config, body=raw, headers=request.headers, secrets=[value])
        except WebhookVerificationError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=401)
        ```
    """
    verify = config.verify
    if verify.scheme == "none":
        return
    if verify.scheme == "github":
        verify_github(body=body, headers=headers, secrets=secrets)
    elif verify.scheme == "hmac-sha256":
        verify_hmac_sha256(
            body=body,
            headers=headers,
            secrets=secrets,
            header=verify.header or DEFAULT_HMAC_HEADER,
            encoding=verify.encoding or "hex",
            prefix=verify.prefix or "",
        )
    else:
        _TIMED_VERIFIERS[verify.scheme](
            body=body,
            headers=headers,
            secrets=secrets,
            tolerance_seconds=config.tolerance_seconds,
            now=now,
        )


def delivery_id(config: WebhookConfig, *, headers: Mapping[str, str], payload: Any) -> str | None:
    """The scheme's own id of a delivery, which a redelivery repeats: `github` →
    `X-GitHub-Delivery`, `standard-webhooks` → `webhook-id` (Svix: `svix-id`), `stripe` → the
    event's `id` in the payload; None for the other schemes (a trigger sets `dedupe_key` for
    those).

    Args:
        config: the trigger's validated fields.
        headers: the request headers (any case).
        payload: the parsed body (`trigger.payload`).
    """
    scheme = config.verify.scheme
    if scheme == "stripe":
        found = payload.get("id") if isinstance(payload, dict) else None
        return found if isinstance(found, str) and found else None
    for header in _DELIVERY_ID_HEADERS.get(scheme, ()):
        for name, value in headers.items():
            if name.lower() == header and value:
                return value
    return None


_DELIVERY_ID_HEADERS = {
    "github": ("x-github-delivery",),
    # Svix's names where the `webhook-` ones are absent, as `verify_standard_webhooks` reads them.
    "standard-webhooks": ("webhook-id", "svix-id"),
}

_TIMED_VERIFIERS = {
    "stripe": verify_stripe,
    "standard-webhooks": verify_standard_webhooks,
    "slack": verify_slack,
}


class WebhookTrigger(TriggerPiece):
    """Start runs from signed HTTP deliveries (GitHub, Stripe, Standard Webhooks, Slack, ...)."""

    key = "webhook"
    strategy = TriggerStrategy.WEBHOOK
    display_name = "Webhook"
    description = (
        "Start a run for each verified HTTP delivery; `verify.scheme` is github, stripe, "
        "standard-webhooks, slack, hmac-sha256 or none, `verify.secret` names a tenant secret."
    )
    category = "trigger"
    Config: ClassVar[type[WebhookConfig]] = WebhookConfig

    # What the API calls per delivery, reachable from the registered class too.
    verify_request = staticmethod(verify_request)
    delivery_id = staticmethod(delivery_id)
