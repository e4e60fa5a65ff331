"""Typed errors of the store: what a repository raises for the caller to map to an answer."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of the store's own errors."""


class AlreadyExists(StoreError):
    """A row with this key exists already (e.g. a tenant or workflow id); the API answers 409."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} already exists")
        self.kind = kind
        self.key = key


class NotFound(StoreError):
    """The row a write needs does not exist (or belongs to another tenant); the API answers 404."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key
