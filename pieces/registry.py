"""The piece registry: which pieces exist in this process, found through entry points.

Main entry: `default_registry()`. Built-in pieces are declared in this distribution's own
`pyproject.toml` under the `altlas.pieces` entry-point group, exactly as third-party packages
declare theirs: there is one code path for both. An entry point's name is the piece key and its
value the piece class:

    [project.entry-points."altlas.pieces"]
    "acme.invoice" = "acme_pieces:InvoicePiece"
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pieces.base import KEY_PATTERN, TRIGGER_KEY_PATTERN, Piece, PieceKind, TriggerPiece

ENTRY_POINT_GROUP = "altlas.pieces"
BUILTIN_DISTRIBUTION = "altlas-workflow-engine"

logger = logging.getLogger(__name__)


class UnknownPieceError(LookupError):
    """A node or trigger names a piece that is not registered."""

    def __init__(
        self, key: str, kind: PieceKind, known: Iterable[str], refused_from: str | None = None
    ) -> None:
        known_list = ", ".join(sorted(known)) or "(none)"
        what, kinds = (
            ("piece", "pieces") if kind is PieceKind.ACTION else ("trigger type", "trigger types")
        )
        if refused_from is not None:
            message = (
                f"{what} {key!r} is installed (distribution {refused_from!r}) but not allowed "
                f"here: add {refused_from!r} to ALTLAS_PIECES_ALLOW; allowed {kinds}: {known_list}"
            )
        else:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"{what} {key!r} is not installed{hint}; known {kinds}: {known_list}"
        super().__init__(message)
        self.key = key
        self.kind = kind


@dataclass(frozen=True)
class LoadProblem:
    """An entry point not loaded (broken or refused); shown by `altlas-flows pieces list`."""

    entry_point: str
    distribution: str
    reason: str


@dataclass(eq=False)
class PieceRegistry:
    """Pieces by key, split into actions and triggers, with where each came from."""

    _actions: dict[str, type[Piece[Any, Any]]] = field(default_factory=dict)
    _triggers: dict[str, type[TriggerPiece]] = field(default_factory=dict)
    _origins: dict[str, str] = field(default_factory=dict)
    _instances: dict[str, Piece[Any, Any]] = field(default_factory=dict)
    _refused: dict[str, str] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)

    def register(self, piece: Any, *, origin: str = "(registered in code)") -> None:
        """Add a piece class; raises `ValueError` on a malformed or duplicate key."""
        if isinstance(piece, type) and issubclass(piece, Piece):
            table: dict[str, Any] = self._actions
            pattern = KEY_PATTERN
        elif isinstance(piece, type) and issubclass(piece, TriggerPiece):
            table = self._triggers
            pattern = TRIGGER_KEY_PATTERN
        else:
            raise TypeError(f"{piece!r} is not a Piece or TriggerPiece subclass")
        key = getattr(piece, "key", None)
        if not isinstance(key, str) or not re.match(pattern, key):
            raise ValueError(f"{piece.__name__}: key {key!r} does not match {pattern}")
        if key in table:
            raise ValueError(
                f"piece {key!r} from {origin} is already registered by {self._origins[key]}"
            )
        table[key] = piece
        self._origins[key] = origin

    def action(self, key: str) -> type[Piece[Any, Any]]:
        """The action piece class for `key`; raises `UnknownPieceError` listing the known keys."""
        try:
            return self._actions[key]
        except KeyError:
            raise UnknownPieceError(
                key, PieceKind.ACTION, self._actions, self._refused.get(key)
            ) from None

    def instance(self, key: str) -> Piece[Any, Any]:
        """The shared instance of action piece `key` (pieces keep no per-run state)."""
        found = self._instances.get(key)
        if found is None:
            found = self._instances[key] = self.action(key)()
        return found

    def trigger(self, key: str) -> type[TriggerPiece]:
        """The trigger piece class for `key`; raises `UnknownPieceError` listing the known types."""
        try:
            return self._triggers[key]
        except KeyError:
            raise UnknownPieceError(
                key, PieceKind.TRIGGER, self._triggers, self._refused.get(key)
            ) from None

    def has_action(self, key: str) -> bool:
        """Whether an action piece `key` is registered."""
        return key in self._actions

    def actions(self) -> list[type[Piece[Any, Any]]]:
        """Action pieces sorted by key."""
        return [self._actions[k] for k in sorted(self._actions)]

    def triggers(self) -> list[type[TriggerPiece]]:
        """Trigger pieces sorted by key."""
        return [self._triggers[k] for k in sorted(self._triggers)]

    def origin(self, key: str) -> str:
        """The distribution (or other origin) a piece was registered from."""
        return self._origins[key]

    @classmethod
    def from_entry_points(cls, *, allow: Collection[str] | None = None) -> PieceRegistry:
        """Load every `altlas.pieces` entry point whose distribution is allowed.

        Args:
            allow: distribution names allowed besides this engine's own; `None` allows every
                installed distribution. Refused and broken entry points are recorded in
                `problems` (and logged) instead of stopping the others from loading.
        """
        registry = cls()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_sort_key):
            registry._load(ep, allow)
        return registry

    def _load(self, ep: EntryPoint, allow: Collection[str] | None) -> None:
        dist = ep.dist.name if ep.dist is not None else "(unknown distribution)"
        allowed = (
            dist == BUILTIN_DISTRIBUTION
            or allow is None
            or _normalise(dist) in {_normalise(name) for name in allow}
        )
        if not allowed:
            self._refused[ep.name] = dist
            self._problem(ep, dist, "distribution not in ALTLAS_PIECES_ALLOW")
            return
        try:
            piece = ep.load()
            if getattr(piece, "key", None) != ep.name:
                raise ValueError(
                    f"entry point name {ep.name!r} differs from the class key "
                    f"{getattr(piece, 'key', None)!r}"
                )
            self.register(piece, origin=dist)
        except Exception as exc:  # one broken plugin must not stop the others
            self._problem(ep, dist, f"{type(exc).__name__}: {exc}")

    def _problem(self, ep: EntryPoint, dist: str, reason: str) -> None:
        self.problems.append(LoadProblem(f"{ep.name} = {ep.value}", dist, reason))
        logger.warning("piece entry point %s (%s) not loaded: %s", ep.name, dist, reason)


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _sort_key(ep: EntryPoint) -> tuple[int, str]:
    # Built-ins first, so that a third-party duplicate is the one reported.
    builtin = ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION
    return (0 if builtin else 1, ep.name)


@lru_cache(maxsize=1)
def default_registry() -> PieceRegistry:
    """The registry of this process, loaded once from entry points under `ALTLAS_PIECES_ALLOW`."""
    from pieces.settings import get_piece_settings

    return PieceRegistry.from_entry_points(allow=get_piece_settings().pieces_allow)
