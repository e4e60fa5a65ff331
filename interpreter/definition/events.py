"""What a trigger entry makes of an event: `EventMapping.of(trigger, scope)`. Imports no Prefect.

A trigger entry (`triggers[i]` of a definition) says, with templates over the event, whether the
event starts a run (`filter`), which events are the same event (`dedupe_key`) and the run's
parameters (`parameters`). The templates see two names:

- `trigger`: the event (`{"type", "id", "payload", "headers", "body", "received_at"}`, see
  `pieces.triggers.event`);
- `run`: what is known of the run before it exists: `workflow_id`, `tenant`, `version` and
  `scheduled_at` (the schedule's fire time for a schedule, the arrival time otherwise); for a
  webhook delivery also `id` (the id the run will get) and `started_at` (null).

The service maps a webhook delivery when it arrives (a mapping that fails is answered 422); the
engine maps a schedule's event when the schedule fires (only then is `run.scheduled_at` known).
Each step is its own method so that a caller can keep the order the REST contract sets (filter,
then the duplicate check, then the parameters).

Example:
    ```python
    mapping = EventMapping(trigger, {"trigger": scope, "run": {"scheduled_at": ...}})
    if mapping.starts():
        key, parameters = mapping.dedupe_key(), mapping.parameters()
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interpreter.definition.model import Trigger
from interpreter.definition.problems import Problem, pointer
from interpreter.definition.templates import render, truthy
from pieces.base import PieceError


class EventMappingError(ValueError):
    """A template of the trigger entry failed on this event; `problem.path` points into the
    trigger entry (`/filter`, `/dedupe_key`, `/parameters/<name>`)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class EventMapping:
    """One event seen through one trigger entry (see the module docstring)."""

    def __init__(self, trigger: Trigger, scope: Mapping[str, Any]) -> None:
        self.trigger = trigger
        self.scope = scope

    def starts(self) -> bool:
        """Whether the event starts a run: the `filter`'s truth (no filter: always)."""
        if self.trigger.filter is None:
            return True
        return truthy(self._render(self.trigger.filter, "filter"))

    def dedupe_key(self) -> str | None:
        """The rendered `dedupe_key` as text; None without one, or when it renders empty."""
        if self.trigger.dedupe_key is None:
            return None
        value = self._render(self.trigger.dedupe_key, "dedupe_key")
        return None if value is None or value == "" else str(value)

    def parameters(self) -> dict[str, Any]:
        """The run's parameters: each entry of the trigger's `parameters` rendered."""
        return {
            name: self._render(value, "parameters", name)
            for name, value in self.trigger.parameters.items()
        }

    def _render(self, value: Any, *where: str) -> Any:
        try:
            return render(value, self.scope)
        except PieceError as exc:  # a template failed (or grew past its bounds) on this event
            raise EventMappingError(Problem(pointer(*where), exc.message)) from None
