"""Money: integer minor units and an ISO 4217 code, never floats (DESIGN.md "Signed messages")."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
#: Largest amount accepted anywhere (2^53 - 1: exact in every JSON implementation).
MAX_AMOUNT = 2**53 - 1
Amount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]


class Money(BaseModel):
    """`{"amount": int, "currency": "JPY"}`; amount in minor units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Amount
    currency: Currency

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
