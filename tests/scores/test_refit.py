"""The scheduled refit (``patron.scores.refit``) and ``GET /v1/members/{id}/scores``."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.db import Database
from patron.jobs.scheduler import JOBS
from patron.kit.clock import clock, utcnow
from patron.scores import clv
from patron.scores.models import MemberPurchaseDay, MemberScore, MemberStats, ScoreModel
from patron.scores.refit import FALLBACK_MIN_MEMBERS, run_refits
from patron.scores.service import Purchase, record_purchases
from patron.scores.synthetic import draw_members
from tests.conftest import World, auth
from tests.pos.conftest import enrol, purchase

BGNBD = clv.BgNbdParameters(r=0.8, alpha=20.0, a=0.9, b=3.0)
GAMMA_GAMMA = clv.GammaGammaParameters(p=6.0, q=4.0, v=150.0)
FIRST_SPEND = 900


def _histories(client: TestClient, world: World, database: Database, members: int,
               now: datetime, seed: int = 7) -> dict[str, Any]:
    """``members`` enrolled members of merchant A (Tokyo) with synthetic purchase histories
    recorded through ``record_purchases``, one purchase per day at local noon; the arrays
    the models should see, built here independently."""
    drawn = draw_members(BGNBD, GAMMA_GAMMA, members=members,
                         rng=np.random.default_rng(seed), min_age=30, max_age=400)
    rng = np.random.default_rng(seed + 1)
    ids = [uuid.UUID(enrol(client, world.a)["id"]) for _ in range(members)]
    merchant, store = uuid.UUID(world.a.merchant_id), uuid.UUID(world.a.store_id)
    tokyo = ZoneInfo("Asia/Tokyo")
    today = now.astimezone(tokyo).date()
    purchases, seen = [], {}
    for index, member_id in enumerate(ids):
        age = int(drawn.T[index])
        recency = min(int(drawn.recency[index]), age)
        x = min(int(drawn.frequency[index]), recency)
        recency = recency if x else 0
        middle = rng.choice(np.arange(1, recency), size=x - 1, replace=False) if x else []
        repeat_days = [*sorted(int(day) for day in middle), recency] if x else []
        spends = [max(1, round(float(drawn.monetary[index]) * rng.uniform(0.5, 1.5)))
                  for _ in repeat_days]
        first = today - timedelta(days=age)
        for offset, spend in [(0, FIRST_SPEND), *zip(repeat_days, spends, strict=True)]:
            purchases.append(Purchase(
                member_id=member_id, merchant_id=merchant, store_id=store,
                occurred_at=datetime.combine(first + timedelta(days=offset), time(12),
                                             tokyo),
                spend_minor=spend, category_quantities={}))
        seen[member_id] = (x, recency, age, sum(spends) / x if x else 0.0)
    with database.session_scope() as session:
        record_purchases(session, purchases)
    order = sorted(ids)
    columns = np.array([seen[member_id] for member_id in order], dtype=float)
    return {"ids": order, "x": columns[:, 0], "recency": columns[:, 1], "T": columns[:, 2],
            "monetary": columns[:, 3]}


def test_the_refit_stores_the_models_and_every_members_lifetime_scores(
        client: TestClient, world: World, database: Database) -> None:
    now = utcnow()
    seen = _histories(client, world, database, 300, now)
    [refit] = run_refits(database, now)
    assert refit.fitted and refit.note is None
    assert refit.members == 300 and refit.repeat_members == int((seen["x"] > 0).sum())

    bgnbd = clv.fit_bgnbd(frequency=seen["x"], recency=seen["recency"], T=seen["T"])
    gamma_gamma = clv.fit_gamma_gamma(frequency=seen["x"], monetary=seen["monetary"])
    expected = clv.score_members(bgnbd.parameters, gamma_gamma.parameters,
                                 frequency=seen["x"], recency=seen["recency"], T=seen["T"],
                                 monetary=seen["monetary"], horizon_days=90)
    with database.session_scope() as session:
        model = session.get(ScoreModel, uuid.UUID(world.a.merchant_id))
        assert model is not None and model.members == 300
        stored = clv.BgNbdParameters(**(model.bgnbd or {}))
        for name in ("r", "alpha", "a", "b"):
            assert getattr(stored, name) == pytest.approx(
                getattr(bgnbd.parameters, name), rel=1e-6)
        assert model.gamma_gamma == pytest.approx(vars(gamma_gamma.parameters), rel=1e-6)
        scores = {row.member_id: row for row in session.scalars(select(MemberScore))}
    assert len(scores) == 300
    for index, member_id in enumerate(seen["ids"]):
        row = scores[member_id]
        assert row.computed_at == now
        assert row.p_alive == pytest.approx(expected.probability_alive[index], rel=1e-5)
        assert row.expected_purchases_90d == pytest.approx(
            expected.expected_purchases[index], rel=1e-5)
        assert abs(row.clv_90d_minor - expected.clv[index]) <= 0.5 + 1e-5 * expected.clv[index]
        assert 0 <= row.p_alive <= 1 and row.clv_90d_minor >= 0


def test_scores_that_cannot_be_recomputed_stay_marked_stale_with_the_reason(
        client: TestClient, world: World, database: Database) -> None:
    now = utcnow()
    seen = _histories(client, world, database, 300, now)
    run_refits(database, now)
    merchant = uuid.UUID(world.a.merchant_id)
    with database.session_scope() as session:
        before = sorted(session.execute(select(MemberScore.member_id, MemberScore.p_alive,
                                               MemberScore.clv_90d_minor)).all())
        fitted = session.get(ScoreModel, merchant)
        assert fitted is not None and fitted.note is None
        parameters = (fitted.bgnbd, fitted.gamma_gamma, fitted.fit_method)
    with database.session_scope() as session:  # the merchant loses most of its members
        keep = seen["ids"][:FALLBACK_MIN_MEMBERS - 1]
        for table in (MemberStats, MemberPurchaseDay):
            session.execute(table.__table__.delete().where(table.member_id.not_in(keep)))
    [refit] = run_refits(database, now + timedelta(days=1))
    assert not refit.fitted and not refit.failed
    assert refit.note is not None and refit.note.startswith(
        "too few histories for the lifetime models: 9 members")
    with database.session_scope() as session:
        model = session.get(ScoreModel, merchant)
        assert model is not None and model.note == refit.note
        assert model.fitted_at == now + timedelta(days=1)  # RFM needs no model
        assert model.members == 9 and model.rfm_boundaries["frequency"]
        # The models the kept scores came from, unchanged.
        assert (model.bgnbd, model.gamma_gamma, model.fit_method) == parameters
        assert sorted(session.execute(select(MemberScore.member_id, MemberScore.p_alive,
                                             MemberScore.clv_90d_minor)).all()) == before
    answer = _scores(client, str(seen["ids"][0]), world.a.merchant_key).json()
    assert answer["note"] == refit.note
    assert answer["lifetime"]["stale"] is True
    assert answer["lifetime"]["stale_reason"] == refit.note
    assert answer["lifetime"]["computed_at"].startswith(now.isoformat()[:19])


def test_the_first_purchases_spend_is_the_earliest_purchases_even_out_of_order(
        world: World, client: TestClient, database: Database) -> None:
    member = uuid.UUID(enrol(client, world.a)["id"])
    merchant, store = uuid.UUID(world.a.merchant_id), uuid.UUID(world.a.store_id)
    now = utcnow()

    def bought(days_ago: int, spend: int) -> Purchase:
        return Purchase(member_id=member, merchant_id=merchant, store_id=store,
                        occurred_at=now - timedelta(days=days_ago), spend_minor=spend,
                        category_quantities={})

    with database.session_scope() as session:
        record_purchases(session, [bought(5, 500), bought(9, 900), bought(7, 700)])
    with database.session_scope() as session:  # an offline till's older sale, later
        record_purchases(session, [bought(12, 1200)])
    with database.session_scope() as session:
        record_purchases(session, [bought(1, 100)])
    with database.session_scope() as session:
        stats = session.get(MemberStats, (member, merchant))
        assert stats is not None
        assert (stats.first_spend_minor, stats.purchase_count, stats.spend_minor) == (
            1200, 5, 3400)


def test_the_refit_is_a_daily_scheduled_job() -> None:
    [job] = [job for job in JOBS if job.name == "refit-scores"]
    assert job.every == timedelta(hours=24)


# --- the endpoint ------------------------------------------------------------------------


def _scores(client: TestClient, member_id: str, key: str, **params: str) -> Any:
    return client.get(f"/v1/members/{member_id}/scores", headers=auth(key), params=params)


def test_a_checkout_shows_in_the_scores_at_once(client: TestClient, world: World,
                                                database: Database) -> None:
    member = enrol(client, world.a)
    before = _scores(client, member["id"], world.a.merchant_key)
    assert before.status_code == 200, before.text
    assert before.json()["purchases"] == 0 and before.json()["rfm"] is None
    lines = [{"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 2,
              "unit_price": 350},
             {"sku": "CR-1", "name": "Croissant", "category": "bakery", "quantity": 1,
              "unit_price": 300}]
    for receipt, basket in (("R-1", lines), ("R-2", lines[:1])):
        done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                           json=purchase(receipt_no=receipt, lines=basket,
                                         member={"member_id": member["id"]}))
        assert done.status_code in (200, 201), done.text
    after = _scores(client, member["id"], world.a.merchant_key).json()
    assert after["purchases"] == 2 and after["spend_minor"] == 1000 + 700
    assert after["average_spend_minor"] == 850 and after["currency"] == "JPY"
    assert [(a["category"], a["purchases"], a["share"]) for a in after["affinities"]] == [
        ("coffee", 2, 1.0), ("bakery", 1, 0.5)]
    assert [(v["store_id"], v["visits"]) for v in after["visits"]] == [
        (world.a.store_id, 2)]
    assert after["lifetime"] is None and "not been computed" in after["note"]

    clock.freeze(utcnow() + timedelta(days=3))
    run_refits(database, utcnow())
    refitted = _scores(client, member["id"], world.a.merchant_key).json()
    # The only member: every cut is its own value, so it is the most recent fifth (5)
    # and, its two purchases not above the cut, the least frequent (1): recent, not yet
    # frequent, no longer new.
    rfm = refitted["rfm"]
    assert (rfm["recency"], rfm["frequency"], rfm["segment"]) == (5, 1, "promising")
    assert refitted["rfm"]["boundaries_computed_at"] is not None
    assert refitted["recency_days"] == pytest.approx(3, abs=0.01)
    assert refitted["lifetime"] is None and "too few" in refitted["note"]


def test_lifetime_scores_with_their_time_of_computation(client: TestClient, world: World,
                                                         database: Database) -> None:
    now = utcnow().replace(microsecond=0)
    seen = _histories(client, world, database, 120, now)
    run_refits(database, now)
    member_id = str(seen["ids"][0])
    answer = _scores(client, member_id, world.a.pos_key).json()
    assert answer["lifetime"]["computed_at"].startswith(now.isoformat()[:19])
    assert 0 <= answer["lifetime"]["p_alive"] <= 1
    assert answer["note"] is None and answer["lifetime"]["stale"] is False
    assert answer["lifetime"]["stale_reason"] is None
    assert answer["rfm"]["segment"] in {"new", "champions", "loyal", "at_risk",
                                        "hibernating", "promising", "needs_attention"}


def test_who_may_see_a_members_scores(client: TestClient, world: World) -> None:
    member = enrol(client, world.a)
    assert _scores(client, member["id"], world.b.merchant_key).status_code == 404
    assert _scores(client, str(uuid.uuid4()), world.a.merchant_key).status_code == 404
    other = _scores(client, member["id"], world.a.merchant_key,
                    merchant_id=world.b.merchant_id)
    assert other.status_code == 403 and other.headers["content-type"].startswith(
        "application/problem+json")
    operator = _scores(client, member["id"], world.operator_key)
    assert operator.status_code == 200 and operator.json()["merchant_id"] == \
        world.a.merchant_id
    assert _scores(client, member["id"], world.operator_key,
                   merchant_id=str(uuid.uuid4())).status_code == 404
    assert _scores(client, member["id"], world.a.merchant_key,
                   merchant_id="not-a-uuid").status_code == 422
    assert client.get(f"/v1/members/{member['id']}/scores").status_code == 401
