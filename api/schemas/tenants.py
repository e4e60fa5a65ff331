"""Tenants and API keys (operator routes)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.common import RequestModel

TENANT_ID_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"


class TenantCreate(RequestModel):
    id: str = Field(pattern=TENANT_ID_PATTERN, description="The tenant's id (a slug).")


class TenantCreated(BaseModel):
    id: str
    created_at: datetime
    api_key: str = Field(description="The tenant's first API key; shown once, stored hashed.")


class ApiKeyCreate(RequestModel):
    """An empty object: keys have no options."""


class ApiKeyCreated(BaseModel):
    id: str = Field(description="The key's id: not secret; name it to revoke the key.")
    api_key: str = Field(description="The key itself; shown once, stored hashed.")
    created_at: datetime
