"""The scheduled refit of a merchant's scoring models, and the members' stored scores.

For each merchant with member stats, in a transaction of its own:

1. its members' histories from ``member_stats``, in days as of ``now``: repeat purchases
   x = purchases - 1, recency t_x = last - first purchase, age T = now - first purchase,
   and the repeat purchases' mean spend (spend - first purchase's spend) / x;
2. the RFM quintile boundaries of recency (days since the last purchase), purchases and
   spend (``scores.rfm``);
3. BG/NBD and Gamma-Gamma by maximum likelihood (``scores.clv``) when there are enough
   histories — at least ``MIN_MEMBERS`` members of whom ``MIN_REPEATERS`` came back —
   then each member's P(alive), expected purchases in the next 90 days and CLV over them
   (undiscounted, in the currency's minor unit), replacing the merchant's stored scores.
   Without a model (too few histories, or a fit that did not converge) the merchant's
   stored scores are removed and ``score_models.note`` says why: stale lifetime figures
   would be read as current.

Members whose repeat purchases were refunded down to nothing carry no spend
information: Gamma-Gamma counts them as having none (x = 0 for the spend model), so
their expected spend is the population's.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from patron.db import Database, insert_for_dialect, table_of
from patron.scores import clv, rfm
from patron.scores.models import MemberScore, MemberStats, ScoreModel

log = logging.getLogger("patron.jobs")

MIN_MEMBERS = 50
MIN_REPEATERS = 20
HORIZON_DAYS = 90.0
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Refit:
    merchant_id: uuid.UUID
    members: int
    repeat_members: int
    fitted: bool
    note: str | None


def refit_merchant(session: Session, *, merchant_id: uuid.UUID, now: datetime) -> Refit:
    """Refit one merchant's models and replace its members' stored scores (flushes)."""
    rows = session.execute(
        select(MemberStats.member_id, MemberStats.first_purchase_at,
               MemberStats.last_purchase_at, MemberStats.purchase_count,
               MemberStats.spend_minor, MemberStats.first_spend_minor)
        .where(MemberStats.merchant_id == merchant_id)
        .order_by(MemberStats.member_id)).all()
    members = [row.member_id for row in rows]
    first = np.array([_days(now - row.first_purchase_at) for row in rows])
    last = np.array([_days(now - row.last_purchase_at) for row in rows])
    purchases = np.array([row.purchase_count for row in rows], dtype=np.float64)
    spend = np.array([row.spend_minor for row in rows], dtype=np.float64)
    first_spend = np.array([row.first_spend_minor for row in rows], dtype=np.float64)
    session.execute(delete(MemberScore).where(MemberScore.merchant_id == merchant_id))
    if not rows:
        session.execute(delete(ScoreModel).where(ScoreModel.merchant_id == merchant_id))
        return Refit(merchant_id=merchant_id, members=0, repeat_members=0, fitted=False,
                     note="no member has bought")
    # Purchases stamped after ``now`` (a till's clock ahead) count as made now.
    age = np.maximum(first, 0.0)
    since_last = np.clip(last, 0.0, None)
    x = np.maximum(purchases - 1.0, 0.0)
    recency = np.where(x > 0, np.clip(age - since_last, 0.0, age), 0.0)
    repeat_spend = np.where(x > 0, (spend - first_spend) / np.maximum(x, 1.0), 0.0)
    spend_x = np.where(repeat_spend > 0, x, 0.0)
    boundaries = rfm.Boundaries.of(recency_days=since_last.tolist(),
                                   frequency=purchases.tolist(), spend_minor=spend.tolist())
    repeaters = int((x > 0).sum())
    bgnbd, gamma_gamma, note = _fit(members=len(rows), repeaters=repeaters, x=x,
                                    recency=recency, age=age, spend_x=spend_x,
                                    repeat_spend=repeat_spend)
    model = {"merchant_id": merchant_id, "fitted_at": now, "members": len(rows),
             "repeat_members": repeaters, "rfm_boundaries": boundaries.as_json(),
             "bgnbd": None if bgnbd is None else asdict(bgnbd),
             "gamma_gamma": None if gamma_gamma is None else asdict(gamma_gamma),
             "note": note}
    upsert = insert_for_dialect(session.get_bind().dialect.name, table_of(ScoreModel))
    session.execute(upsert.on_conflict_do_update(
        index_elements=["merchant_id"],
        set_={key: value for key, value in model.items() if key != "merchant_id"}
    ).values(**model))
    if bgnbd is not None and gamma_gamma is not None:
        scores = clv.score_members(bgnbd, gamma_gamma, frequency=x, recency=recency, T=age,
                                   monetary=np.where(spend_x > 0, repeat_spend, 0.0),
                                   horizon_days=HORIZON_DAYS)
        session.execute(insert(MemberScore), [
            {"member_id": member, "merchant_id": merchant_id, "computed_at": now,
             "p_alive": float(alive), "expected_purchases_90d": float(expected),
             "clv_90d_minor": round(float(value))}
            for member, alive, expected, value in zip(
                members, scores.probability_alive, scores.expected_purchases, scores.clv,
                strict=True)])
    session.flush()
    return Refit(merchant_id=merchant_id, members=len(rows), repeat_members=repeaters,
                 fitted=bgnbd is not None and gamma_gamma is not None, note=note)


def _fit(*, members: int, repeaters: int, x: clv.FloatArray, recency: clv.FloatArray,
         age: clv.FloatArray, spend_x: clv.FloatArray, repeat_spend: clv.FloatArray
         ) -> tuple[clv.BgNbdParameters | None, clv.GammaGammaParameters | None, str | None]:
    if members < MIN_MEMBERS or repeaters < MIN_REPEATERS:
        return None, None, (f"too few histories for the lifetime models: {members} members, "
                            f"{repeaters} with a repeat purchase (at least {MIN_MEMBERS} and "
                            f"{MIN_REPEATERS} needed)")
    try:
        bgnbd = clv.fit_bgnbd(frequency=x, recency=recency, T=age).parameters
        gamma_gamma = clv.fit_gamma_gamma(
            frequency=spend_x, monetary=np.where(spend_x > 0, repeat_spend, 0.0)).parameters
        if gamma_gamma.q <= 1:
            return None, None, (f"Gamma-Gamma: q = {gamma_gamma.q:.3g} <= 1, the spend "
                                f"expectation is infinite")
    except clv.ClvError as exc:
        return None, None, f"the lifetime models could not be fitted: {exc}"[:500]
    return bgnbd, gamma_gamma, None


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / SECONDS_PER_DAY


def run_refits(database: Database, now: datetime, *,
               stop: threading.Event | None = None) -> list[Refit]:
    """Refit every merchant with member stats, one transaction each."""
    with database.read_scope() as session:
        merchants = list(session.scalars(select(MemberStats.merchant_id).distinct()
                                         .order_by(MemberStats.merchant_id)))
    done = []
    for merchant_id in merchants:
        if stop is not None and stop.is_set():
            break
        with database.session_scope() as session:
            done.append(refit_merchant(session, merchant_id=merchant_id, now=now))
    return done
