"""What wallet operations answer (the HTTP layer returns these models as they are)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from protocol import pricing


class PurchaseAnswer(BaseModel):
    """The device's answer to a purchase: the same bytes every time the same order is posted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    payment: str  # base64url of the HPKE-sealed payment JWS
    counter: int


class CreditAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    credit_id: str
    kind: str
    counter: int


class WalletView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str
    counter: int
    time_floor: int
    purses: pricing.Purses
    outbox: tuple[str, ...]
    enrolled: bool
