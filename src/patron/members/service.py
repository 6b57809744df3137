"""Enrolment, profile, consents, withdrawal and erasure of members (the export, which
reads every area, is `patron.privacy.export`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.orm import Session

from patron.campaigns import occasions
from patron.campaigns.models import Trigger
from patron.config import get_settings
from patron.db import flush_or_raise, insert_for, insert_rows, table_of
from patron.errors import NotFound, PatronError
from patron.identity.models import Card, CardStatus
from patron.identity.numbers import MAX_CUSTOMER_NO, format_member_number
from patron.identity.phone import PhoneFormatError, normalise_card_uid, normalise_phone
from patron.kit.clock import utcnow
from patron.kit.crypto import encrypt, lookup_hash
from patron.members import access, consent
from patron.members.errors import (
    CardTaken,
    ConsentScopeNotAllowed,
    CustomerNumbersExhausted,
    DuplicateExternalRef,
    EmailTaken,
    EnrolledInFuture,
    InvalidCardUid,
    InvalidPhone,
    MemberNotActive,
    MerchantRequired,
    PhoneTaken,
)
from patron.members.models import (
    COALITION_SCOPE,
    Channel,
    IdentifierKind,
    Member,
    MemberDevice,
    MemberIdentifier,
    Membership,
    MemberStatus,
    MemberVerification,
    Purpose,
    consent_scope,
)
from patron.members.pii import EMAIL, PHONE, decrypt_email, decrypt_phone, mask_email, mask_phone
from patron.members.pins import hash_pin
from patron.members.schemas import (
    ConsentChange,
    ConsentEventRead,
    ConsentHistory,
    Consents,
    ConsentState,
    ConsentStateRead,
    MemberCreate,
    MemberProof,
    MemberRead,
    MemberUpdate,
)
from patron.notify.models import PushSubscription
from patron.notify.outbox import EventType, emit
from patron.referrals import service as referrals
from patron.tenancy.models import Merchant, Role
from patron.tenancy.rules import (
    MemberAction,
    may_record_consent_in,
    own_consent_scope,
    sees_consent_evidence,
    sees_consent_of,
    sees_personal_attributes,
)
from patron.tenancy.service import Principal, get_merchant

CARD = "card.uid"
DEVICE = "member.device"


# --- personal identifiers -------------------------------------------------------------

def phone_lookup(e164: str) -> str:
    return lookup_hash(get_settings().lookup_key, PHONE, e164)


def email_lookup(email: str) -> str:
    return lookup_hash(get_settings().lookup_key, EMAIL, email.strip().lower())


def card_lookup(uid: str) -> str:
    return lookup_hash(get_settings().lookup_key, CARD, uid)


def device_lookup(device_id: str) -> str:
    return lookup_hash(get_settings().lookup_key, DEVICE, device_id)


def remember_identifiers(session: Session, member: Member, *,
                         device_hash: str | None = None) -> None:
    """Keep the member's current phone and e-mail (and a wallet device) in their history of
    identifiers, by keyed hash (``MemberIdentifier``); known ones are left as they are."""
    _remember(session, _identifier_rows(
        member_id=member.id, seen_at=member.updated_at, phone_hash=member.phone_hash,
        email_hash=member.email_hash, device_hash=device_hash))


def _identifier_rows(*, member_id: uuid.UUID, seen_at: datetime, phone_hash: str | None,
                     email_hash: str | None, device_hash: str | None = None
                     ) -> list[dict[str, Any]]:
    return [{"member_id": member_id, "kind": kind.value, "hash": hashed,
             "first_seen_at": seen_at}
            for kind, hashed in ((IdentifierKind.phone, phone_hash),
                                 (IdentifierKind.email, email_hash),
                                 (IdentifierKind.device, device_hash)) if hashed]


def _remember(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert_for(session, MemberIdentifier).on_conflict_do_nothing(
            index_elements=["member_id", "kind", "hash"]), rows)


def parse_phone(text: str, region: str) -> str:
    try:
        return normalise_phone(text, region)
    except PhoneFormatError as exc:
        raise InvalidPhone(f"{exc}: give it with its country code (+81 …) or in the national "
                           f"format of {region}", field="phone") from exc


def parse_card_uid(text: str) -> str:
    try:
        return normalise_card_uid(text)
    except ValueError as exc:
        raise InvalidCardUid(str(exc), field="card_uid") from exc


def _phone_columns(e164: str | None) -> dict[str, Any]:
    """The member's phone columns for this number (None: none): lookup hash, ciphertext."""
    key = get_settings().encryption_key
    return {"phone_hash": phone_lookup(e164) if e164 else None,
            "phone_enc": encrypt(key, e164, context=PHONE) if e164 else None}


