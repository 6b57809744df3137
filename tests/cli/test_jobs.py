"""`patron jobs expire` and `patron jobs run`, as an operator or cron runs them."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from patron.db import Database
from patron.ledger import rules, service
from patron.notify.models import OutboxEvent
from tests.cli.test_cli import db_url, patron  # noqa: F401 - db_url is a fixture
from tests.conftest import IS_POSTGRES
from tests.ledger.conftest import make_cast

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="CLI runs against its own SQLite file")

EARNED = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
# 1 April 00:00 in Tokyo is 31 March 15:00 UTC; the lot earned on 1 April (Tokyo) lasts
# through April.
END = rules.expiry_at(EARNED, "Asia/Tokyo", 0)


@pytest.fixture
def with_points(db_url):  # noqa: F811
    database = Database(db_url)
    try:
        cast = make_cast(database, merchants=1, members=1)
        with database.session_scope() as session:
            service.earn(session, merchant_id=cast.merchants[0], member_id=cast.members[0],
                         points=100, expires_at=END, idempotency_key="e1", source="test",
                         occurred_at=EARNED)
    finally:
        database.dispose()
    return db_url, cast


def state(url, cast):
    database = Database(url)
    try:
        with database.session_scope() as session:
            balance = service.points_balance(session, merchant_id=cast.merchants[0],
                                             member_id=cast.members[0])
            types = sorted(session.scalars(select(OutboxEvent.type)
                                           .where(OutboxEvent.type.like("points.%"))))
    finally:
        database.dispose()
    return balance, types


def test_jobs_expire_expires_what_is_due_as_of_now(with_points):
    url, cast = with_points
    early = patron(url, "jobs", "expire", "--now", "2026-04-30T23:59:59+09:00")
    assert "lots expired: 0 (0 points)" in early.stderr
    assert state(url, cast) == (100, [])
    # 1 May 00:00 in Tokyo, written with the Tokyo offset or in UTC alike.
    done = patron(url, "jobs", "expire", "--now", "2026-04-30T15:00:00Z")
    assert "lots expired: 1 (100 points)" in done.stderr
    assert state(url, cast) == (0, ["points.expired"])
    again = patron(url, "jobs", "expire", "--now", "2026-05-01T00:00:00+09:00")
    assert "lots expired: 0 (0 points)" in again.stderr
    assert state(url, cast) == (0, ["points.expired"])


def test_jobs_expire_without_now_uses_the_current_time(db_url):  # noqa: F811
    database = Database(db_url)
    try:
        cast = make_cast(database, merchants=1, members=1)
        with database.session_scope() as session:
            for key, year in (("past", 2001), ("future", 2199)):
                service.earn(session, merchant_id=cast.merchants[0],
                             member_id=cast.members[0], points=10,
                             expires_at=datetime(year, 1, 1, tzinfo=UTC),
                             idempotency_key=key, source="test", occurred_at=EARNED)
    finally:
        database.dispose()
    assert "lots expired: 1 (10 points)" in patron(db_url, "jobs", "expire").stderr
    assert state(db_url, cast) == (10, ["points.expired"])


@pytest.mark.parametrize(("value", "message"), [
    ("2026-05-01T00:00:00", "needs a UTC offset"),
    ("tomorrow", "is not an ISO 8601 time"),
])
def test_a_bad_now_is_refused_and_changes_nothing(with_points, value, message):
    url, cast = with_points
    for command in ("expire", "run"):
        refused = patron(url, "jobs", command, "--now", value, check=False)
        assert refused.returncode == 2
        assert message in refused.stderr
    assert state(url, cast) == (100, [])


def test_jobs_run_runs_every_job_once(with_points):
    url, cast = with_points
    notices = patron(url, "jobs", "run", "--now", "2026-04-15T00:00:00Z")
    assert "expire-points: lots expired: 0 (0 points)" in notices.stderr
    assert "expiry-notices: new expiry notices: 1 (1 member/date groups" in notices.stderr
    assert state(url, cast) == (100, ["points.expiring"])
    expired = patron(url, "jobs", "run", "--now", "2026-04-30T15:00:00Z")
    assert "lots expired: 1 (100 points)" in expired.stderr
    assert "new expiry notices: 0" in expired.stderr
    assert state(url, cast) == (0, ["points.expired", "points.expiring"])


def test_jobs_without_a_command_shows_help(db_url):  # noqa: F811
    result = patron(db_url, "jobs", check=False)
    assert "expire" in result.stdout + result.stderr and "run" in result.stdout + result.stderr


def test_jobs_scores_refits_every_merchant_with_purchases(db_url):  # noqa: F811
    from patron.members.models import Member
    from patron.scores.models import MemberStats, ScoreModel

    database = Database(db_url)
    try:
        make_cast(database, merchants=3, members=60)
        nothing = patron(db_url, "jobs", "scores")
        assert "nothing to refit" in nothing.stdout + nothing.stderr
        now = datetime(2026, 4, 1, tzinfo=UTC)
        with database.session_scope() as session:  # purchase histories for the members
            for index, member in enumerate(session.scalars(select(Member))):
                count = 1 + index % 4
                session.add(MemberStats(
                    member_id=member.id, merchant_id=member.merchant_id,
                    first_purchase_at=now - timedelta(days=200 + index),
                    last_purchase_at=now - timedelta(days=index % 50), purchase_count=count,
                    spend_minor=1000 * count, first_spend_minor=1000))
        result = patron(db_url, "jobs", "scores", "--now", now.isoformat())
        output = result.stdout + result.stderr
        lines = [line for line in output.splitlines() if line.startswith("merchant ")]
        with database.session_scope() as session:
            models = session.scalars(select(ScoreModel)).all()
            merchants = set(session.scalars(select(MemberStats.merchant_id).distinct()))
        assert lines and len(lines) == len(models) == len(merchants), output
        assert all(" members, " in line and " repeat; " in line for line in lines)
        assert all(model.rfm_boundaries["frequency"] for model in models)
    finally:
        database.dispose()


def _shop_with_a_free_repeat_purchase(db_url, now, *, number=10001, members=80):  # noqa: F811
    """A shop with a year of purchases, one of whose members came back once for a free
    coffee (their only repeat purchase spent nothing)."""
    from patron.scores.service import Purchase
    from tests.scores.history import make_shop, record, year_of_purchases

    database = Database(db_url)
    try:
        shop = make_shop(database, number=number, members=members)
        free_rider = shop.members[0]
        purchases = [item for item in year_of_purchases(shop, now=now, seed=number)
                     if item.member_id != free_rider]
        purchases += [Purchase(member_id=free_rider, merchant_id=shop.merchant_id,
                               store_id=shop.store_id, occurred_at=now - timedelta(days=days),
                               spend_minor=spend, category_quantities={})
                      for days, spend in ((40, 1500), (10, 0))]
        record(database, purchases)
    finally:
        database.dispose()
    return shop, free_rider


def _lifetime(url, member_id, merchant_id):
    from patron.scores.models import MemberScore

    database = Database(url)
    try:
        with database.session_scope() as session:
            row = session.get(MemberScore, (member_id, merchant_id))
            return None if row is None else (row.p_alive, row.clv_90d_minor)
    finally:
        database.dispose()


def test_a_free_repeat_purchase_is_scored_not_a_crash(db_url):  # noqa: F811
    now = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
    shop, free_rider = _shop_with_a_free_repeat_purchase(db_url, now)
    result = patron(db_url, "jobs", "scores", "--now", now.isoformat(), check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "ClvError" not in output
    assert f"merchant {shop.merchant_id}: 80 members" in output
    alive, value = _lifetime(db_url, free_rider, shop.merchant_id)
    # A repeat purchase 10 days ago: very likely still a customer; their spend is the
    # population's (a free purchase says nothing about what they pay), so CLV is positive.
    assert 0.5 < alive <= 1 and value > 0


def test_jobs_run_finishes_every_job_when_a_merchants_refit_fails(db_url):  # noqa: F811
    from sqlalchemy import update

    from patron.scores.models import MemberScore, ScoreModel
    from patron.tenancy.models import Merchant

    now = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
    good, _ = _shop_with_a_free_repeat_purchase(db_url, now, number=10001)
    bad, _ = _shop_with_a_free_repeat_purchase(db_url, now, number=10002)
    patron(db_url, "jobs", "scores", "--now", now.isoformat())
    database = Database(db_url)
    try:
        with database.session_scope() as session:  # a time zone the refit cannot read
            session.execute(update(Merchant).where(Merchant.id == bad.merchant_id)
                            .values(timezone="Nowhere/Atlantis"))
        later = now + timedelta(days=1)
        result = patron(db_url, "jobs", "run", "--now", later.isoformat(), check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        lines = output.splitlines()
        # Every job ran and said so, the refit named the merchant that failed, and the
        # last line sums the failures up.
        for name in ("expire-points", "expiry-notices", "release-voucher-holds",
                     "resume-code-batches", "refit-scores", "campaign-calendar",
                     "weather-feed"):
            assert any(line.startswith(f"{name}: ") for line in lines), output
        assert f"merchant {bad.merchant_id}: the refit failed: ZoneInfoNotFoundError" \
            in " ".join(output.split())
        assert "jobs failed: " in lines[-1] and "refit-scores" in lines[-1]
        with database.session_scope() as session:
            computed = {merchant: set(session.scalars(
                select(MemberScore.computed_at).where(MemberScore.merchant_id == merchant)))
                for merchant in (good.merchant_id, bad.merchant_id)}
            note = session.get(ScoreModel, bad.merchant_id).note
        assert computed == {good.merchant_id: {later}, bad.merchant_id: {now}}
        assert note is not None and note.startswith("the refit failed: ZoneInfoNotFoundError")
    finally:
        database.dispose()
