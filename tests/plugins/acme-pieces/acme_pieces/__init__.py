"""ACME's pieces for the ALT_LAS Workflow Engine. Main entry: `InvoiceTotalPiece`."""

from acme_pieces.invoice import InvoiceTotalPiece

__all__ = ["InvoiceTotalPiece"]
