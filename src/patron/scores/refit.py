"""The scheduled refit of a merchant's scoring models, and the members' stored scores.

For each merchant with member stats, in a transaction of its own:

1. the RFM quintile boundaries of recency (days since the last purchase), purchases and
   spend, from ``member_stats`` (``scores.rfm``);
2. its members' histories as the lifetime models take them (the BG/NBD convention of
   Fader, Hardie & Lee): a member's purchases on one store-local day are one
   transaction (``member_purchase_days``); x = days with a purchase after the first,
   t_x = last - first such day, T = the merchant's local date of the refit - first
   day, in days; Gamma-Gamma's spend is the mean of the repeat days that paid
   something, over their number (free repeat days count for BG/NBD only);
3. BG/NBD and Gamma-Gamma by maximum likelihood (``scores.clv``) when there are at least
   ``MIN_MEMBERS`` members of whom ``MIN_REPEATERS`` came back on another day; for
   fewer, or when maximum likelihood does not converge, by penalised maximum likelihood
   (``clv.LogNormalPrior``) down to ``FALLBACK_MIN_MEMBERS`` and
   ``FALLBACK_MIN_REPEATERS``; then each member's P(alive), expected purchases in the
   next 90 days and CLV over them (undiscounted, in the currency's minor unit), replacing
   the merchant's stored scores.

Scores that cannot be recomputed — no model from these histories, or the merchant's
refit failing altogether — stay as the last refit left them and are stale:
``score_models.note`` says why, and the scores read shows them as stale with that
reason. One merchant's failure is logged and reported; the other merchants are refitted.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from patron.db import Database, insert_for_dialect, table_of
from patron.scores import clv, rfm
from patron.scores.models import MemberPurchaseDay, MemberScore, MemberStats, ScoreModel
from patron.tenancy.models import Merchant

log = logging.getLogger("patron.jobs")

MIN_MEMBERS = 50
MIN_REPEATERS = 20
# The penalised fit's floor: below it the prior would be most of the answer.
FALLBACK_MIN_MEMBERS = 10
FALLBACK_MIN_REPEATERS = 3
PRIOR = clv.LogNormalPrior()
HORIZON_DAYS = 90.0
SECONDS_PER_DAY = 86_400.0
MAXIMUM_LIKELIHOOD = "maximum_likelihood"
PENALISED = "penalised"


@dataclass(frozen=True)
class Refit:
    merchant_id: uuid.UUID
    members: int
    repeat_members: int  # members with purchases on more than one day
    fitted: bool
    note: str | None  # why the lifetime scores were not recomputed
    fit_method: str | None = None
    failed: bool = False  # the refit raised: nothing of it was stored


@dataclass(frozen=True)
class Histories:
    """The lifetime models' inputs, one entry per member (in member order)."""

    members: list[uuid.UUID]
    frequency: clv.FloatArray  # repeat days
    recency: clv.FloatArray  # days from the first to the last day with a purchase
    age: clv.FloatArray  # days from the first day with a purchase to the refit's
    spend_frequency: clv.FloatArray  # repeat days that paid something
    monetary: clv.FloatArray  # their mean spend (0 where there are none)


