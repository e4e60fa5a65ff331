"""Which enabled workflow and trigger an event starts: `TriggerMap`. Main entry: `TriggerMap.find`.

Every event from outside (a webhook delivery today; any trigger type a piece registers) is
answered by one question: in this tenant, does an *enabled* workflow have this trigger, of this
type? The answer (`TriggerTarget`: the workflow's current version, the trigger entry, its piece's
parsed config and, for signed triggers, the signing secret's values) is kept in the process for
`ALTLAS_TRIGGER_CACHE_SECONDS`, so a burst of deliveries reads the database once:

- a change made through this process (update, enable, disable, delete, a secret put or deleted)
  forgets the tenant's or workflow's entries at once (`forget`, called after the commit);
- a change made through another API process is seen within `ALTLAS_TRIGGER_CACHE_SECONDS`
  (default 2 s): no entry, found or missing, is served older than that.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from api.store.crypto import SecretBox, SecretDecryptionError
from api.store.database import Database
from api.store.secrets import get_secret_ciphertext
from api.store.workflows import get_current_version
from interpreter.definition.model import Trigger, parse_triggers
from pieces.base import TriggerPiece, TriggerStrategy
from pieces.registry import PieceRegistry, UnknownPieceError

_log = logging.getLogger("altlas.api.triggers")


@dataclass(frozen=True)
class TriggerTarget:
    """An enabled workflow's trigger, as an event of its type needs it."""

    tenant_id: str
    workflow_id: str
    version: int
    definition: dict[str, Any]
    trigger: Trigger
    piece: type[TriggerPiece]
    config: BaseModel
    secret_values: tuple[str, ...] = ()
    """The decrypted values of the secret the trigger's config names (`secret_name`), if any."""


@dataclass(frozen=True)
class _Entry:
    at: float
    targets: dict[str, TriggerTarget]  # by trigger id; empty: no enabled workflow of that id


class TriggerMap:
    """Enabled workflows' triggers by tenant and workflow, cached briefly (module docstring)."""

    def __init__(
        self, database: Database, box: SecretBox, registry: PieceRegistry, *, ttl: float
    ) -> None:
        self._database = database
        self._box = box
        self._registry = registry
        self._ttl = ttl
        self._entries: dict[tuple[str, str], _Entry] = {}
        # Bumped by every `forget`: a read that began before a change must not be cached after
        # it (it may hold what the change replaced).
        self._generation = 0

    async def find(
        self, tenant_id: str, workflow_id: str, trigger_id: str, *, strategy: TriggerStrategy
    ) -> TriggerTarget | None:
        """The enabled workflow's trigger `trigger_id` if its piece starts runs by `strategy`;
        None otherwise (no such tenant, workflow or trigger; disabled; another type)."""
        key = (tenant_id, workflow_id)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is None or now - entry.at >= self._ttl:
            generation = self._generation
            entry = _Entry(now, await self._load(tenant_id, workflow_id))
            if self._ttl > 0 and generation == self._generation:
                self._entries[key] = entry
        target = entry.targets.get(trigger_id)
        if target is None or target.piece.strategy is not strategy:
            return None
        return target

    def forget(self, tenant_id: str, workflow_id: str | None = None) -> None:
        """Drop cached entries: one workflow's, or (None) all of the tenant's."""
        self._generation += 1
        if workflow_id is not None:
            self._entries.pop((tenant_id, workflow_id), None)
            return
        for key in [key for key in self._entries if key[0] == tenant_id]:
            del self._entries[key]

    async def _load(self, tenant_id: str, workflow_id: str) -> dict[str, TriggerTarget]:
        async with self._database.session() as session:
            found = await get_current_version(session, tenant_id=tenant_id, workflow_id=workflow_id)
            if found is None or not found[0].enabled:
                return {}
            workflow, version = found
            targets = {}
            for trigger in parse_triggers(version.definition):
                try:
                    piece = self._registry.trigger(trigger.type)
                    config = piece.parse_config(version.definition["triggers"][trigger.index])
                except (UnknownPieceError, ValueError) as exc:
                    # Stored when the piece was installed (or valid): its events find nothing.
                    _log.warning(
                        "%s/%s: trigger %r cannot be used: %s",
                        tenant_id, workflow_id, trigger.id, exc,
                    )  # fmt: skip
                    continue
                secret_values: tuple[str, ...] = ()
                secret_name = getattr(config, "secret_name", None)
                if isinstance(secret_name, str):
                    ciphertext = await get_secret_ciphertext(
                        session, tenant_id=tenant_id, name=secret_name
                    )
                    secret_values = self._decrypt(ciphertext, tenant_id, secret_name)
                targets[trigger.id] = TriggerTarget(
                    tenant_id=tenant_id,
                    workflow_id=workflow.id,
                    version=version.version,
                    definition=version.definition,
                    trigger=trigger,
                    piece=piece,
                    config=config,
                    secret_values=secret_values,
                )
            return targets

    def _decrypt(self, ciphertext: bytes | None, tenant_id: str, name: str) -> tuple[str, ...]:
        if ciphertext is None:
            return ()
        try:
            return (self._box.decrypt(ciphertext),)
        except SecretDecryptionError:
            _log.warning("tenant %s: secret %r cannot be decrypted", tenant_id, name)
            return ()
