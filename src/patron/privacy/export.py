"""A member's personal-data export (GDPR Art. 15 and 20): one JSON document, streamed.

The document is written as it is read: the profile first, then each list section a page
of ``PAGE_SIZE`` rows at a time, by keyset (the rows after the last one sent, in a fixed
order). Each page is read in its own short read scope, so a member with years of history
is exported without that history in memory, and no connection or transaction is held
while the answer waits for the client to take the next chunk. The format is documented in
docs/privacy.md ("Export").

What an export holds depends on who asks (``prepare``): the operator gets the member's
whole record across the coalition; a merchant gets the member's profile and, of every
section, the rows of its own business."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, case, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from patron.campaigns.models import Campaign, CampaignOutcome
from patron.db import Database
from patron.identity.models import Card
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.ledger.models import AccountKind, JournalEntry, LedgerAccount, PointLot, Posting
from patron.members import access, consent
from patron.members.models import COALITION_SCOPE, ConsentEvent, CurrentConsent, Member, Membership
from patron.members.pii import decrypt_email, decrypt_phone
from patron.notify.models import OutboxEvent, PushSubscription
from patron.operations.models import Visit
from patron.pos.models import PosReturn, PosReturnLine, PosTransaction, PosTransactionLine
from patron.referrals import codes as referral_codes
from patron.referrals.models import Referral, ReferralCode
from patron.scores.models import MemberCategoryCount, MemberScore, MemberStats, MemberStoreVisit
from patron.security.models import SecurityEvent
from patron.tenancy.models import Merchant, Role, Store
from patron.tenancy.rules import MemberAction
from patron.tenancy.service import Principal
from patron.vouchers import codes as voucher_codes
from patron.vouchers.benefits.models import BenefitProgress, BenefitRule, IssuedBenefit
from patron.vouchers.models import Offer, Voucher, VoucherRedemption

FORMAT = "patron.member-export/1"
# Rows per page: large enough that a page costs few round trips, small enough that a page
# (its rows, their items and the encoded chunk) stays a small fraction of a long export.
PAGE_SIZE = 200


@dataclass(frozen=True)
class Export:
    """An export the caller may have: whose, and of which merchant's rows."""

    member_id: uuid.UUID
    member_number: str
    # None: the member's whole record (the operator); otherwise only this merchant's rows.
    merchant_id: uuid.UUID | None

    @property
    def filename(self) -> str:
        return f"patron-member-{self.member_number}.json"


def prepare(session: Session, *, actor: Principal, member_id: uuid.UUID) -> Export:
    """Check that the caller may export the member (the data controller: the operator or the
    enrolling merchant's merchant key; 404 or 403 otherwise, before any byte is sent),
    record the export, and decide what it holds: everything for the operator, the
    merchant's own rows for the enrolling merchant."""
    member = access.member_for(session, actor=actor, member_id=member_id,
                               action=MemberAction.export)
    access.record_export(session, actor=actor, member=member)
    scope = None if actor.role == Role.operator else actor.merchant_id
    return Export(member_id=member.id, member_number=member.member_number, merchant_id=scope)


# --- encoding -------------------------------------------------------------------------

def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not exported")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_plain)


def _json(value: object) -> bytes:
    return _ENCODER.encode(value).encode()


def _number(number: int | None) -> str | None:
    """A merchant number as printed (five digits)."""
    return None if number is None else f"{number:05d}"


# --- sections -------------------------------------------------------------------------

Rows = Sequence[Any]
# A page's rows as items, made one at a time as they are encoded (what a page needs from
# other tables is read up front, in the page's read scope).
Items = Callable[[Session, Rows], Iterator[dict[str, Any]]]


@dataclass(frozen=True)
class Section:
    """One list of the document: its rows for a member, in ``key`` order (which is also
    the keyset a page continues from), and how a page of rows becomes items."""

    name: str
    query: Callable[[uuid.UUID], Select[*tuple[Any, ...]]]
    key: tuple[Any, ...]
    # The column a merchant's export is limited by; None for rows of the member alone.
    merchant: Any
    items: Items


def _each(item: Callable[[Any], dict[str, Any]]) -> Items:
    return lambda _session, rows: (item(row) for row in rows)


