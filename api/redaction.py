"""Each tenant's secret values, as a `Redactor` for what the API answers: `TenantRedactors`.

A run's parameters, output and error, and node records, show any of the tenant's secrets as
`***` (also a value a caller pasted into a parameter). The redactor of a tenant is built from
its decrypted secrets and kept `ttl` seconds (a change in this process forgets it at once; one
made through another API process is seen within `ttl`).
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession

from api.store.crypto import SecretBox, SecretDecryptionError
from api.store.database import Database
from api.store.secrets import all_secret_ciphertexts
from interpreter.run.secrets import Redactor

DEFAULT_TTL_SECONDS = 2.0

_log = logging.getLogger("altlas.api")


class TenantRedactors:
    """Redactors by tenant, cached briefly."""

    def __init__(self, database: Database, box: SecretBox, *, ttl: float = DEFAULT_TTL_SECONDS):
        self._database = database
        self._box = box
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Redactor]] = {}

    async def get(self, tenant_id: str, session: AsyncSession | None = None) -> Redactor:
        """The tenant's redactor; read with the caller's `session` when it has one (a request
        that holds a connection must not wait for a second one: at as many concurrent
        requests as the pool has connections, none would get it)."""
        found = self._cache.get(tenant_id)
        now = time.monotonic()
        if found is not None and now - found[0] < self._ttl:
            return found[1]
        if session is not None:
            ciphertexts = await all_secret_ciphertexts(session, tenant_id=tenant_id)
        else:
            async with self._database.session() as own:
                ciphertexts = await all_secret_ciphertexts(own, tenant_id=tenant_id)
        redactor = Redactor()
        for name, ciphertext in ciphertexts.items():
            try:
                redactor.add(self._box.decrypt(ciphertext))
            except SecretDecryptionError:
                # No configured key opens it (a rotation left it behind): its value cannot be
                # known to any run either, so there is nothing of it to hide.
                _log.warning("tenant %s: secret %r cannot be decrypted", tenant_id, name)
        self._cache[tenant_id] = (now, redactor)
        return redactor

    def forget(self, tenant_id: str) -> None:
        self._cache.pop(tenant_id, None)