def _email_columns(email: str | None) -> dict[str, Any]:
    key = get_settings().encryption_key
    normalised = email.strip().lower() if email else None
    return {"email_hash": email_lookup(normalised) if normalised else None,
            "email_enc": encrypt(key, normalised, context=EMAIL) if normalised else None}


def _set_phone(member: Member, e164: str | None) -> None:
    for name, value in _phone_columns(e164).items():
        setattr(member, name, value)


def _set_email(member: Member, email: str | None) -> None:
    for name, value in _email_columns(email).items():
        setattr(member, name, value)


def _ensure_free(session: Session, *, phone_hash: str | None, email_hash: str | None,
                 except_member: uuid.UUID | None = None) -> None:
    def taken(*criteria: ColumnElement[bool]) -> bool:
        query = select(Member.id).where(Member.status == MemberStatus.active.value, *criteria)
        if except_member is not None:
            query = query.where(Member.id != except_member)
        return session.scalars(query.limit(1)).first() is not None

    if phone_hash and taken(Member.phone_hash == phone_hash):
        raise PhoneTaken(field="phone")
    if email_hash and taken(Member.email_hash == email_hash):
        raise EmailTaken(field="email")


# --- visibility -----------------------------------------------------------------------

def region_for(session: Session, actor: Principal) -> str:
    if actor.merchant_id is not None:
        country = session.scalar(select(Merchant.country).where(Merchant.id == actor.merchant_id))
        if country:
            return country
    return get_settings().default_region


def get_member(session: Session, *, actor: Principal, member_id: uuid.UUID) -> Member:
    """A member the caller may read (docs/tenancy.md, "Who may"): the operator every member,
    a merchant and its terminals the members holding a membership with it."""
    return access.member_for(session, actor=actor, member_id=member_id,
                             action=MemberAction.read)


def read_member(session: Session, *, actor: Principal, member_id: uuid.UUID) -> MemberRead:
    """The member as the caller may see them: another merchant sees neither the masked
    phone and e-mail nor the profile's attributes."""
    member, relation = access.member_and_relation(session, actor=actor, member_id=member_id,
                                                  action=MemberAction.read)
    return to_read(session, member, actor=actor, personal=sees_personal_attributes(relation))


def _require_active(member: Member) -> None:
    if member.status != MemberStatus.active.value:
        raise MemberNotActive(f"the member is {member.status}")


def _member_to_change(session: Session, actor: Principal, member_id: uuid.UUID,
                      proof: MemberProof | None) -> Member:
    return access.member_for(session, actor=actor, member_id=member_id,
                             action=MemberAction.change, proof=proof, require=_require_active)


# --- enrolment ------------------------------------------------------------------------

def _allocate_customer_no(session: Session, merchant_id: uuid.UUID, count: int = 1) -> int:
    """The first of ``count`` consecutive customer numbers, taken for this enrolment."""
    # One atomic increment inside the enrolling transaction: the row lock serialises
    # concurrent enrolments, and a rollback gives the numbers back, so there are no gaps.
    new_next = session.execute(
        update(Merchant).where(Merchant.id == merchant_id)
        .values(next_customer_no=Merchant.next_customer_no + count)
        .returning(Merchant.next_customer_no)
    ).scalar_one()
    if int(new_next) - 1 > MAX_CUSTOMER_NO:
        raise CustomerNumbersExhausted()
    return int(new_next) - count


