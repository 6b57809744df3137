"""`patron demo` as `make run` runs it: the first run fills the database, every later run
(`--if-empty`) prints the same keys and sample members again; the demo's stores have
register events and its campaigns run now."""

import json
import re
import shlex
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.app import create_app
from patron.config import get_settings
from patron.db import Database
from tests.cli.test_cli import migrated_file, patron
from tests.conftest import IS_POSTGRES

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="CLI runs against its own SQLite file")

KEY_LINE = re.compile(r"^  (\S.*?)\s+(ptn_[a-z0-9]{32})$", re.MULTILINE)
SAMPLE_LINE = re.compile(r"^  (\d{5}) .*? barcode (\d{14})  card_uid ([0-9A-F]+)  "
                         r"(?:phone (\+\d+)|\(anonymous: card only\))$", re.MULTILINE)
CURL_LINE = re.compile(r"^  curl -s -X POST (\S+)/v1/identify -H 'Authorization: Bearer "
                       r"(ptn_[a-z0-9]{32})' -H 'Content-Type: application/json' "
                       r"-d '(\{.*\})'$", re.MULTILINE)
COMMAND_LINE = re.compile(r"^  (?!POS_KEY)(.*\bpatron keys create .*)$", re.MULTILINE)


def keys_in(output):
    return dict(KEY_LINE.findall(output))


