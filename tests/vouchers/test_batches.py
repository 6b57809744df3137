"""Bulk codes as batches (API and CLI), their CSV, and a code's images."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from patron.db import Database
from patron.identity.images import decode_image_bytes
from patron.kit.clock import utcnow
from patron.vouchers import batches, codes
from patron.vouchers.models import Voucher, VoucherBatch
from tests.cli.test_cli import db_url, patron  # noqa: F401 - db_url is a fixture
from tests.conftest import World, auth
from tests.vouchers.conftest import make_codes, make_offer


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "CHUNK", 700)


def start(client: TestClient, world: World, count: int, **extra: Any) -> tuple[str, str]:
    offer = make_offer(client, world.a.merchant_key, **extra)
    response = client.post(f"/v1/offers/{offer['id']}/codes",
                           headers=auth(world.a.merchant_key), json={"count": count})
    assert response.status_code == 202, response.text
    assert response.json()["codes"] == []
    return offer["id"], response.json()["batch_id"]


def stored(database: Database, batch_id: str) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.batch_id == uuid.UUID(batch_id))) or 0)


def test_a_batch_runs_in_chunks_and_exports_csv(client: TestClient, world: World,
                                                database: Database, small_chunks: None) -> None:
    _, batch_id = start(client, world, 2500)
    url = f"/v1/voucher-batches/{batch_id}"
    waiting = client.get(url, headers=auth(world.a.merchant_key)).json()
    assert (waiting["status"], waiting["generated"], waiting["requested"]) == (
        "running", 0, 2500)
    seen: list[int] = []
    batches.run_batch(database, uuid.UUID(batch_id), progress=lambda done, _: seen.append(done))
    assert seen == [700, 1400, 2100, 2500]
    done = client.get(url, headers=auth(world.a.merchant_key)).json()
    assert (done["status"], done["generated"], done["finished_at"] is not None) == (
        "done", 2500, True)
    exported = client.get(f"{url}/codes.csv", headers=auth(world.a.merchant_key))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith(
        "text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["code", "barcode"] and len(rows) == 2501
    assert len({row[0] for row in rows[1:]}) == 2500
    for printed, number in rows[1:200]:
        canonical = codes.parse_code(printed)
        assert codes.parse_any(number) == codes.ParsedCode(code=canonical, merchant_number=12345)
    check = client.post("/v1/vouchers/validate", headers=auth(world.a.pos_key),
                        json={"code": rows[1][0]})
    assert check.json()["valid"] is True
    # Another merchant sees neither the batch nor its codes.
    for path in (url, f"{url}/codes.csv"):
        other = client.get(path, headers=auth(world.b.merchant_key))
        assert (other.status_code, other.json()["code"]) == (404, "not_found")


def test_two_runners_never_make_more_than_asked(client: TestClient, world: World,
                                                database: Database,
                                                small_chunks: None) -> None:
    _, batch_id = start(client, world, 5000)
    runners = [threading.Thread(target=batches.run_batch,
                                args=(database, uuid.UUID(batch_id))) for _ in range(3)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    batches.run_batch(database, uuid.UUID(batch_id))  # whatever was left by an overtaken one
    assert stored(database, batch_id) == 5000
    with database.session_scope() as session:
        batch = session.get(VoucherBatch, uuid.UUID(batch_id))
        assert batch is not None and (batch.status, batch.generated) == ("done", 5000)


def test_a_stalled_batch_is_resumed_by_the_job(client: TestClient, world: World,
                                               database: Database, small_chunks: None) -> None:
    _, batch_id = start(client, world, 1500)
    stop = threading.Event()
    batches.run_batch(database, uuid.UUID(batch_id),
                      progress=lambda done, _: stop.set(), stop=stop)  # one chunk, then stop
    assert stored(database, batch_id) == 700
    assert batches.resume_stale(database, utcnow()) == 0  # still fresh
    later = utcnow() + batches.STALE_AFTER + timedelta(seconds=1)
    assert batches.resume_stale(database, later) == 1
    assert stored(database, batch_id) == 1500


def test_a_failing_batch_records_why(client: TestClient, world: World, database: Database,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, batch_id = start(client, world, 1200)

    def broken(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(batches.service, "insert_codes", broken)
    batches.run_batch(database, uuid.UUID(batch_id))
    read = client.get(f"/v1/voucher-batches/{batch_id}", headers=auth(world.a.merchant_key))
    assert (read.json()["status"], read.json()["error"]) == ("failed", "disk full")
    assert stored(database, batch_id) == 0


def test_batches_are_for_bearer_codes_within_the_limit(client: TestClient, world: World,
                                                       database: Database,
                                                       member_a: dict[str, Any]) -> None:
    offer = make_offer(client, world.a.merchant_key)
    url = f"/v1/offers/{offer['id']}/codes"
    personal = client.post(url, headers=auth(world.a.merchant_key),
                           json={"count": 1001, "member_id": member_a["id"]})
    assert (personal.status_code, personal.json()["field"]) == (422, "count")
    huge = client.post(url, headers=auth(world.a.merchant_key), json={"count": 10_000_001})
    assert (huge.status_code, huge.json()["code"]) == (422, "invalid_code_request")
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(VoucherBatch)) == 0


def test_the_cli_generates_a_batch_with_progress_and_writes_csv(db_url: str,  # noqa: F811
                                                                tmp_path: Any) -> None:
    from patron.tenancy.models import Merchant
    from patron.vouchers.models import Offer

    database = Database(db_url)
    try:
        with database.session_scope() as session:
            merchant = Merchant(id=uuid.uuid4(), number=31415, name="CLI", currency="EUR",
                                timezone="Europe/Berlin", country="DE", next_customer_no=1)
            session.add(merchant)
            session.flush()
            offer = Offer(id=uuid.uuid4(), merchant_id=merchant.id, name="5 off",
                          kind="amount_off", value=500, currency="EUR", min_spend=0,
                          categories=[], store_ids=[], channels=[], weekdays=[],
                          redemptions_count=0, budget_used=0, stackable=True,
                          created_at=utcnow())
            session.add(offer)
    finally:
        database.dispose()
    out = tmp_path / "codes.csv"
    result = patron(db_url, "vouchers", "generate", str(offer.id), "--count", "1500",
                    "--out", str(out), "--max-redemptions", "2")
    assert "1500 codes written" in result.stderr
    rows = list(csv.reader(out.open()))
    assert len(rows) == 1501 and len({row[0] for row in rows[1:]}) == 1500
    assert all(row[1].startswith("31415") and len(row[1]) == 27 for row in rows[1:])
    database = Database(db_url)
    try:
        with database.session_scope() as session:
            uses = set(session.scalars(select(Voucher.max_redemptions)))
            assert uses == {2}
            session.execute(update(VoucherBatch).values(status="done"))
    finally:
        database.dispose()
    refused = patron(db_url, "vouchers", "generate", str(offer.id), "--count", "10",
                     "--out", str(out), check=False)
    assert refused.returncode == 2


def test_a_codes_images_scan_back_to_it(client: TestClient, world: World) -> None:
    offer = make_offer(client, world.a.merchant_key)
    [code] = make_codes(client, world.a.merchant_key, offer["id"])
    number = codes.barcode_number(12345, codes.parse_code(code))
    headers = auth(world.a.pos_key)
    svg = client.get(f"/v1/vouchers/{code}/qr.svg", headers=headers)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content
    qr = client.get(f"/v1/vouchers/{code}/qr.png", headers=headers)
    assert [found.text for found in decode_image_bytes(qr.content)] == [code]
    bar = client.get(f"/v1/vouchers/{code}/barcode.png", headers=headers)
    assert [found.text for found in decode_image_bytes(bar.content)] == [number]
    assert b"<svg" in client.get(f"/v1/vouchers/{code}/barcode.svg", headers=headers).content
    other = client.get(f"/v1/vouchers/{code}/qr.png", headers=auth(world.b.pos_key))
    assert (other.status_code, other.json()["code"]) == (404, "not_found")


def test_a_clash_with_a_stored_code_is_made_again(client: TestClient, world: World,
                                                  database: Database,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from patron.vouchers import service

    offer = make_offer(client, world.a.merchant_key)
    [taken] = make_codes(client, world.a.merchant_key, offer["id"])
    fresh = codes.generate_code()
    draws = iter([[codes.parse_code(taken), fresh], [fresh, codes.generate_code()]])
    monkeypatch.setattr(service.codes, "generate_codes", lambda count: next(draws))
    issued = client.post(f"/v1/offers/{offer['id']}/codes", headers=auth(world.a.merchant_key),
                         json={"count": 2})
    assert issued.status_code == 201, issued.text
    assert codes.display(fresh) in issued.json()["codes"]
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Voucher)) == 3