def _new_member(*, merchant: Merchant, customer_no: int | None, store_id: uuid.UUID | None,
                phone: str | None, email: str | None, enrolled_at: datetime, now: datetime,
                birth_year: int | None = None, birth_month: int | None = None,
                gender: str | None = None, postcode: str | None = None,
                region: str | None = None, language: str | None = None,
                external_ref: str | None = None) -> dict[str, Any]:
    """A new active member's row, as column values: the one shape of an enrolment, one at
    a time (``Member(**values)``) or many (a multi-row insert). ``customer_no`` None:
    numbered later."""
    return {"id": uuid.uuid4(), "merchant_id": merchant.id, "enrolled_store_id": store_id,
            "customer_no": customer_no,
            "member_number": None if customer_no is None
            else format_member_number(merchant.number, customer_no),
            "external_ref": external_ref, "status": MemberStatus.active.value,
            "birth_year": birth_year, "birth_month": birth_month, "gender": gender,
            "postcode": postcode, "region": region, "language": language,
            "created_at": enrolled_at, "updated_at": now, "pin_failures": 0,
            "pin_hash": None, "pin_locked_until": None, "withdrawn_at": None,
            "erased_at": None, **_phone_columns(phone), **_email_columns(email)}


def _record_marketing_flags(session: Session, *, member_id: uuid.UUID,
                            merchant_id: uuid.UUID | None, flags: Consents | ConsentChange,
                            source: str, only_changes: bool, now: datetime) -> None:
    """The per-channel flags (true, false, None: no change) as marketing consent in one
    scope; ``only_changes``: a flag equal to the scope's current state records nothing."""
    standing: dict[str, bool] = {}
    if only_changes:
        scope = consent_scope(merchant_id)
        standing = {row.channel: row.granted
                    for row in consent.current(session, member_id=member_id)
                    if row.scope == scope and row.purpose == Purpose.marketing.value}
    for channel in Channel:
        granted = getattr(flags, channel.value)
        if granted is None or standing.get(channel.value) == granted:
            continue
        consent.record(session, member_id=member_id, merchant_id=merchant_id,
                       channel=channel, purpose=Purpose.marketing, granted=granted,
                       source=source, now=now)


