"""`ApiSettings`: defaults, `ALTLAS_*` variables, database URL normalisation, hidden keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import ApiSettings, get_api_settings, normalise_database_url

ENV = [
    "ALTLAS_HOME",
    "ALTLAS_DATABASE_URL",
    "ALTLAS_SECRET_KEY",
    "ALTLAS_SECRET_KEY_PREVIOUS",
    "ALTLAS_ADMIN_KEY",
    "ALTLAS_API_MAX_BODY_BYTES",
    "ALTLAS_RECORD_MAX_BYTES",
    "ALTLAS_API_HOST",
    "ALTLAS_API_PORT",
    "ALTLAS_PUBLIC_URL",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = ApiSettings()
    assert settings.home == Path(".altlas")
    assert settings.database_url is None
    assert settings.database_url_resolved() == f"sqlite+aiosqlite:///{tmp_path}/.altlas/altlas.db"
    assert settings.secret_key is None
    assert settings.secret_key_previous == []
    assert settings.admin_key is None
    assert settings.api_max_body_bytes == 1024 * 1024
    assert settings.record_max_bytes == 65536
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.public_url_resolved() == "http://127.0.0.1:8000"


def test_every_setting_has_a_description() -> None:
    for name, field in ApiSettings.model_fields.items():
        assert field.description, name


def test_settings_come_from_altlas_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTLAS_HOME", "/srv/altlas")
    monkeypatch.setenv("ALTLAS_SECRET_KEY", "current")
    monkeypatch.setenv("ALTLAS_SECRET_KEY_PREVIOUS", "older, oldest")
    monkeypatch.setenv("ALTLAS_ADMIN_KEY", "operator")
    monkeypatch.setenv("ALTLAS_API_PORT", "9001")
    monkeypatch.setenv("ALTLAS_API_HOST", "::1")
    monkeypatch.setenv("ALTLAS_API_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("ALTLAS_UNRELATED_THING", "ignored")
    settings = ApiSettings()
    assert settings.home == Path("/srv/altlas")
    assert settings.database_url_resolved() == "sqlite+aiosqlite:////srv/altlas/altlas.db"
    assert settings.secret_key == "current"
    assert settings.secret_key_previous == ["older", "oldest"]
    assert settings.admin_key == "operator"
    assert settings.api_max_body_bytes == 2048
    assert settings.public_url_resolved() == "http://[::1]:9001"


def test_public_url_is_used_without_its_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTLAS_PUBLIC_URL", "https://flows.example.com/base/")
    assert ApiSettings().public_url_resolved() == "https://flows.example.com/base"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/altlas", "postgresql+asyncpg://u:p@db:5432/altlas"),
        ("postgres://u@db/altlas", "postgresql+asyncpg://u@db/altlas"),
        ("postgresql+psycopg2://u@db/altlas", "postgresql+asyncpg://u@db/altlas"),
        ("postgresql+asyncpg://u@db/altlas", "postgresql+asyncpg://u@db/altlas"),
        ("sqlite:////var/lib/altlas.db", "sqlite+aiosqlite:////var/lib/altlas.db"),
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("mysql+aiomysql://u@db/x", "mysql+aiomysql://u@db/x"),
    ],
)
def test_database_urls_are_normalised_to_async_drivers(
    given: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert normalise_database_url(given) == expected
    monkeypatch.setenv("ALTLAS_DATABASE_URL", given)
    assert ApiSettings().database_url_resolved() == expected


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALTLAS_DATABASE_URL", "ALTLAS_SECRET_KEY", "ALTLAS_ADMIN_KEY"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("ALTLAS_SECRET_KEY_PREVIOUS", "")
    settings = ApiSettings()
    assert (settings.database_url, settings.secret_key, settings.admin_key) == (None, None, None)
    assert settings.secret_key_previous == []


def test_keys_stay_out_of_the_repr() -> None:
    settings = ApiSettings(
        secret_key="TOPSECRET1", secret_key_previous=["TOPSECRET2"], admin_key="TOPSECRET3"
    )
    assert "TOPSECRET" not in repr(settings)
    assert "TOPSECRET" not in str(settings)


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTLAS_API_PORT", "70000")
    with pytest.raises(ValueError, match="api_port"):
        ApiSettings()


def test_get_api_settings_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_api_settings.cache_clear()
    try:
        monkeypatch.setenv("ALTLAS_API_PORT", "8123")
        first = get_api_settings()
        monkeypatch.setenv("ALTLAS_API_PORT", "8124")
        assert get_api_settings() is first
        assert first.api_port == 8123
    finally:
        get_api_settings.cache_clear()
