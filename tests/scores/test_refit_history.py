"""The refit on realistic histories: a year of a shop's purchases with several receipts on
some days, free purchases and members who stopped coming; small merchants; a merchant
whose refit fails among others; the lifetime models' day convention."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from patron.db import Database
from patron.jobs import scheduler as jobs
from patron.scores import refit as refit_module
from patron.scores.models import MemberPurchaseDay, MemberScore, ScoreModel
from patron.scores.refit import (
    MAXIMUM_LIKELIHOOD,
    PENALISED,
    Histories,
    histories,
    run_refits,
)
from patron.scores.service import Purchase, record_purchases, record_refund
from tests.scores.history import Shop, make_shop, record, year_of_purchases

NOW = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)  # noon in Tokyo


def _scores(database: Database, merchant_id: uuid.UUID) -> dict[uuid.UUID, MemberScore]:
    with database.session_scope() as session:
        return {row.member_id: row for row in session.scalars(
            select(MemberScore).where(MemberScore.merchant_id == merchant_id))}


def _days(database: Database, shop: Shop) -> dict[uuid.UUID, list[tuple[date, int]]]:
    with database.session_scope() as session:
        rows = session.execute(select(MemberPurchaseDay.member_id, MemberPurchaseDay.day,
                                      MemberPurchaseDay.spend_minor)
                               .where(MemberPurchaseDay.merchant_id == shop.merchant_id)
                               .order_by(MemberPurchaseDay.day)).all()
    days: dict[uuid.UUID, list[tuple[date, int]]] = {}
    for member_id, day, spend in rows:
        days.setdefault(member_id, []).append((day, spend))
    return days


def test_a_year_of_history_gives_every_repeat_buyer_p_alive_and_clv(
        database: Database) -> None:
    shop = make_shop(database, number=20001, members=300)
    purchases = year_of_purchases(shop, now=NOW, seed=11)
    record(database, purchases)
    assert sum(1 for item in purchases if item.spend_minor == 0) >= 10  # free ones among them
    [refit] = run_refits(database, NOW)
    assert (refit.fitted, refit.failed, refit.note, refit.fit_method) == (
        True, False, None, MAXIMUM_LIKELIHOOD)
    days = _days(database, shop)
    repeaters = {member for member, bought in days.items() if len(bought) > 1}
    assert refit.members == len(days) == 300 and refit.repeat_members == len(repeaters)
    assert len(repeaters) >= 150
    scores = _scores(database, shop.merchant_id)
    assert set(scores) == set(days)
    for member in repeaters:
        row = scores[member]
        assert 0 < row.p_alive <= 1 and row.expected_purchases_90d > 0
        assert row.clv_90d_minor >= 0 and row.computed_at == NOW
    # Those who came back often and lately are more likely alive than those who came
    # often and then stopped for months.
    recent = [scores[m].p_alive for m in repeaters
              if len(days[m]) >= 4 and (NOW.date() - days[m][-1][0]).days <= 14]
    lapsed = [scores[m].p_alive for m in repeaters
              if len(days[m]) >= 4 and (NOW.date() - days[m][-1][0]).days >= 120]
    assert recent and lapsed and min(recent) > max(lapsed)
    # CLV in yen: a lapsed member's can round to nothing, a recent regular's cannot.
    assert all(scores[m].clv_90d_minor > 0 for m in repeaters
               if (NOW.date() - days[m][-1][0]).days <= 30)
    with database.session_scope() as session:
        model = session.get(ScoreModel, shop.merchant_id)
        assert model is not None and model.fit_method == MAXIMUM_LIKELIHOOD
        assert model.bgnbd is not None and model.gamma_gamma is not None


def test_a_small_merchant_gets_clv_from_the_penalised_fit(database: Database) -> None:
    shop = make_shop(database, number=20002, members=30)
    record(database, year_of_purchases(shop, now=NOW, seed=5))
    [refit] = run_refits(database, NOW)
    # Under 50 members maximum likelihood is not tried: the penalised fit (docs/scores.md).
    assert (refit.fitted, refit.note, refit.fit_method) == (True, None, PENALISED)
    assert refit.members == 30
    scores = _scores(database, shop.merchant_id)
    assert len(scores) == 30
    days = _days(database, shop)
    repeaters = [member for member, bought in days.items() if len(bought) > 1]
    assert len(repeaters) >= 10
    assert all(scores[m].clv_90d_minor >= 0 and 0 < scores[m].p_alive <= 1 for m in repeaters)
    assert all(scores[m].clv_90d_minor > 0 for m in repeaters
               if (NOW.date() - days[m][-1][0]).days <= 30)
    with database.session_scope() as session:
        model = session.get(ScoreModel, shop.merchant_id)
        assert model is not None and model.fit_method == PENALISED and model.note is None


def test_maximum_likelihood_that_fails_falls_back_to_the_penalised_fit(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(database, number=20003, members=80)
    record(database, year_of_purchases(shop, now=NOW, seed=6))
    fit_bgnbd = refit_module.clv.fit_bgnbd

    def no_maximum_without_prior(**kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("prior") is None:
            raise refit_module.clv.ClvFitError("b ran to the edge of the search")
        return fit_bgnbd(**kwargs)

    monkeypatch.setattr(refit_module.clv, "fit_bgnbd", no_maximum_without_prior)
    [refit] = run_refits(database, NOW)
    assert (refit.fitted, refit.fit_method, refit.note) == (True, PENALISED, None)
    assert len(_scores(database, shop.merchant_id)) == 80


def test_purchases_on_one_store_local_day_are_one_transaction(database: Database) -> None:
    shop = make_shop(database, number=20004, members=1)  # Tokyo, UTC+9
    [member] = shop.members

    def bought(at: datetime, spend: int) -> Purchase:
        return Purchase(member_id=member, merchant_id=shop.merchant_id,
                        store_id=shop.store_id, occurred_at=at, spend_minor=spend,
                        category_quantities={})

    with database.session_scope() as session:
        record_purchases(session, [
            # 1 March in Tokyo: 08:00, and 23:30 (14:30 UTC) — one day, two receipts.
            bought(datetime(2026, 2, 28, 23, 0, tzinfo=UTC), 500),
            bought(datetime(2026, 3, 1, 14, 30, tzinfo=UTC), 700),
            # 2 March 00:30 in Tokyo, still 1 March in UTC: the next day. Free.
            bought(datetime(2026, 3, 1, 15, 30, tzinfo=UTC), 0)])
    with database.session_scope() as session:  # an offline till's sales, later
        record_purchases(session, [bought(datetime(2026, 3, 10, 3, 0, tzinfo=UTC), 1000),
                                   bought(datetime(2026, 3, 10, 5, 0, tzinfo=UTC), 400)])
    assert _days(database, shop)[member] == [
        (date(2026, 3, 1), 1200), (date(2026, 3, 2), 0), (date(2026, 3, 10), 1400)]
    with database.session_scope() as session:
        seen = histories(session, merchant_id=shop.merchant_id, today=date(2026, 3, 31))
    assert _history(seen) == [(member, 2.0, 9.0, 30.0, 1.0, 1400.0)]
    # A return of the 10 March purchases' goods: that day's spend is what was kept.
    with database.session_scope() as session:
        record_refund(session, member_id=member, merchant_id=shop.merchant_id,
                      store_id=shop.store_id,
                      purchased_at=datetime(2026, 3, 10, 5, 0, tzinfo=UTC), refund_minor=400)
        seen = histories(session, merchant_id=shop.merchant_id, today=date(2026, 3, 31))
    assert _history(seen) == [(member, 2.0, 9.0, 30.0, 1.0, 1000.0)]
    with database.session_scope() as session:
        record_refund(session, member_id=member, merchant_id=shop.merchant_id,
                      store_id=shop.store_id,
                      purchased_at=datetime(2026, 3, 10, 3, 0, tzinfo=UTC), refund_minor=1000)
        seen = histories(session, merchant_id=shop.merchant_id, today=date(2026, 3, 31))
    # Refunded to nothing, the day still counts as a visit, and no longer for the spend.
    assert _history(seen) == [(member, 2.0, 9.0, 30.0, 0.0, 0.0)]


def _history(seen: Histories) -> list[tuple[uuid.UUID, float, float, float, float, float]]:
    return [(member, float(seen.frequency[index]), float(seen.recency[index]),
             float(seen.age[index]), float(seen.spend_frequency[index]),
             float(seen.monetary[index]))
            for index, member in enumerate(seen.members)]


def test_one_merchants_failure_leaves_its_scores_stale_and_the_others_refitted(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_shop(database, number=20005, members=60)
    bad = make_shop(database, number=20006, members=60)
    for shop, seed in ((good, 1), (bad, 2)):
        record(database, year_of_purchases(shop, now=NOW, seed=seed))
    run_refits(database, NOW)
    before = {member: (row.p_alive, row.clv_90d_minor, row.computed_at)
              for member, row in _scores(database, bad.merchant_id).items()}
    assert len(before) == 60
    real = refit_module.histories

    def broken_for_one(session, *, merchant_id, today):  # type: ignore[no-untyped-def]
        if merchant_id == bad.merchant_id:
            raise RuntimeError("disk on fire")
        return real(session, merchant_id=merchant_id, today=today)

    monkeypatch.setattr(refit_module, "histories", broken_for_one)
    later = NOW + timedelta(days=1)
    refits = {refit.merchant_id: refit for refit in run_refits(database, later)}
    assert refits[good.merchant_id].fitted and not refits[good.merchant_id].failed
    failed = refits[bad.merchant_id]
    assert failed.failed and not failed.fitted
    assert failed.note == "the refit failed: RuntimeError (see the server log)"
    assert {row.computed_at for row in _scores(database, good.merchant_id).values()} == {
        later}
    # The failed merchant's scores are those of the day before, marked stale.
    assert {member: (row.p_alive, row.clv_90d_minor, row.computed_at)
            for member, row in _scores(database, bad.merchant_id).items()} == before
    with database.session_scope() as session:
        model = session.get(ScoreModel, bad.merchant_id)
        assert model is not None and model.note == failed.note
        assert model.fitted_at == NOW  # nothing else of the failed refit was kept

    # The job goes on to the end and reports the failure; the other jobs still run.
    with pytest.raises(jobs.JobFailed, match=f"merchant {bad.merchant_id}: the refit "
                                             f"failed: RuntimeError"):
        jobs._refit_scores(database, later, None)
    ran: list[str] = []

    def after(database: Database, now: datetime, stop: threading.Event | None) -> str:
        ran.append("after")
        return "done"

    reports = jobs.run_all(database, later, jobs=(
        jobs.Job("refit-scores", jobs._refit_scores), jobs.Job("after", after)))
    assert [(report.name, report.failed) for report in reports] == [
        ("refit-scores", True), ("after", False)]
    assert "lifetime models for 1 (0 by the small-merchant fallback)" in reports[0].summary
    assert ran == ["after"]


def test_a_job_that_failed_in_part_is_not_rerun_at_every_tick(database: Database) -> None:
    calls: list[str] = []

    def partial(database: Database, now: datetime, stop: threading.Event | None) -> str:
        calls.append("partial")
        raise jobs.JobFailed("one merchant failed")

    def broken(database: Database, now: datetime, stop: threading.Event | None) -> str:
        calls.append("broken")
        raise RuntimeError("boom")

    daily = timedelta(hours=24)
    runner = jobs.Scheduler(database, interval=60, lease=_Held(), jobs=(
        jobs.Job("partial", partial, every=daily), jobs.Job("broken", broken, every=daily)))
    runner.tick()
    runner.tick()
    # Done in part: next in a day. Failed outright (the database away, say): next tick.
    assert calls == ["partial", "broken", "broken"]


class _Held:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None
