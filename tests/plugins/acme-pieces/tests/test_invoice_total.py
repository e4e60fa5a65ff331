"""Unit tests of `acme.invoice_total`, run alone with `pieces.testing.run_piece` (no Prefect)."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from pieces.base import PieceError
from pieces.testing import StandaloneContext, run_piece
from pydantic import ValidationError

from acme_pieces import InvoiceTotalPiece

LINES = [
    {"description": "Widget", "quantity": 3, "unit_price": 19.99},
    {"description": "Gadget", "quantity": 1, "unit_price": 45.5},
]


async def test_adds_up_lines_discount_and_tax() -> None:
    output = await run_piece(
        InvoiceTotalPiece,
        {"currency": "EUR", "lines": LINES, "discount": 5.47, "tax_rate_percent": 20},
    )
    assert output == {
        "currency": "EUR",
        "lines": 2,
        "subtotal": 105.47,
        "discount": 5.47,
        "tax": 20.0,
        "total": 120.0,
        "signature": None,
    }


async def test_amounts_are_exact_decimals_rounded_half_up_to_cents() -> None:
    # 0.1 + 0.2 is not 0.3 in floats; 3 x 0.335 = 1.005 rounds up to 1.01.
    lines = [
        {"description": "a", "quantity": 1, "unit_price": 0.1},
        {"description": "b", "quantity": 1, "unit_price": 0.2},
        {"description": "c", "quantity": 3, "unit_price": 0.335},
    ]
    output = await run_piece(InvoiceTotalPiece, {"currency": "USD", "lines": lines})
    assert output["subtotal"] == 1.31
    assert output["total"] == 1.31


async def test_signs_the_totals_with_the_tenant_key_and_logs_the_total(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = StandaloneContext(secrets={"acme_signing_key": "k3y-for-tests"})
    with caplog.at_level(logging.INFO, logger="altlas.piece"):
        output = await run_piece(
            InvoiceTotalPiece,
            {"currency": "EUR", "lines": LINES, "tax_rate_percent": 20},
            context=context,
        )
    expected = hmac.new(b"k3y-for-tests", b"EUR|105.47|0.00|21.09|126.56", hashlib.sha256)
    assert output["signature"] == expected.hexdigest()
    assert "invoice of 2 line(s): total 126.56 EUR (signed)" in caplog.messages


async def test_a_discount_above_the_subtotal_is_a_non_retryable_piece_error() -> None:
    with pytest.raises(PieceError) as caught:
        await run_piece(InvoiceTotalPiece, {"currency": "EUR", "lines": LINES, "discount": 200})
    error = caught.value
    assert error.error_type == "InvalidDiscount"
    assert error.retryable is False
    assert error.details == {"subtotal": 105.47, "discount": 200.0}
    assert error.message == "discount 200.00 EUR is larger than the subtotal 105.47 EUR"


async def test_input_is_checked_against_the_model() -> None:
    with pytest.raises(ValidationError) as caught:
        await run_piece(InvoiceTotalPiece, {"currency": "eur", "lines": [], "colour": "red"})
    where = {error["loc"] for error in caught.value.errors()}
    assert where == {("currency",), ("lines",), ("colour",)}