def histories(session: Session, *, merchant_id: uuid.UUID, today: date) -> Histories:
    """Each member's days with a purchase, aggregated in one query."""
    days = MemberPurchaseDay
    first = (select(days.member_id, func.min(days.day).label("first_day"))
             .where(days.merchant_id == merchant_id).group_by(days.member_id).subquery())
    paid_repeat = and_(days.day > first.c.first_day, days.spend_minor > 0)
    rows = session.execute(
        select(days.member_id, first.c.first_day, func.max(days.day).label("last_day"),
               func.count().label("days"),
               func.sum(case((paid_repeat, 1), else_=0)).label("paid_repeats"),
               func.sum(case((paid_repeat, days.spend_minor), else_=0)).label("repeat_spend"))
        .join(first, first.c.member_id == days.member_id)
        .where(days.merchant_id == merchant_id)
        .group_by(days.member_id, first.c.first_day)
        .order_by(days.member_id)).all()
    first_day = [_as_date(row.first_day) for row in rows]
    frequency = np.array([row.days - 1 for row in rows], dtype=np.float64)
    recency = np.array([(_as_date(row.last_day) - start).days
                        for row, start in zip(rows, first_day, strict=True)],
                       dtype=np.float64)
    # A purchase dated after the refit (a till's clock ahead) counts as made that day.
    age = np.maximum(np.array([(today - start).days for start in first_day],
                              dtype=np.float64), recency)
    paid = np.array([row.paid_repeats for row in rows], dtype=np.float64)
    spent = np.array([row.repeat_spend for row in rows], dtype=np.float64)
    return Histories(members=[row.member_id for row in rows], frequency=frequency,
                     recency=recency, age=age, spend_frequency=paid,
                     monetary=np.where(paid > 0, spent / np.maximum(paid, 1.0), 0.0))


def _as_date(value: date | str) -> date:
    # SQLite gives min() and max() of a date column back as text.
    return value if isinstance(value, date) else date.fromisoformat(value)


def refit_merchant(session: Session, *, merchant_id: uuid.UUID, now: datetime) -> Refit:
    """Refit one merchant's models and replace its members' stored scores (flushes)."""
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise LookupError(f"no merchant {merchant_id}")
    stats = session.execute(
        select(MemberStats.last_purchase_at, MemberStats.purchase_count,
               MemberStats.spend_minor)
        .where(MemberStats.merchant_id == merchant_id)).all()
    boundaries = rfm.Boundaries.of(
        recency_days=[max((now - row.last_purchase_at).total_seconds(), 0.0)
                      / SECONDS_PER_DAY for row in stats],
        frequency=[float(row.purchase_count) for row in stats],
        spend_minor=[float(row.spend_minor) for row in stats])
    seen = histories(session, merchant_id=merchant_id,
                     today=now.astimezone(ZoneInfo(merchant.timezone)).date())
    repeaters = int((seen.frequency > 0).sum())
    fit = _fit(seen, repeaters=repeaters)
    fitted = isinstance(fit, _Fitted)
    model = {"merchant_id": merchant_id, "fitted_at": now, "members": len(seen.members),
             "repeat_members": repeaters, "rfm_boundaries": boundaries.as_json()}
    if isinstance(fit, _Fitted):
        model |= {"bgnbd": asdict(fit.bgnbd), "gamma_gamma": asdict(fit.gamma_gamma),
                  "fit_method": fit.method, "note": None}
    else:
        # The last models stay with the scores they gave: both stale, the note says why.
        model |= {"note": fit[:500]}
    upsert = insert_for_dialect(session.get_bind().dialect.name, table_of(ScoreModel))
    session.execute(upsert.on_conflict_do_update(
        index_elements=["merchant_id"],
        set_={key: value for key, value in model.items() if key != "merchant_id"}
    ).values(**model))
    if isinstance(fit, _Fitted):
        session.execute(delete(MemberScore).where(MemberScore.merchant_id == merchant_id))
        session.execute(insert(MemberScore), [
            {"member_id": member, "merchant_id": merchant_id, "computed_at": now,
             "p_alive": float(alive), "expected_purchases_90d": float(expected),
             "clv_90d_minor": round(float(value))}
            for member, alive, expected, value in zip(
                seen.members, fit.scores.probability_alive, fit.scores.expected_purchases,
                fit.scores.clv, strict=True)])
    session.flush()
    return Refit(merchant_id=merchant_id, members=len(seen.members),
                 repeat_members=repeaters, fitted=fitted,
                 note=None if isinstance(fit, _Fitted) else fit,
                 fit_method=fit.method if isinstance(fit, _Fitted) else None)


@dataclass(frozen=True)
class _Fitted:
    bgnbd: clv.BgNbdParameters
    gamma_gamma: clv.GammaGammaParameters
    method: str
    scores: clv.MemberScores


