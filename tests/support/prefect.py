"""Reading back what Prefect stored about a run (logs), as the Prefect UI would show it."""

from __future__ import annotations

import asyncio
from uuid import UUID


async def flow_run_logs(flow_run_id: str) -> list[str]:
    """Every log message Prefect stored for a flow run and its task runs."""
    from prefect import get_client
    from prefect._internal.concurrency.services import QueueService
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    await asyncio.get_running_loop().run_in_executor(None, QueueService.drain_all, 10)
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return [log.message for log in logs]
