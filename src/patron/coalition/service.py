"""The operator's miles rates and the monthly settlement between merchants.

Settlement (docs/coalition.md): every miles movement caused at a merchant is a posting on
the coalition pool in an entry carrying that merchant's id. Per merchant and UTC month:
- issued = miles the pool gave members on its purchases, less those taken back by returns
  of those purchases (owed by the merchant to the coalition);
- redeemed = miles members spent there, less those given back by returns (owed by the
  coalition to the merchant);
- net = redeemed - issued. The coalition's own line is issued - redeemed in total (the
  miles members now hold, funded by the issuers), so all nets sum to zero.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session, aliased

from patron.coalition import rules
from patron.coalition.errors import DuplicateRate, InvalidPeriod, InvalidRate
from patron.coalition.models import CoalitionRate
from patron.coalition.schemas import (
    CoalitionSettlement,
    MerchantSettlement,
    RateRead,
    RatesRead,
    RatesWrite,
    SettlementRead,
)
from patron.kit.clock import utcnow
from patron.kit.validation import currency_code
from patron.ledger.models import AccountKind, EntryKind, JournalEntry, LedgerAccount, Posting
from patron.pos.errors import UnknownCurrency
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal


def rate_for(session: Session, currency: str) -> rules.Rate | None:
    row = session.get(CoalitionRate, currency)
    if row is None:
        return None
    return rules.Rate(currency=row.currency, spend_per_mile=row.spend_per_mile,
                      mile_value_milli=row.mile_value_milli)


def get_rates(session: Session, *, actor: Principal) -> RatesRead:
    """The rates are the same for everyone in the coalition: any key may read them."""
    del actor
    rows = session.scalars(select(CoalitionRate).order_by(CoalitionRate.currency)).all()
    return RatesRead(rates=[RateRead(currency=row.currency, spend_per_mile=row.spend_per_mile,
                                     mile_value_milli=row.mile_value_milli,
                                     updated_at=row.updated_at) for row in rows])


def put_rates(session: Session, *, actor: Principal, data: RatesWrite) -> RatesRead:
    """Replace every rate (operator only). A currency left out earns no miles from now on."""
    actor.require(Role.operator)
    seen: set[str] = set()
    for index, rate in enumerate(data.rates):
        try:
            currency = currency_code(rate.currency)
        except ValueError as exc:
            raise UnknownCurrency(f"{rate.currency!r} is not an ISO 4217 currency code",
                                  field=f"rates[{index}].currency") from exc
        if currency in seen:
            raise DuplicateRate(f"{currency} appears twice", field=f"rates[{index}].currency")
        seen.add(currency)
        for name in ("spend_per_mile", "mile_value_milli"):
            if not 1 <= getattr(rate, name) <= rules.MAX_RATE:
                raise InvalidRate(f"rates[{index}].{name} must be 1 to {rules.MAX_RATE}",
                                  field=f"rates[{index}].{name}")
    now = utcnow()
    session.execute(delete(CoalitionRate))
    session.add_all(CoalitionRate(currency=currency_code(rate.currency),
                                  spend_per_mile=rate.spend_per_mile,
                                  mile_value_milli=rate.mile_value_milli, updated_at=now)
                    for rate in data.rates)
    session.flush()
    return get_rates(session, actor=actor)


def settlement(session: Session, *, actor: Principal, period: str) -> SettlementRead:
    """The settlement of one UTC month: the operator sees every merchant and the
    coalition's line; a merchant key sees its own line only."""
    actor.require(Role.operator, Role.merchant)
    try:
        starts_at, ends_at = rules.period_bounds(period)
    except ValueError as exc:
        raise InvalidPeriod(f"{period!r} is not a month written YYYY-MM",
                            field="period") from exc
    original = aliased(JournalEntry)
    # A return counts where the purchase it reverses counted: as less issued or redeemed.
    kind = func.coalesce(original.kind, JournalEntry.kind)
    issued = func.sum(case((kind == EntryKind.earn.value, -Posting.amount), else_=0))
    redeemed = func.sum(case((kind == EntryKind.burn.value, Posting.amount), else_=0))
    query = (select(JournalEntry.merchant_id, issued, redeemed)
             .join(Posting, Posting.entry_id == JournalEntry.id)
             .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
             .outerjoin(original, original.id == JournalEntry.reverses_entry_id)
             .where(LedgerAccount.kind == AccountKind.coalition_pool.value,
                    JournalEntry.merchant_id.is_not(None),
                    JournalEntry.occurred_at >= starts_at, JournalEntry.occurred_at < ends_at)
             .group_by(JournalEntry.merchant_id))
    merchants_query = select(Merchant).order_by(Merchant.number)
    if actor.role != Role.operator:
        query = query.where(JournalEntry.merchant_id == actor.merchant_id)
        merchants_query = merchants_query.where(Merchant.id == actor.merchant_id)
    figures: dict[uuid.UUID, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for merchant_id, miles_issued, miles_redeemed in session.execute(query):
        figures[merchant_id] = (int(miles_issued or 0), int(miles_redeemed or 0))
    lines = [_merchant_line(session, merchant, *figures[merchant.id])
             for merchant in session.scalars(merchants_query)]
    coalition = None
    if actor.role == Role.operator:
        total_issued = sum(line.miles_issued for line in lines)
        total_redeemed = sum(line.miles_redeemed for line in lines)
        coalition = CoalitionSettlement(miles_issued=total_issued,
                                        miles_redeemed=total_redeemed,
                                        net_miles=total_issued - total_redeemed)
    return SettlementRead(period=period, starts_at=starts_at, ends_at=ends_at,
                          merchants=lines, coalition=coalition)


def _merchant_line(session: Session, merchant: Merchant, issued: int,
                   redeemed: int) -> MerchantSettlement:
    rate = rate_for(session, merchant.currency)
    values: tuple[int | None, int | None, int | None] = (None, None, None)
    if rate is not None:
        issued_value = rules.settlement_value(issued, rate)
        redeemed_value = rules.settlement_value(redeemed, rate)
        values = (issued_value, redeemed_value, redeemed_value - issued_value)
    return MerchantSettlement(
        merchant_id=merchant.id, merchant_name=merchant.name, currency=merchant.currency,
        miles_issued=issued, miles_redeemed=redeemed, net_miles=redeemed - issued,
        mile_value_milli=rate.mile_value_milli if rate else None, issued_value=values[0],
        redeemed_value=values[1], net_value=values[2])