def _fit(seen: Histories, *, repeaters: int) -> _Fitted | str:
    """The models and the members' scores, or why there are none."""
    members = len(seen.members)
    payers = int((seen.spend_frequency > 0).sum())
    if members < FALLBACK_MIN_MEMBERS or repeaters < FALLBACK_MIN_REPEATERS \
            or payers < FALLBACK_MIN_REPEATERS:
        return (f"too few histories for the lifetime models: {members} members, "
                f"{repeaters} who bought again on another day, {payers} of them paying "
                f"(at least {FALLBACK_MIN_MEMBERS}, {FALLBACK_MIN_REPEATERS} and "
                f"{FALLBACK_MIN_REPEATERS} needed)")
    failure = None
    if members >= MIN_MEMBERS and repeaters >= MIN_REPEATERS:
        try:
            return _fit_with(seen, prior=None)
        except clv.ClvError as exc:
            failure = f"maximum likelihood: {exc}"
    try:
        return _fit_with(seen, prior=PRIOR)
    except clv.ClvError as exc:
        reason = f"the lifetime models could not be fitted: {exc}"
        return reason if failure is None else f"{reason} (after {failure})"


def _fit_with(seen: Histories, *, prior: clv.LogNormalPrior | None) -> _Fitted:
    bgnbd = clv.fit_bgnbd(frequency=seen.frequency, recency=seen.recency, T=seen.age,
                          prior=prior).parameters
    gamma_gamma = clv.fit_gamma_gamma(frequency=seen.spend_frequency,
                                      monetary=seen.monetary, prior=prior).parameters
    if gamma_gamma.q <= 1:
        raise clv.ClvFitError(f"Gamma-Gamma: q = {gamma_gamma.q:.3g} <= 1, the spend "
                              f"expectation is infinite")
    scores = clv.score_members(bgnbd, gamma_gamma, frequency=seen.frequency,
                               recency=seen.recency, T=seen.age, monetary=seen.monetary,
                               spend_frequency=seen.spend_frequency,
                               horizon_days=HORIZON_DAYS)
    return _Fitted(bgnbd=bgnbd, gamma_gamma=gamma_gamma, scores=scores,
                   method=MAXIMUM_LIKELIHOOD if prior is None else PENALISED)


def run_refits(database: Database, now: datetime, *,
               stop: threading.Event | None = None) -> list[Refit]:
    """Refit every merchant with member stats, one transaction each. A merchant whose
    refit fails is logged, its lifetime scores are marked stale with the reason, and the
    next merchant is refitted: the failures are in the list (``failed``)."""
    with database.read_scope() as session:
        merchants = list(session.scalars(select(MemberStats.merchant_id).distinct()
                                         .order_by(MemberStats.merchant_id)))
    done = []
    for merchant_id in merchants:
        if stop is not None and stop.is_set():
            break
        try:
            with database.session_scope() as session:
                done.append(refit_merchant(session, merchant_id=merchant_id, now=now))
        except Exception as exc:
            log.exception("refitting the scores of merchant %s failed", merchant_id)
            done.append(_failed(database, merchant_id=merchant_id, error=exc))
    return done


def _failed(database: Database, *, merchant_id: uuid.UUID, error: Exception) -> Refit:
    # A library's own message says what went wrong with the data; any other error's text
    # may quote SQL and values, which belong in the server log only.
    detail = f": {error}" if isinstance(error, clv.ClvError | LookupError) else \
        " (see the server log)"
    note = f"the refit failed: {type(error).__name__}{detail}"[:500]
    try:
        with database.session_scope() as session:
            session.execute(update(ScoreModel).where(ScoreModel.merchant_id == merchant_id)
                            .values(note=note))
    except Exception:
        log.exception("marking the scores of merchant %s stale failed", merchant_id)
    return Refit(merchant_id=merchant_id, members=0, repeat_members=0, fitted=False,
                 note=note, failed=True)
