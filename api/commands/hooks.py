"""The webhook delivery command: DeliverWebhook, in the order the REST contract sets.

1. the trigger: an enabled workflow of the tenant with a webhook trigger of that id, else 404;
2. the signature, over the raw bytes with the tenant's own secret, else 401;
3. the event as templates see it (`trigger.payload`, `.headers`, `.body`); JSON that does not
   parse under a JSON content type is a 400;
4. `filter` false → `Delivery.FILTERED` (204), no run;
5. the delivery id (`dedupe_key`, else the scheme's own) reserved by a unique key in the
   database: seen before → `Delivery.DUPLICATE` (200) with the first delivery's run;
6. the parameters mapped and checked against the workflow's schema, else 422 (which also
   releases the reservation: the transaction rolls back);
7. the run recorded as `accepted` with its event, committed → `Delivery.ACCEPTED` (202); the
   dispatcher hands it to Prefect after the commit, or its sweep after a restart.

Nothing here waits for Prefect: a burst of deliveries is bounded by the database, not by how
fast Prefect creates flow runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from api.commands.bus import Command, CommandContext
from api.errors import InvalidProblem, NotFoundProblem, Problem
from api.store import runs as store
from api.store.models import TriggerType, new_run_id
from api.triggers import TriggerTarget
from interpreter.definition.events import EventMapping, EventMappingError
from interpreter.definition.parameters import prepare_parameters
from interpreter.definition.problems import ParameterError
from interpreter.definition.problems import Problem as DefinitionProblem
from pieces.base import TriggerStrategy
from pieces.triggers import (
    PayloadError,
    WebhookConfig,
    WebhookSecretError,
    WebhookTrigger,
    WebhookVerificationError,
    webhook_scope,
)


class Delivery(enum.Enum):
    """What became of a delivery that was not refused."""

    ACCEPTED = 202
    DUPLICATE = 200
    FILTERED = 204


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery: Delivery
    run_id: str | None = None


class DeliverWebhook(Command):
    tenant_id: str
    workflow_id: str
    trigger_id: str
    body: bytes
    headers: dict[str, str]
    received_at: datetime
    client_host: str | None = Field(default=None, description="for the audit record")

    async def validate_in(self, context: CommandContext) -> None:
        target = await context.service.triggers.find(
            self.tenant_id, self.workflow_id, self.trigger_id, strategy=TriggerStrategy.WEBHOOK
        )
        if target is None or not isinstance(target.config, WebhookConfig):
            raise NotFoundProblem(
                f"webhook {self.tenant_id}/{self.workflow_id}/{self.trigger_id} (no enabled "
                "workflow of that tenant has that webhook trigger)"
            )
        try:
            WebhookTrigger.verify_request(
                target.config,
                body=self.body,
                headers=self.headers,
                secrets=target.secret_values,
                now=self.received_at,
            )
        except (WebhookVerificationError, WebhookSecretError) as exc:
            raise Problem(401, "Unauthorized", str(exc), slug="invalid-signature") from None
        context.found["target"] = target

    def audit_detail(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "trigger": self.trigger_id,
            "bytes": len(self.body),
            "from": self.client_host,
        }


async def deliver_webhook(command: DeliverWebhook, context: CommandContext) -> DeliveryOutcome:
    target: TriggerTarget = context.found["target"]
    config = target.config
    assert isinstance(config, WebhookConfig)  # checked in validate_in
    try:
        event = webhook_scope(
            trigger_id=command.trigger_id,
            body=command.body,
            headers=command.headers,
            received_at=command.received_at,
        )
    except PayloadError as exc:
        raise Problem(400, "Bad request", str(exc), slug="bad-json") from None
    run_id = new_run_id()
    run_scope = _run_scope(target, event, run_id)
    mapping = EventMapping(target.trigger, {"trigger": event, "run": run_scope})
    try:
        if not mapping.starts():
            return DeliveryOutcome(Delivery.FILTERED)
        delivery_id = mapping.dedupe_key() or WebhookTrigger.delivery_id(
            config, headers=command.headers, payload=event["payload"]
        )
    except EventMappingError as exc:
        raise _mapping_problem(target, [exc.problem]) from None
    try:
        parameters: dict[str, Any] | None = mapping.parameters()
        problems: list[DefinitionProblem] = []
        prepare_parameters(target.definition.get("parameters"), parameters)
    except EventMappingError as exc:
        parameters, problems = None, [exc.problem]
    except ParameterError as exc:
        problems = [DefinitionProblem("/parameters" + p.path, p.message) for p in exc.problems]
    session = context.session
    if delivery_id is not None:
        reservation = await store.reserve_webhook_delivery(
            session,
            tenant_id=command.tenant_id,
            workflow_id=command.workflow_id,
            trigger_id=command.trigger_id,
            delivery_id=delivery_id,
            run_id=run_id,
        )
        if not reservation.is_new:
            return DeliveryOutcome(Delivery.DUPLICATE, str(reservation.run_id))
    if problems or parameters is None:
        raise _mapping_problem(target, problems)  # the reservation rolls back with it
    await store.create_run(
        session,
        tenant_id=command.tenant_id,
        workflow_id=command.workflow_id,
        version=target.version,
        trigger_type=TriggerType.WEBHOOK,
        trigger_id=command.trigger_id,
        parameters=parameters,
        trigger_event=event,
        run_id=run_id,
        created_at=command.received_at,
    )
    accepted = context.service.run_accepted
    context.after_commit(lambda: accepted(run_id))
    return DeliveryOutcome(Delivery.ACCEPTED, run_id)


def _run_scope(target: TriggerTarget, event: dict[str, Any], run_id: str) -> dict[str, Any]:
    """What templates know of the run before it exists (`run` in a trigger's templates): the
    id it will have, and the arrival time as `scheduled_at`; it has not started yet."""
    return {
        "id": run_id,
        "workflow_id": target.workflow_id,
        "tenant": target.tenant_id,
        "version": str(target.version),
        "scheduled_at": event["received_at"],
        "started_at": None,
    }


def _mapping_problem(target: TriggerTarget, problems: list[DefinitionProblem]) -> InvalidProblem:
    return InvalidProblem(
        f"the delivery does not map onto the parameters of workflow {target.workflow_id!r} "
        f"(trigger {target.trigger.id!r}); paths point into the trigger's mapping",
        problems,
        slug="invalid-parameters",
    )
