"""Secrets for ad-hoc runs (environment, mappings) and how every value is hidden (`Redactor`).

The providers here implement the `SecretProvider` port (`interpreter.run.services`); the
service's store provides its own, per tenant.

Values flow unchanged between nodes, but every record, log line, artifact and result shows them
as `***`. The redactor of the current run lives in a context variable, which a logging filter on
Prefect's handlers consults, so log lines written by pieces, by Prefect itself (task failure
messages) and by `print` are all covered, even with several runs in one process.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

REDACTED = "***"
MIN_REDACTED_LENGTH = 3
"""Shorter values are not redacted: hiding every `1` or `ab` would make logs unreadable."""


class EnvironmentSecrets:
    """Secrets from `ALTLAS_SECRET_<NAME in upper case>` environment variables (ad-hoc runs)."""

    async def get(self, tenant: str, name: str) -> str | None:
        del tenant  # the environment is shared by every tenant of an ad-hoc run
        return os.environ.get(f"ALTLAS_SECRET_{name.upper()}")


class MappingSecrets:
    """Secrets from a mapping, falling back to another provider for names it lacks."""

    def __init__(
        self, values: Mapping[str, str], fallback: EnvironmentSecrets | None = None
    ) -> None:
        self._values = dict(values)
        self._fallback = fallback

    async def get(self, tenant: str, name: str) -> str | None:
        if name in self._values:
            return self._values[name]
        return await self._fallback.get(tenant, name) if self._fallback is not None else None


class Redactor:
    """Replaces known secret values with `***` in text and JSON values."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, value: str) -> None:
        """Start hiding `value` (longest values are replaced first)."""
        if len(value) >= MIN_REDACTED_LENGTH and value not in self._values:
            self._values.append(value)
            self._values.sort(key=len, reverse=True)

    @property
    def active(self) -> bool:
        """Whether any value is being hidden."""
        return bool(self._values)

    def text(self, text: str) -> str:
        """`text` with every known secret value replaced by `***`."""
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """A JSON value with secrets hidden in every string (keys included); others untouched."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


_current: contextvars.ContextVar[Redactor | None] = contextvars.ContextVar(
    "altlas_redactor", default=None
)


@contextmanager
def redacting(redactor: Redactor) -> Iterator[None]:
    """Make `redactor` the current run's: log records emitted inside are redacted."""
    install_log_redaction()
    token = _current.set(redactor)
    try:
        yield
    finally:
        _current.reset(token)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and exception text) through the current run's redactor."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = _current.get()
        if redactor is None or not redactor.active:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redactor.text(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
            record.exc_info = None
        return True


_FILTER = RedactingFilter()


_LOGGERS_WITH_HANDLERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.extra")
"""Where Prefect's logging configuration attaches handlers (console and API)."""


def install_log_redaction() -> None:
    """Attach the redacting filter to the handlers of Prefect's run loggers and the root (once)."""
    for name in _LOGGERS_WITH_HANDLERS:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
