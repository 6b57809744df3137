"""The history import through its bulk endpoints (docs/imports.md): members, purchases,
what is refused and why, what imported purchases do and do not set off, and who may."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from patron.campaigns.models import CampaignOutcome
from patron.imports.sample import write_history
from patron.ledger.service import points_balance
from patron.members.models import Member
from patron.notify.models import OutboxEvent
from patron.pos.models import PosTransaction, PosTransactionLine
from patron.scores.models import MemberPurchaseDay, MemberStats
from tests.api.snapshot import snapshot
from tests.conftest import auth

MEMBERS = "/v1/imports/members"
PURCHASES = "/v1/imports/purchases"
CSV = {"content-type": "text/csv"}
LONG_AGO = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)  # far beyond the POS's 30 days


def post(client, path, key, text, **params):
    return client.post(path, headers={**auth(key), **CSV}, params=params,
                       content=text.encode("utf-8"))


def members_csv(*rows: str, header: str = "external_ref,phone,email,card_uid,points_balance"
                ) -> str:
    return "\n".join((header, *rows)) + "\n"


def purchases_csv(*rows: str) -> str:
    return "\n".join(("external_ref,receipt_no,occurred_at,amount,currency,store_code,sku,"
                      "category,quantity", *rows)) + "\n"


def count(database, model, *where) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)))


@pytest.fixture
def imported(client, world):
    """Three members of merchant A, one with an opening balance, one with a card."""
    answer = post(client, MEMBERS, world.a.merchant_key, members_csv(
        "OLD-1,090-1111-2222,one@example.com,,250",
        "OLD-2,,two@example.com,04A2246AB35C80,",
        "OLD-3,,,,"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_members_are_enrolled_once_with_their_external_ref(client, world, database,
                                                           imported):
    assert imported | {"refused_rows": []} == {
        "kind": "members", "rows": 3, "imported": 3, "already_there": 0, "refused": 0,
        "refused_rows": [], "refused_rows_truncated": False}
    again = post(client, MEMBERS, world.a.merchant_key, members_csv(
        "OLD-1,090-1111-2222,one@example.com,,250", "OLD-2,,two@example.com,04A2246AB35C80,",
        "OLD-3,,,,"))
    assert again.json()["imported"] == 0 and again.json()["already_there"] == 3
    assert count(database, Member) == 3
    found = client.get("/v1/members", headers=auth(world.a.merchant_key),
                       params={"external_ref": "OLD-1"})
    assert found.status_code == 200, found.text
    [member] = found.json()["items"]
    assert member["external_ref"] == "OLD-1" and member["phone_masked"].endswith("22")
    # The opening balance, and the card and phone identify the member at the till.
    with database.session_scope() as session:
        assert points_balance(session, merchant_id=uuid.UUID(world.a.merchant_id),
                              member_id=uuid.UUID(member["id"])) == 250
    for identification in ({"phone": "090-1111-2222"}, {"card_uid": "04:A2:24:6A:B3:5C:80"}):
        known = client.post("/v1/identify", headers=auth(world.a.pos_key), json=identification)
        assert known.status_code == 200, known.text
    # Enrolled before: no welcome events.
    assert count(database, OutboxEvent, OutboxEvent.type == "member.enrolled") == 0


def test_bad_member_rows_are_refused_by_line_and_the_rest_imported(client, world, database):
    taken = client.post("/v1/members", headers=auth(world.b.merchant_key),
                        json={"email": "taken@example.com"})
    assert taken.status_code == 201
    answer = post(client, MEMBERS, world.a.merchant_key, members_csv(
        "OK-1,,ok1@example.com,,",
        "BAD-PHONE,1234,,,",
        "OK-1,,other@example.com,,",           # the same external_ref again
        "TAKEN,,taken@example.com,,",          # another member's e-mail
        "TWICE-A,,same@example.com,,",
        "TWICE-B,,same@example.com,,",         # an e-mail an earlier row has
        "NEG,,,,-5",
        "SHORT,,",
        "BAD-CARD,,,zzzz,"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["imported"], body["refused"]) == (2, 7)
    assert [(row["line"], row["code"]) for row in body["refused_rows"]] == [
        (3, "invalid_phone"), (4, "duplicate_external_ref"), (5, "email_already_registered"),
        (7, "email_already_registered"), (8, "import_row_invalid"),
        (9, "import_row_invalid"), (10, "invalid_card_uid")]
    assert all(row["reason"] for row in body["refused_rows"])
    assert count(database, Member, Member.merchant_id == uuid.UUID(world.a.merchant_id)) == 2


def test_a_reference_with_a_control_character_is_a_refused_row(client, world, database):
    answer = post(client, MEMBERS, world.a.merchant_key, members_csv(
        "OK-1,,ok1@example.com,,", "NUL\x00REF,,,,", "TAB\tREF,,,,"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["imported"], body["refused"]) == (1, 2), body
    assert [(row["line"], row["code"]) for row in body["refused_rows"]] == [
        (3, "import_row_invalid"), (4, "import_row_invalid")]
    assert count(database, Member, Member.merchant_id == uuid.UUID(world.a.merchant_id)) == 1


def test_a_file_without_the_required_columns_changes_nothing(client, world, database):
    before = snapshot(database)
    for text in ("", "phone,email\n+81 90 1111 2222,a@example.com\n",
                 "external_ref,shoe_size\nX,42\n", "external_ref,external_ref\nX,Y\n"):
        answer = post(client, MEMBERS, world.a.merchant_key, text)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "import_columns"
        assert "external_ref" in answer.json()["detail"]
    assert snapshot(database) == before


def test_purchases_of_any_past_date_count_without_points_or_effects(client, world, database,
                                                                    imported):
    campaign = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Every sale", "trigger": "checkout",
        "conditions": {"field": "purchase.total_minor", "op": "ge", "value": 0},
        "actions": [{"type": "bonus_points", "points": 10}]})
    assert campaign.status_code == 201, campaign.text
    events_before = count(database, OutboxEvent)
    text = purchases_csv(
        f"OLD-1,R-1,{LONG_AGO.isoformat()},1200,JPY,main,CF-1,coffee,2",
        f"OLD-1,R-1,{LONG_AGO.isoformat()},500,JPY,main,TEA-1,tea,1",
        f"OLD-1,R-2,{(LONG_AGO + timedelta(days=40)).isoformat()},1000,JPY,main,,,3",
        f"OLD-2,R-3,{(LONG_AGO + timedelta(days=3)).isoformat()},800,JPY,,,,")
    answer = post(client, PURCHASES, world.a.merchant_key, text)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"refused_rows": []} == {
        "kind": "purchases", "rows": 4, "imported": 3, "already_there": 0, "refused": 0,
        "refused_rows": [], "refused_rows_truncated": False}
    with database.session_scope() as session:
        one = session.scalars(select(Member).where(Member.external_ref == "OLD-1")).one()
        stats = session.get(MemberStats, (one.id, one.merchant_id))
        assert stats is not None
        assert (stats.purchase_count, stats.spend_minor) == (2, 2700)
        assert stats.first_purchase_at == LONG_AGO
        assert session.scalar(select(func.count()).select_from(MemberPurchaseDay).where(
            MemberPurchaseDay.member_id == one.id)) == 2
        # 1000 for 3: two units at 333 and one at 334, the receipt's amount kept.
        lines = session.execute(select(PosTransactionLine.quantity,
                                       PosTransactionLine.unit_price)
                                .join(PosTransaction)
                                .where(PosTransaction.receipt_no == "R-2")
                                .order_by(PosTransactionLine.line_no)).all()
        assert [tuple(line) for line in lines] == [(2, 333), (1, 334)]
        assert set(session.scalars(select(PosTransaction.points_earned))) == {0}
        assert points_balance(session, merchant_id=one.merchant_id,
                              member_id=one.id) == 250  # the opening balance alone
    assert count(database, OutboxEvent) == events_before
    assert count(database, CampaignOutcome) == 0
    again = post(client, PURCHASES, world.a.merchant_key, text)
    assert (again.json()["imported"], again.json()["already_there"]) == (0, 3)
    assert count(database, PosTransaction) == 3


def test_purchases_as_earned_award_the_programs_points(client, world, database, imported):
    text = purchases_csv(f"OLD-3,R-9,{LONG_AGO.isoformat()},1000,JPY,main,,,1")
    answer = post(client, PURCHASES, world.a.merchant_key, text, points="as-earned")
    assert answer.json()["imported"] == 1, answer.text
    with database.session_scope() as session:
        sale = session.scalars(select(PosTransaction)).one()
        assert sale.points_earned > 0 and sale.earn_entry_id is not None
        assert points_balance(session, merchant_id=sale.merchant_id,
                              member_id=sale.member_id) == sale.points_earned


def test_bad_purchase_rows_are_refused_by_line(client, world, database, imported):
    past = LONG_AGO.isoformat()
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    answer = post(client, PURCHASES, world.a.merchant_key, purchases_csv(
        f"OLD-1,G-1,{past},100,JPY,main,,,1",
        f"NOBODY,U-1,{past},100,JPY,main,,,1",
        f"OLD-1,M-1,{past},100,JPY,main,,,1",
        f"OLD-2,M-1,{past},100,JPY,main,,,1",                 # another member, same receipt
        f"OLD-1,P-1,{past},1.5,JPY,main,,,1",                  # yen have no decimals
        f"OLD-1,F-1,{future},100,JPY,main,,,1",
        f"OLD-1,S-1,{past},100,JPY,elsewhere,,,1",
        f"OLD-1,C-1,{past},100,USD,main,,,1",
        "OLD-1,N-1,2024-05-01T10:00:00,100,JPY,main,,,1",     # no offset
        f"OLD-1,G-2,{past},100,JPY,main,,,1",
        f"OLD-1,G-1,{past},999,JPY,main,,,1"))                  # G-1 again, apart
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["imported"], body["refused"]) == (2, 8)  # M-1 is one purchase of 2 rows
    assert [(row["line"], row["code"]) for row in body["refused_rows"]] == [
        (3, "import_member_unknown"), (4, "import_receipt_mixed"),
        (5, "import_receipt_mixed"), (6, "import_amount_precision"),
        (7, "import_purchase_in_future"), (8, "import_store_unknown"),
        (9, "currency_not_merchants"), (10, "import_row_invalid"), (12, "import_receipt_split")]
    assert count(database, PosTransaction) == 2
    # A receipt imported before with other lines is a conflict, not "already there".
    conflict = post(client, PURCHASES, world.a.merchant_key, purchases_csv(
        f"OLD-1,G-2,{past},200,JPY,main,,,1"))
    assert conflict.json()["refused_rows"][0]["code"] == "import_receipt_conflict"


def test_the_live_pos_keeps_its_30_day_window(client, world, imported):
    member = client.get("/v1/members", headers=auth(world.a.merchant_key),
                        params={"external_ref": "OLD-1"}).json()["items"][0]
    old = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "LIVE-1", "occurred_at": LONG_AGO.isoformat(), "currency": "JPY",
        "member": {"barcode": member["member_number"]},
        "lines": [{"sku": "A", "name": "A", "quantity": 1, "unit_price": 100}]})
    assert old.status_code == 422 and old.json()["code"] == "occurred_at_too_old", old.text


def test_a_generated_history_imports_once(client, world, database):
    members, purchases = io.StringIO(), io.StringIO()
    end = datetime.now(UTC) - timedelta(days=1)
    history = write_history(members, purchases, members=150, purchases=600,
                            start=end - timedelta(days=540), end=end, store_codes=["main"],
                            currency="JPY", minor_units=0)
    first = post(client, MEMBERS, world.a.merchant_key, members.getvalue())
    assert first.json()["imported"] == 150, first.text
    bought = post(client, PURCHASES, world.a.merchant_key, purchases.getvalue())
    assert bought.json()["imported"] == history.purchases, bought.text
    again = post(client, PURCHASES, world.a.merchant_key, purchases.getvalue())
    assert (again.json()["imported"], again.json()["already_there"]) == (0, history.purchases)
    assert count(database, PosTransaction) == history.purchases


# --- who may -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [MEMBERS, PURCHASES])
def test_who_may_import(client, world, database, path):
    header = "external_ref\n" if path == MEMBERS else purchases_csv()
    other = world.b.merchant_id
    sales_rep = client.post("/v1/keys", headers=auth(world.operator_key),
                            json={"role": "sales_rep", "label": "rep"}).json()["key"]
    cases = [
        (world.operator_key, {"merchant_id": world.a.merchant_id}, 200),
        (world.operator_key, {}, 422),                      # must name the merchant
        (world.a.merchant_key, {}, 200),                     # its own
        (world.a.merchant_key, {"merchant_id": world.a.merchant_id}, 200),
        (world.a.merchant_key, {"merchant_id": other}, 404),  # another merchant's
        (world.a.pos_key, {}, 403), (world.a.reader_key, {}, 403),
        (world.a.pos_key, {"merchant_id": other}, 404),
        (sales_rep, {}, 403), (sales_rep, {"merchant_id": world.a.merchant_id}, 403),
        ("not-a-key", {}, 401)]
    for key, params, status in cases:
        answer = post(client, path, key, header, **params)
        assert answer.status_code == status, (key[:12], params, answer.text)
        if status >= 400:
            assert answer.headers["content-type"].startswith("application/problem+json")


def test_who_may_look_up_by_external_ref(client, world, imported):
    def find(key, **params):
        return client.get("/v1/members", headers=auth(key),
                          params={"external_ref": "OLD-1", **params})

    assert len(find(world.a.merchant_key).json()["items"]) == 1
    assert len(find(world.operator_key, merchant_id=world.a.merchant_id).json()["items"]) == 1
    assert find(world.operator_key).status_code == 422
    assert find(world.b.merchant_key).json()["items"] == []  # B's own members: none
    assert find(world.b.merchant_key, merchant_id=world.a.merchant_id).status_code == 404
    assert find(world.a.pos_key).status_code == 403
    assert find(world.a.reader_key).status_code == 403
    # Another merchant with a sale to the member reads them, but not their external_ref.
    member = find(world.a.merchant_key).json()["items"][0]
    sale = client.post("/v1/pos/transactions", headers=auth(world.b.pos_key), json={
        "receipt_no": "B-1", "occurred_at": datetime.now(UTC).isoformat(), "currency": "USD",
        "member": {"barcode": member["member_number"]},
        "lines": [{"sku": "A", "name": "A", "quantity": 1, "unit_price": 0}]})
    assert sale.status_code == 201, sale.text
    seen = client.get(f"/v1/members/{member['id']}", headers=auth(world.b.merchant_key))
    assert seen.status_code == 200 and seen.json()["external_ref"] is None


def test_a_body_that_is_not_csv_or_too_large_is_refused(client, world, database, app):
    before = snapshot(database)
    json_body = client.post(MEMBERS, headers=auth(world.a.merchant_key),
                            json={"external_ref": "X"})
    assert json_body.status_code == 415, json_body.text
    latin = client.post(MEMBERS, headers={**auth(world.a.merchant_key),
                                          "content-type": "text/csv; charset=latin-1"},
                        content=b"external_ref\nX\n")
    assert latin.status_code == 415
    assert snapshot(database) == before
