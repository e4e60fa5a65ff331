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

from pieces.base import (
    KEY_PATTERN,
    TRIGGER_KEY_PATTERN,
    AnyPiece,
    Piece,
    PieceKind,
    TriggerPiece,
)

ENTRY_POINT_GROUP = "altlas.pieces"
BUILTIN_DISTRIBUTION = "altlas-workflow-engine"
REFUSED = "distribution not in ALTLAS_PIECES_ALLOW"

logger = logging.getLogger(__name__)


class UnknownPieceError(LookupError):
    """A key that names no registered piece (of the kind looked for).

    Attributes:
        key: the key looked up.
        kind: the kind looked for; `None` when any kind would have done (`PieceRegistry.any`).
        suggestion: the registered key closest to `key`, if one is close.
        refused_from: the distribution that declares `key` but is not in the allow-list.
    """

    def __init__(
        self,
        key: str,
        kind: PieceKind | None,
        known: Iterable[str],
        refused_from: str | None = None,
        withheld: str | None = None,
    ) -> None:
        known_keys = sorted(known)
        close = difflib.get_close_matches(key, known_keys, n=1)
        self.key = key
        self.kind = kind
        refused = refused_from is not None or withheld is not None
        self.suggestion = close[0] if close and not refused else None
        self.refused_from = refused_from
        self.withheld = withheld
        super().__init__(self._message(known_keys))

    def _message(self, known_keys: list[str]) -> str:
        key, dist = self.key, self.refused_from
        if self.withheld is not None:
            allowed = ", ".join(known_keys) or "(none)"
            return f"piece {key!r} is not allowed {self.withheld}; allowed pieces: {allowed}"
        refused = (
            f"{key!r} is installed (distribution {dist!r}) but not allowed here: add {dist!r} "
            "to ALTLAS_PIECES_ALLOW"
        )
        if self.kind is None:  # any kind: no list of every key, the suggestion is what helps
            if dist is not None:
                return f"piece {refused}"
            hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
            return f"unknown piece {key!r}{hint}"
        what, kinds = (
            ("piece", "pieces")
            if self.kind is PieceKind.ACTION
            else ("trigger type", "trigger types")
        )
        known_list = ", ".join(known_keys) or "(none)"
        if dist is not None:
            return f"{what} {refused}; allowed {kinds}: {known_list}"
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        return f"{what} {key!r} is not installed{hint}; known {kinds}: {known_list}"


@dataclass(frozen=True)
class LoadProblem:
    """An entry point not loaded; shown by `altlas-flows pieces list`.

    Broken ones (import error, key mismatch, duplicate key) are also logged as warnings; ones the
    allow-list refused (`reason` is `REFUSED`) only at INFO level.
    """

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
    _withheld: dict[str, str] = field(default_factory=dict)
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
        if key in self._origins:  # one key, one piece: actions and triggers share the names
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
                key,
                PieceKind.ACTION,
                self._actions,
                self._refused.get(key),
                self._withheld.get(key),
            ) from None

    def restricted(self, allowed: Collection[str], *, where: str) -> PieceRegistry:
        """A registry with only the action pieces in `allowed` (triggers all stay).

        Asking it for another installed action says it is not allowed `where` (e.g. "for
        tenant 'acme'"), rather than that it is not installed.
        """
        narrowed = PieceRegistry(
            _actions={k: v for k, v in self._actions.items() if k in allowed},
            _triggers=dict(self._triggers),
            _origins=dict(self._origins),
            _refused=dict(self._refused),
            _withheld={k: where for k in self._actions if k not in allowed},
            problems=list(self.problems),
        )
        narrowed._instances = {k: v for k, v in self._instances.items() if k in allowed}
        return narrowed

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

    def any(self, key: str) -> AnyPiece:
        """The action or trigger piece `key`, for catalogues (`altlas-flows pieces show`).

        Raises:
            UnknownPieceError: (`kind` None) one error whose suggestion considers the keys of
                both kinds, or that says which distribution declares `key` but is not allowed.
        """
        found: AnyPiece | None = self._actions.get(key) or self._triggers.get(key)
        if found is None:
            raise UnknownPieceError(
                key, None, [*self._actions, *self._triggers], self._refused.get(key)
            )
        return found

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
                `problems` instead of stopping the others from loading (broken ones are logged
                as warnings too). A refused entry point is never imported.
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
            # The operator's choice, not a fault: listed by `pieces list` and named when a
            # workflow asks for the piece, but not logged as a warning by every process.
            self._refused[ep.name] = dist
            self._problem(ep, dist, REFUSED, level=logging.INFO)
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

    def _problem(
        self, ep: EntryPoint, dist: str, reason: str, *, level: int = logging.WARNING
    ) -> None:
        self.problems.append(LoadProblem(f"{ep.name} = {ep.value}", dist, reason))
        logger.log(level, "piece entry point %s (%s) not loaded: %s", ep.name, dist, reason)


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
