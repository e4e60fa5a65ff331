"""Webhook deliveries: `POST /v1/hooks/{tenant}/{workflow_id}/{trigger_id}` (signed, no API key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.auth import Principal
from api.commands.hooks import DeliverWebhook, Delivery
from api.deps import BusDep
from api.errors import problem_responses
from api.schemas.hooks import DeliveryAccepted, DeliveryDuplicate

router = APIRouter(prefix="/v1/hooks", tags=["webhooks"])

_ANY_BODY: dict[str, Any] = {
    "requestBody": {
        "description": "The sender's payload, as it signed it: JSON, form-encoded or text.",
        "content": {"*/*": {"schema": {}}},
    }
}


@router.post(
    "/{tenant}/{workflow_id}/{trigger_id}",
    operation_id="deliverWebhook",
    status_code=202,
    response_model=DeliveryAccepted,
    response_description="The delivery's run is recorded; it starts even if this process stops.",
    openapi_extra=_ANY_BODY,
    responses={
        200: {"model": DeliveryDuplicate, "description": "A repeated delivery: its first run."},
        204: {"description": "The trigger's `filter` is false: no run."},
        **problem_responses(400, 401, 404, 413, 422, 503),
    },
)
async def deliver_webhook(
    tenant: str, workflow_id: str, trigger_id: str, request: Request, bus: BusDep
) -> Response:
    """Start a run of the workflow from a signed delivery (the trigger's `verify` scheme).

    No API key: the trigger's scheme checks the signature over the raw body. Answered, in
    this order: 413 (too large), 404 (no enabled workflow of the tenant has this webhook
    trigger), 401 (signature refused), 400 (invalid JSON under a JSON content type), 204
    (`filter` false), 200 (a delivery seen before), 422 (mapped parameters invalid), 202.
    """
    command = DeliverWebhook(
        tenant_id=tenant,
        workflow_id=workflow_id,
        trigger_id=trigger_id,
        body=await request.body(),  # the size limit is enforced while it is read
        headers=dict(request.headers),
        received_at=datetime.now(UTC),
        client_host=request.client.host if request.client else None,
    )
    outcome = await bus.dispatch(command, Principal.webhook(tenant))
    if outcome.delivery is Delivery.FILTERED:
        return Response(status_code=204)
    if outcome.delivery is Delivery.DUPLICATE:
        return JSONResponse(DeliveryDuplicate(run_id=outcome.run_id).model_dump(), 200)
    return JSONResponse(DeliveryAccepted(run_id=outcome.run_id).model_dump(), 202)
