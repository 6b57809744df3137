"""What a reader shows: the points of a tap itemised (the reader's, each visit campaign's
with its message), the facility's receipt content (per store, per reader), and a
facility's list of its visits (docs/operations.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.campaigns.control import held_out
from patron.db import Database
from patron.kit.clock import clock
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.pos.test_returns import balance

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CARD = "04:A1:B2:C3:D4:E5:F6"
OTHER_CARD = "04:A1:B2:C3:D4:E5:F7"
EMPTY = {"facility_info": None, "questionnaire_url": None, "consent_prompt": None}


@pytest.fixture(autouse=True)
def _frozen() -> None:
    clock.freeze(NOW)


def enrol(client: TestClient, world: World, card: str, **fields: Any) -> dict[str, Any]:
    member = client.post("/v1/members", headers=auth(world.a.merchant_key),
                         json={"card_uid": card, **fields})
    assert member.status_code == 201, member.text
    body: dict[str, Any] = member.json()
    return body


def tap(client: TestClient, world: World, card: str = CARD, **body: Any) -> dict[str, Any]:
    tapped = client.post("/v1/pos/taps", headers=auth(world.a.reader_key),
                         json={"card_uid": card, **body})
    assert tapped.status_code == 201, tapped.text
    answer: dict[str, Any] = tapped.json()
    return answer


def visit_campaign(client: TestClient, world: World) -> dict[str, Any]:
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Visit bonus", "trigger": "visit", "conditions": {"all": []},
        "actions": [{"type": "bonus_points", "points": 3},
                    {"type": "message", "text": "来館ありがとうございます"}]})
    assert created.status_code == 201, created.text
    campaign: dict[str, Any] = created.json()
    return campaign


def test_the_tap_answer_itemises_reader_and_campaign_points(
        client: TestClient, world: World, database: Database) -> None:
    campaign = visit_campaign(client, world)
    member = enrol(client, world, CARD)
    answer = tap(client, world, tap_id="t-1")
    given = {"campaign_id": campaign["id"], "name": "Visit bonus", "points": 3,
             "message": "来館ありがとうございます", "voucher": None}
    assert answer == {
        "visit_id": answer["visit_id"], "member_id": member["id"], "points_granted": 5,
        "reason": None, "campaign_points": 3, "points_total": 8, "campaigns": [given],
        "balance": 8, "receipt": EMPTY, "occurred_at": "2026-11-20T09:00:00Z"}
    assert balance(database, world.a.merchant_id, member["id"]) == 8
    # A resent tap answers the same visit, itemised the same, and adds nothing.
    assert tap(client, world, tap_id="t-1") == answer
    assert balance(database, world.a.merchant_id, member["id"]) == 8

    # Within the reader's interval: no reader points, the campaign's bonus again.
    clock.freeze(NOW + timedelta(minutes=10))
    later = tap(client, world, tap_id="t-2")
    assert (later["points_granted"], later["reason"], later["campaign_points"],
            later["points_total"], later["campaigns"], later["balance"]) == (
        0, "interval", 3, 3, [given], 11)
    assert balance(database, world.a.merchant_id, member["id"]) == 11


def test_a_held_out_member_sees_no_campaign(client: TestClient, world: World,
                                            database: Database) -> None:
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Visit bonus", "trigger": "visit", "conditions": {"all": []},
        "actions": [{"type": "bonus_points", "points": 3}], "control_share_bp": 5000})
    assert created.status_code == 201, created.text
    campaign_id = uuid.UUID(created.json()["id"])
    # The first of a few members the control group holds out.
    for index in range(64):
        card = f"04:A1:B2:C3:D4:{index:02X}:00"
        member = enrol(client, world, card)
        if held_out(campaign_id=campaign_id, member_id=uuid.UUID(member["id"]),
                    share_bp=5000):
            break
    else:  # pragma: no cover - 64 members all in the treatment: 1 in 2^64
        pytest.fail("no member held out")
    answer = tap(client, world, card)
    assert (answer["campaigns"], answer["campaign_points"], answer["points_total"],
            answer["balance"]) == ([], 0, 5, 5)


def test_receipt_content_is_set_per_store_and_the_readers_fields_override(
        client: TestClient, world: World, database: Database) -> None:
    enrol(client, world, CARD)
    store_receipt = {"facility_info": "営業時間 10:00〜22:00\r\n駐車場あり",
                     "questionnaire_url": "https://example.jp/survey?s=main",
                     "consent_prompt": "アンケート結果の利用に同意しますか?"}
    stored = client.patch(f"/v1/stores/{world.a.store_id}", headers=auth(world.a.merchant_key),
                          json={"receipt": store_receipt})
    assert stored.status_code == 200, stored.text
    assert stored.json()["receipt"] == store_receipt
    assert tap(client, world)["receipt"] == store_receipt

    # The reader's own facility information wins; its other fields show the store's.
    own = client.patch(f"/v1/terminals/{world.a.reader_id}", headers=auth(world.operator_key),
                       json={"receipt": {"facility_info": "Gate 2: pool and sauna"}})
    assert own.status_code == 200, own.text
    assert own.json()["receipt"] == {**EMPTY, "facility_info": "Gate 2: pool and sauna"}
    assert own.json()["points_per_tap"] == 5  # the rest of the terminal is kept
    assert tap(client, world)["receipt"] == {**store_receipt,
                                             "facility_info": "Gate 2: pool and sauna"}
    # A field left out is kept; null clears it (the store's shows again).
    client.patch(f"/v1/stores/{world.a.store_id}", headers=auth(world.a.merchant_key),
                 json={"receipt": {"consent_prompt": None}})
    cleared = client.patch(f"/v1/terminals/{world.a.reader_id}",
                           headers=auth(world.a.merchant_key),
                           json={"receipt": {"facility_info": None}})
    assert cleared.json()["receipt"] == EMPTY
    assert tap(client, world)["receipt"] == {**store_receipt, "consent_prompt": None}
    read = client.get(f"/v1/stores/{world.a.store_id}", headers=auth(world.a.merchant_key))
    assert read.json()["receipt"] == {**store_receipt, "consent_prompt": None}


@pytest.mark.parametrize("receipt", [
    {"questionnaire_url": "javascript:alert(1)"},
    {"questionnaire_url": "https://"},
    {"questionnaire_url": "https://example.jp/" + "a" * 500},
    {"facility_info": "bell\x07"},
    {"consent_prompt": "tab\there"},
    {"facility_info": "x" * 1001},
    {"consent_prompt": ""},
    {"consent_prompt": "x" * 501},
    {"colour": "red"},
])
def test_bad_receipt_content_is_refused_and_nothing_changes(
        client: TestClient, world: World, database: Database, receipt: dict[str, Any]) -> None:
    before = snapshot(database)
    for path in (f"/v1/stores/{world.a.store_id}", f"/v1/terminals/{world.a.reader_id}"):
        refused = client.patch(path, headers=auth(world.a.merchant_key),
                               json={"receipt": receipt})
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "validation_failed"
    assert changed_tables(before, snapshot(database)) == []


def test_only_the_merchant_and_the_operator_set_a_stores_receipt(
        client: TestClient, world: World, database: Database) -> None:
    before = snapshot(database)
    body = {"receipt": {"facility_info": "Closed today"}}
    path = f"/v1/stores/{world.a.store_id}"
    assert client.patch(path, headers=auth(world.b.merchant_key), json=body).status_code == 404
    assert client.patch(path, headers=auth(world.a.reader_key), json=body).status_code == 403
    assert client.patch(path, headers=auth(world.a.pos_key), json=body).status_code == 403
    assert changed_tables(before, snapshot(database)) == []
    assert client.patch(path, headers=auth(world.operator_key), json=body).status_code == 200


def test_a_facility_lists_its_visits_with_permitted_member_information(
        client: TestClient, world: World, database: Database) -> None:
    ann = enrol(client, world, CARD, phone="+81 90-1234-5678", email="ann@example.com",
                birth_year=1990, gender="female", postcode="150-0001")
    ben = enrol(client, world, OTHER_CARD)
    first = tap(client, world)
    clock.freeze(NOW + timedelta(minutes=5))
    second = tap(client, world, OTHER_CARD)
    clock.freeze(NOW + timedelta(minutes=10))
    third = tap(client, world)

    path = f"/v1/stores/{world.a.store_id}/visits"
    listed = client.get(path, headers=auth(world.a.merchant_key))
    assert listed.status_code == 200, listed.text

    def row(answer: dict[str, Any], member: dict[str, Any], at: str) -> dict[str, Any]:
        return {"visit_id": answer["visit_id"], "terminal_id": world.a.reader_id,
                "occurred_at": at, "points_granted": answer["points_granted"],
                "reason": answer["reason"],
                "member": {"member_id": member["id"],
                           "member_number": member["member_number"]}}

    expected = [row(third, ann, "2026-11-20T09:10:00Z"), row(second, ben, "2026-11-20T09:05:00Z"),
                row(first, ann, "2026-11-20T09:00:00Z")]
    assert listed.json() == {"visits": expected, "next_cursor": None}
    assert "ann@example.com" not in listed.text and "5678" not in listed.text
    assert client.get(path, headers=auth(world.operator_key)).json()["visits"] == expected

    # One at a time through the cursor, and the time filters.
    seen, cursor = [], None
    while True:
        page = client.get(path, headers=auth(world.a.merchant_key),
                          params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen.extend(page["visits"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    window = client.get(path, headers=auth(world.a.merchant_key), params={
        "since": "2026-11-20T18:05:00+09:00", "until": "2026-11-20T09:10:00Z"})
    assert window.json()["visits"] == [expected[1]]
    bad = client.get(path, headers=auth(world.a.merchant_key), params={"cursor": "nope"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")

    # Its terminals and other merchants: 404, as for a store that does not exist.
    for key in (world.a.reader_key, world.a.pos_key, world.b.merchant_key,
                world.b.reader_key):
        refused = client.get(path, headers=auth(key))
        assert (refused.status_code, refused.json()["code"]) == (404, "not_found"), key
