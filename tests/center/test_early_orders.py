"""An order's crypto made before its write transaction (`OrderService._sign_early`, docs/center-commerce.md
"Workers"): used only when the rows read under the device's lock are the ones it was made for. A device
re-bound to another KEM key, or an item whose row changed, since this process last saw them, gets the order
the transaction makes itself: its Ke opens with the device's current key, its price is the item's current.
Orders are signed early only in one of several workers (`workers > 1`); one worker signs inside."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from center.db import tx
from center.db.commerce import Device
from center.db.models import Item
from center.services.catalog import CatalogService
from center.services.common import canonical
from center.services.orders import EarlyOrder, OrderService
from center.settings import CenterSettings
from protocol.messages import Jwk
from tests.center.commerce import Center, SoftDevice, _key, decrypt
from tests.center.conftest import Media, add

PRICE = 300


@pytest.fixture
def early(monkeypatch: pytest.MonkeyPatch) -> list[EarlyOrder | None]:
    """Every early order made (None: none could be made), in order."""
    made: list[EarlyOrder | None] = []
    original = OrderService._sign_early

    def recording(self: OrderService, request: object) -> EarlyOrder | None:
        result = original(self, request)  # type: ignore[arg-type]
        made.append(result)
        return result

    monkeypatch.setattr(OrderService, "_sign_early", recording)
    return made


def _content(center: Center, device: SoftDevice, answer: dict[str, str]) -> bytes:
    _order, ke = device.open_order(center.commerce, answer["order"])
    r = center.content(device, answer["order_id"])
    assert r.status_code == 200
    return decrypt(r.content, ke)


def test_an_order_signed_early_is_the_answer_when_the_rows_are_unchanged(
    settings: CenterSettings, catalog: CatalogService, media: Media, early: list[EarlyOrder | None]
) -> None:
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings.model_copy(update={"workers": 2}))
    device = center.device()
    center.fund(device, 3 * PRICE)
    first = center.order(device, item)
    assert first.status_code == 201
    assert early == [None]  # nothing seen yet: made inside the transaction
    second = center.order(device, item)
    assert second.status_code == 201
    made = early[1]
    assert made is not None
    assert second.json()["order_id"] == made.order_id
    assert second.json()["order"] == made.token
    assert _content(center, device, second.json()) == media.text.read_bytes()


def test_one_worker_signs_inside_the_transaction(
    settings: CenterSettings, catalog: CatalogService, media: Media, early: list[EarlyOrder | None]
) -> None:
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings)
    device = center.device()
    center.fund(device, 3 * PRICE)
    for _ in range(2):
        assert center.order(device, item).status_code == 201
    assert early == []


def test_a_device_rebound_since_gets_an_order_for_its_new_key(
    settings: CenterSettings, catalog: CatalogService, media: Media, early: list[EarlyOrder | None]
) -> None:
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings.model_copy(update={"workers": 2}))
    device = center.device()
    center.fund(device, 3 * PRICE)
    assert center.order(device, item).status_code == 201
    device.kem = _key()  # another process re-bound the device (center device reset + enrollment)
    with tx.write(center.commerce.sessions) as session:
        session.execute(
            update(Device)
            .where(Device.device_id == device.device_id)
            .values(kem_jwk=canonical(Jwk.from_public_key(device.kem.public_key()).model_dump()))
        )
    r = center.order(device, item)
    assert r.status_code == 201
    made = early[-1]
    assert made is not None  # made for the old key …
    assert r.json()["order_id"] != made.order_id  # … and not used
    assert _content(center, device, r.json()) == media.text.read_bytes()  # Ke opens with the new key
    assert center.report()["checks"]["ok"]


def test_an_item_changed_since_gets_an_order_for_its_current_row(
    settings: CenterSettings, catalog: CatalogService, media: Media, early: list[EarlyOrder | None]
) -> None:
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings.model_copy(update={"workers": 2}))
    device = center.device()
    center.fund(device, 3 * PRICE)
    assert center.order(device, item).status_code == 201
    with tx.write(center.commerce.sessions) as session:
        session.execute(update(Item).where(Item.item_id == item).values(price_amount=PRICE + 1))
    r = center.order(device, item)
    assert r.status_code == 201
    made = early[-1]
    assert made is not None
    assert r.json()["order_id"] != made.order_id
    order, _ke = device.open_order(center.commerce, r.json()["order"])
    assert order.price.amount == PRICE + 1
    assert center.report()["checks"]["ok"]
