"""The `acme.invoice_total` piece: add up an invoice. Main entry: `InvoiceTotalPiece`.

Amounts are computed in decimal arithmetic and rounded half up to cents, line by line. When the
tenant has the secret `acme_signing_key`, the result carries an HMAC-SHA256 `signature` of
`"<currency>|<subtotal>|<discount>|<tax>|<total>"` (amounts with two decimals, e.g.
`"EUR|100.00|0.00|20.00|120.00"`), so that a later system can check nobody changed the figures.
Quantities, prices and the discount are bounded so that every amount fits in decimal's 28 digits.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import ROUND_HALF_UP, Decimal

from pieces.base import (
    Piece,
    PieceContext,
    PieceError,
    SecretNotFoundError,
    SecretRequirement,
    StrictModel,
)
from pydantic import BaseModel, Field

CENT = Decimal("0.01")


class InvoiceLine(StrictModel):
    """One line of an invoice."""

    description: str = Field(min_length=1, max_length=200, description="What was sold.")
    quantity: float = Field(gt=0, le=1e9, description="How many.")
    unit_price: float = Field(
        ge=0, le=1e12, description="The price of one, in the invoice's currency."
    )


class InvoiceTotalPiece(Piece["InvoiceTotalPiece.Input", "InvoiceTotalPiece.Output"]):
    """Add up an invoice's lines, take off a discount, add tax; sign the result if asked to."""

    key = "acme.invoice_total"
    version = "1.0.0"
    display_name = "Invoice total"
    description = (
        "Add up an invoice's lines, take off a discount and add tax, in exact decimal "
        "arithmetic; signs the totals when the tenant has the secret `acme_signing_key`."
    )
    category = "finance"
    secrets = (
        SecretRequirement(
            name="acme_signing_key",
            description="HMAC-SHA256 key that signs the totals (unset: no signature).",
            optional=True,
        ),
    )

    class Input(StrictModel):
        currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. `EUR`.")
        lines: list[InvoiceLine] = Field(
            min_length=1, max_length=1000, description="The invoice's lines."
        )
        discount: float = Field(
            default=0, ge=0, le=1e15, description="Amount taken off the subtotal, before tax."
        )
        tax_rate_percent: float = Field(
            default=0, ge=0, le=100, description="Tax on the discounted subtotal, in percent."
        )

    class Output(BaseModel):
        currency: str
        lines: int = Field(description="How many lines were added up.")
        subtotal: float
        discount: float
        tax: float
        total: float
        signature: str | None = Field(description="Hex HMAC-SHA256 of the totals, or null.")

    async def run(self, context: PieceContext, input: Input) -> Output:
        subtotal = sum(
            (_cents(_decimal(line.quantity) * _decimal(line.unit_price)) for line in input.lines),
            Decimal(0),
        )
        discount = _cents(_decimal(input.discount))
        if discount > subtotal:
            # The schema cannot compare two fields, so the piece refuses here. Retrying would
            # give the same answer: not retryable.
            raise PieceError(
                f"discount {discount} {input.currency} is larger than the subtotal "
                f"{subtotal} {input.currency}",
                error_type="InvalidDiscount",
                retryable=False,
                details={"subtotal": float(subtotal), "discount": float(discount)},
            )
        tax = _cents((subtotal - discount) * _decimal(input.tax_rate_percent) / 100)
        total = subtotal - discount + tax
        signature = await _signature(context, input.currency, subtotal, discount, tax, total)
        context.logger.info(
            "invoice of %d line(s): total %s %s (%s)",
            len(input.lines),
            total,
            input.currency,
            "signed" if signature else "unsigned",
        )
        return self.Output(
            currency=input.currency,
            lines=len(input.lines),
            subtotal=float(subtotal),
            discount=float(discount),
            tax=float(tax),
            total=float(total),
            signature=signature,
        )


async def _signature(context: PieceContext, currency: str, *amounts: Decimal) -> str | None:
    """The HMAC-SHA256 of the totals with the tenant's signing key, or None without one."""
    try:
        key = await context.secret("acme_signing_key")
    except SecretNotFoundError:
        return None  # the secret is optional
    message = "|".join([currency, *(str(amount) for amount in amounts)])
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def _decimal(value: float) -> Decimal:
    """The decimal a JSON number was written as (`0.1` is exactly 0.1, not the nearest float)."""
    return Decimal(repr(value))


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)
