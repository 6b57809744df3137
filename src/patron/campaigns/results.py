"""A campaign's results (``GET /v1/campaigns/{id}/results``): what it triggered, what it
gave, what that cost, and the uplift against its control group.

Counts and cost are the campaign's to date, each one aggregate query over its outcomes.

The uplift compares the members who triggered the campaign and got its outcome (the
treatment group) with those who triggered it and were held out (the control group). A
member's measurement window opens after the purchase of their first trigger (that
purchase is excluded: it was made before the member was treated, and the split was drawn
by then; for the triggers that are not a checkout, after the moment of the outcome) and
closes at ``until`` (default now), or with ``days`` that many days after the first
trigger, counting only members whose window has closed by ``until``. Spend is what the
member paid at the campaign's merchant (a coalition campaign: at every merchant) in the
window — ``total``, after vouchers, points and miles — less the refunds of those
purchases returned within the window. The difference of the groups' mean spend per member
has a 95 % Welch t interval (``scipy.stats.ttest_ind``, unequal variances).

Three kinds of member are left out of the uplift and counted: members in both groups
(held out at one trigger and treated at another: the control share changed), members
whose window is still open, and, once the budget is spent, control members who first
triggered after the last outcome given (from then on the engine still records the held
out but no longer the treated: keeping them would compare different periods).

Per-member spend is one grouped query (one row per member, streamed); no commits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, literal, select
from sqlalchemy.orm import Session

from patron.campaigns.models import Campaign, CampaignOutcome
from patron.campaigns.schemas import (
    CurrencyAmount,
    ResultsBudget,
    ResultsCost,
    ResultsOutcomes,
    ResultsRead,
    ResultsTriggers,
    ResultsUplift,
    SpendGroup,
    TriggerGroup,
    UpliftExcluded,
)
from patron.db import UTCDateTime
from patron.errors import InvalidInput
from patron.pos.models import PosReturn, PosTransaction
from patron.tenancy.models import Merchant
from patron.vouchers.models import RedemptionStatus, VoucherRedemption

CONFIDENCE = 0.95


class InvalidResultsQuery(InvalidInput):
    code = "invalid_query"
    title = "Invalid query parameter"


def _refuse(name: str, message: str) -> InvalidResultsQuery:
    return InvalidResultsQuery(f"{name}: {message}", field=name, errors=[
        {"loc": ["query", name], "msg": message, "type": f"invalid_{name}"}])


def results(session: Session, *, campaign: Campaign, now: datetime,
            until: datetime | None = None, days: int | None = None) -> ResultsRead:
    end = now if until is None else _until(until, now)
    return ResultsRead(campaign_id=campaign.id, as_of=now, triggers=_triggers(session, campaign),
                       outcomes=_outcomes(session, campaign), cost=_cost(session, campaign),
                       uplift=_uplift(session, campaign, end=end, days=days))


def _until(until: datetime, now: datetime) -> datetime:
    try:
        end = until.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise _refuse("until", "out of range") from None
    if end > now:
        raise _refuse("until", f"must not be in the future (now is {now.isoformat()})")
    return end


HELD_OUT = CampaignOutcome.held_out.is_(True)
GIVEN = CampaignOutcome.held_out.is_(False)


def _triggers(session: Session, campaign: Campaign) -> ResultsTriggers:
    member = CampaignOutcome.member_id
    row = session.execute(select(
        func.count(), func.count(func.distinct(member)),
        func.count(case((GIVEN, 1))), func.count(func.distinct(case((GIVEN, member)))),
        func.count(case((HELD_OUT, 1))), func.count(func.distinct(case((HELD_OUT, member)))),
    ).where(CampaignOutcome.campaign_id == campaign.id)).one()
    return ResultsTriggers(triggers=row[0], members=row[1],
                           treatment=TriggerGroup(triggers=row[2], members=row[3]),
                           control=TriggerGroup(triggers=row[4], members=row[5]))


def _redeemed() -> Any:
    return (select().select_from(VoucherRedemption)
            .join(CampaignOutcome, CampaignOutcome.voucher_id == VoucherRedemption.voucher_id)
            .where(VoucherRedemption.status == RedemptionStatus.redeemed.value))


def _outcomes(session: Session, campaign: Campaign) -> ResultsOutcomes:
    issued, vouchers = session.execute(
        select(func.count(), func.count(CampaignOutcome.voucher_id))
        .where(CampaignOutcome.campaign_id == campaign.id, GIVEN)).one()
    redeemed = session.scalar(
        _redeemed().add_columns(func.count(func.distinct(VoucherRedemption.voucher_id)))
        .where(CampaignOutcome.campaign_id == campaign.id)) or 0
    return ResultsOutcomes(issued=issued, vouchers_issued=vouchers, vouchers_redeemed=redeemed,
                           redemption_rate=redeemed / vouchers if vouchers else None)


def _cost(session: Session, campaign: Campaign) -> ResultsCost:
    points = session.scalar(select(func.coalesce(func.sum(CampaignOutcome.points), 0))
                            .where(CampaignOutcome.campaign_id == campaign.id, GIVEN))
    discounts = session.execute(
        _redeemed().add_columns(VoucherRedemption.currency,
                                func.sum(VoucherRedemption.discount))
        .where(CampaignOutcome.campaign_id == campaign.id)
        .group_by(VoucherRedemption.currency).order_by(VoucherRedemption.currency)).all()
    budget = campaign.max_outcomes
    return ResultsCost(
        points=int(points or 0),
        discounts=[CurrencyAmount(currency=currency, amount_minor=int(amount))
                   for currency, amount in discounts],
        budget=ResultsBudget(max_outcomes=budget, used=campaign.outcomes_count,
                             left=None if budget is None
                             else max(budget - campaign.outcomes_count, 0)))


# --- the uplift --------------------------------------------------------------------------

Bound = Callable[[Any, Any], ColumnElement[bool]]


def _window(session: Session, end: datetime, days: int | None) -> tuple[Bound, Bound]:
    """``closed(first_at)``: the member's window has closed by ``end``; ``within(at,
    first_at)``: a time no later than the member's window's end."""
    end_value = literal(end, UTCDateTime())
    if days is None:
        return (lambda first_at, _: first_at < end_value,
                lambda at, _first_at: at <= end_value)
    if session.get_bind().dialect.name == "sqlite":
        # SQLite keeps times as ISO text; julianday() reads it (to about 0.1 ms).
        def plus(first_at: Any) -> Any:
            return func.julianday(first_at) + days

        return (lambda first_at, _: plus(first_at) <= func.julianday(end_value),
                lambda at, first_at: func.julianday(at) <= plus(first_at))
    # PostgreSQL: make_interval(years, months, weeks, days).
    return (lambda first_at, _: first_at + func.make_interval(0, 0, 0, days) <= end_value,
            lambda at, first_at: at <= first_at + func.make_interval(0, 0, 0, days))


@dataclass
class _Group:
    spends: list[int]

    @property
    def n(self) -> int:
        return len(self.spends)

    def mean(self) -> Fraction:
        return Fraction(sum(self.spends), self.n)

    def read(self, comparable: bool) -> SpendGroup:
        # NumPy and SciPy are imported where the figures are computed: the server's start
        # does not pay for them (docs/architecture.md, "Start-up").
        import numpy as np

        values = np.asarray(self.spends, dtype=float)
        return SpendGroup(
            members=self.n,
            mean_spend_minor=float(self.mean()) if comparable and self.n else None,
            sd_spend_minor=float(np.std(values, ddof=1)) if comparable and self.n >= 2
            else None)


def _uplift(session: Session, campaign: Campaign, *, end: datetime,
            days: int | None) -> ResultsUplift:
    tx = PosTransaction
    closed, within = _window(session, end, days)
    # A checkout's trigger is its purchase's time; another trigger's (enrolment, a
    # visit, ...) the moment its outcome was recorded.
    triggered_at = func.coalesce(tx.occurred_at, CampaignOutcome.created_at)
    first = (select(CampaignOutcome.member_id.label("member_id"),
                    func.min(triggered_at).label("first_at"),
                    func.count().label("outcomes"),
                    func.count(case((HELD_OUT, 1))).label("held"))
             .outerjoin(tx, tx.id == CampaignOutcome.transaction_id)
             .where(CampaignOutcome.campaign_id == campaign.id)
             .group_by(CampaignOutcome.member_id)).subquery("first_triggers")
    pure = (first.c.held == 0) | (first.c.held == first.c.outcomes)
    is_closed = closed(first.c.first_at, None)
    late: ColumnElement[bool] = false()
    budget = campaign.max_outcomes
    if budget is not None and campaign.outcomes_count >= budget:
        last_given = session.scalar(
            select(func.max(triggered_at)).select_from(CampaignOutcome)
            .outerjoin(tx, tx.id == CampaignOutcome.transaction_id)
            .where(CampaignOutcome.campaign_id == campaign.id, GIVEN))
        if last_given is not None:
            late = and_(first.c.held > 0, first.c.first_at > literal(last_given, UTCDateTime()))
    counts = session.execute(select(
        func.count(case((~pure, 1))),
        func.count(case((and_(pure, ~is_closed), 1))),
        func.count(case((and_(pure, is_closed, late), 1))),
    ).select_from(first)).one()
    excluded = UpliftExcluded(in_both_groups=counts[0], window_open=counts[1],
                              after_budget_spent=counts[2])

    cohort = (select(first.c.member_id, first.c.held, first.c.first_at)
              .where(pure, is_closed, ~late).subquery("cohort"))
    refunds = (select(func.coalesce(func.sum(PosReturn.refund_amount), 0))
               .where(PosReturn.transaction_id == tx.id,
                      within(PosReturn.occurred_at, cohort.c.first_at))
               .scalar_subquery())
    purchases = and_(tx.member_id == cohort.c.member_id, tx.occurred_at > cohort.c.first_at,
                     within(tx.occurred_at, cohort.c.first_at))
    if campaign.merchant_id is not None:
        purchases = and_(purchases, tx.merchant_id == campaign.merchant_id)
    groups = {True: _Group([]), False: _Group([])}
    for _member, held, spend in session.execute(
            select(cohort.c.member_id, cohort.c.held,
                   func.coalesce(func.sum(tx.total - refunds), 0))
            .select_from(cohort).outerjoin(tx, purchases)
            .group_by(cohort.c.member_id, cohort.c.held)):
        groups[held == 0].spends.append(int(spend))
    if campaign.merchant_id is not None:
        currencies = [session.get_one(Merchant, campaign.merchant_id).currency]
    else:
        currencies = list(session.scalars(
            select(tx.currency).distinct().select_from(cohort).join(tx, purchases)
            .order_by(tx.currency)))
    return _compare(campaign, groups[True], groups[False], currencies, end=end, days=days,
                    excluded=excluded)


def _compare(campaign: Campaign, treatment: _Group, control: _Group, currencies: list[str],
             *, end: datetime, days: int | None, excluded: UpliftExcluded) -> ResultsUplift:
    comparable = len(currencies) <= 1
    figures: dict[str, float | None] = dict.fromkeys(
        ("difference_minor", "relative", "ci95_low_minor", "ci95_high_minor",
         "degrees_of_freedom", "p_value"))
    if not comparable:
        note: str | None = (f"the purchases are in {len(currencies)} currencies "
                            f"({', '.join(currencies)}): spend cannot be added across them")
    elif campaign.control_share_bp == 0 and control.n == 0:
        note = "no control group: the campaign holds out no one (control_share_bp is 0)"
    elif treatment.n < 2 or control.n < 2:
        small = [name for name, group in (("treatment", treatment), ("control", control))
                 if group.n < 2]
        note = (f"fewer than 2 members measured in the {' and the '.join(small)} group: "
                "a variance, and so an interval, needs at least 2 in each")
    else:
        note = _estimate(treatment, control, figures)
    return ResultsUplift(until=end, days=days, currency=currencies[0] if comparable and
                         currencies else None, treatment=treatment.read(comparable),
                         control=control.read(comparable), excluded=excluded, note=note,
                         **figures)


def _estimate(treatment: _Group, control: _Group, figures: dict[str, float | None]) -> str | None:
    """Fills ``figures``; returns a note for what it could not give."""
    difference = treatment.mean() - control.mean()
    figures["difference_minor"] = float(difference)
    notes = []
    if control.mean() != 0:
        figures["relative"] = float(difference / control.mean())
    else:
        notes.append("the control group spent nothing: no relative uplift")
    import numpy as np
    from scipy import stats

    t = np.asarray(treatment.spends, dtype=float)
    c = np.asarray(control.spends, dtype=float)
    if np.var(t, ddof=1) == 0 and np.var(c, ddof=1) == 0:
        notes.append("every member of each group spent the same: no variance, no interval")
        return "; ".join(notes)
    test = stats.ttest_ind(t, c, equal_var=False)
    interval = test.confidence_interval(CONFIDENCE)
    for name, value in (("ci95_low_minor", interval.low), ("ci95_high_minor", interval.high),
                        ("degrees_of_freedom", test.df), ("p_value", test.pvalue)):
        figures[name] = float(value) if math.isfinite(float(value)) else None
    return "; ".join(notes) or None