def samples_in(output):
    return [{"merchant": int(number), "barcode": barcode, "card_uid": card,
             "phone": phone or None}
            for number, barcode, card, phone in SAMPLE_LINE.findall(output)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo database for the tests that only read it: the first run's output and the
    second (`--if-empty`) run's."""
    folder = tmp_path_factory.mktemp("demo")
    url = migrated_file(folder / "demo.db")
    first = patron(url, "demo", "--members", "30")
    again = patron(url, "demo", "--if-empty")
    return url, folder, first, again


@pytest.fixture
def api(demo):
    database = Database(demo[0])
    with TestClient(create_app(get_settings(), database)) as client:
        yield client
    database.dispose()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_a_second_run_prints_the_same_keys_and_sample_members(demo):
    _, folder, first, again = demo
    assert "nothing to do" in again.stderr
    keys = keys_in(first.stdout)
    assert len(keys) == 11 and {"operator", "sales rep", "terminal 10001/shibuya/pos-1",
                                "merchant 30003 Golden Gate Books"} <= set(keys)
    assert keys_in(again.stdout) == keys
    samples = samples_in(first.stdout)
    assert [sample["merchant"] for sample in samples] == [10001, 10001, 20002, 20002,
                                                          30003, 30003]
    assert sum(sample["phone"] is not None for sample in samples) == 3
    assert samples_in(again.stdout) == samples
    for output in (first.stdout, again.stdout):
        assert "http://127.0.0.1:8000/docs" in output and "http://127.0.0.1:8000/v1" in output
        assert CURL_LINE.search(output).group(2) == keys["terminal 10001/shibuya/pos-1"]
    # The keys are kept beside the database, for its owner only; the codes with them.
    kept = folder / "demo.demo-keys.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    document = json.loads(kept.read_text())
    assert {key["label"]: key["key"] for key in document["keys"]} == keys
    codes = [voucher["code"] for voucher in document["vouchers"]]
    assert len(codes) == 3 and all(code in again.stdout for code in codes)


def test_the_printed_samples_and_curl_identify_the_members(demo, api):
    _, _, _, again = demo
    keys = keys_in(again.stdout)
    curl = CURL_LINE.search(again.stdout)
    base, key, body = curl.group(1), curl.group(2), json.loads(curl.group(3))
    assert base == get_settings().public_base_url
    answer = api.post("/v1/identify", headers=bearer(key), json=body)
    assert answer.status_code == 200, answer.text
    first_sample = samples_in(again.stdout)[0]
    assert answer.json()["member_number"] == first_sample["barcode"] == body["barcode"]
    pos_keys = {"10001": keys["terminal 10001/shibuya/pos-1"],
                "20002": keys["terminal 20002/gangnam/pos-1"],
                "30003": keys["terminal 30003/union-square/pos-1"]}
    for sample in samples_in(again.stdout):
        headers = bearer(pos_keys[f"{sample['merchant']:05d}"])
        found = {}
        for way in ("barcode", "card_uid", "phone"):
            if sample[way] is None:
                continue
            answer = api.post("/v1/identify", headers=headers, json={way: sample[way]})
            assert answer.status_code == 200, (way, sample, answer.text)
            assert answer.json()["known_here"] is True
            found[way] = answer.json()["member_id"]
        assert len(set(found.values())) == 1, sample
        assert answer.json()["member_number"] == sample["barcode"]


def test_without_the_keys_file_a_later_run_prints_commands_that_make_working_keys(tmp_path):
    url = migrated_file(tmp_path / "demo.db")
    first = patron(url, "demo", "--members", "3")
    (tmp_path / "demo.demo-keys.json").unlink()
    again = patron(url, "demo", "--if-empty")
    assert "demo.demo-keys.json (where `patron demo` keeps them) is missing" in again.stdout
    assert keys_in(again.stdout) == {}
    commands = COMMAND_LINE.findall(again.stdout)
    assert len(commands) == 11
    assert samples_in(again.stdout) == samples_in(first.stdout)
    pos = next(command for command in commands if "10001/shibuya/pos-1" in command)
    # The command names this database and a program to run; run its arguments here.
    words = shlex.split(pos)
    assert words[0] == f"PATRON_DATABASE_URL={url}"
    fresh = patron(url, *words[words.index("keys"):]).stdout.strip().splitlines()[-1]
    assert f"POS_KEY=$({pos} | tail -n 1)" in again.stdout
    barcode = samples_in(again.stdout)[0]["barcode"]
    database = Database(url)
    try:
        with TestClient(create_app(get_settings(), database)) as client:
            answer = client.post("/v1/identify", headers=bearer(fresh), json={"barcode": barcode})
            old = keys_in(first.stdout)["terminal 10001/shibuya/pos-1"]
            assert client.post("/v1/identify", headers=bearer(old),
                               json={"barcode": barcode}).status_code == 200
    finally:
        database.dispose()
    assert answer.status_code == 200 and answer.json()["member_number"] == barcode


def test_a_keys_file_of_another_database_is_not_shown(tmp_path, demo):
    url = migrated_file(tmp_path / "demo.db")
    patron(url, "demo", "--members", "0")
    other = Path(demo[1]) / "demo.demo-keys.json"
    (tmp_path / "demo.demo-keys.json").write_text(other.read_text())
    again = patron(url, "demo", "--if-empty")
    assert "do not work with this database" in again.stdout
    assert keys_in(again.stdout) == {}
    assert len(COMMAND_LINE.findall(again.stdout)) == 11
    assert not any(code in again.stdout for code in
                   (voucher["code"] for voucher in json.loads(other.read_text())["vouchers"]))


def test_every_store_has_register_events_over_the_last_weeks(demo, api):
    from patron.operations.models import RegisterEvent
    from patron.tenancy.models import Store, Terminal

    url, _, first, _ = demo
    operator = bearer(keys_in(first.stdout)["operator"])
    database = Database(url)
    try:
        with database.session_scope() as session:
            stores = session.execute(select(Store.id, Store.code, Store.timezone)).all()
            per_terminal = dict(session.execute(
                select(Terminal.kind, func.count(RegisterEvent.id))
                .join(RegisterEvent, RegisterEvent.terminal_id == Terminal.id)
                .group_by(Terminal.kind)).all())
            days = {code: len({moment.date() for moment in session.scalars(
                select(RegisterEvent.occurred_at).where(RegisterEvent.store_id == store_id))})
                for store_id, code, _ in stores}
    finally:
        database.dispose()
    assert len(stores) == 12
    assert set(per_terminal) == {"pos", "reader", "online"}
    # Every store reported on most of the last four weeks (UTC dates of its events).
    assert all(count >= 25 for count in days.values()), days
    now = datetime.now(UTC)
    for store_id, code, _ in stores:
        page = api.get(f"/v1/stores/{store_id}/events", headers=operator, params={
            "since": (now - timedelta(days=7)).isoformat(), "limit": 1000})
        assert page.status_code == 200, page.text
        events = page.json()["events"]
        assert events, code
        kinds = {event["type"] for event in events}
        if code in ("web", "shibuya-board"):
            assert "heartbeat" in kinds
        else:
            assert {"open", "close", "sign_in", "item_scan", "heartbeat"} <= kinds, code
        assert all(event["occurred_at"] <= now.isoformat() for event in events)


def test_the_demo_campaigns_run_now(demo, api):
    from patron.campaigns.models import Campaign
    from patron.tenancy.models import Merchant

    url, _, first, _ = demo
    keys = keys_in(first.stdout)
    now = datetime.now(UTC)
    database = Database(url)
    try:
        with database.session_scope() as session:
            rows = session.execute(select(Merchant.number, Campaign.trigger, Campaign.status,
                                          Campaign.valid_from, Campaign.valid_until)
                                   .join(Merchant, Merchant.id == Campaign.merchant_id)).all()
    finally:
        database.dispose()
    assert sorted({(number, trigger) for number, trigger, *_ in rows}) == [
        (number, trigger) for number in (10001, 20002, 30003)
        for trigger in ("birthday", "checkout", "enrolment")]
    for _, _, status, valid_from, valid_until in rows:
        assert status == "active"
        assert valid_from.replace(tzinfo=UTC) < now - timedelta(days=7)
        assert valid_until.replace(tzinfo=UTC) > now + timedelta(days=30)
    # They run: a new member of Sakura Coffee gets the welcome points at once ...
    merchant = bearer(keys["merchant 10001 Sakura Coffee"])
    member = api.post("/v1/members", headers=merchant, json={"source": "test"})
    assert member.status_code == 201, member.text
    balances = api.get(f"/v1/members/{member.json()['id']}/balances", headers=merchant)
    assert [entry["balance"] for entry in balances.json()["points"]] == [100]
    # ... and a $60 basket at Golden Gate Books meets the checkout bonus (a new member gets
    # it, or is in its 10 % control group; the demo's own sales used the others' weekly one).
    reader = api.post("/v1/members", headers=bearer(keys["merchant 30003 Golden Gate Books"]),
                      json={"source": "test"})
    assert reader.status_code == 201, reader.text
    barcode = reader.json()["member_number"]
    quote = api.post("/v1/pos/quote", params={"explain": "true"},
                     headers=bearer(keys["terminal 30003/union-square/pos-1"]), json={
                         "receipt_no": "demo-test-1", "occurred_at": now.isoformat(),
                         "currency": "USD", "member": {"barcode": barcode},
                         "lines": [{"sku": "BK-1", "name": "Atlas", "quantity": 1,
                                    "unit_price": 6000}]})
    assert quote.status_code == 200, quote.text
    checks = {check["name"]: check["result"] for check in quote.json()["campaign_checks"]}
    assert checks["Spend $50, get 200 bonus points"] in ("would_fire", "held_out")


def test_the_registers_sold_lately_so_campaigns_and_the_coalition_show_figures(demo, api):
    """Live sales of the last two weeks through the POS commit: every merchant's checkout
    campaign has results, and miles earned at one merchant were spent at another."""
    _, _, first, _ = demo
    keys = keys_in(first.stdout)
    for number, name in ((10001, "Sakura Coffee"), (20002, "Hangang Bakery"),
                         (30003, "Golden Gate Books")):
        merchant = bearer(keys[f"merchant {number} {name}"])
        campaigns = api.get("/v1/campaigns", headers=merchant).json()["items"]
        [checkout] = [c for c in campaigns if c["trigger"] == "checkout"]
        results = api.get(f"/v1/campaigns/{checkout['id']}/results", headers=merchant)
        assert results.status_code == 200, results.text
        assert results.json()["triggers"]["triggers"] > 0, (name, results.json())
    period = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m")
    settlement = api.get("/v1/coalition/settlements", params={"period": period},
                         headers=bearer(keys["operator"]))
    assert settlement.status_code == 200, settlement.text
    rows = settlement.json()["merchants"]
    assert sum(row["miles_redeemed"] for row in rows) > 0, rows
    assert sum(row["miles_issued"] for row in rows) > 0, rows
    assert "sales at the registers in the last 14 days" in first.stdout


def test_the_events_and_samples_follow_the_seed():
    """The same seed draws the same register events; the samples do not depend on it."""
    import random
    from zoneinfo import ZoneInfo

    from patron.cli.demo import MERCHANTS, sample_card_uid
    from patron.cli.demo_events import DemoRegister, register_events

    day = datetime(2026, 11, 20).date()
    spec = MERCHANTS[0]

    def draw(seed):
        return [(event.type, event.occurred_at, event.seq) for event in register_events(
            random.Random(seed), days=[day], hours=spec.hours, register=DemoRegister(1.0),
            timezone=ZoneInfo(spec.timezone), until=datetime(2027, 1, 1, tzinfo=UTC))]

    assert draw(7) == draw(7) and draw(7) != draw(8)
    events = draw(7)
    assert [kind.value for kind, _, _ in events[:2]] == ["open", "sign_in"]
    assert events[-1][0].value == "close"
    assert [seq for _, _, seq in events] == list(range(1, len(events) + 1))
    opened = events[0][1]
    assert opened.tzinfo == ZoneInfo("Asia/Tokyo") and 6 <= opened.hour < 7
    assert sample_card_uid(10001, 1) == "04100010000001"
    assert sample_card_uid(30003, 2) == "04300030000002"


PERSON_LINE = re.compile(r"^  (\S.*?)\s+(\S+@demo\.patron\.example)\s+(\S+)$", re.MULTILINE)


def test_the_printed_staff_sign_ins_open_their_pages_and_a_second_run_shows_them_again(
        demo):
    url, _folder, first, again = demo
    people = PERSON_LINE.findall(first.stdout)
    assert len(people) == 7 and PERSON_LINE.findall(again.stdout) == people
    assert "/join?m=10001" in first.stdout
    database = Database(url)
    try:
        app = create_app(get_settings(), database)
        landing = {"operator": "/operator", "manager": "/console", "cashier": "/register"}
        for label, email, password in people[:3]:
            with TestClient(app, base_url="https://testserver") as browser:
                page = browser.get("/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                signed_in = browser.post("/login", data={"csrf_token": token,
                                                         "email": email,
                                                         "password": password})
                expected = landing[label.rsplit(" ", 1)[-1]]
                assert signed_in.url.path.startswith(expected), (label, signed_in.url)
    finally:
        database.dispose()