def enrol(session: Session, *, actor: Principal, data: MemberCreate) -> Member:
    actor.require(Role.operator, Role.merchant, Role.terminal)
    if actor.role == Role.operator:
        if data.merchant_id is None:
            raise MerchantRequired(field="merchant_id")
        merchant_id = data.merchant_id
    else:
        assert actor.merchant_id is not None
        if data.merchant_id not in (None, actor.merchant_id):
            raise NotFound("no such merchant")
        merchant_id = actor.merchant_id
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)

    phone = parse_phone(data.phone, merchant.country) if data.phone else None
    card_uid = parse_card_uid(data.card_uid) if data.card_uid else None
    now = utcnow()
    # The customer number is taken once the checks below pass (a refusal takes none).
    member = Member(**_new_member(merchant=merchant, customer_no=None, store_id=actor.store_id,
                         phone=phone, email=data.email, enrolled_at=now, now=now,
                         birth_year=data.birth_year, birth_month=data.birth_month,
                         gender=data.gender.value if data.gender else None,
                         postcode=data.postcode, region=data.region, language=data.language))
    card_hash = card_lookup(card_uid) if card_uid else None
    device_hash = device_lookup(data.device_id) if data.device_id else None
    # Before the uniqueness checks: the referrer's own phone is a self-referral, not a
    # phone that is taken.
    referral = (referrals.check_code(
        session, merchant_id=merchant.id, code=data.referral_code,
        referee=referrals.Identifiers(phone=member.phone_hash, email=member.email_hash,
                                      card=card_hash, device=device_hash), now=now)
        if data.referral_code is not None else None)
    _ensure_free(session, phone_hash=member.phone_hash, email_hash=member.email_hash)
    if card_hash and session.scalar(select(exists().where(Card.uid_hash == card_hash))):
        raise CardTaken(field="card_uid")
    if data.pin:
        member.pin_hash = hash_pin(data.pin)

    member.customer_no = _allocate_customer_no(session, merchant.id)
    member.member_number = format_member_number(merchant.number, member.customer_no)
    session.add(member)
    # A concurrent enrolment may take the same phone or e-mail between check and insert;
    # the partial unique indexes catch it.
    flush_or_raise(session, PhoneTaken("another member was just enrolled with the same phone "
                                  "or e-mail"))
    session.add(Membership(member_id=member.id, merchant_id=merchant.id, joined_at=now,
                           source=data.source))
    if card_uid and card_hash:
        session.add(Card(member_id=member.id, merchant_id=merchant.id, uid_hash=card_hash,
                         uid_last4=card_uid[-4:], status=CardStatus.active.value))
        flush_or_raise(session, CardTaken(field="card_uid"))
    if data.consents:
        # Given at a merchant's enrolment: marketing consent for that merchant.
        _record_marketing_flags(session, member_id=member.id, merchant_id=merchant.id,
                                flags=data.consents, source=data.source, only_changes=False,
                                now=now)
    remember_identifiers(session, member, device_hash=device_hash)
    if referral is not None:
        referrals.attach(session, referral, referee_id=member.id, now=now)
    session.flush()
    emit(session, type=EventType.member_enrolled, merchant_id=merchant.id, member_id=member.id,
         payload={"member_id": str(member.id), "member_number": member.member_number,
                  "merchant_id": str(merchant.id), "source": data.source},
         occurred_at=now)
    # Welcome campaigns (docs/campaigns.md): their outcomes go to the member's phone.
    occasions.fire(session, occasions.Occasion(
        trigger=Trigger.enrolment, key="enrolment", merchant_id=merchant.id,
        member_id=member.id, occurred_at=now, store_id=actor.store_id), now=now)
    return member




def find_by_external_ref(session: Session, *, actor: Principal, merchant_id: uuid.UUID | None,
                         external_ref: str) -> list[Member]:
    """The merchant's member with this ``external_ref`` (none or one): for the data
    controller, the operator (naming the merchant) or the merchant's own merchant key;
    another merchant's key finds nothing (404 for the merchant), terminals none (403)."""
    if merchant_id is None:
        if actor.merchant_id is None:
            actor.require(Role.operator)  # a key of no merchant: the operator's alone
            raise MerchantRequired(field="merchant_id")
        merchant_id = actor.merchant_id
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)
    actor.require(Role.operator, Role.merchant)
    return list(session.scalars(select(Member).where(Member.merchant_id == merchant.id,
                                                     Member.external_ref == external_ref)))

# --- enrolment of many, from another system (the history import) ---------------------

@dataclass(frozen=True)
class ImportedMember:
    """One member as the previous system knew them (``patron.imports``): the text of the
    identifiers as exported, the profile already checked by its schema."""

    external_ref: str
    phone: str | None = None
    email: str | None = None
    card_uid: str | None = None
    birth_year: int | None = None
    gender: str | None = None
    postcode: str | None = None
    language: str | None = None
    enrolled_at: datetime | None = None


ALREADY_THERE = "already_there"


@dataclass(frozen=True)
class ImportedAs:
    """A member ``enrol_imported`` enrolled."""

    id: uuid.UUID
    member_number: str


