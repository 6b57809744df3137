"""Returns through the API: exact shares per line and per unit, idempotency, the debt
policy, refusals that change nothing, outbox events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.notify.models import OutboxEvent
from patron.scores.models import MemberStats
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.pos.conftest import JPY_BASKET, enrol, purchase


def commit(client: TestClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/pos/transactions", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def give_back(client: TestClient, key: str, transaction_id: str, return_no: str = "RT-1",
              lines: list[dict[str, int]] | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"return_no": return_no, "occurred_at": utcnow().isoformat()}
    if lines is not None:
        body["lines"] = lines
    body.update(extra)
    return client.post(f"/v1/pos/transactions/{transaction_id}/returns", headers=auth(key),
                       json=body)


def balance(database: Database, merchant_id: str, member_id: str) -> int:
    import uuid
    with database.session_scope() as session:
        return ledger.points_balance(session, merchant_id=uuid.UUID(merchant_id),
                                     member_id=uuid.UUID(member_id))


def sound(database: Database) -> None:
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []


def test_returning_one_of_three_lines_gives_back_exactly_its_share(
        client: TestClient, world: World, database: Database, jpy: dict[str, Any]) -> None:
    sale = commit(client, world.a.pos_key, purchase(
        member={"barcode": jpy["member_number"]}, lines=JPY_BASKET, points_to_burn=300))
    # By hand: amounts 700 / 600 / 1234; the 300-point discount by largest remainder is
    # 83 / 71 / 146; paid 617 / 529 / 1088; earn floor((617 x 2 + 0 + 1088) / 100) = 23,
    # split over the weighted 1234 / 0 / 1088 as 12 / 0 / 11.
    assert [line["points_discount"] for line in sale["lines"]] == [83, 71, 146]
    assert [line["points_burned"] for line in sale["lines"]] == [83, 71, 146]
    assert [line["points_earned"] for line in sale["lines"]] == [12, 0, 11]
    assert sale["balance_after"] == 500 - 300 + 23

    response = give_back(client, world.a.pos_key, sale["id"],
                         lines=[{"line_no": 3, "quantity": 1}])
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["refund_amount"], answer["points_clawed_back"],
            answer["points_restored"]) == (1088, 11, 146)
    assert answer["lines"] == [{"line_no": 3, "quantity": 1, "refund_amount": 1088,
                                "points_clawed_back": 11, "points_restored": 146,
                                "miles_clawed_back": 0, "miles_restored": 0}]
    assert answer["balance_after"] == 223 + 146 - 11
    assert balance(database, world.a.merchant_id, jpy["id"]) == 358
    sound(database)


def test_units_returned_one_by_one_add_up_exactly(client: TestClient, world: World,
                                                 database: Database,
                                                 jpy: dict[str, Any]) -> None:
    # 3 x 350 = 1050, 100 points burned: paid 950, 9 points earned.
    sale = commit(client, world.a.pos_key, purchase(
        member={"barcode": jpy["member_number"]}, points_to_burn=100,
        lines=[{"sku": "B", "name": "Bread", "category": "bakery", "quantity": 3,
                "unit_price": 350}]))
    assert (sale["total"], sale["points_earned"]) == (950, 9)
    figures = []
    for number in range(3):
        response = give_back(client, world.a.pos_key, sale["id"], return_no=f"RT-{number}",
                             lines=[{"line_no": 1, "quantity": 1}])
        assert response.status_code == 201, response.text
        body = response.json()
        figures.append((body["refund_amount"], body["points_clawed_back"],
                        body["points_restored"]))
    # floor(x * n / 3) differences: the last unit takes what rounding left.
    assert figures == [(316, 3, 33), (317, 3, 33), (317, 3, 34)]
    assert balance(database, world.a.merchant_id, jpy["id"]) == 500
    again = give_back(client, world.a.pos_key, sale["id"], return_no="RT-9")
    assert again.status_code == 409 and again.json()["code"] == "nothing_to_return"
    sound(database)


def test_whole_return_takes_what_is_left(client: TestClient, world: World,
                                         database: Database, jpy: dict[str, Any]) -> None:
    sale = commit(client, world.a.pos_key, purchase(
        member={"barcode": jpy["member_number"]}, lines=JPY_BASKET, points_to_burn=300))
    first = give_back(client, world.a.pos_key, sale["id"], return_no="RT-1",
                      lines=[{"line_no": 1, "quantity": 1}])
    assert first.status_code == 201, first.text
    rest = give_back(client, world.a.pos_key, sale["id"], return_no="RT-2")
    assert rest.status_code == 201, rest.text
    assert [(line["line_no"], line["quantity"]) for line in rest.json()["lines"]] == [
        (1, 1), (2, 1), (3, 1)]
    both = [first.json(), rest.json()]
    assert sum(r["refund_amount"] for r in both) == sale["total"]
    assert sum(r["points_clawed_back"] for r in both) == sale["points_earned"]
    assert sum(r["points_restored"] for r in both) == sale["points_burned"]
    assert balance(database, world.a.merchant_id, jpy["id"]) == 500
    with database.session_scope() as session:
        stats = session.scalars(select(MemberStats)).one()
        assert stats.spend_minor == 0 and stats.purchase_count == 1
    sound(database)


def test_replay_is_identical_and_a_changed_body_conflicts(client: TestClient, world: World,
                                                          database: Database,
                                                          jpy: dict[str, Any]) -> None:
    sale = commit(client, world.a.pos_key, purchase(
        member={"barcode": jpy["member_number"]}, lines=JPY_BASKET))
    body = {"return_no": "RT-1", "occurred_at": utcnow().isoformat(),
            "lines": [{"line_no": 2, "quantity": 1}]}
    url = f"/v1/pos/transactions/{sale['id']}/returns"
    first = client.post(url, headers=auth(world.a.pos_key), json=body)
    before = snapshot(database)
    second = client.post(url, headers=auth(world.a.pos_key), json=body)
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    other = client.post(url, headers=auth(world.a.pos_key),
                        json={**body, "lines": [{"line_no": 1, "quantity": 1}]})
    assert other.status_code == 409 and other.json()["code"] == "return_conflict"
    assert changed_tables(before, snapshot(database)) == []


def test_points_already_spent_become_a_debt(client: TestClient, world: World,
                                            database: Database, jpy: dict[str, Any]) -> None:
    member = enrol(client, world.a, email="spender@example.com")
    who = {"barcode": member["member_number"]}
    big = commit(client, world.a.pos_key, purchase(
        receipt_no="R-1", member=who,
        lines=[{"sku": "TV", "name": "TV", "quantity": 1, "unit_price": 10_000}]))
    assert big["points_earned"] == 100
    commit(client, world.a.pos_key, purchase(
        receipt_no="R-2", member=who, points_to_burn=100,
        lines=[{"sku": "C", "name": "Candy", "quantity": 1, "unit_price": 100}]))
    response = give_back(client, world.a.pos_key, big["id"])
    assert response.status_code == 201, response.text
    assert response.json()["points_clawed_back"] == 100
    assert response.json()["balance_after"] == -100
    # While in debt the member cannot burn.
    refused = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                          json=purchase(receipt_no="R-3", member=who, points_to_burn=100,
                                        lines=[{"sku": "C", "name": "Candy", "quantity": 1,
                                                "unit_price": 100}]))
    assert refused.status_code == 409 and refused.json()["code"] == "insufficient_points"
    sound(database)


def test_return_events_are_in_the_outbox(client: TestClient, world: World,
                                         database: Database, jpy: dict[str, Any]) -> None:
    sale = commit(client, world.a.pos_key, purchase(
        member={"barcode": jpy["member_number"]}, lines=JPY_BASKET, points_to_burn=300))
    give_back(client, world.a.pos_key, sale["id"], lines=[{"line_no": 3, "quantity": 1}])
    with database.session_scope() as session:
        rows = {event.type: event.payload for event in session.scalars(select(OutboxEvent))}
    assert rows["transaction.returned"]["refund_amount"] == 1088
    returned = rows["points.returned"]
    assert (returned["points_clawed_back"], returned["points_restored"],
            returned["balance_after"]) == (11, 146, 358)


def test_anonymous_purchase_returns_money_only(client: TestClient, world: World,
                                               database: Database) -> None:
    sale = commit(client, world.a.pos_key, purchase(lines=JPY_BASKET))
    response = give_back(client, world.a.pos_key, sale["id"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["refund_amount"], body["points_clawed_back"], body["balance_after"]) == (
        2534, 0, None)


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"lines": [{"line_no": 9, "quantity": 1}]}, 422, "unknown_line"),
    ({"lines": [{"line_no": 1, "quantity": 1}, {"line_no": 1, "quantity": 1}]}, 422,
     "duplicate_line"),
    ({"lines": [{"line_no": 1, "quantity": 0}]}, 422, "invalid_quantity"),
    ({"lines": [{"line_no": 1, "quantity": -2}]}, 422, "invalid_quantity"),
    ({"lines": [{"line_no": 1, "quantity": 3}]}, 409, "return_exceeds_purchase"),
    ({"lines": [{"line_no": 1, "quantity": 1.0}]}, 422, "validation_failed"),
    ({"lines": []}, 422, "validation_failed"),
    ({"occurred_at": "2020-01-01T00:00:00+00:00"}, 422, "return_before_purchase"),
    ({"occurred_at": "0001-01-01T00:00:00+09:00"}, 422, "validation_failed"),
    ({"occurred_at": (utcnow() + timedelta(hours=1)).isoformat()}, 422,
     "occurred_at_in_future"),
    ({"occurred_at": "2026-11-22T10:00:00"}, 422, "validation_failed"),
    ({"card": "4111111111111111"}, 422, "validation_failed"),
])
def test_bad_returns_change_nothing(client: TestClient, world: World, database: Database,
                                    jpy: dict[str, Any], change: dict[str, Any], status: int,
                                    code: str) -> None:
    sale = commit(client, world.a.pos_key, purchase(
        member={"barcode": jpy["member_number"]}, lines=JPY_BASKET, points_to_burn=300))
    before = snapshot(database)
    body = {"return_no": "RT-1", "occurred_at": utcnow().isoformat(), **change}
    response = client.post(f"/v1/pos/transactions/{sale['id']}/returns",
                           headers=auth(world.a.pos_key), json=body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.headers["content-type"].startswith("application/problem+json")
    assert changed_tables(before, snapshot(database)) == []


def test_only_the_merchants_terminals_can_return(client: TestClient, world: World,
                                                 database: Database,
                                                 jpy: dict[str, Any]) -> None:
    sale = commit(client, world.a.pos_key, purchase(member={"barcode": jpy["member_number"]}))
    before = snapshot(database)
    other = give_back(client, world.b.pos_key, sale["id"])
    assert other.status_code == 404
    merchant = give_back(client, world.a.merchant_key, sale["id"])
    assert merchant.status_code == 403
    missing = give_back(client, world.a.pos_key, "00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert changed_tables(before, snapshot(database)) == []


def test_unit_shares_at_the_edges() -> None:
    from patron.pos.models import PosTransactionLine
    from patron.pos.returns import portion
    from patron.pos.service import shares

    def line(quantity: int, amount: int, earned: int, burned: int = 0,
             discount: int = 0) -> PosTransactionLine:
        return PosTransactionLine(quantity=quantity, amount=amount, voucher_discount=0,
                                  points_discount=discount,
                                  miles_discount=0, points_earned=earned,
                                  points_burned=burned, miles_earned=earned, miles_burned=0)

    # One point over seven units: only the last unit returned carries it.
    seven = line(7, 700, 1)
    assert [portion(seven, before=n - 1, after=n).points_clawed_back
            for n in range(1, 8)] == [0, 0, 0, 0, 0, 0, 1]
    # Returning 2 then 5 units gives the same totals as 7 at once.
    odd = line(7, 1000, 9, burned=5, discount=5)
    parts = [portion(odd, before=0, after=2), portion(odd, before=2, after=7)]
    whole = portion(odd, before=0, after=7)
    for name in ("refund_amount", "points_clawed_back", "points_restored",
                 "miles_clawed_back"):
        assert sum(getattr(part, name) for part in parts) == getattr(whole, name)
    assert (whole.refund_amount, whole.points_clawed_back, whole.points_restored) == (
        995, 9, 5)
    # A free line carries nothing; nothing to split is all zeros; all-zero weights split
    # as evenly as possible rather than failing.
    assert portion(line(3, 0, 0), before=0, after=3).refund_amount == 0
    assert shares(0, [5, 0]) == [0, 0]
    assert shares(5, [0, 0]) == [3, 2]
