"""The `http.request` piece: its input and output models and `HttpRequestPiece.run`.

The piece validates what the workflow asked for, builds a `RequestSpec`, lets
`pieces.http.exchange.fetch` do the checked, pinned, redirect-aware exchange under one deadline
(its failures come back as `PieceError`s naming the request), and turns the response into the
node's output, or into an `HttpStatusError` when the status is not an expected one.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pieces.base import Piece, PieceContext, PieceError, StrictModel
from pieces.http.exchange import Fetched, FetchOptions, QueryValue, RequestSpec, fetch
from pieces.http.policy import Resolver, policy_from_setting
from pieces.http.responses import (
    STATUS_PATTERN,
    describe_ranges,
    response_body,
    response_headers,
    status_error,
    status_ranges,
)

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"  # an RFC 9110 token
HEADER_VALUE = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"  # no control characters but tab
HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME)]
HeaderValue = Annotated[
    str,
    Field(coerce_numbers_to_str=True, pattern=HEADER_VALUE, max_length=16384),
    # Numbers are sent as their text (`"X-Page": "{{ params.page }}"`); the published schema
    # says so, since node inputs are checked against it (`Piece.parse_input`).
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": HEADER_VALUE, "maxLength": 16384},
                {"type": "number"},
            ]
        }
    ),
]
StatusItem = Annotated[int, Field(ge=100, le=599)] | Annotated[str, Field(pattern=STATUS_PATTERN)]
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})


class HttpRequestInput(StrictModel):
    """The input of `http.request` (its JSON Schema is what node inputs are validated against)."""

    method: Method = Field(default="GET", description="HTTP method, upper case.")
    url: str = Field(
        min_length=1,
        description=(
            "Absolute http:// or https:// URL, without credentials. Non-public addresses are "
            "refused unless ALTLAS_HTTP_ALLOW_PRIVATE allows them."
        ),
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description="Request headers. Host, Content-Length and Transfer-Encoding are set for you.",
    )
    query: dict[str, QueryValue | list[QueryValue]] = Field(
        default_factory=dict,
        description="Query parameters added to the URL's own (a list repeats the parameter).",
    )
    json_body: Any = Field(
        default=None,
        alias="json",
        description="A JSON body (sent as application/json). Give `json` or `body`, not both.",
    )
    body: str | dict[str, QueryValue | list[QueryValue]] | None = Field(
        default=None,
        description=(
            "A raw body: a string is sent as is (text/plain unless Content-Type says otherwise); "
            "an object is sent form-encoded (application/x-www-form-urlencoded)."
        ),
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Deadline of the whole exchange: resolving, connecting, every redirect, reading "
            "the body."
        ),
    )
    expect_status: StatusItem | list[StatusItem] = Field(
        default="2xx",
        description=(
            "Statuses that count as success: a status (404), a class ('2xx'), a range "
            "('200-204'), or a list of these. Any other status is an HttpStatusError."
        ),
    )
    follow_redirects: bool = Field(
        default=True,
        description=(
            "Follow 301/302/303/307/308 (at most ALTLAS_HTTP_MAX_REDIRECTS), checking each "
            "hop; false returns the redirect itself."
        ),
    )

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        reserved = sorted(name for name in headers if name.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(
                f"header(s) {', '.join(reserved)} cannot be set: Host comes from `url`, "
                "Content-Length and Transfer-Encoding from the body"
            )
        return headers

    @field_validator("expect_status")
    @classmethod
    def _readable_statuses(cls, value: int | str | list[int | str]) -> int | str | list[int | str]:
        status_ranges(value)
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestInput:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give `json` or `body`, not both")
        return self

    def encoded_body(self) -> tuple[bytes | None, str | None]:
        """The body bytes and the Content-Type to use when the headers name none."""
        if self.json_body is not None:
            text = json.dumps(self.json_body, ensure_ascii=False, separators=(",", ":"))
            return text.encode("utf-8"), "application/json"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        if self.body is not None:
            form = str(httpx.QueryParams(self.body))
            return form.encode("ascii"), "application/x-www-form-urlencoded"
        return None, None

    def to_spec(self) -> RequestSpec:
        """The request as `fetch` takes it."""
        # Values go out as UTF-8 bytes: httpx would refuse non-ASCII text.
        headers = httpx.Headers(
            {k.encode("ascii"): v.encode("utf-8") for k, v in self.headers.items()}
        )
        content, content_type = self.encoded_body()
        if content_type is not None and "content-type" not in headers:
            headers["Content-Type"] = content_type
        return RequestSpec(
            method=self.method,
            url=self.url,
            headers=headers,
            query=self.query,
            content=content,
            follow_redirects=self.follow_redirects,
            timeout=self.timeout_seconds,
        )


class HttpRequestOutput(BaseModel):
    """The output of `http.request`."""

    status: int = Field(description="The final response's status code.")
    headers: dict[str, str] = Field(
        description="Response headers, names in lower case; repeated headers joined with ', '."
    )
    body: Any = Field(
        description="Parsed JSON when the response's media type is JSON, else text ('' if empty)."
    )


class HttpRequestPiece(Piece[HttpRequestInput, HttpRequestOutput]):
    """Call an HTTP API, with SSRF protection on by default.

    Class attributes:
        fetch_options: the resolver and TLS trust store (`with_options` returns a copy of the
            class with others); the address policy and limits come from `PieceSettings` on
            every run.
    """

    key = "http.request"
    display_name = "HTTP request"
    description = (
        "Send an HTTP request and return {status, headers, body}. Only public addresses unless "
        "ALTLAS_HTTP_ALLOW_PRIVATE allows more; every redirect is checked."
    )
    # Transient failures (connection errors, time-outs, 429, 5xx) are worth a second and a third
    # try; refused addresses and 4xx are not retryable and fail at once.
    default_retry: ClassVar[dict[str, Any] | None] = {
        "max_attempts": 3,
        "delay_seconds": 1,
        "backoff": "exponential",
        "max_delay_seconds": 10,
    }
    category = "http"

    Input = HttpRequestInput
    Output = HttpRequestOutput
    fetch_options: ClassVar[FetchOptions] = FetchOptions()

    @classmethod
    def with_options(
        cls, *, resolver: Resolver | None = None, verify: ssl.SSLContext | None = None
    ) -> type[HttpRequestPiece]:
        """A subclass that resolves names with `resolver` and trusts `verify` (tests, custom DNS).

        Examples:
            ```python
            async def resolve(host: str, port: int) -> list[IPAddress]:
                return [ip_address("127.0.0.1")]

            piece = HttpRequestPiece.with_options(resolver=resolve)
            await run_piece(piece, {"url": "http://api.test:8080/"}, context=...)
            ```
        """
        options = cls.fetch_options
        if resolver is not None:
            options = replace(options, resolver=resolver)
        if verify is not None:
            options = replace(options, verify=verify)
        return type(cls.__name__, (cls,), {"fetch_options": options})

    async def run(self, context: PieceContext, input: HttpRequestInput) -> HttpRequestOutput:
        settings = context.settings
        options = replace(
            self.fetch_options,
            policy=policy_from_setting(tuple(settings.http_allow_private)),
            max_redirects=settings.http_max_redirects,
            max_response_bytes=settings.http_max_response_bytes,
        )
        ranges = status_ranges(input.expect_status)
        fetched = await fetch(input.to_spec(), options, logger=context.logger)
        status = fetched.response.status_code
        if not any(low <= status <= high for low, high in ranges):
            raise _status_error(fetched, describe_ranges(ranges))
        return HttpRequestOutput(
            status=status,
            headers=response_headers(fetched.response),
            body=response_body(fetched.response, fetched.body),
        )


def _status_error(fetched: Fetched, expected: str) -> PieceError:
    return status_error(
        method=fetched.method,
        url=fetched.target.display(),
        response=fetched.response,
        body=fetched.body,
        expected=expected,
    )