def enrol_imported(session: Session, *, merchant: Merchant, people: Sequence[ImportedMember],
                   now: datetime) -> list[ImportedAs | str | PatronError]:
    """Enrol members from another system, all at once: for each, the new member, or
    ``ALREADY_THERE`` (a member of this merchant has its ``external_ref``: an import run
    again adds nothing), or why it is refused — by the rules ``enrol`` applies (a valid
    phone and card UID; a phone, e-mail or card no other active member has, nor an
    earlier one of ``people``). No PIN, no consents (none were given to Patron), no
    events and no welcome campaigns: these members joined before."""
    refs = [person.external_ref for person in people]
    known = set(session.scalars(select(Member.external_ref).where(
        Member.merchant_id == merchant.id, Member.external_ref.in_(refs))))
    outcomes: list[ImportedAs | str | PatronError | None] = []
    planned: list[tuple[int, ImportedMember, str | None, str | None, str | None]] = []
    seen: dict[str, set[str]] = {"ref": set(), "phone": set(), "email": set(), "card": set()}
    for index, person in enumerate(people):
        if person.external_ref in known:
            outcomes.append(ALREADY_THERE)
            continue
        try:
            if person.external_ref in seen["ref"]:
                raise DuplicateExternalRef(field="external_ref")
            if person.enrolled_at is not None and person.enrolled_at > now:
                raise EnrolledInFuture(field="enrolled_at")
            phone = parse_phone(person.phone, merchant.country) if person.phone else None
            card_uid = parse_card_uid(person.card_uid) if person.card_uid else None
            email = person.email.strip().lower() if person.email else None
            hashes = {"phone": phone_lookup(phone) if phone else None,
                      "email": email_lookup(email) if email else None,
                      "card": card_lookup(card_uid) if card_uid else None}
            for kind, error in (("phone", PhoneTaken), ("email", EmailTaken),
                                ("card", CardTaken)):
                if hashes[kind] in seen[kind]:
                    raise error(f"an earlier member of the file has this {kind}", field=kind
                                if kind != "card" else "card_uid")
        except PatronError as exc:
            outcomes.append(exc)
            continue
        seen["ref"].add(person.external_ref)
        for kind, hashed in hashes.items():
            if hashed is not None:
                seen[kind].add(hashed)
        outcomes.append(None)  # decided below, with the rest of the file's checks
        planned.append((index, person, phone, email, card_uid))
    taken = _taken(session, phones=seen["phone"], emails=seen["email"], cards=seen["card"])
    accepted: list[tuple[int, ImportedMember, str | None, str | None, str | None]] = []
    for index, person, phone, email, card_uid in planned:
        clash = next((error(field=field) for value, lookup, kind, error, field in (
            (phone, phone_lookup, "phone", PhoneTaken, "phone"),
            (email, email_lookup, "email", EmailTaken, "email"),
            (card_uid, card_lookup, "card", CardTaken, "card_uid"))
            if value is not None and lookup(value) in taken[kind]), None)
        if clash is not None:
            outcomes[index] = clash
        else:
            accepted.append((index, person, phone, email, card_uid))
    if not accepted:
        return _decided(outcomes)
    first = _allocate_customer_no(session, merchant.id, len(accepted))
    rows: list[dict[str, Any]] = []
    cards: list[dict[str, Any]] = []
    for offset, (index, person, phone, email, card_uid) in enumerate(accepted):
        row = _new_member(merchant=merchant, customer_no=first + offset, store_id=None,
                          phone=phone, email=email, enrolled_at=person.enrolled_at or now,
                          now=now, birth_year=person.birth_year, gender=person.gender,
                          postcode=person.postcode, language=person.language,
                          external_ref=person.external_ref)
        rows.append(row)
        outcomes[index] = ImportedAs(id=row["id"], member_number=row["member_number"])
        if card_uid is not None:
            cards.append({"id": uuid.uuid4(), "member_id": row["id"],
                          "merchant_id": merchant.id, "uid_hash": card_lookup(card_uid),
                          "uid_last4": card_uid[-4:], "status": CardStatus.active.value,
                          "block_reason": None, "blocked_at": None, "replaced_by_id": None,
                          "created_at": now})
    # A concurrent enrolment may take a phone, e-mail or card between check and insert:
    # the unique indexes refuse the rows (IntegrityError), and the caller runs them again.
    insert_rows(session, table_of(Member), rows)
    insert_rows(session, table_of(Membership), [
        {"id": uuid.uuid4(), "member_id": row["id"], "merchant_id": merchant.id,
         "joined_at": row["created_at"], "source": "import"} for row in rows])
    insert_rows(session, table_of(Card), cards)
    _remember(session, [identifier for row in rows for identifier in _identifier_rows(
        member_id=row["id"], seen_at=now, phone_hash=row["phone_hash"],
        email_hash=row["email_hash"])])
    return _decided(outcomes)


