"""Pieces: the plugin contract (`pieces.base`), the registry (`pieces.registry`) and the built-ins.

Built-in pieces live one module per family: `core` (delay, transform, map, subworkflow, approval),
`http`, `code` (sandboxed Python), `altlas` (ALT_LAS services) and `triggers`.
"""

from pieces.base import (
    Piece,
    PieceContext,
    PieceError,
    PieceKind,
    RunInfo,
    SecretRequirement,
    StrictModel,
    TriggerPiece,
)
from pieces.registry import PieceRegistry, UnknownPieceError, default_registry

__all__ = [
    "Piece",
    "PieceContext",
    "PieceError",
    "PieceKind",
    "PieceRegistry",
    "RunInfo",
    "SecretRequirement",
    "StrictModel",
    "TriggerPiece",
    "UnknownPieceError",
    "default_registry",
]
