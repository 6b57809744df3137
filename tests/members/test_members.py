import glob
import shutil
import subprocess

from sqlalchemy import text

from patron.models import metadata
from tests.conftest import IS_POSTGRES, TEST_DATABASE_URL, auth
from tests.identity.test_identify import assert_problem

PHONE_E164 = "+819011112222"
EMAIL = "Hana.Yamada@Example.com"


def enrol(client, key, **body):
    return client.post("/v1/members", headers=auth(key), json=body)


def test_anonymous_member_needs_nothing(client, world):
    response = enrol(client, world.a.pos_key)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["phone_masked"] is None and body["email_masked"] is None
    assert body["status"] == "active"
    assert body["merchant_id"] == world.a.merchant_id
    assert body["member_number"][:5] == "12345" and len(body["member_number"]) == 14


def test_member_numbers_are_consecutive_per_merchant(client, world):
    numbers = [enrol(client, world.a.pos_key).json()["member_number"] for _ in range(3)]
    assert [int(n[5:12]) for n in numbers] == [1, 2, 3]
    other = enrol(client, world.b.pos_key).json()["member_number"]
    assert other[:12] == "543210000001"


def test_operator_must_name_the_merchant(client, world):
    assert_problem(enrol(client, world.operator_key), 422, "merchant_id_required")
    made = enrol(client, world.operator_key, merchant_id=world.b.merchant_id)
    assert made.status_code == 201
    assert made.json()["merchant_id"] == world.b.merchant_id


def test_full_profile_is_masked_in_reads(client, world):
    response = enrol(client, world.a.merchant_key, phone="090-1111-2222", email=EMAIL,
                     birth_year=1990, gender="female", postcode="150-0002", region="Tokyo",
                     language="ja", consents={"sms": True, "email": False})
    body = response.json()
    assert body["phone_masked"] == "+81********22"
    assert body["email_masked"] == "h***@example.com"
    assert body["consents"] == {"sms": True, "email": False, "push": False}
    assert body["birth_year"] == 1990 and body["language"] == "ja"


def test_same_phone_or_email_cannot_enrol_twice_anywhere_in_the_coalition(client, world):
    assert enrol(client, world.a.pos_key, phone="090-1111-2222", email=EMAIL).status_code == 201
    assert_problem(enrol(client, world.b.pos_key, phone="+81 90 1111 2222"), 409,
                   "phone_already_registered")
    assert_problem(enrol(client, world.b.pos_key, email=EMAIL.lower()), 409,
                   "email_already_registered")


def test_invalid_phone_is_a_clear_422(client, world):
    response = enrol(client, world.a.pos_key, phone="123456")
    assert_problem(response, 422, "invalid_phone")
    assert response.json()["field"] == "phone"


def test_consent_changes_are_recorded_with_time_and_source(client, world):
    member = enrol(client, world.a.pos_key, consents={"email": True}).json()
    url = f"/v1/members/{member['id']}/consents"
    client.post(url, headers=auth(world.a.merchant_key), json={"email": False, "sms": True,
                                                               "source": "web"})
    client.post(url, headers=auth(world.a.merchant_key), json={"sms": True, "source": "web"})
    history = client.get(url, headers=auth(world.a.merchant_key)).json()
    assert history["current"] == {"sms": True, "email": False, "push": False}
    assert [(e["channel"], e["granted"], e["source"]) for e in history["history"]] == [
        ("email", True, "api"), ("sms", True, "web"), ("email", False, "web")]
    assert all(e["occurred_at"] for e in history["history"])


