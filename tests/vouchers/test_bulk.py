"""New codes through COPY on PostgreSQL (``patron.vouchers.bulk``): the same rows as the
INSERT, and a clash with a stored code makes only its chunk again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from patron.db import Database, insert_for
from patron.tenancy.service import SYSTEM
from patron.vouchers import batches, bulk, codes, service
from patron.vouchers.models import Offer, Voucher, VoucherBatch
from tests.conftest import IS_POSTGRES, World
from tests.vouchers.conftest import make_codes, make_offer

# Every column but the id and the code: what the two paths must store alike.
SHARED = (Voucher.merchant_id, Voucher.offer_id, Voucher.member_id, Voucher.max_redemptions,
          Voucher.redemptions_count, Voucher.valid_from, Voucher.valid_until, Voucher.source,
          Voucher.batch_id, Voucher.issued_at, Voucher.revoked_at, Voucher.revoked_reason)


# --- the text format, without a database ----------------------------------------------

def test_time_ordered_ids_are_distinct_version_7_uuids() -> None:
    millis = 1_790_000_000_123
    ids = bulk.time_ordered_ids(5_000, now_ms=millis)
    assert len(set(ids)) == 5_000
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert parsed.hex == text
        assert parsed.int >> 80 == millis  # the first 48 bits: the Unix millisecond
    # 74 random bits: every hex digit after the timestamp but the version one varies, and
    # the variant digit takes its four values.
    for position in set(range(13, 32)) - {16}:
        assert len({text[position] for text in ids}) == 16, position
    assert {text[12] for text in ids} == {"7"}
    assert {text[16] for text in ids} == set("89ab")
    # Later chunks sort after earlier ones: new rows go to the end of the primary key.
    assert max(ids) < min(bulk.time_ordered_ids(100, now_ms=millis + 1))
    assert uuid.UUID(bulk.time_ordered_ids(1)[0]).version == 7
    assert bulk.time_ordered_ids(0) == []


def test_copy_fields_are_what_the_insert_binds() -> None:
    tokyo = timezone(timedelta(hours=9))
    moment = datetime(2026, 3, 1, 8, 30, 5, 123456, tzinfo=tokyo)
    assert bulk.copy_field(moment) == "2026-02-28T23:30:05.123456+00:00"
    assert bulk.copy_field(datetime(2026, 3, 1, tzinfo=UTC)) == "2026-03-01T00:00:00+00:00"
    assert bulk.copy_field(None) == r"\N"
    some_id = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
    assert bulk.copy_field(some_id) == "0f0e0d0c0b0a49088706050403020100"  # read as a uuid
    assert bulk.copy_field(10**15) == "1000000000000000"
    assert bulk.copy_field("batch") == "batch"
    assert bulk.copy_field("a\\b\tc\nd\re") == "a\\\\b\\tc\\nd\\re"
    with pytest.raises(ValueError, match="naive datetime"):
        bulk.copy_field(datetime(2026, 3, 1))
    for value in (True, 1.5, b"x"):
        with pytest.raises(TypeError, match="no COPY text form"):
            bulk.copy_field(value)


def test_a_code_copy_would_misread_is_refused(database: Database) -> None:
    shared = dict.fromkeys(bulk.SHARED_COLUMNS)
    with database.session_scope() as session:
        for bad in ("ABC\tDEF", "ABC\\N", "ABC\nDEF"):
            with pytest.raises(ValueError, match="COPY's text format"):
                bulk.copy_vouchers(session, codes=[codes.generate_code(), bad], shared=shared)


def test_copy_is_used_on_postgresql_only(database: Database) -> None:
    with database.session_scope() as session:
        assert bulk.uses_copy(session) is IS_POSTGRES


# --- against PostgreSQL ---------------------------------------------------------------

def _rows(database: Database, **where: Any) -> list[tuple[Any, ...]]:
    with database.session_scope() as session:
        query = select(Voucher.id, Voucher.code, *SHARED).order_by(Voucher.code)
        for name, value in where.items():
            query = query.where(getattr(Voucher, name) == value)
        return [tuple(row) for row in session.execute(query)]


def _insert(database: Database, offer_id: str, *, copy: bool,
            monkeypatch: pytest.MonkeyPatch, **options: Any) -> list[str]:
    copies: list[int] = []
    real = bulk.copy_vouchers

    def counted(session: Any, *, codes: Any, shared: Any) -> None:
        copies.append(len(codes))
        real(session, codes=codes, shared=shared)

    with monkeypatch.context() as patch:
        patch.setattr(bulk, "copy_vouchers", counted)
        if not copy:
            patch.setattr(bulk, "uses_copy", lambda session: False)
        with database.session_scope() as session:
            offer = session.get(Offer, uuid.UUID(offer_id))
            assert offer is not None
            made = service.insert_codes(session, offer=offer, **options)
    assert copies == ([len(made)] if copy else [])
    return made


@pytest.mark.postgres
def test_copy_stores_what_the_insert_stores(client: TestClient, world: World,
                                            database: Database, member_a: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Both validity bounds, the window from the issue day, a time with microseconds given
    # in another zone than UTC, a member and a batch: every column holds a value somewhere.
    windowed = make_offer(client, world.a.merchant_key, valid_from="2026-01-01T00:00:00Z",
                          valid_until="2027-01-01T00:00:00+01:00", valid_days=30)
    plain = make_offer(client, world.a.merchant_key)
    with database.session_scope() as session:
        batch = batches.start_batch(session, actor=SYSTEM, offer_id=uuid.UUID(plain["id"]),
                                    count=5_000, max_redemptions=3)
    now = datetime(2026, 11, 22, 18, 4, 5, 654321, tzinfo=timezone(timedelta(hours=-5)))
    cases = [(windowed["id"], {"count": 3, "member_id": uuid.UUID(member_a["id"]),
                               "max_redemptions": 1, "source": "api", "now": now}),
             (plain["id"], {"count": 4, "member_id": None, "max_redemptions": 3,
                            "source": "batch", "batch_id": batch.id, "now": now})]
    for offer_id, options in cases:
        copied = _insert(database, offer_id, copy=True, monkeypatch=monkeypatch, **options)
        inserted = _insert(database, offer_id, copy=False, monkeypatch=monkeypatch, **options)
        rows = {row[1]: row for row in _rows(database, offer_id=uuid.UUID(offer_id))}
        assert sorted(rows) == sorted(copied + inserted)
        by_copy = [rows[code] for code in copied]
        by_insert = [rows[code] for code in inserted]
        # Row for row, every column but the id and the code is the same.
        assert len(by_copy) == len(by_insert) == options["count"]
        assert len({row[2:] for row in by_copy + by_insert}) == 1
        for row in by_copy:
            assert isinstance(row[0], uuid.UUID) and row[0].version == 7
        assert len({row[0] for row in rows.values()}) == len(rows)
    [windowed_row] = {row[2:] for row in _rows(database, offer_id=uuid.UUID(windowed["id"]))}
    stored = dict(zip([column.key for column in SHARED], windowed_row, strict=True))
    assert stored["member_id"] == uuid.UUID(member_a["id"])
    assert stored["valid_from"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert stored["valid_until"] == now + timedelta(days=30)  # earlier than the offer's end
    assert stored["issued_at"] == now and stored["issued_at"].microsecond == 654321
    assert (stored["batch_id"], stored["max_redemptions"], stored["source"]) == (
        None, 1, "api")
    [plain_row] = {row[2:] for row in _rows(database, offer_id=uuid.UUID(plain["id"]))}
    stored = dict(zip([column.key for column in SHARED], plain_row, strict=True))
    assert (stored["member_id"], stored["valid_from"], stored["valid_until"]) == (
        None, None, None)
    assert (stored["batch_id"], stored["max_redemptions"], stored["source"]) == (
        batch.id, 3, "batch")


@pytest.mark.postgres
def test_a_clash_during_the_copy_makes_the_chunk_again(client: TestClient, world: World,
                                                       database: Database,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "CHUNK", 700)
    other = make_offer(client, world.a.merchant_key)
    [taken_display] = make_codes(client, world.a.merchant_key, other["id"])
    taken = codes.parse_code(taken_display)
    offer = make_offer(client, world.a.merchant_key)
    with database.session_scope() as session:
        batch = batches.start_batch(session, actor=SYSTEM, offer_id=uuid.UUID(offer["id"]),
                                    count=1_200, max_redemptions=None)
    real = codes.generate_codes
    draws: list[list[str]] = []

    def first_draw_repeats_a_stored_code(count: int) -> list[str]:
        drawn = real(count)
        if not draws:
            drawn[350] = taken
        draws.append(drawn)
        return drawn

    copied: list[int] = []
    real_copy = bulk.copy_vouchers

    def counted(session: Any, *, codes: Any, shared: Any) -> None:
        copied.append(len(codes))
        real_copy(session, codes=codes, shared=shared)

    monkeypatch.setattr(service.codes, "generate_codes", first_draw_repeats_a_stored_code)
    monkeypatch.setattr(bulk, "copy_vouchers", counted)
    seen: list[int] = []
    batches.run_batch(database, batch.id, progress=lambda done, _: seen.append(done))
    assert seen == [700, 1_200]
    assert [len(drawn) for drawn in draws] == copied == [700, 700, 500]
    stored = {row[1] for row in _rows(database, batch_id=batch.id)}
    # The refused chunk left nothing behind; the chunk made again and the next one stayed.
    assert stored == set(draws[1]) | set(draws[2])
    assert not stored & set(draws[0])
    with database.session_scope() as session:
        holder = session.scalar(select(Voucher.offer_id).where(Voucher.code == taken))
        assert holder == uuid.UUID(other["id"])
        assert session.scalar(select(func.count()).select_from(Voucher)) == 1 + 1_200
        done = session.get(VoucherBatch, batch.id)
        assert done is not None
        assert (done.status, done.generated, done.error) == ("done", 1_200, None)


@pytest.mark.postgres
def test_a_code_refused_every_time_fails_after_the_attempts(
        client: TestClient, world: World, database: Database,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_offer(client, world.a.merchant_key)
    [taken_display] = make_codes(client, world.a.merchant_key, other["id"])
    taken = codes.parse_code(taken_display)
    offer = make_offer(client, world.a.merchant_key)
    real = codes.generate_codes
    draws: list[int] = []

    def always_the_stored_code(count: int) -> list[str]:
        draws.append(count)
        return [taken, *real(count - 1)]

    monkeypatch.setattr(service.codes, "generate_codes", always_the_stored_code)
    with pytest.raises(IntegrityError, match="uq_vouchers_code"):
        _insert(database, offer["id"], copy=True, monkeypatch=monkeypatch, count=50,
                member_id=None, max_redemptions=1, source="api")
    assert draws == [50] * service.INSERT_ATTEMPTS
    assert len(_rows(database, offer_id=uuid.UUID(offer["id"]))) == 0


def _shared(offer: Offer, **changes: Any) -> dict[str, Any]:
    return {"merchant_id": offer.merchant_id, "offer_id": offer.id, "member_id": None,
            "max_redemptions": 1, "redemptions_count": 0, "valid_from": None,
            "valid_until": None, "source": "api", "batch_id": None,
            "issued_at": datetime(2026, 11, 22, tzinfo=UTC), **changes}


def test_a_code_must_name_a_stored_offer_and_batch(client: TestClient, world: World,
                                                   database: Database) -> None:
    """The references of a code hold on both backends: foreign keys on SQLite, a check
    per statement on PostgreSQL (migration 0012), for an INSERT and for a COPY alike."""
    offer_id = uuid.UUID(make_offer(client, world.a.merchant_key)["id"])
    with database.session_scope() as session:
        offer = session.get(Offer, offer_id)
        assert offer is not None
        good = _shared(offer)
    bad_rows = [{"offer_id": uuid.uuid4()}, {"batch_id": uuid.uuid4()}]
    if IS_POSTGRES:
        # Stricter than a foreign key: the code's merchant is its offer's.
        bad_rows.append({"merchant_id": uuid.UUID(world.b.merchant_id)})
    for changes in bad_rows:
        writes = [lambda session, changes=changes: session.execute(
            insert_for(session, Voucher),
            [{"id": uuid.uuid4(), "code": codes.generate_code(), **good, **changes}])]
        if IS_POSTGRES:
            writes.append(lambda session, changes=changes: bulk.copy_vouchers(
                session, codes=codes.generate_codes(3), shared={**good, **changes}))
        for write in writes:
            with pytest.raises(IntegrityError), database.session_scope() as session:
                write(session)
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Voucher)) == 0
        offer = session.get(Offer, offer_id)
        assert offer is not None
        made = service.insert_codes(session, offer=offer, count=5, member_id=None,
                                    max_redemptions=1, source="api")
    assert len(_rows(database, offer_id=offer_id)) == len(made) == 5


@pytest.mark.postgres
def test_a_codes_references_never_change(client: TestClient, world: World,
                                         database: Database) -> None:
    other = make_offer(client, world.a.merchant_key)
    offer = make_offer(client, world.a.merchant_key)
    [code] = make_codes(client, world.a.merchant_key, offer["id"])
    canonical = codes.parse_code(code)
    for column, value in (("offer_id", uuid.UUID(other["id"])), ("batch_id", uuid.uuid4()),
                          ("merchant_id", uuid.UUID(world.b.merchant_id))):
        with pytest.raises(IntegrityError, match="do not change"), \
                database.session_scope() as session:
            session.execute(update(Voucher).where(Voucher.code == canonical)
                            .values({column: value}))
    with database.session_scope() as session:
        # Other columns change as before (a use, a revocation).
        session.execute(update(Voucher).where(Voucher.code == canonical)
                        .values(redemptions_count=1))
        row = session.scalars(select(Voucher).where(Voucher.code == canonical)).one()
        assert (row.offer_id, row.redemptions_count) == (uuid.UUID(offer["id"]), 1)
