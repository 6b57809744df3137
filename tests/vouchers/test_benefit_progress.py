"""A member's place on the benefit rules — a stamp card's "7 of 10" — through the API and
on the wallet (docs/vouchers.md, "Threshold benefits")."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from patron.db import Database
from patron.vouchers.benefits.rules import Mode, position
from tests.conftest import World, auth
from tests.web.people import join, text_of


def test_a_cards_position_is_the_count_on_the_current_card_and_the_cards_completed() -> None:
    assert position(Mode.every, threshold=10, count=0) == (0, 0)
    assert position(Mode.every, threshold=10, count=7) == (7, 0)
    assert position(Mode.every, threshold=10, count=23) == (3, 2)
    assert position(Mode.once, threshold=10, count=7) == (7, 0)
    assert position(Mode.once, threshold=10, count=23) == (10, 1)


def _rule(client: TestClient, key: str, **body: Any) -> str:
    offer = client.post("/v1/offers", headers=auth(key), json={
        "name": "Free coffee", "kind": "amount_off", "value": 400}).json()["id"]
    made = client.post("/v1/benefit-rules", headers=auth(key), json={
        "name": "Coffee card", "offer_id": offer, **body})
    assert made.status_code == 201, made.text
    rule_id: str = made.json()["id"]
    return rule_id


def test_the_member_sees_their_stamps_and_a_merchant_only_its_own_rules(
        app: Any, client: TestClient, database: Database, world: World) -> None:
    card = _rule(client, world.a.merchant_key, measure="purchases", mode="every", threshold=3)
    _rule(client, world.b.merchant_key, measure="purchases", mode="every", threshold=5)
    member = join(app, database, world.a.number)
    for receipt in range(4):
        sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
            "receipt_no": f"S-{receipt}", "occurred_at": "2026-12-07T10:00:00+09:00",
            "currency": "JPY", "member": {"member_id": member.member_id},
            "lines": [{"sku": "CF", "name": "Coffee", "quantity": 1, "unit_price": 400}]})
        assert sale.status_code == 201, sale.text
    seen = client.get(f"/v1/members/{member.member_id}/benefit-progress",
                      headers=auth(world.a.merchant_key))
    assert seen.status_code == 200
    [progress] = seen.json()["items"]
    assert (progress["rule_id"], progress["count"], progress["filled"],
            progress["completed"], progress["threshold"]) == (card, 4, 1, 1, 3)
    # Merchant B has no membership of the member: the member is not there for it.
    assert client.get(f"/v1/members/{member.member_id}/benefit-progress",
                      headers=auth(world.b.merchant_key)).status_code == 404
    wallet = text_of(member.client.get("/wallet"))
    assert "Coffee card" in wallet and "1 of 3" in wallet and "1 card completed" in wallet