def _decided(outcomes: list[ImportedAs | str | PatronError | None]
             ) -> list[ImportedAs | str | PatronError]:
    decided = [outcome for outcome in outcomes if outcome is not None]
    assert len(decided) == len(outcomes), "every member is enrolled, already there or refused"
    return decided


def _taken(session: Session, *, phones: set[str], emails: set[str],
           cards: set[str]) -> dict[str, set[str]]:
    """Which of these lookup hashes an active member's phone or e-mail, or a card, has."""
    active = Member.status == MemberStatus.active.value
    return {
        "phone": set(session.scalars(select(Member.phone_hash).where(
            active, Member.phone_hash.in_(phones)))) if phones else set(),
        "email": set(session.scalars(select(Member.email_hash).where(
            active, Member.email_hash.in_(emails)))) if emails else set(),
        "card": set(session.scalars(select(Card.uid_hash).where(
            Card.uid_hash.in_(cards)))) if cards else set()}


def to_read(session: Session, member: Member, *, actor: Principal,
            personal: bool = True) -> MemberRead:
    """The member as ``actor`` reads them (``personal``: with the masked phone and e-mail and
    the profile's attributes); ``consents`` is the marketing consent for the key's merchant
    (an operator key: the coalition)."""
    phone = decrypt_phone(member) if personal else None
    email = decrypt_email(member) if personal else None
    return MemberRead(
        id=member.id, member_number=member.member_number, merchant_id=member.merchant_id,
        external_ref=member.external_ref if personal else None, status=member.status,
        phone_masked=mask_phone(phone) if phone else None,
        email_masked=mask_email(email) if email else None,
        birth_year=member.birth_year if personal else None,
        birth_month=member.birth_month if personal else None,
        gender=member.gender if personal else None,
        postcode=member.postcode if personal else None,
        region=member.region if personal else None,
        language=member.language,
        consents=_marketing_state(session, member_id=member.id, actor=actor),
        has_pin=member.pin_hash is not None, created_at=member.created_at,
        withdrawn_at=member.withdrawn_at, erased_at=member.erased_at)


def update_member(session: Session, *, actor: Principal, member_id: uuid.UUID,
                  data: MemberUpdate) -> Member:
    member = _member_to_change(session, actor, member_id, data.proof)
    changes = data.model_dump(exclude_unset=True, exclude={"proof"})
    if "phone" in changes:
        region = session.scalar(select(Merchant.country).where(Merchant.id == member.merchant_id))
        _set_phone(member, parse_phone(data.phone, region or "US") if data.phone else None)
    if "email" in changes:
        _set_email(member, data.email)
    _ensure_free(session, phone_hash=member.phone_hash if "phone" in changes else None,
                 email_hash=member.email_hash if "email" in changes else None,
                 except_member=member.id)
    for field in ("birth_year", "birth_month", "postcode", "region", "language"):
        if field in changes:
            setattr(member, field, changes[field])
    if "gender" in changes:
        member.gender = data.gender.value if data.gender else None
    member.updated_at = utcnow()
    flush_or_raise(session, PhoneTaken("another member was just enrolled with the same phone or "
                                  "e-mail"))
    remember_identifiers(session, member)
    return member


