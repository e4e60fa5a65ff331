"""Process-wide settings that pieces read: `PieceSettings`, loaded from `ALTLAS_*` variables.

Every field can be set through the environment variable named after it, e.g.
`ALTLAS_HTTP_ALLOW_PRIVATE=127.0.0.1/32,::1`. List fields take comma-separated values or JSON.
`docs/configuration.md` lists them all.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: Any) -> Any:
    """Accept `a,b,c` as well as a JSON list for list settings; an empty string is an empty list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]
OptionalCommaList = Annotated[list[str] | None, NoDecode, BeforeValidator(_split_list)]


class PieceSettings(BaseSettings):
    """Settings for the piece registry and the built-in pieces."""

    model_config = SettingsConfigDict(env_prefix="ALTLAS_", extra="ignore")

    # --- registry -------------------------------------------------------------------------------
    pieces_allow: OptionalCommaList = Field(
        default=None,
        description=(
            "Distributions whose `altlas.pieces` entry points may load, besides this engine's own "
            "built-ins. Unset: every installed distribution. Empty: built-ins only."
        ),
    )

    # --- http.request ---------------------------------------------------------------------------
    http_allow_private: CommaList = Field(
        default_factory=list,
        description=(
            "Networks (CIDR) or host names that `http.request` may reach although they are not "
            "public (loopback, private, link-local, ...). Empty: only public addresses. "
            "`*.example.internal` allows every sub-domain; a host-name entry never allows a "
            "cloud metadata address (list the address itself for that)."
        ),
    )
    http_max_response_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="Largest response body (decoded bytes) `http.request` reads.",
    )
    http_max_redirects: int = Field(
        default=5, ge=0, le=20, description="Most redirects `http.request` follows."
    )

    # --- code.python ----------------------------------------------------------------------------
    sandbox_allow_unsafe: bool = Field(
        default=False,
        description=(
            "UNSAFE. Let `code.python` run user code when the kernel cannot isolate it "
            "(namespaces, Landlock, seccomp). Never set this on a shared worker."
        ),
    )
    sandbox_max_output_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Cap on the stdout and stderr `code.python` copies into the run's log.",
    )
    sandbox_max_result_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="Largest JSON result (in bytes) a `code.python` node may return.",
    )
    sandbox_uid: int = Field(
        default=65534,
        ge=1,
        lt=2**32 - 1,
        description=(
            "Uid and gid `code.python` runs user code as when the worker is root. Prefer an id "
            "no other process or file on the host uses."
        ),
    )
    sandbox_tmp_mb: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="MiB of the private writable /tmp of `code.python`, also its file-size limit.",
    )

    # --- ALT_LAS services (contract: docs/altlas-services.md) -------------------------------------
    ai_orchestrator_url: str = Field(
        default="http://127.0.0.1:8100",
        pattern=r"^https?://[^\s/?#@]+(/[^\s?#@]*)?$",
        description=(
            "Base URL of the ALT_LAS AI Orchestrator service (http or https, optional base path, "
            "no credentials: its token is the tenant secret `ai_orchestrator_token`)."
        ),
    )
    os_integration_url: str = Field(
        default="http://127.0.0.1:8200",
        pattern=r"^https?://[^\s/?#@]+(/[^\s?#@]*)?$",
        description=(
            "Base URL of the ALT_LAS OS Integration service (http or https, optional base path, "
            "no credentials: its token is the tenant secret `os_integration_token`)."
        ),
    )
    service_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest one call to an ALT_LAS service may take, from connecting to the "
        "last byte of the answer.",
    )
    service_max_response_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="Largest answer (decoded bytes) read from an ALT_LAS service.",
    )


@lru_cache(maxsize=1)
def get_piece_settings() -> PieceSettings:
    """The settings of this process, read once. Tests call `get_piece_settings.cache_clear()`."""
    return PieceSettings()
