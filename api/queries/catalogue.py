"""The pieces catalogue: every installed piece with its published schemas."""

from __future__ import annotations

from api.errors import NotFoundProblem
from api.presenters import piece_public
from api.schemas.common import Page
from api.schemas.pieces import PiecePublic
from pieces.registry import PieceRegistry, UnknownPieceError


def list_pieces(registry: PieceRegistry, *, limit: int, offset: int) -> Page[PiecePublic]:
    every = [*registry.actions(), *registry.triggers()]
    page = [piece_public(p) for p in every[offset : offset + limit]]
    return Page[PiecePublic](data=page, count=len(every))


def get_piece(registry: PieceRegistry, key: str) -> PiecePublic:
    try:
        return piece_public(registry.any(key))
    except UnknownPieceError as exc:
        raise NotFoundProblem(f"piece {key!r}") from exc