def _marketing_state(session: Session, *, member_id: uuid.UUID,
                     actor: Principal) -> ConsentState:
    allowed = consent.marketing_channels(
        session, member_id=member_id,
        merchant_id=own_consent_scope(role=actor.role, key_merchant_id=actor.merchant_id))
    return ConsentState(**{channel.value: given for channel, given in allowed.items()})


def _consent_scope_asked(actor: Principal, data: ConsentChange) -> uuid.UUID | None:
    """The scope a change is for (None: the coalition's): the one it names, else the key's."""
    if data.is_flags() or data.scope is None:
        return own_consent_scope(role=actor.role, key_merchant_id=actor.merchant_id)
    return data.scope if isinstance(data.scope, uuid.UUID) else None  # "coalition"


def change_consents(session: Session, *, actor: Principal, member_id: uuid.UUID,
                    data: ConsentChange) -> Member:
    """Record the member's consent change (``ConsentChange``'s two forms) in the ledger.
    Who may: the ``change`` rule of the member (a till with the member's proof), and then
    only in the key's own merchant's scope; the operator in any, the coalition's included."""
    scope = _consent_scope_asked(actor, data)

    def may_record(member: Member) -> None:
        # Before the member's proof is spent: a refused scope uses up no code.
        _require_active(member)
        if not may_record_consent_in(role=actor.role, key_merchant_id=actor.merchant_id,
                                     scope_merchant_id=scope):
            raise ConsentScopeNotAllowed(
                "only the operator records the coalition's consent"
                if scope is None else "a merchant's keys record consent for that merchant "
                "only: leave `scope` out, or give the key's own merchant",
                field="scope")
        if scope is not None and actor.role == Role.operator:
            get_merchant(session, actor=actor, merchant_id=scope)  # 404 for none
        if scope is not None and actor.role == Role.member and not access.is_member_of(
                session, member_id=member.id, merchant_id=scope):
            raise NotFound("the member has no membership with this merchant")

    member = access.member_for(session, actor=actor, member_id=member_id,
                               action=MemberAction.change, proof=data.proof,
                               require=may_record)
    now = utcnow()
    if data.is_flags():
        _record_marketing_flags(session, member_id=member.id, merchant_id=scope, flags=data,
                                source=data.source, only_changes=True, now=now)
    else:
        assert data.channel is not None and data.purpose is not None \
            and data.granted is not None  # the schema's rule for this form
        consent.record(session, member_id=member.id, merchant_id=scope, channel=data.channel,
                       purpose=data.purpose, granted=data.granted, source=data.source,
                       policy_version=data.policy_version, evidence=data.evidence, now=now)
    member.updated_at = now
    session.flush()
    return member


def consent_history(session: Session, *, actor: Principal, member_id: uuid.UUID
                    ) -> ConsentHistory:
    """The member's consent as ``actor`` may see it (``sees_consent_of``,
    ``sees_consent_evidence``): what the key's merchant may send, the current state and the
    ledger."""
    member = get_member(session, actor=actor, member_id=member_id)

    def seen(merchant_id: uuid.UUID | None) -> bool:
        return sees_consent_of(role=actor.role, key_merchant_id=actor.merchant_id,
                               scope_merchant_id=merchant_id)

    def evidence_seen(merchant_id: uuid.UUID | None) -> bool:
        return sees_consent_evidence(role=actor.role, key_merchant_id=actor.merchant_id,
                                     scope_merchant_id=merchant_id)

    def scope_name(merchant_id: uuid.UUID | None) -> str:
        return COALITION_SCOPE if merchant_id is None else "merchant"

    states = [ConsentStateRead(scope=scope_name(row.merchant_id), merchant_id=row.merchant_id,
                               channel=row.channel, purpose=row.purpose, granted=row.granted,
                               source=row.source, policy_version=row.policy_version,
                               since=row.since)
              for row in consent.current(session, member_id=member.id) if seen(row.merchant_id)]
    history = [ConsentEventRead(
        id=event.id, scope=scope_name(event.merchant_id), merchant_id=event.merchant_id,
        channel=event.channel, purpose=event.purpose, granted=event.granted,
        source=event.source, policy_version=event.policy_version,
        evidence=event.evidence if evidence_seen(event.merchant_id) else None,
        occurred_at=event.occurred_at)
        for event in consent.history(session, member_id=member.id) if seen(event.merchant_id)]
    return ConsentHistory(current=_marketing_state(session, member_id=member.id, actor=actor),
                          states=states, history=history)