def _children(session: Session, statement: Select[*tuple[Any, ...]]
              ) -> dict[Any, list[Any]]:
    """Rows of a page's children by their parent (the statement's first column)."""
    grouped: dict[Any, list[Any]] = defaultdict(list)
    for row in session.execute(statement):
        grouped[row[0]].append(row)
    return grouped


def _memberships(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    return (select(Membership.joined_at, Membership.source, Merchant.number, Merchant.name)
            .join(Merchant, Merchant.id == Membership.merchant_id)
            .where(Membership.member_id == member_id))


def _membership(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number), "merchant_name": row.name,
            "joined_at": row.joined_at, "source": row.source}


def _cards(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    return (select(Card.id, Card.uid_last4, Card.status, Card.block_reason, Card.blocked_at,
                   Card.created_at, Merchant.number)
            .join(Merchant, Merchant.id == Card.merchant_id)
            .where(Card.member_id == member_id))


def _card(row: Any) -> dict[str, Any]:
    # Masked: the UID's last four characters only (none once the member is erased).
    return {"id": row.id, "uid_last4": row.uid_last4 or None, "status": row.status,
            "block_reason": row.block_reason, "blocked_at": row.blocked_at,
            "created_at": row.created_at, "merchant_number": _number(row.number)}


def _consent_states(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    s = CurrentConsent
    return (select(s.channel, s.purpose, s.granted, s.source, s.policy_version, s.since,
                   Merchant.number)
            .outerjoin(Merchant, Merchant.id == s.merchant_id)  # none: the coalition's scope
            .where(s.member_id == member_id))


def _consent_state(row: Any) -> dict[str, Any]:
    return {"scope": _consent_scope(row.number), "merchant_number": _number(row.number),
            "channel": row.channel, "purpose": row.purpose, "granted": row.granted,
            "source": row.source, "policy_version": row.policy_version, "since": row.since}


def _consent_events(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    e = ConsentEvent
    return (select(e.channel, e.purpose, e.granted, e.source, e.policy_version, e.evidence,
                   e.occurred_at, Merchant.number)
            .outerjoin(Merchant, Merchant.id == e.merchant_id)  # none: the coalition's scope
            .where(e.member_id == member_id))


def _consent_event(row: Any) -> dict[str, Any]:
    return {"scope": _consent_scope(row.number), "merchant_number": _number(row.number),
            "channel": row.channel, "purpose": row.purpose, "granted": row.granted,
            "source": row.source, "policy_version": row.policy_version,
            "evidence": row.evidence, "occurred_at": row.occurred_at}


def _consent_scope(merchant_number: int | None) -> str:
    return COALITION_SCOPE if merchant_number is None else "merchant"


def _points_accounts(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    return (select(LedgerAccount.balance, Merchant.number)
            .join(Merchant, Merchant.id == LedgerAccount.merchant_id)
            .where(LedgerAccount.member_id == member_id,
                   LedgerAccount.kind == AccountKind.member_points.value))


def _points_balance(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number), "balance": row.balance}


def _purchases(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    t = PosTransaction
    return (select(t.id, t.receipt_no, t.channel, t.occurred_at, t.currency, t.subtotal,
                   t.voucher_discount, t.points_discount, t.miles_discount, t.total,
                   t.points_earned, t.points_burned, t.miles_earned, t.miles_burned,
                   t.payment_method, t.payment_amount, Merchant.number,
                   Store.code.label("store_code"), Store.name.label("store_name"))
            .join(Merchant, Merchant.id == t.merchant_id)
            .join(Store, Store.id == t.store_id)
            .where(t.member_id == member_id))


def _purchase_line(found: Any) -> dict[str, Any]:
    return {"line_no": found.line_no, "sku": found.sku, "gtin": found.gtin,
            "name": found.name, "category": found.category, "quantity": found.quantity,
            "unit_price": found.unit_price, "amount": found.amount,
            "voucher_discount": found.voucher_discount,
            "points_discount": found.points_discount, "points_earned": found.points_earned,
            "points_burned": found.points_burned, "miles_discount": found.miles_discount,
            "miles_earned": found.miles_earned, "miles_burned": found.miles_burned,
            "returned_quantity": found.returned_quantity}


def _purchase_items(session: Session, rows: Rows) -> Iterator[dict[str, Any]]:
    line = PosTransactionLine
    lines = _children(session, select(
        line.transaction_id, line.line_no, line.sku, line.gtin, line.name, line.category,
        line.quantity, line.unit_price, line.amount, line.voucher_discount,
        line.points_discount, line.points_earned, line.points_burned, line.miles_discount,
        line.miles_earned, line.miles_burned, line.returned_quantity)
        .where(line.transaction_id.in_([row.id for row in rows]))
        .order_by(line.transaction_id, line.line_no))
    return ({"id": row.id, "merchant_number": _number(row.number),
             "store": {"code": row.store_code, "name": row.store_name},
             "receipt_no": row.receipt_no, "channel": row.channel,
             "occurred_at": row.occurred_at, "currency": row.currency,
             "subtotal": row.subtotal, "voucher_discount": row.voucher_discount,
             "points_discount": row.points_discount, "miles_discount": row.miles_discount,
             "total": row.total, "points_earned": row.points_earned,
             "points_burned": row.points_burned, "miles_earned": row.miles_earned,
             "miles_burned": row.miles_burned,
             "payment": (None if row.payment_method is None else
                         {"method": row.payment_method, "amount": row.payment_amount}),
             "lines": [_purchase_line(found) for found in lines[row.id]]} for row in rows)


def _returns(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    r = PosReturn
    return (select(r.id, r.transaction_id, r.return_no, r.occurred_at, r.refund_amount,
                   r.points_clawed_back, r.points_restored, r.miles_clawed_back,
                   r.miles_uncollected, r.miles_restored, Merchant.number)
            .join(Merchant, Merchant.id == r.merchant_id)
            .where(r.member_id == member_id))


def _return_line(found: Any) -> dict[str, Any]:
    return {"line_no": found.line_no, "quantity": found.quantity,
            "refund_amount": found.refund_amount,
            "points_clawed_back": found.points_clawed_back,
            "points_restored": found.points_restored,
            "miles_clawed_back": found.miles_clawed_back,
            "miles_restored": found.miles_restored}


def _return_items(session: Session, rows: Rows) -> Iterator[dict[str, Any]]:
    line = PosReturnLine
    lines = _children(session, select(
        line.return_id, line.line_no, line.quantity, line.refund_amount,
        line.points_clawed_back, line.points_restored, line.miles_clawed_back,
        line.miles_restored)
        .where(line.return_id.in_([row.id for row in rows]))
        .order_by(line.return_id, line.line_no))
    return ({"id": row.id, "purchase_id": row.transaction_id,
             "merchant_number": _number(row.number), "return_no": row.return_no,
             "occurred_at": row.occurred_at, "refund_amount": row.refund_amount,
             "points_clawed_back": row.points_clawed_back,
             "points_restored": row.points_restored,
             "miles_clawed_back": row.miles_clawed_back,
             "miles_uncollected": row.miles_uncollected, "miles_restored": row.miles_restored,
             "lines": [_return_line(found) for found in lines[row.id]]} for row in rows)


def _entries(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    e = JournalEntry
    return (select(e.id, e.kind, e.source, e.reason, e.occurred_at, e.reverses_entry_id,
                   Merchant.number)
            .outerjoin(Merchant, Merchant.id == e.merchant_id)
            .where(e.member_id == member_id))


def _entry_items(session: Session, rows: Rows) -> Iterator[dict[str, Any]]:
    postings = _children(session, select(
        Posting.entry_id, LedgerAccount.kind, Posting.unit, Posting.amount)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(Posting.entry_id.in_([row.id for row in rows]))
        .order_by(Posting.entry_id, Posting.id))
    return ({"id": row.id, "kind": row.kind, "merchant_number": _number(row.number),
             "source": row.source, "reason": row.reason, "occurred_at": row.occurred_at,
             "reverses_entry_id": row.reverses_entry_id,
             "postings": [{"account": found.kind, "unit": found.unit, "amount": found.amount}
                          for found in postings[row.id]]}
            for row in rows)


def _lots(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    return (select(PointLot.entry_id, PointLot.amount, PointLot.remaining,
                   PointLot.expires_at, PointLot.created_at, Merchant.number)
            .join(Merchant, Merchant.id == PointLot.merchant_id)
            .where(PointLot.member_id == member_id))


def _lot(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number), "entry_id": row.entry_id,
            "amount": row.amount, "remaining": row.remaining, "expires_at": row.expires_at,
            "created_at": row.created_at}


def _vouchers(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    v = Voucher
    return (select(v.code, v.max_redemptions, v.redemptions_count, v.valid_from,
                   v.valid_until, v.source, v.issued_at, v.revoked_at,
                   Offer.name.label("offer_name"), Offer.kind, Offer.value, Offer.currency,
                   Merchant.number)
            .join(Offer, Offer.id == v.offer_id)
            .outerjoin(Merchant, Merchant.id == v.merchant_id)
            .where(v.member_id == member_id))


def _voucher(row: Any) -> dict[str, Any]:
    return {"code": voucher_codes.display(row.code), "merchant_number": _number(row.number),
            "offer": {"name": row.offer_name, "kind": row.kind, "value": row.value,
                      "currency": row.currency},
            "max_redemptions": row.max_redemptions,
            "redemptions_count": row.redemptions_count, "valid_from": row.valid_from,
            "valid_until": row.valid_until, "source": row.source, "issued_at": row.issued_at,
            "revoked_at": row.revoked_at}


def _voucher_uses(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    r = VoucherRedemption
    return (select(r.status, r.discount, r.bonus_points, r.currency, r.transaction_id,
                   r.created_at, r.ended_at, Voucher.code, Offer.name.label("offer_name"),
                   Merchant.number, Store.code.label("store_code"),
                   Store.name.label("store_name"))
            .join(Voucher, Voucher.id == r.voucher_id)
            .join(Offer, Offer.id == r.offer_id)
            .join(Merchant, Merchant.id == r.merchant_id)
            .join(Store, Store.id == r.store_id)
            .where(r.member_id == member_id))


def _voucher_use(row: Any) -> dict[str, Any]:
    return {"code": voucher_codes.display(row.code), "offer_name": row.offer_name,
            "merchant_number": _number(row.number),
            "store": {"code": row.store_code, "name": row.store_name},
            "status": row.status, "discount": row.discount, "bonus_points": row.bonus_points,
            "currency": row.currency, "purchase_id": row.transaction_id,
            "created_at": row.created_at, "ended_at": row.ended_at}


def _benefits(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    b = IssuedBenefit
    return (select(b.crossing, b.transaction_id, b.issued_at, b.revoked_at,
                   BenefitRule.name.label("rule_name"), Voucher.code, Merchant.number)
            .join(BenefitRule, BenefitRule.id == b.rule_id)
            .join(Voucher, Voucher.id == b.voucher_id)
            .outerjoin(Merchant, Merchant.id == b.merchant_id)
            .where(b.member_id == member_id))


def _benefit(row: Any) -> dict[str, Any]:
    return {"rule_name": row.rule_name, "merchant_number": _number(row.number),
            "crossing": row.crossing, "code": voucher_codes.display(row.code),
            "purchase_id": row.transaction_id, "issued_at": row.issued_at,
            "revoked_at": row.revoked_at}


def _benefit_progress(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    return (select(BenefitProgress.count, BenefitRule.name.label("rule_name"),
                   BenefitRule.measure, BenefitRule.threshold, Merchant.number)
            .join(BenefitRule, BenefitRule.id == BenefitProgress.rule_id)
            .outerjoin(Merchant, Merchant.id == BenefitProgress.merchant_id)
            .where(BenefitProgress.member_id == member_id))


def _progress(row: Any) -> dict[str, Any]:
    return {"rule_name": row.rule_name, "merchant_number": _number(row.number),
            "measure": row.measure, "threshold": row.threshold, "count": row.count}


def _visits(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    return (select(Visit.occurred_at, Visit.points_granted, Visit.reason, Visit.tap_id,
                   Merchant.number, Store.code.label("store_code"),
                   Store.name.label("store_name"))
            .join(Merchant, Merchant.id == Visit.merchant_id)
            .join(Store, Store.id == Visit.store_id)
            .where(Visit.member_id == member_id))


def _visit(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number),
            "store": {"code": row.store_code, "name": row.store_name},
            "occurred_at": row.occurred_at, "points_granted": row.points_granted,
            "reason": row.reason, "tap_id": row.tap_id}


def _statistics(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    s = MemberStats
    return (select(s.first_purchase_at, s.last_purchase_at, s.purchase_count, s.spend_minor,
                   Merchant.number)
            .join(Merchant, Merchant.id == s.merchant_id)
            .where(s.member_id == member_id))


def _statistic(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number), "purchase_count": row.purchase_count,
            "spend_minor": row.spend_minor, "first_purchase_at": row.first_purchase_at,
            "last_purchase_at": row.last_purchase_at}


def _categories(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    c = MemberCategoryCount
    return (select(c.category, c.purchase_count, c.quantity, Merchant.number)
            .join(Merchant, Merchant.id == c.merchant_id)
            .where(c.member_id == member_id))


def _category(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number), "category": row.category,
            "purchase_count": row.purchase_count, "quantity": row.quantity}


def _store_visits(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    v = MemberStoreVisit
    return (select(v.visit_count, v.last_visit_at, Merchant.number,
                   Store.code.label("store_code"), Store.name.label("store_name"))
            .join(Merchant, Merchant.id == v.merchant_id)
            .join(Store, Store.id == v.store_id)
            .where(v.member_id == member_id))


def _store_visit(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number),
            "store": {"code": row.store_code, "name": row.store_name},
            "visit_count": row.visit_count, "last_visit_at": row.last_visit_at}


def _scores(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    s = MemberScore
    return (select(s.computed_at, s.p_alive, s.expected_purchases_90d, s.clv_90d_minor,
                   Merchant.number)
            .join(Merchant, Merchant.id == s.merchant_id)
            .where(s.member_id == member_id))


def _score(row: Any) -> dict[str, Any]:
    return {"merchant_number": _number(row.number), "computed_at": row.computed_at,
            "p_alive": row.p_alive, "expected_purchases_90d": row.expected_purchases_90d,
            "clv_90d_minor": row.clv_90d_minor}


def _referrals(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    r = Referral
    referrer = r.referrer_id == member_id
    # The member's own side of each referral only: the other member is someone else.
    return (select(case((referrer, "referrer"), else_="referee").label("role"), r.status,
                   case((referrer, r.referrer_points), else_=r.referee_points)
                   .label("points"),
                   case((referrer, r.referrer_refusal), else_=None).label("refusal"),
                   case((referrer, None), else_=r.transaction_id).label("purchase_id"),
                   r.created_at, r.rewarded_at, r.clawed_back_at, Merchant.number)
            .join(Merchant, Merchant.id == r.merchant_id)
            .where(or_(referrer, r.referee_id == member_id)))


def _referral(row: Any) -> dict[str, Any]:
    return {"role": row.role, "merchant_number": _number(row.number), "status": row.status,
            "points": row.points, "refusal": row.refusal, "purchase_id": row.purchase_id,
            "created_at": row.created_at, "rewarded_at": row.rewarded_at,
            "clawed_back_at": row.clawed_back_at}


def _outcomes(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    o = CampaignOutcome
    return (select(o.transaction_id, o.occasion, o.held_out, o.points, o.created_at,
                   Campaign.name.label("campaign_name"), Voucher.code, Merchant.number)
            .join(Campaign, Campaign.id == o.campaign_id)
            .join(Merchant, Merchant.id == o.merchant_id)
            .outerjoin(Voucher, Voucher.id == o.voucher_id)
            .where(o.member_id == member_id))


def _outcome(row: Any) -> dict[str, Any]:
    return {"campaign_name": row.campaign_name, "merchant_number": _number(row.number),
            "purchase_id": row.transaction_id, "occasion": row.occasion,
            "held_out": row.held_out, "points": row.points,
            "voucher_code": None if row.code is None else voucher_codes.display(row.code),
            "created_at": row.created_at}


def _security_events(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    e = SecurityEvent
    return (select(e.kind, e.refusal, e.occurred_at, Merchant.number)
            .join(Merchant, Merchant.id == e.merchant_id)
            .where(e.member_id == member_id))


def _security_event(row: Any) -> dict[str, Any]:
    return {"kind": row.kind, "refusal": row.refusal, "merchant_number": _number(row.number),
            "occurred_at": row.occurred_at}


def _events(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    e = OutboxEvent
    return (select(e.type, e.occurred_at, e.delivered_at, Merchant.number)
            .join(Merchant, Merchant.id == e.merchant_id)
            .where(e.member_id == member_id))


def _event(row: Any) -> dict[str, Any]:
    return {"type": row.type, "merchant_number": _number(row.number),
            "occurred_at": row.occurred_at, "delivered_at": row.delivered_at}


def _push_subscriptions(member_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    p = PushSubscription
    return select(p.endpoint, p.created_at, p.expires_at, p.last_delivered_at,
                  p.gone_at).where(p.member_id == member_id)


def _push_subscription(row: Any) -> dict[str, Any]:
    # The push service, not the endpoint: the endpoint is a capability of the browser.
    return {"push_service": urlsplit(row.endpoint).hostname, "created_at": row.created_at,
            "expires_at": row.expires_at, "last_delivered_at": row.last_delivered_at,
            "gone_at": row.gone_at}


# The consent object's lists: a merchant's export holds its own scope's rows, the operator's
# every scope's, the coalition's included.
CONSENT_SECTIONS = (
    # By the ledger row that set each state (one state per row): the order they were set.
    Section("states", _consent_states, (CurrentConsent.event_id,), CurrentConsent.merchant_id,
            _each(_consent_state)),
    Section("history", _consent_events, (ConsentEvent.id,), ConsentEvent.merchant_id,
            _each(_consent_event)),
)

# The document's lists, in the order written.
SECTIONS = (
    Section("memberships", _memberships, (Membership.joined_at, Membership.id),
            Membership.merchant_id, _each(_membership)),
    Section("cards", _cards, (Card.created_at, Card.id), Card.merchant_id, _each(_card)),
    Section("points_balances", _points_accounts, (LedgerAccount.created_at, LedgerAccount.id),
            LedgerAccount.merchant_id, _each(_points_balance)),
    Section("purchases", _purchases, (PosTransaction.occurred_at, PosTransaction.id),
            PosTransaction.merchant_id, _purchase_items),
    Section("returns", _returns, (PosReturn.occurred_at, PosReturn.id), PosReturn.merchant_id,
            _return_items),
    Section("ledger_entries", _entries, (JournalEntry.occurred_at, JournalEntry.id),
            JournalEntry.merchant_id, _entry_items),
    Section("point_lots", _lots, (PointLot.id,), PointLot.merchant_id, _each(_lot)),
    Section("vouchers", _vouchers, (Voucher.issued_at, Voucher.id), Voucher.merchant_id,
            _each(_voucher)),
    Section("voucher_uses", _voucher_uses,
            (VoucherRedemption.created_at, VoucherRedemption.id),
            VoucherRedemption.merchant_id, _each(_voucher_use)),
    Section("benefits", _benefits, (IssuedBenefit.issued_at, IssuedBenefit.id),
            IssuedBenefit.merchant_id, _each(_benefit)),
    Section("benefit_progress", _benefit_progress, (BenefitProgress.rule_id,),
            BenefitProgress.merchant_id, _each(_progress)),
    Section("visits", _visits, (Visit.occurred_at, Visit.id), Visit.merchant_id,
            _each(_visit)),
    Section("statistics", _statistics, (MemberStats.merchant_id,), MemberStats.merchant_id,
            _each(_statistic)),
    Section("statistics_by_category", _categories,
            (MemberCategoryCount.merchant_id, MemberCategoryCount.category),
            MemberCategoryCount.merchant_id, _each(_category)),
    Section("store_visits", _store_visits, (MemberStoreVisit.store_id,),
            MemberStoreVisit.merchant_id, _each(_store_visit)),
    Section("scores", _scores, (MemberScore.merchant_id,), MemberScore.merchant_id,
            _each(_score)),
    Section("referrals", _referrals, (Referral.created_at, Referral.id), Referral.merchant_id,
            _each(_referral)),
    Section("campaign_outcomes", _outcomes, (CampaignOutcome.created_at, CampaignOutcome.id),
            CampaignOutcome.merchant_id, _each(_outcome)),
    Section("security_events", _security_events, (SecurityEvent.id,),
            SecurityEvent.merchant_id, _each(_security_event)),
    Section("events", _events, (OutboxEvent.created_at, OutboxEvent.id),
            OutboxEvent.merchant_id, _each(_event)),
    # The member's browsers, whoever registered them.
    Section("push_subscriptions", _push_subscriptions,
            (PushSubscription.created_at, PushSubscription.id), None,
            _each(_push_subscription)),
)


# --- writing --------------------------------------------------------------------------

def _page(session: Session, section: Section, export: Export, after: Sequence[Any] | None,
          size: int) -> tuple[Any, bytearray]:
    """The page of ``section`` after the key ``after``: its last row (None when it is
    empty) and its items encoded, separated by commas."""
    keys = [column.label(f"page_key{index}") for index, column in enumerate(section.key)]
    statement = section.query(export.member_id).add_columns(*keys)
    if export.merchant_id is not None and section.merchant is not None:
        statement = statement.where(section.merchant == export.merchant_id)
    if after is not None:
        statement = statement.where(tuple_(*section.key) > tuple_(*(
            literal(value, column.type) for value, column in zip(after, section.key,
                                                                 strict=True))))
    rows = session.execute(statement.order_by(*section.key).limit(size)).all()
    chunk = bytearray()
    if rows:
        for item in section.items(session, rows):
            chunk += _json(item)
            chunk += b","
        del chunk[-1:]
    return (rows[-1] if len(rows) == size else None), chunk


def _array(database: Database, section: Section, export: Export,
           size: int) -> Iterator[bytes]:
    """One section as a JSON array, a chunk per page, each page read in its own scope."""
    yield b"["
    after: list[Any] | None = None
    first = True
    while True:
        with database.read_scope() as session:
            last, chunk = _page(session, section, export, after, size)
        if chunk:
            yield bytes(chunk) if first else b"," + chunk
            first = False
        if last is None:  # a page short of full is the last
            break
        after = [getattr(last, f"page_key{index}") for index in range(len(section.key))]
    yield b"]"


def _profile(session: Session, export: Export) -> dict[str, Any]:
    member = session.get(Member, export.member_id)
    assert member is not None  # members are never deleted
    home = session.execute(select(Merchant.number, Merchant.name)
                           .where(Merchant.id == member.merchant_id)).one()
    store = None if member.enrolled_store_id is None else session.execute(
        select(Store.code, Store.name).where(Store.id == member.enrolled_store_id)).one()
    referral = session.execute(select(ReferralCode.code, ReferralCode.created_at)
                               .where(ReferralCode.member_id == member.id)).one_or_none()
    return {
        "format": FORMAT,
        "exported_at": utcnow(),
        "rows_of_merchant": _number(None if export.merchant_id is None else session.scalar(
            select(Merchant.number).where(Merchant.id == export.merchant_id))),
        "member": {
            "id": member.id, "member_number": member.member_number, "status": member.status,
            "enrolled_at": {"merchant_number": _number(home.number),
                            "merchant_name": home.name,
                            "store": None if store is None else {"code": store.code,
                                                                 "name": store.name}},
            "phone": decrypt_phone(member), "email": decrypt_email(member),
            "birth_year": member.birth_year, "birth_month": member.birth_month,
            "gender": member.gender, "postcode": member.postcode, "region": member.region,
            "language": member.language, "has_pin": member.pin_hash is not None,
            "pin_locked_until": member.pin_locked_until,
            "created_at": member.created_at, "updated_at": member.updated_at,
            "withdrawn_at": member.withdrawn_at, "erased_at": member.erased_at},
        "referral_code": None if referral is None else {
            "code": referral_codes.display(referral.code), "created_at": referral.created_at},
        "coalition_miles": {"balance": ledger.miles_balance(session, member_id=member.id)},
        # Whether the merchant (the operator's export: the coalition) may send marketing.
        "consents": {channel.value: given for channel, given in consent.marketing_channels(
            session, member_id=member.id, merchant_id=export.merchant_id).items()},
    }


def stream(database: Database, export: Export, *, page_size: int = PAGE_SIZE
           ) -> Iterator[bytes]:
    """The export as UTF-8 JSON, in chunks: the profile, then every section a page at a
    time. Nothing is read before the first chunk is asked for."""
    with database.read_scope() as session:
        head = _profile(session, export)
    consents = head.pop("consents")
    yield _json(head)[:-1]  # the object stays open for the sections
    yield b',"consents":{"current":' + _json(consents)
    for section in CONSENT_SECTIONS:
        yield b',"' + section.name.encode() + b'":'
        yield from _array(database, section, export, page_size)
    yield b"}"
    for section in SECTIONS:
        yield b',"' + section.name.encode() + b'":'
        yield from _array(database, section, export, page_size)
    yield b"}"
