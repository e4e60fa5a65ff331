"""Settings of the REST service: `ApiSettings`, loaded from `ALTLAS_*` variables.

Every field can be set through the environment variable named after it, e.g.
`ALTLAS_DATABASE_URL=postgresql://altlas@db/altlas`. `ALTLAS_SECRET_KEY_PREVIOUS` takes
comma-separated values or a JSON list. Keys (`secret_key`, `secret_key_previous`, `admin_key`) are
kept out of the settings' `repr`, so logging the settings never logs them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pieces.settings import CommaList

# Drivers the service runs on: the URL a user writes (`postgresql://`, `sqlite:///`) names no
# driver, or a sync one, so it is rewritten to the async driver of the same database.
_DRIVER_REWRITES: tuple[tuple[str, str], ...] = (
    ("postgresql+asyncpg://", "postgresql+asyncpg://"),
    ("postgresql+psycopg2://", "postgresql+asyncpg://"),
    ("postgresql+psycopg://", "postgresql+asyncpg://"),
    ("postgresql://", "postgresql+asyncpg://"),
    ("postgres://", "postgresql+asyncpg://"),
    ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
    ("sqlite+pysqlite://", "sqlite+aiosqlite://"),
    ("sqlite://", "sqlite+aiosqlite://"),
)


def normalise_database_url(url: str) -> str:
    """The async-driver form of a database URL: `postgresql://` → `postgresql+asyncpg://`,
    `sqlite:///` → `sqlite+aiosqlite:///`; other URLs are returned unchanged."""
    text = url.strip()
    for prefix, replacement in _DRIVER_REWRITES:
        if text.startswith(prefix):
            return replacement + text[len(prefix) :]
    return text


class ApiSettings(BaseSettings):
    """Settings of the REST facade and its store. `docs/configuration.md` lists them all."""

    model_config = SettingsConfigDict(env_prefix="ALTLAS_", extra="ignore")

    home: Path = Field(
        default=Path(".altlas"),
        description=(
            "Data folder of the service: the SQLite database (when `ALTLAS_DATABASE_URL` is "
            "unset) and `secret.key` (when `ALTLAS_SECRET_KEY` is unset)."
        ),
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "Database of the service (SQLAlchemy URL). `postgresql://...` uses asyncpg, "
            "`sqlite:///path` uses aiosqlite. Unset: `sqlite:///<ALTLAS_HOME>/altlas.db`."
        ),
    )
    secret_key: str | None = Field(
        default=None,
        repr=False,
        description=(
            "Current key (Fernet, 32 url-safe base64 bytes) that encrypts tenant secrets and keys "
            "the API key hashes. Unset: read from `<ALTLAS_HOME>/secret.key`, created on first use."
        ),
    )
    secret_key_previous: CommaList = Field(
        default_factory=list,
        repr=False,
        description=(
            "Older keys that still decrypt secrets and verify API keys, for key rotation "
            "(comma-separated, newest first)."
        ),
    )
    admin_key: str | None = Field(
        default=None,
        repr=False,
        description="Operator key for the tenant routes (`/v1/tenants`). Unset: those routes 401.",
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body the API reads; a larger one is answered 413 unread.",
    )
    record_max_bytes: int = Field(
        default=65536,
        gt=0,
        description=(
            "Largest serialised node input, output or error kept in the run history; a larger "
            "value is stored as `{truncated, bytes, preview}`."
        ),
    )
    trigger_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description=(
            "How long an API process keeps a workflow's triggers (and a webhook's signing "
            "secret) in memory. A change made through this process applies at once; one made "
            "through another API process is seen within this many seconds (0: read every time)."
        ),
    )
    api_host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port the API listens on.")
    public_url: str | None = Field(
        default=None,
        description=(
            "Base URL clients reach the API at, used in webhook URLs. "
            "Unset: `http://<ALTLAS_API_HOST>:<ALTLAS_API_PORT>`."
        ),
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return normalise_database_url(value)

    @field_validator("secret_key", "admin_key", "public_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        # `ALTLAS_SECRET_KEY=` in an env file means "not set", not "the empty key".
        if value is None or not value.strip():
            return None
        return value.strip()

    def database_url_resolved(self) -> str:
        """The database URL the service connects to (async driver, default SQLite file)."""
        if self.database_url is not None:
            return self.database_url
        path = (self.home.expanduser() / "altlas.db").resolve()
        return f"sqlite+aiosqlite:///{path}"

    def public_url_resolved(self) -> str:
        """The base URL of the API as clients see it, without a trailing slash."""
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host  # IPv6 literal
        return f"http://{host}:{self.api_port}"


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    """The API settings of this process, read once. Tests call `get_api_settings.cache_clear()`."""
    return ApiSettings()
