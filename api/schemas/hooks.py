"""Webhook deliveries: what a delivery is answered (its request body is the sender's own)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DeliveryAccepted(BaseModel):
    """202: the delivery and its run are recorded; the run starts even if this process stops."""

    run_id: str = Field(description="The run the delivery started (`GET /v1/runs/{run_id}`).")


class DeliveryDuplicate(BaseModel):
    """200: the same delivery (its `dedupe_key`, or the scheme's delivery id) came before."""

    run_id: str = Field(description="The run the first delivery started.")
    duplicate: Literal[True] = True
