"""The checkout benchmark's machinery at a tiny size on SQLite, so that it cannot rot.

Runs the loader, the server, the load generator process, the raw baseline and the report
end to end in a few seconds; asserts what was done (every checkout answered 201, the
ledger sound, the baseline's writes in step with a real commit), never how fast.
"""

from __future__ import annotations

import math

import pytest
from bench import checkout
from bench.baskets import Kind, PurchaseMaker
from bench.capture import capture_raw, capture_real, compare, sample_purchases
from bench.servers import sqlite_database
from bench.shop import build_shop, load_members
from sqlalchemy import func, select

from patron.campaigns.models import Campaign, CampaignOutcome
from patron.db import Database
from patron.ledger.models import JournalEntry, Posting
from patron.ledger.service import check_invariants
from patron.members.models import Member
from tests.conftest import IS_POSTGRES

# Its servers and databases are its own SQLite files, whichever pass runs the suite.
pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="runs its own SQLite servers")

MEMBERS = 40


def test_loader_writes_a_sound_ledger() -> None:
    with sqlite_database() as url:
        database = Database(url)
        try:
            shop = build_shop(database, stores=1, tills_per_store=1)
            report = load_members(database, shop, members=MEMBERS, postings_per_member=10,
                                  seed=1)
            with database.session_scope() as session:
                assert check_invariants(session) == []
                assert session.scalar(select(func.count()).select_from(Member)) == MEMBERS
                assert session.scalar(select(func.count()).select_from(Posting)) == \
                    10 * MEMBERS
                assert session.scalar(select(func.count()).select_from(JournalEntry)) == \
                    5 * MEMBERS
        finally:
            database.dispose()
    assert report.postings == 10 * MEMBERS
    assert report.members == MEMBERS


def test_raw_baseline_writes_what_a_real_commit_writes() -> None:
    """When the checkout starts writing something new, bring bench/rawsql.py in step."""
    with sqlite_database() as url:
        database = Database(url)
        try:
            shop = build_shop(database, stores=1, tills_per_store=1)
            load_members(database, shop, members=MEMBERS, postings_per_member=10, seed=1)
            maker = PurchaseMaker(members=MEMBERS, seed=5)
            samples = sample_purchases([maker.next() for _ in range(200)])
            assert set(samples) == set(Kind)
            for kind, purchase in samples.items():
                real = capture_real(database, shop, purchase, receipt_no=f"REAL-{kind}")
                raw = capture_raw(url, shop, purchase, receipt_no=f"RAW-{kind}")
                assert compare(real, raw) == [], kind
            with database.session_scope() as session:
                assert check_invariants(session) == []
        finally:
            database.dispose()


def test_checkout_benchmark_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    args = checkout.parse_args([
        "--no-postgres", "--sqlite-members", str(MEMBERS), "--sqlite-workers", "1",
        "--concurrency", "2", "--warmup-seconds", "0.5", "--probe-seconds", "0.5",
        "--seconds", "1", "--raw-seconds", "0.3", "--stores", "1", "--tills", "2"])
    case = checkout.run_sqlite(MEMBERS, args)

    assert case.http is not None and case.http.seventy is not None and case.raw is not None
    for phase in (case.http.maximum, case.http.seventy):
        assert phase.ok > 0
        assert phase.failed == 0, phase.errors
        assert phase.statuses.keys() == {201}
    assert case.http.workers == 1
    assert case.raw.latencies_ms and case.raw.refused == 0
    assert case.ledger == "sound"
    assert not math.isnan(case.ratio)
    table = "\n".join(checkout.table([case]))
    assert "SQLite" in table and f"{MEMBERS:>10,}" in table
    assert checkout.targets([case]) == [
        f"SQLite, {MEMBERS} members: figures only, no targets ({case.note})"]
    assert "maximum, closed loop" in capsys.readouterr().out


def test_sizes_are_options() -> None:
    args = checkout.parse_args(["--sizes", "2000,1_000_000", "--sqlite-members", "0"])
    assert args.sizes == [2000, 1_000_000]
    assert args.sqlite_members == 0
    with pytest.raises(SystemExit):
        checkout.parse_args(["--sizes", "ten"])


def test_campaigns_comparison_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    """Without, then with the rules benchmark's campaigns active: both phases measured on
    the same server configuration, the campaigns really fired, and the report says so."""
    args = checkout.parse_args([
        "--no-postgres", "--concurrency", "2", "--warmup-seconds", "0.5",
        "--seconds", "1.5", "--stores", "1", "--tills", "2", "--campaigns", "100"])
    with sqlite_database() as url:
        shop, _ = checkout.prepare(url, members=MEMBERS, args=args)
        without = checkout.measure_http(url, shop, members=MEMBERS, workers=1, args=args,
                                        concurrency=2)
        compared = checkout.measure_campaigns(url, shop, members=MEMBERS, without=without,
                                              args=args)
        database = Database(url)
        try:
            with database.session_scope() as session:
                active = session.scalar(select(func.count()).select_from(Campaign).where(
                    Campaign.merchant_id == shop.merchant_id, Campaign.status == "active"))
                written = session.scalar(select(func.count()).select_from(CampaignOutcome)
                                         .where(CampaignOutcome.held_out.is_(False)))
                assert check_invariants(session) == []
        finally:
            database.dispose()

    assert active == compared.count == 100
    assert compared.without is without
    assert compared.http.workers == without.workers == 1
    assert compared.http.concurrency == without.concurrency == 2
    assert compared.http.probes == []  # the concurrency found without, not probed again
    for http in (without, compared.http):
        assert http.seventy is not None
        for phase in (http.maximum, http.seventy):
            assert phase.ok > 0 and phase.statuses.keys() == {201}, phase.errors
    outcomes = compared.outcomes
    # Only checkouts of the with-campaigns phase are counted, and every outcome written
    # since the campaigns exist is one of them.
    assert outcomes.checkouts >= compared.http.maximum.ok + compared.http.seventy.ok
    assert 0 < outcomes.identified <= outcomes.checkouts
    assert outcomes.fired == written > 0
    assert 0 < outcomes.checkouts_with_outcome <= min(outcomes.fired, outcomes.identified)
    assert outcomes.vouchers > 0 and outcomes.points > 0
    assert 1 < outcomes.campaigns_fired <= 100
    assert compared.ratio == pytest.approx(compared.http.maximum.rate / without.maximum.rate)

    case = checkout.Case(backend="SQLite", members=MEMBERS, postings=0, http=without,
                         campaigns=compared)
    lines = checkout.campaign_lines([case])
    assert lines[0].startswith(f"SQLite, {MEMBERS} members, 1 workers, closed loop x2")
    assert lines[1].lstrip().startswith("without campaigns") and "70 %" in lines[1]
    assert lines[2].lstrip().startswith("with 100 campaigns") and "70 %" in lines[2]
    assert f"ratio with / without {compared.ratio:.2f}" in lines[3]
    assert lines[3].endswith("PASS" if compared.ratio >= checkout.CAMPAIGNS_SHARE else "FAIL")
    assert f"outcomes issued during the phase (campaign_outcomes): {outcomes.fired:,}" \
        in lines[4]
    assert "campaigns written in" in capsys.readouterr().out


def test_campaigns_comparison_is_an_option() -> None:
    assert checkout.parse_args([]).campaigns == 100
    assert checkout.parse_args(["--campaigns", "0"]).campaigns == 0
    assert checkout.campaign_lines([checkout.Case(backend="PostgreSQL", members=10,
                                                  postings=0)]) == []
