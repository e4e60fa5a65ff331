"""The `manual` trigger: runs started by hand (UI, CLI or API). Main entry: `ManualTrigger`.

A manual trigger has no fields of its own; its entry only gives the run's `parameters` mapping,
`filter` and `dedupe_key` like any trigger. A workflow without triggers can still be run by hand.
"""

from __future__ import annotations

from typing import ClassVar

from pieces.base import StrictModel, TriggerPiece, TriggerStrategy


class ManualConfig(StrictModel):
    """The `manual` trigger has no own fields: `{"id": "by-hand", "type": "manual"}`."""


class ManualTrigger(TriggerPiece):
    """Start runs on request: from the UI, `altlas-flows run`, or the API's trigger command."""

    key = "manual"
    strategy = TriggerStrategy.MANUAL
    display_name = "Manual"
    description = "Start runs by hand, from the UI, the command line or the API."
    category = "trigger"
    Config: ClassVar[type[ManualConfig]] = ManualConfig