def set_pin(session: Session, *, actor: Principal, member_id: uuid.UUID,
            pin: str | None, proof: MemberProof | None = None) -> Member:
    """Set, change or remove the PIN; a till proves the member is present with the current
    PIN or a one-time code."""
    member = _member_to_change(session, actor, member_id, proof)
    member.pin_hash = hash_pin(pin) if pin else None
    member.pin_failures = 0
    member.pin_locked_until = None
    member.updated_at = utcnow()
    session.flush()
    return member


def unlock_pin(session: Session, *, actor: Principal, member_id: uuid.UUID) -> Member:
    """End a lock-out after too many wrong PINs (the enrolling merchant's merchant key or
    the operator): the member is identified again everywhere, with a fresh count."""
    member = access.member_for(session, actor=actor, member_id=member_id,
                               action=MemberAction.unlock)
    member.pin_failures = 0
    member.pin_locked_until = None
    member.updated_at = utcnow()
    session.flush()
    return member


def withdraw(session: Session, *, actor: Principal, member_id: uuid.UUID) -> Member:
    """The member leaves: identifiers stop working, history stays."""
    member = access.member_for(session, actor=actor, member_id=member_id,
                               action=MemberAction.end)
    if member.status == MemberStatus.active.value:
        member.status = MemberStatus.withdrawn.value
        member.withdrawn_at = utcnow()
        member.updated_at = member.withdrawn_at
        consent.revoke_marketing(session, member_id=member.id, source="withdrawal",
                                 now=member.withdrawn_at)
        # A withdrawn member's wallets are signed out.
        session.execute(update(MemberDevice).where(MemberDevice.member_id == member.id,
                                                   MemberDevice.revoked_at.is_(None))
                        .values(revoked_at=member.withdrawn_at))
        session.flush()
    return member


def erase(session: Session, *, actor: Principal, member_id: uuid.UUID) -> Member:
    """Remove every piece of personal data; the member's history stays, anonymously."""
    member = access.member_for(session, actor=actor, member_id=member_id,
                               action=MemberAction.end)
    now = utcnow()
    if member.status == MemberStatus.active.value:
        member.withdrawn_at = now
    member.status = MemberStatus.erased.value
    member.erased_at = now
    member.updated_at = now
    _set_phone(member, None)
    _set_email(member, None)
    member.birth_year = member.birth_month = member.gender = member.postcode = None
    member.region = None
    member.language = member.pin_hash = None
    member.pin_locked_until = None
    consent.revoke_marketing(session, member_id=member.id, source="erasure", now=now)
    consent.forget_evidence(session, member_id=member.id)
    for card in session.scalars(select(Card).where(Card.member_id == member.id)):
        # The UID hash would let a reader re-identify the card; replace it with a tombstone.
        card.uid_hash = f"erased-{card.id.hex}"
        card.uid_last4 = ""
        card.status = CardStatus.blocked.value
        card.block_reason = "member erased"
        card.blocked_at = card.blocked_at or now
    session.execute(delete(MemberIdentifier).where(MemberIdentifier.member_id == member.id))
    session.execute(delete(MemberVerification).where(MemberVerification.member_id == member.id))
    # A browser's subscription would let a push reach the person: forgotten.
    session.execute(delete(PushSubscription).where(PushSubscription.member_id == member.id))
    # So are the wallets signed in: nothing of the member stays reachable.
    session.execute(delete(MemberDevice).where(MemberDevice.member_id == member.id))
    session.flush()
    return member
