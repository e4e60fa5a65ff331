"""Built-in trigger pieces: `manual`, `schedule` and `webhook`, registered through entry points.

Each is a `pieces.base.TriggerPiece` whose `Config` validates a trigger entry's own fields; the
plain functions beside them are what the API and the deployment sync call:

- `pieces.triggers.schedule`: `next_fire_times`, `to_prefect_schedule`, `to_deployment_schedule`;
- `pieces.triggers.webhook`: `verify_request` (verifiers per scheme in `signatures`) and
  `delivery_id` (the scheme's own id of a delivery, for deduplication);
- `pieces.triggers.event`: `webhook_scope` / `trigger_scope`, the `trigger` template scope.
"""

from pieces.triggers.event import PayloadError, trigger_scope, webhook_scope
from pieces.triggers.manual import ManualConfig, ManualTrigger
from pieces.triggers.schedule import (
    ScheduleConfig,
    ScheduleTrigger,
    next_fire_times,
    to_deployment_schedule,
    to_prefect_schedule,
)
from pieces.triggers.signatures import (
    FailureReason,
    WebhookSecretError,
    WebhookVerificationError,
)
from pieces.triggers.webhook import WebhookConfig, WebhookTrigger, delivery_id, verify_request

__all__ = [
    "FailureReason",
    "ManualConfig",
    "ManualTrigger",
    "PayloadError",
    "ScheduleConfig",
    "ScheduleTrigger",
    "WebhookConfig",
    "WebhookSecretError",
    "WebhookTrigger",
    "WebhookVerificationError",
    "delivery_id",
    "next_fire_times",
    "to_deployment_schedule",
    "to_prefect_schedule",
    "trigger_scope",
    "verify_request",
    "webhook_scope",
]
