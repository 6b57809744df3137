"""The voucher-code benchmark's database part (bench/codes.py) at a tiny size on the test
database, so that it cannot rot: what it runs and what its checks catch, never how fast."""

from __future__ import annotations

import pytest
from bench import codes as bench_codes
from sqlalchemy import func, select, update

from patron.db import Database
from patron.vouchers import batches
from patron.vouchers.models import Voucher
from tests.conftest import IS_POSTGRES


def test_the_bulk_path_is_timed_and_its_result_checked(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "CHUNK", 700)
    offers = bench_codes.make_offers(database)
    bench_codes.preload(database, offers.preloaded, 1_500, chunk=1_000)
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.offer_id == offers.preloaded)) == 1_500
    bulk, batch_id = bench_codes.time_bulk(database, offers.timed, 2_500)
    assert (bulk.count, bulk.chunk, len(bulk.chunk_seconds)) == (2_500, 700, 4)
    assert bulk.seconds >= sum(bulk.chunk_seconds) > 0
    assert bulk.per_second == 2_500 / bulk.seconds
    assert (bulk.database_cpu is not None) is IS_POSTGRES
    check = {"batch_id": batch_id, "offer_id": offers.timed, "count": 2_500, "total": 4_000}
    bench_codes.check_stored(database, **check)

    with pytest.raises(bench_codes.BenchError,
                       match=r"the batch is \('done', 2500, None\), expected done with "
                             r"2,501 codes"):
        bench_codes.check_stored(database, **{**check, "count": 2_501})
    with pytest.raises(bench_codes.BenchError,
                       match="the table holds 4,000 codes, 4,000 distinct; expected 4,001"):
        bench_codes.check_stored(database, **{**check, "total": 4_001})
    with pytest.raises(bench_codes.BenchError,
                       match="2,500 not bearer codes of the offer; expected 2,500"):
        bench_codes.check_stored(database, **{**check, "offer_id": offers.preloaded})
    with database.session_scope() as session:
        code = session.scalar(select(Voucher.code).where(Voucher.batch_id == batch_id)
                              .order_by(Voucher.code).limit(1))
        assert code is not None
        # "U" is no canonical symbol.
        session.execute(update(Voucher).where(Voucher.code == code).values(code="U" + code[1:]))
    with pytest.raises(bench_codes.BenchError, match="1 malformed codes"):
        bench_codes.check_stored(database, **check)


@pytest.mark.postgres
def test_lookups_are_timed_against_the_table(database: Database) -> None:
    offers = bench_codes.make_offers(database)
    bench_codes.preload(database, offers.preloaded, 2_000)
    assert bench_codes.time_lookups(database, 2_000) > 0


def test_the_report_says_pass_or_fail_on_the_timed_run() -> None:
    bulk = bench_codes.Bulk(count=1_000_000, chunk=10_000, seconds=25.0,
                            chunk_seconds=[0.2, 0.3, 0.9], client_cpu=4.0, database_cpu=20.0)
    measured = bench_codes.Measured(bulk=bulk, lookups=1.5, lookup_count=100_000,
                                    load_before=1.0, load_after=2.0)
    lines = bench_codes.report(measured, product_chunk=10_000)
    assert lines[0].endswith("chunks of 10,000: 3 chunks, each one COPY and commit): 25.0 s, "
                             "40,000 codes/s")
    assert "median 0.30 s, slowest 0.90 s" in lines[1]
    assert "this process 4.0 s, PostgreSQL sessions 20.0 s" in lines[1]
    assert "would add 15.0 s per 1,000,000" in lines[3]
    assert lines[-1] == "target <= 30 s: PASS"
    bulk.seconds, bulk.chunk = 30.5, 5_000
    lines = bench_codes.report(measured, product_chunk=10_000)
    assert "chunks of 5,000 (--chunk; the product's is 10,000)" in lines[0]
    assert lines[-1] == "target <= 30 s: FAIL"


def test_a_count_a_batch_cannot_make_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for count in ("1000", "10000001"):
        with pytest.raises(SystemExit):
            bench_codes.parse_args(["--count", count])
        assert "a batch makes 1001 to 10000000 codes" in capsys.readouterr().err
    assert bench_codes.parse_args(["--count", "1001"]).chunk == batches.CHUNK
