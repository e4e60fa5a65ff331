"""Secrets: a value in, names out; a value is never answered."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.common import RequestModel

SECRET_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class SecretPut(RequestModel):
    value: str = Field(min_length=1, max_length=65536, description="The secret's value.")


class SecretPublic(BaseModel):
    name: str
    updated_at: datetime
