"""Everything the facade's routes, commands and queries share: `Service`. Main entry:
`Service.create(settings)`.

One `Service` per process: the settings, the database, the secret box (tenant secrets at rest),
the server keys (API key hashes), the piece registry, the Prefect gateway, and the caches
of each tenant's secret values (`redactors`) and enabled triggers (`triggers`). The command bus
(`api.commands.build_bus`) is built on top of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from api.prefect_gateway import PrefectGateway
from api.redaction import TenantRedactors
from api.settings import ApiSettings
from api.store.crypto import SecretBox, server_keys
from api.store.database import Database
from api.triggers import TriggerMap
from deployments.runner import WorkerSettings
from pieces.registry import PieceRegistry, default_registry

DEFAULT_WORK_POOL = "altlas"
"""The work pool of the service's deployments unless `ALTLAS_WORKER_POOL` says otherwise."""


@dataclass
class Service:
    """The facade's shared parts (see the module docstring)."""

    settings: ApiSettings
    database: Database
    box: SecretBox
    server_keys: list[str]
    registry: PieceRegistry
    prefect: PrefectGateway
    work_pool: str = DEFAULT_WORK_POOL
    run_accepted: Callable[[str], None] = field(default=lambda run_id: None)
    """Called with a new run's id once it is committed: the dispatcher's `submit` in the API
    process (its sweep would find the run too, only later)."""

    def __post_init__(self) -> None:
        self.redactors = TenantRedactors(self.database, self.box)
        self.triggers = TriggerMap(
            self.database, self.box, self.registry, ttl=self.settings.trigger_cache_seconds
        )

    @classmethod
    def create(cls, settings: ApiSettings, *, work_pool: str | None = None) -> Service:
        keys = server_keys(settings)
        return cls(
            settings=settings,
            database=Database.from_settings(settings),
            box=SecretBox(keys[0], keys[1:]),
            server_keys=keys,
            registry=default_registry(),
            prefect=PrefectGateway(),
            work_pool=work_pool or WorkerSettings().pool,
        )

    async def close(self) -> None:
        await self.database.dispose()
