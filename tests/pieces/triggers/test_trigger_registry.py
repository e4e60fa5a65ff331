"""The built-in trigger pieces register through the `altlas.pieces` entry points like any piece."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pieces import PieceKind, PieceRegistry
from pieces.triggers import ManualTrigger, ScheduleTrigger, WebhookTrigger


def test_entry_points_register_the_three_triggers() -> None:
    registry = PieceRegistry.from_entry_points(allow=[])
    assert registry.trigger("manual") is ManualTrigger
    assert registry.trigger("schedule") is ScheduleTrigger
    assert registry.trigger("webhook") is WebhookTrigger
    assert not [
        p
        for p in registry.problems
        if p.entry_point.split(" = ")[0] in {"manual", "schedule", "webhook"}
    ]


@pytest.mark.parametrize("trigger", [ManualTrigger, ScheduleTrigger, WebhookTrigger])
def test_metadata(trigger: type[ManualTrigger | ScheduleTrigger | WebhookTrigger]) -> None:
    assert trigger.kind is PieceKind.TRIGGER
    assert trigger.display_name
    assert trigger.description
    assert trigger.category == "trigger"
    assert trigger.config_schema()["additionalProperties"] is False


def test_manual_has_no_own_fields() -> None:
    assert ManualTrigger.parse_config({"id": "by-hand", "type": "manual"}).model_dump() == {}
    assert ManualTrigger.config_schema()["properties"] == {}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ManualTrigger.parse_config({"id": "by-hand", "type": "manual", "cron": "0 2 * * *"})
