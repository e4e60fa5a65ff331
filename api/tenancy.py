"""A tenant's settings (`tenants.settings`), validated: `TenantSettings`.

- `allowed_pieces`: the action pieces the tenant's workflows may use (None: all installed);
- `http_allow`: networks `http.request` may reach besides the public internet, added to the
  process's `ALTLAS_HTTP_ALLOW_PRIVATE` for this tenant's runs;
- `defaults`: a default `retry` and `timeout_seconds` for the tenant's nodes, between a piece's
  own declared defaults and the workflow's `defaults` (the most specific wins).

The API applies them when it validates a definition; the worker's runs get them as the engine's
`TenantPolicy` (`policy()`), through the store's `TenantPolicies` port.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from interpreter.definition.model import ExecutionDefaults
from interpreter.run.services import TenantPolicy
from pieces.registry import PieceRegistry


class TenantDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry: dict[str, Any] | None = Field(default=None, description="As a node's `retry`.")
    timeout_seconds: float | None = Field(default=None, gt=0)


class TenantSettings(BaseModel):
    """What a tenant's settings say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_pieces: tuple[str, ...] | None = None
    http_allow: tuple[str, ...] = ()
    defaults: TenantDefaults = Field(default_factory=TenantDefaults)

    @classmethod
    def of(cls, settings: dict[str, Any] | None) -> TenantSettings:
        return cls.model_validate(settings or {})

    def registry(self, registry: PieceRegistry, tenant_id: str) -> PieceRegistry:
        """The pieces this tenant may use."""
        if self.allowed_pieces is None:
            return registry
        return _restricted(registry, frozenset(self.allowed_pieces), tenant_id)

    def policy(self) -> TenantPolicy:
        """These settings as the engine applies them to the tenant's runs."""
        return TenantPolicy(
            allowed_pieces=(
                frozenset(self.allowed_pieces) if self.allowed_pieces is not None else None
            ),
            http_allow=self.http_allow,
            defaults=ExecutionDefaults.parse(self.defaults.model_dump(exclude_none=True)),
        )


@lru_cache(maxsize=256)
def _restricted(registry: PieceRegistry, allowed: frozenset[str], tenant_id: str) -> PieceRegistry:
    return registry.restricted(allowed, where=f"for tenant {tenant_id!r}")
