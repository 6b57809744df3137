"""Real concurrent requests against a running server (several worker processes)."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import select

from patron.members.models import Member
from patron.tenancy.models import Role
from patron.tenancy.schemas import MerchantCreate
from patron.tenancy.service import SYSTEM, create_merchant, issue_key
from tests.conftest import TEST_DATABASE_URL, auth
from tests.live_server import live_server

ENROLMENTS = 200


def _merchant_with_key(database, number):
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=number, name="Busy", currency="JPY", timezone="Asia/Tokyo", country="JP"))
        _, key = issue_key(session, role=Role.merchant, merchant_id=merchant.id)
        return merchant.id, key


def _concurrently(count, call):
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_200_concurrent_enrolments_get_distinct_consecutive_numbers(database):
    merchant_id, key = _merchant_with_key(database, 77777)
    with live_server(TEST_DATABASE_URL, workers=2) as base, \
            httpx.Client(base_url=base, timeout=60,
                         limits=httpx.Limits(max_connections=ENROLMENTS)) as http:
        responses = _concurrently(ENROLMENTS, lambda i: http.post(
            "/v1/members", headers=auth(key), json={"email": f"m{i}@example.com"}))
    statuses = [r.status_code for r in responses]
    assert statuses == [201] * ENROLMENTS, {s for s in statuses if s != 201}
    numbers = sorted(int(r.json()["member_number"][5:12]) for r in responses)
    assert numbers == list(range(1, ENROLMENTS + 1))
    with database.session_scope() as session:
        stored = session.scalars(select(Member.customer_no)
                                 .where(Member.merchant_id == merchant_id)).all()
    assert sorted(stored) == numbers


def test_concurrent_wrong_pins_are_all_counted(database):
    _, key = _merchant_with_key(database, 77778)
    with live_server(TEST_DATABASE_URL, workers=2) as base, \
            httpx.Client(base_url=base, timeout=60) as http:
        member = http.post("/v1/members", headers=auth(key), json={"pin": "4321"}).json()
        responses = _concurrently(12, lambda i: http.post(
            "/v1/identify", headers=auth(key),
            json={"barcode": member["member_number"], "pin": "0000"}))
        codes = sorted(r.json()["code"] for r in responses)
        after = http.post("/v1/identify", headers=auth(key),
                          json={"barcode": member["member_number"], "pin": "4321"})
    # Every wrong PIN is counted: at most 4 answers say "incorrect", the rest "locked".
    assert codes.count("pin_incorrect") <= 4
    assert codes.count("pin_locked") >= 8
    assert after.json()["code"] == "pin_locked"
    with database.session_scope() as session:
        failures = session.scalar(select(Member.pin_failures)
                                  .where(Member.id == uuid.UUID(member["id"])))
    assert failures >= 5
