"""The pieces catalogue: every installed piece with its published input and output schemas."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PageDep, ServiceDep, TenantDep
from api.errors import problem_responses
from api.queries.catalogue import get_piece as find_piece
from api.queries.catalogue import list_pieces as all_pieces
from api.schemas.common import Page
from api.schemas.pieces import PiecePublic

router = APIRouter(prefix="/v1/pieces", tags=["pieces"])


@router.get("", operation_id="listPieces", responses=problem_responses(401, 422))
async def list_pieces(service: ServiceDep, caller: TenantDep, page: PageDep) -> Page[PiecePublic]:
    """The pieces (actions, then triggers, by key) installed in the service."""
    return all_pieces(service.registry, limit=page.limit, offset=page.offset)


@router.get("/{key}", operation_id="getPiece", responses=problem_responses(401, 404))
async def get_piece(key: str, service: ServiceDep, caller: TenantDep) -> PiecePublic:
    """One piece."""
    return find_piece(service.registry, key)