def test_profile_update(client, world):
    member = enrol(client, world.a.pos_key, phone="090-1111-2222").json()
    updated = client.patch(f"/v1/members/{member['id']}", headers=auth(world.a.merchant_key),
                           json={"phone": None, "email": "new@example.com", "region": "Osaka"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["phone_masked"] is None
    assert updated.json()["email_masked"] == "n***@example.com"
    assert updated.json()["region"] == "Osaka"
    gone = client.post("/v1/identify", headers=auth(world.a.pos_key),
                       json={"phone": "090-1111-2222"})
    assert_problem(gone, 404, "member_not_found")


def test_withdrawal_keeps_history_and_frees_the_phone(client, world):
    first = enrol(client, world.a.pos_key, phone="090-1111-2222",
                  consents={"sms": True}).json()
    client.post(f"/v1/members/{first['id']}/withdraw", headers=auth(world.a.merchant_key))
    read = client.get(f"/v1/members/{first['id']}", headers=auth(world.a.merchant_key)).json()
    assert read["status"] == "withdrawn" and read["withdrawn_at"]
    assert read["phone_masked"] is not None
    again = enrol(client, world.a.pos_key, phone="090-1111-2222")
    assert again.status_code == 201
    found = client.post("/v1/identify", headers=auth(world.a.pos_key),
                        json={"phone": "090-1111-2222"})
    assert found.json()["member_id"] == again.json()["id"]


def test_only_the_home_merchant_or_operator_withdraws(client, world, database):
    import uuid

    from patron.members.models import Membership

    member = enrol(client, world.a.pos_key).json()
    # Give merchant b a membership so that it can see the member at all.
    with database.session_scope() as session:
        session.add(Membership(member_id=uuid.UUID(member["id"]),
                               merchant_id=uuid.UUID(world.b.merchant_id), source="test"))
    seen = client.get(f"/v1/members/{member['id']}", headers=auth(world.b.merchant_key))
    assert seen.status_code == 200
    refused = client.post(f"/v1/members/{member['id']}/withdraw",
                          headers=auth(world.b.merchant_key))
    assert_problem(refused, 403, "not_home_merchant")
    still = client.get(f"/v1/members/{member['id']}", headers=auth(world.a.merchant_key))
    assert still.json()["status"] == "active"


def test_erasure_removes_personal_data_and_keeps_the_record(client, world, database):
    member = enrol(client, world.a.pos_key, phone="090-1111-2222", email=EMAIL,
                   card_uid="04AABBCCDD", birth_year=1980, gender="male", postcode="150-0002",
                   language="ja", pin="1234", consents={"sms": True}).json()
    erased = client.post(f"/v1/members/{member['id']}/erase",
                         headers=auth(world.a.merchant_key))
    assert erased.status_code == 200
    body = erased.json()
    assert body["status"] == "erased"
    assert body["phone_masked"] is None and body["email_masked"] is None
    assert body["birth_year"] is None and body["gender"] is None and body["postcode"] is None
    assert body["has_pin"] is False
    assert body["member_number"] == member["member_number"]
    with database.engine.connect() as conn:
        row = conn.execute(text("SELECT phone_hash, phone_enc, email_hash, email_enc "
                                "FROM members")).one()
        assert tuple(row) == (None, None, None, None)
        uid_hashes = conn.execute(text("SELECT uid_hash FROM cards")).scalars().all()
        assert all(h.startswith("erased-") for h in uid_hashes)
    for body in ({"card_uid": "04AABBCCDD"}, {"phone": "090-1111-2222"}):
        response = client.post("/v1/identify", headers=auth(world.a.pos_key), json=body)
        assert response.status_code == 404
    assert_problem(client.post("/v1/identify", headers=auth(world.a.pos_key),
                               json={"barcode": member["member_number"]}), 410, "member_erased")


def test_export_holds_everything(client, world):
    member = enrol(client, world.a.pos_key, phone="090-1111-2222", email=EMAIL,
                   card_uid="04AABBCCDD", birth_year=1980, consents={"sms": True}).json()
    exported = client.get(f"/v1/members/{member['id']}/export",
                          headers=auth(world.a.merchant_key))
    assert exported.status_code == 200
    data = exported.json()
    assert data["member"]["phone"] == PHONE_E164
    assert data["member"]["email"] == EMAIL.lower()
    assert data["member"]["birth_year"] == 1980
    assert data["memberships"][0]["merchant_number"] == "12345"
    assert data["cards"][0]["uid_last4"] == "CCDD"
    assert data["consents"]["current"]["sms"] is True


def _database_dump(database) -> bytes:
    """Every byte a database holds about its rows: a real dump plus the raw files."""
    chunks = []
    if IS_POSTGRES and shutil.which("pg_dump"):
        url = TEST_DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")
        chunks.append(subprocess.run(["pg_dump", "--data-only", url], check=True,
                                     capture_output=True).stdout)
    with database.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(table.select()):
                chunks.append(repr(tuple(row)).encode())
    if not IS_POSTGRES:
        path = TEST_DATABASE_URL.split("///", 1)[1]
        for name in glob.glob(path + "*"):
            with open(name, "rb") as handle:
                chunks.append(handle.read())
    return b"\n".join(chunks)


def test_no_plaintext_phone_or_email_anywhere_in_the_database(client, world, database):
    response = enrol(client, world.a.pos_key, phone="090-1111-2222", email=EMAIL)
    assert response.status_code == 201
    dump = _database_dump(database)
    assert len(dump) > 1000
    for needle in (PHONE_E164, "9011112222", "090-1111-2222", "09011112222",
                   EMAIL, EMAIL.lower(), "hana.yamada", "Hana.Yamada"):
        assert needle.encode() not in dump, needle
        assert needle.encode("utf-16-le") not in dump, needle
    # The dump does hold the member, so the search was over real data.
    assert response.json()["member_number"].encode() in dump


def test_erasure_forfeits_the_points_left_and_releases_the_liability(
        client, world, database):
    from sqlalchemy import select

    from patron.ledger.models import JournalEntry, LedgerAccount, Posting
    from patron.ledger.service import check_invariants
    from tests.api.operations import _purchase

    member = client.post("/v1/members", headers=auth(world.a.merchant_key), json={}).json()
    sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=_purchase(world.a, "R-1", member["member_number"]))
    assert sale.status_code == 201, sale.text

    def points():
        with database.session_scope() as session:
            balances = {key: balance for key, balance in session.execute(
                select(LedgerAccount.key, LedgerAccount.balance))}
        return (balances[f"member_points:{world.a.merchant_id}:{member['id']}"],
                balances[f"merchant_liability:{world.a.merchant_id}"])

    held, liability = points()
    assert held > 0 and liability == -held
    erased = client.post(f"/v1/members/{member['id']}/erase", headers=auth(world.a.merchant_key))
    assert erased.status_code == 200, erased.text
    assert points() == (0, 0)  # the liability decreased by the forfeited amount
    shown = client.get(f"/v1/members/{member['id']}/balances",
                       headers=auth(world.a.merchant_key))
    assert shown.status_code == 200, shown.text
    assert [row["balance"] for row in shown.json()["points"]] == [0], shown.json()
    with database.session_scope() as session:
        [entry] = session.scalars(select(JournalEntry).where(
            JournalEntry.idempotency_key.startswith("forfeit:"))).all()
        assert (entry.kind, entry.reason) == ("adjust", "points forfeited: member erased")
        amounts = session.scalars(select(Posting.amount).where(
            Posting.entry_id == entry.id)).all()
        assert sorted(amounts) == [-held, held] and sum(amounts) == 0
        assert check_invariants(session) == []
