"""Programs: read a merchant's program (or the default), replace it, and place a member
in a tier by the points they earned in the last 365 days."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from patron.errors import NotFound
from patron.kit.clock import utcnow
from patron.kit.validation import currency_minor_units
from patron.ledger.models import EntryKind, JournalEntry, LedgerAccount, Posting
from patron.ledger.service import member_points_key
from patron.programs import rules
from patron.programs.errors import (
    BaseTierThresholdNotZero,
    CategoryMultipliedAndExcluded,
    DuplicateCategory,
    DuplicateTierName,
    TiersNotIncreasing,
)
from patron.programs.models import Program, ProgramCategory, ProgramTier
from patron.programs.rules import ProgramView, Rounding, TierProgress, TierView
from patron.programs.schemas import ProgramRead, ProgramWrite, TierRead
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal, get_merchant

TIER_WINDOW = timedelta(days=365)
EARNING_KINDS = (EntryKind.earn.value, EntryKind.tap.value)


@dataclass(frozen=True)
class MerchantProgram:
    merchant_id: uuid.UUID
    currency: str
    currency_minor_units: int
    configured: bool
    updated_at: datetime | None
    rules: ProgramView


_PROGRAM_BY_MERCHANT = select(Program).where(Program.merchant_id == bindparam("merchant_id"))


class _ProgramParts:
    """A program's categories and tiers by (program id, ``updated_at``), per process.

    Every change of them (``put_program``, the only writer) also moves the program's
    ``updated_at`` in the same transaction, so a version seen in the program row has one
    content for good: the row is read on every call, its parts only when its version is
    new here. Two statements fewer for most reads of a program (twice per checkout)."""

    SIZE = 1024

    def __init__(self) -> None:
        self._parts: OrderedDict[tuple[uuid.UUID, datetime],
                                 tuple[tuple[tuple[str, int], ...], tuple[TierView, ...]]]
        self._parts = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, program: Program
            ) -> tuple[tuple[tuple[str, int], ...], tuple[TierView, ...]]:
        version = (program.id, program.updated_at)
        with self._lock:
            known = self._parts.get(version)
            if known is not None:
                self._parts.move_to_end(version)
                return known
        categories = tuple((name, bp) for name, bp in session.execute(
            select(ProgramCategory.category, ProgramCategory.multiplier_bp)
            .where(ProgramCategory.program_id == program.id)
            .order_by(ProgramCategory.category)))
        tiers = tuple(TierView(name=tier.name, threshold_points=tier.threshold_points,
                               earn_multiplier_bp=tier.earn_multiplier_bp)
                      for tier in session.scalars(
                          select(ProgramTier).where(ProgramTier.program_id == program.id)
                          .order_by(ProgramTier.threshold_points)))
        with self._lock:
            self._parts[version] = (categories, tiers)
            while len(self._parts) > self.SIZE:
                self._parts.popitem(last=False)
        return categories, tiers


_program_parts = _ProgramParts()


def get_program(session: Session, *, merchant_id: uuid.UUID) -> MerchantProgram:
    """The merchant's program; ``rules.DEFAULT_PROGRAM`` when it never configured one.

    No visibility check: for the POS pipeline and jobs. HTTP callers use ``read_program``.
    """
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound("no such merchant")
    program = session.scalars(_PROGRAM_BY_MERCHANT,
                              {"merchant_id": merchant_id}).one_or_none()
    base = MerchantProgram(merchant_id=merchant.id, currency=merchant.currency,
                           currency_minor_units=currency_minor_units(merchant.currency),
                           configured=False, updated_at=None, rules=rules.DEFAULT_PROGRAM)
    if program is None:
        return base
    categories, tiers = _program_parts.get(session, program)
    view = ProgramView(
        earn_points=program.earn_points,
        earn_per_amount=program.earn_per_amount,
        rounding=Rounding(program.rounding),
        point_value_minor=program.point_value_minor,
        min_burn=program.min_burn,
        expiry_months=program.expiry_months,
        category_multipliers_bp={name: bp for name, bp in categories if bp},
        excluded_categories=frozenset(name for name, bp in categories if not bp),
        tiers=tiers,
    )
    return MerchantProgram(merchant_id=base.merchant_id, currency=base.currency,
                           currency_minor_units=base.currency_minor_units, configured=True,
                           updated_at=program.updated_at, rules=view)


def read_program(session: Session, *, actor: Principal, merchant_id: uuid.UUID
                 ) -> MerchantProgram:
    """Any key that sees the merchant (its terminals too: the till needs the rules)."""
    get_merchant(session, actor=actor, merchant_id=merchant_id)
    return get_program(session, merchant_id=merchant_id)


def validated_rules(data: ProgramWrite) -> ProgramView:
    """The rules a PUT asks for, or the first thing wrong with them (422 with ``field``)."""
    multipliers: dict[str, int] = {}
    for raw, bp in data.category_multipliers_bp.items():
        name = rules.normalise_category(raw)
        if name in multipliers:
            raise DuplicateCategory(f"category {raw!r} is listed twice (case is ignored)",
                                    field=f"category_multipliers_bp.{raw}")
        multipliers[name] = bp
    excluded: set[str] = set()
    for index, raw in enumerate(data.excluded_categories):
        name = rules.normalise_category(raw)
        if name in excluded:
            raise DuplicateCategory(f"category {raw!r} is listed twice (case is ignored)",
                                    field=f"excluded_categories[{index}]")
        if name in multipliers:
            raise CategoryMultipliedAndExcluded(
                f"category {raw!r} has a multiplier and is excluded; choose one",
                field=f"excluded_categories[{index}]")
        excluded.add(name)
    tier_names: set[str] = set()
    for index, tier in enumerate(data.tiers):
        if index == 0 and tier.threshold_points != 0:
            raise BaseTierThresholdNotZero(
                "the first tier is the base tier every member starts in: give it "
                "threshold_points 0", field="tiers[0].threshold_points")
        if index > 0 and tier.threshold_points <= data.tiers[index - 1].threshold_points:
            raise TiersNotIncreasing(
                f"tier {tier.name!r} needs more than the "
                f"{data.tiers[index - 1].threshold_points} points of the tier before it",
                field=f"tiers[{index}].threshold_points")
        if tier.name.casefold() in tier_names:
            raise DuplicateTierName(f"tier name {tier.name!r} is used twice",
                                    field=f"tiers[{index}].name")
        tier_names.add(tier.name.casefold())
    return ProgramView(
        earn_points=data.earn_points,
        earn_per_amount=data.earn_per_amount,
        rounding=data.rounding,
        point_value_minor=data.point_value_minor,
        min_burn=data.min_burn,
        expiry_months=data.expiry_months,
        category_multipliers_bp=multipliers,
        excluded_categories=frozenset(excluded),
        tiers=tuple(TierView(name=tier.name, threshold_points=tier.threshold_points,
                             earn_multiplier_bp=tier.earn_multiplier_bp)
                    for tier in data.tiers),
    )


def _locked_program(session: Session, merchant_id: uuid.UUID) -> Program | None:
    return session.scalars(
        select(Program).where(Program.merchant_id == merchant_id).with_for_update()
        .execution_options(populate_existing=True)).one_or_none()


def put_program(session: Session, *, actor: Principal, merchant_id: uuid.UUID,
                data: ProgramWrite) -> MerchantProgram:
    """Replace the merchant's whole program, tiers and categories included.

    The merchant's own key or the operator's; any other merchant's key gets 404. Concurrent
    PUTs are serialised by the program row's lock (the first insert by the unique
    ``merchant_id``): the last one wins whole, never a mix of two.
    """
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)
    actor.require(Role.operator, Role.merchant)
    view = validated_rules(data)
    now = utcnow()
    program = _locked_program(session, merchant.id)
    if program is None:
        program = Program(merchant_id=merchant.id, created_at=now)
        _set_settings(program, view, now)
        try:
            with session.begin_nested():
                session.add(program)
                session.flush()
        except IntegrityError:
            # A concurrent first PUT created it; replace its settings under its lock.
            program = _locked_program(session, merchant.id)
            if program is None:
                raise
    _set_settings(program, view, now)
    session.execute(delete(ProgramCategory).where(ProgramCategory.program_id == program.id))
    session.execute(delete(ProgramTier).where(ProgramTier.program_id == program.id))
    session.add_all(
        [ProgramCategory(program_id=program.id, merchant_id=merchant.id, category=name,
                         multiplier_bp=bp) for name, bp in view.category_multipliers_bp.items()]
        + [ProgramCategory(program_id=program.id, merchant_id=merchant.id, category=name,
                           multiplier_bp=0) for name in sorted(view.excluded_categories)])
    session.add_all([ProgramTier(program_id=program.id, merchant_id=merchant.id,
                                 name=tier.name, threshold_points=tier.threshold_points,
                                 earn_multiplier_bp=tier.earn_multiplier_bp)
                     for tier in view.tiers])
    session.flush()
    return get_program(session, merchant_id=merchant.id)


def _set_settings(program: Program, view: ProgramView, now: datetime) -> None:
    program.earn_points = view.earn_points
    program.earn_per_amount = view.earn_per_amount
    program.rounding = view.rounding.value
    program.point_value_minor = view.point_value_minor
    program.min_burn = view.min_burn
    program.expiry_months = view.expiry_months
    program.updated_at = now


def _earned_12m_statement() -> Select[int, int]:
    """Earned in the window, and clawed back from those same earnings, in one statement
    (the member's points account found by its key inside it). Built once at import: it runs
    twice in every identified checkout."""
    account = (select(LedgerAccount.id).where(LedgerAccount.key == bindparam("account_key"))
               .scalar_subquery())
    def mine(entry: type[JournalEntry]) -> tuple[ColumnElement[bool], ...]:
        return (entry.member_id == bindparam("member_id"),
                entry.merchant_id == bindparam("merchant_id"),
                entry.occurred_at <= bindparam("now"), Posting.account_id == account)

    entry = aliased(JournalEntry)
    earned = (select(func.coalesce(func.sum(Posting.amount), 0))
              .join(entry, entry.id == Posting.entry_id)
              .where(*mine(entry), entry.kind.in_(EARNING_KINDS),
                     entry.occurred_at > bindparam("since"))
              .scalar_subquery())
    back, original = aliased(JournalEntry), aliased(JournalEntry)
    clawed_back = (select(func.coalesce(func.sum(Posting.amount), 0))
                   .join(back, back.id == Posting.entry_id)
                   .join(original, original.id == back.reverses_entry_id)
                   .where(*mine(back), back.kind == EntryKind.return_.value,
                          original.kind.in_(EARNING_KINDS),
                          original.occurred_at > bindparam("since"),
                          original.occurred_at <= bindparam("now"))
                   .scalar_subquery())
    return select(earned, clawed_back)


_EARNED_12M = _earned_12m_statement()


def points_earned_12m(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID,
                      now: datetime | None = None) -> int:
    """Points the member earned at the merchant (purchases and taps) in the 365 days up to
    ``now``, less what returns clawed back from those same earnings.

    A claw-back counts against the window of the earn it reverses, not its own date: a
    return today of a purchase made 13 months ago takes nothing off this year's total
    (that purchase is not in it), and a purchase in the window counts only what is left of
    it. The result is therefore never negative. Burns, expiry and adjustments never count:
    tiers are about what a member earned, not what they hold.
    """
    now = now or utcnow()
    earned, clawed_back = session.execute(_EARNED_12M, {
        "account_key": member_points_key(merchant_id, member_id), "member_id": member_id,
        "merchant_id": merchant_id, "now": now, "since": now - TIER_WINDOW}).one()
    return max(int(earned or 0) + int(clawed_back or 0), 0)


def member_tier(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID,
                now: datetime | None = None,
                program: MerchantProgram | None = None) -> TierProgress:
    """The member's tier at the merchant and the way to the next one; ``program`` is the
    merchant's program when the caller has already read it in this transaction."""
    if program is None or program.merchant_id != merchant_id:
        program = get_program(session, merchant_id=merchant_id)
    points = points_earned_12m(session, merchant_id=merchant_id, member_id=member_id, now=now)
    return rules.progress_to_next(points, program.rules.tiers)


def to_read(program: MerchantProgram) -> ProgramRead:
    view = program.rules
    return ProgramRead(
        merchant_id=program.merchant_id,
        currency=program.currency,
        currency_minor_units=program.currency_minor_units,
        configured=program.configured,
        earn_points=view.earn_points,
        earn_per_amount=view.earn_per_amount,
        rounding=view.rounding,
        category_multipliers_bp=dict(sorted(view.category_multipliers_bp.items())),
        excluded_categories=sorted(view.excluded_categories),
        point_value_minor=view.point_value_minor,
        min_burn=view.min_burn,
        expiry_months=view.expiry_months,
        tiers=[TierRead.model_validate(tier) for tier in view.tiers],
        updated_at=program.updated_at,
    )
