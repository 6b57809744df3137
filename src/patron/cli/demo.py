"""A demo coalition: 3 merchants in three currencies and time zones, 12 stores, terminals,
readers and members with varied data, four weeks of register events at every store and a
few running campaigns per merchant. Built through the services, like real data.

Every run prints what a user needs to try the API (`demo_summary`): the first run the keys
it made, later runs (`--if-empty` on a filled database, as `make run` does at every start)
the same keys read back from the keys file beside the database."""

from __future__ import annotations

import contextlib
import io
import random
import secrets
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.campaigns.models import Trigger
from patron.campaigns.schemas import (
    BonusPoints,
    CampaignWrite,
    IssueVoucher,
    Message,
    PerMember,
    PointsMultiplier,
)
from patron.campaigns.service import create_campaign
from patron.cli.demo_events import DemoRegister, Hours, register_events
from patron.cli.demo_summary import (
    DemoKey,
    DemoPerson,
    DemoSummary,
    SampleMember,
    Voucher,
    keys_file_path,
    print_summary,
    read_keys_file,
    write_keys_file,
)
from patron.coalition.schemas import RatesWrite, RateWrite
from patron.coalition.service import put_rates
from patron.config import get_settings
from patron.db import Database
from patron.errors import PatronError
from patron.identity.schemas import IdentifyRequest, MemberIdentification
from patron.identity.service import identify
from patron.imports import runner
from patron.imports.sample import write_history
from patron.kit.clock import utcnow
from patron.kit.passwords import secret_matches
from patron.kit.validation import currency_minor_units
from patron.ledger.service import miles_balance
from patron.members.models import Member, MemberStatus
from patron.members.schemas import Consents, Gender, MemberCreate
from patron.members.service import enrol
from patron.operations.schemas import MAX_BATCH, EventBatch
from patron.operations.service import record_events
from patron.pos.schemas import LineWrite, PurchaseWrite
from patron.pos.service import commit
from patron.tenancy.models import (
    Merchant,
    Role,
    StaffRole,
    StaffUser,
    Store,
    StoreKind,
    TerminalKind,
)
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import (
    SYSTEM,
    authenticate,
    create_merchant,
    create_store,
    create_terminal,
    ensure_operator,
    issue_key,
    list_merchants,
    list_stores,
    list_terminals,
)
from patron.tenancy.staff import create_staff
from patron.tenancy.staff import email_lookup as staff_email_lookup
from patron.vouchers.codes import display
from patron.vouchers.models import Offer, OfferKind
from patron.vouchers.offers import create_offer
from patron.vouchers.schemas import OfferWrite
from patron.vouchers.service import insert_codes

# Register events reach back this many days (the API takes events up to 30 days old).
EVENT_DAYS = 28


@dataclass(frozen=True)
class DemoStore:
    code: str
    name: str
    address: str
    latitude: float | None
    longitude: float | None
    kind: StoreKind = StoreKind.shop


@dataclass(frozen=True)
class DemoMerchant:
    number: int
    name: str
    currency: str
    timezone: str
    country: str
    languages: tuple[str, ...]
    mobile_prefix: str
    postcodes: tuple[str, ...]
    regions: tuple[str, ...]
    stores: tuple[DemoStore, ...]
    hours: Hours
    # The phone of the merchant's first sample member: a number `_phone` never draws.
    sample_phone: str


MERCHANTS = (
    DemoMerchant(10001, "Sakura Coffee", "JPY", "Asia/Tokyo", "JP", ("ja", "en"), "+8190",
                 ("150-0002", "160-0022", "104-0061", "530-0001"),
                 ("Tokyo", "Osaka", "Kanagawa"), (
        DemoStore("shibuya", "Sakura Coffee Shibuya", "2-24-1 Shibuya, Tokyo", 35.6595, 139.7005),
        DemoStore("shinjuku", "Sakura Coffee Shinjuku", "3-38-1 Shinjuku, Tokyo", 35.6896,
                  139.7006),
        DemoStore("ginza", "Sakura Coffee Ginza", "4-6-16 Ginza, Tokyo", 35.6717, 139.7650),
        DemoStore("shibuya-board", "Shibuya Crossing Board", "Shibuya Crossing, Tokyo",
                  35.6595, 139.7004, StoreKind.ad_board),
    ), Hours(opens=7, closes=21, peaks=(8.5, 12.5, 15.5), scans_per_hour=8,
             weekend_factor=0.8), "+819010001001"),
    DemoMerchant(20002, "Hangang Bakery", "KRW", "Asia/Seoul", "KR", ("ko", "en"), "+8210",
                 ("06236", "04536", "04066", "48094"), ("Seoul", "Busan", "Gyeonggi"), (
        DemoStore("gangnam", "Hangang Bakery Gangnam", "396 Gangnam-daero, Seoul", 37.4979,
                  127.0276),
        DemoStore("myeongdong", "Hangang Bakery Myeongdong", "26 Myeongdong-gil, Seoul",
                  37.5636, 126.9826),
        DemoStore("hongdae", "Hangang Bakery Hongdae", "94 Wausan-ro, Seoul", 37.5563, 126.9220),
        DemoStore("haeundae", "Hangang Bakery Haeundae", "264 Haeundaehaebyeon-ro, Busan",
                  35.1587, 129.1604),
    ), Hours(opens=8, closes=22, peaks=(8.5, 12.5, 18.5), scans_per_hour=7,
             weekend_factor=1.2), "+821010002002"),
    DemoMerchant(30003, "Golden Gate Books", "USD", "America/Los_Angeles", "US", ("en", "es"),
                 "+1415", ("94108", "94110", "94704", "94611"), ("CA",), (
        DemoStore("union-square", "Golden Gate Books Union Square", "170 O'Farrell St, "
                  "San Francisco, CA", 37.7866, -122.4074),
        DemoStore("mission", "Golden Gate Books Mission", "2400 Mission St, San Francisco, CA",
                  37.7599, -122.4187),
        DemoStore("berkeley", "Golden Gate Books Berkeley", "2100 Shattuck Ave, Berkeley, CA",
                  37.8704, -122.2679),
        DemoStore("web", "Golden Gate Books Online", "goldengatebooks.example", None, None,
                  StoreKind.web),
    ), Hours(opens=10, closes=21, peaks=(13.5, 18.0), scans_per_hour=5,
             weekend_factor=1.5), "+14155550123"),  # 555-01xx: reserved for fiction
)
SAMPLE_PHONES = frozenset(spec.sample_phone for spec in MERCHANTS)

# Where a reader on an advertising board or the web shop is on (they only send heartbeats).
ALWAYS_ON = Hours(opens=0, closes=24, peaks=(), scans_per_hour=0)
BOARD_HOURS = Hours(opens=6, closes=24, peaks=(), scans_per_hour=0)


@dataclass(frozen=True)
class DemoTerminal:
    code: str
    kind: TerminalKind
    points_per_tap: int
    reports: DemoRegister


def sample_card_uid(merchant_number: int, index: int) -> str:
    """The card of a merchant's ``index``-th sample member (1, 2): readable on purpose, so
    that the docs can name it and a later run can find the member by it."""
    return f"04{merchant_number:05d}{index:07d}"


def merchant_label(spec: DemoMerchant) -> str:
    return f"merchant {spec.number:05d} {spec.name}"


def terminal_label(spec: DemoMerchant, store: DemoStore, code: str) -> str:
    return f"terminal {spec.number:05d}/{store.code}/{code}"


# The key of the curl example: the first merchant's first till.
TRY_KEY_LABEL = terminal_label(MERCHANTS[0], MERCHANTS[0].stores[0], "pos-1")
SHOWN_TERMINALS = ("pos-1", "reader-1")  # of each merchant's first store


@dataclass
class BuiltStore:
    spec: DemoStore
    store: Store
    # Each terminal with its key: the demo's registers report their events with it.
    terminals: list[tuple[DemoTerminal, str]] = field(default_factory=list)


@dataclass
class BuiltMerchant:
    spec: DemoMerchant
    merchant: Merchant
    stores: list[BuiltStore] = field(default_factory=list)
    offer: Offer | None = None


def _phone(rng: random.Random, merchant: DemoMerchant) -> str:
    # Mobile numbers: +81 90 + 8 digits, +82 10 + 8 digits, +1 415 + 7 digits.
    length = 7 if merchant.country == "US" else 8
    for _ in range(1000):
        candidate = merchant.mobile_prefix + str(rng.randint(2, 9)) + "".join(
            str(rng.randint(0, 9)) for _ in range(length - 1))
        if (candidate not in SAMPLE_PHONES
                and phonenumbers.is_valid_number(phonenumbers.parse(candidate))):
            return candidate
    raise RuntimeError(f"cannot make a valid demo phone number for {merchant.country}")


def _member(rng: random.Random, merchant: DemoMerchant, index: int) -> MemberCreate:
    anonymous = rng.random() < 0.15

    def give(share: float) -> bool:
        return not anonymous and rng.random() < share

    consents = Consents(sms=rng.random() < 0.4, email=rng.random() < 0.5,
                        push=rng.random() < 0.6) if not anonymous else None
    birth_year = rng.randint(1945, 2008) if give(0.7) else None
    return MemberCreate(
        merchant_id=None,
        phone=_phone(rng, merchant) if give(0.65) else None,
        email=f"member{merchant.number}.{index}@example.com" if give(0.4) else None,
        card_uid=f"04{rng.getrandbits(48):012X}" if anonymous or rng.random() < 0.3 else None,
        birth_year=birth_year,
        # Birthday campaigns need the month; most who give their year give it too.
        birth_month=rng.randint(1, 12) if birth_year is not None and give(0.9) else None,
        gender=rng.choice(list(Gender)) if give(0.6) else None,
        postcode=rng.choice(merchant.postcodes) if give(0.5) else None,
        region=rng.choice(merchant.regions) if give(0.5) else None,
        language=rng.choice(merchant.languages) if give(0.8) else None,
        consents=consents,
        pin=f"{rng.randint(0, 9999):04d}" if give(0.02) else None,
        source="demo",
    )


def _sample_members(spec: DemoMerchant, merchant: Merchant) -> list[MemberCreate]:
    """The merchant's two sample members, enrolled before the others (customer numbers 1
    and 2): one with a card and a phone, one anonymous with a card only. No PIN, so any
    till identifies them without one."""
    return [
        MemberCreate(merchant_id=merchant.id, phone=spec.sample_phone,
                     card_uid=sample_card_uid(spec.number, 1), birth_year=1990, birth_month=4,
                     language=spec.languages[0], region=spec.regions[0],
                     postcode=spec.postcodes[0],
                     consents=Consents(sms=True, email=False, push=True), source="demo"),
        MemberCreate(merchant_id=merchant.id, card_uid=sample_card_uid(spec.number, 2),
                     source="demo"),
    ]


def build_demo(database: Database, *, members: int, if_empty: bool, seed: int,
               console: Console) -> None:
    """Fill an empty database and print the summary; on a filled one with ``if_empty``,
    add nothing and print the summary of what an earlier run made."""
    settings = get_settings()
    keys_file = keys_file_path(settings.database_url)
    with database.session_scope() as session:
        if list_merchants(session, actor=SYSTEM):
            if not if_empty:
                raise SystemExit("demo: the database already has merchants; use an empty one")
            console.print("demo: the database already has merchants; nothing to do")
            earlier = existing_summary(session, keys_file)
            built = None
        else:
            built = _build(session, members=members, seed=seed, console=console)
    if built is None:
        if earlier is None:
            print(f"Patron: {settings.public_base_url}/v1 (API docs: "
                  f"{settings.public_base_url}/docs). The merchants here are not the demo's: "
                  "make keys with `patron keys create`.")
            return
        print_summary(earlier, settings=settings, keys_file=keys_file,
                      try_key_label=TRY_KEY_LABEL,
                      headline="Patron demo (filled by an earlier `patron demo`; nothing added)",
                      out=sys.stdout)
        return
    summary, counts = built
    # Scores and lifetime values from the imported year, without waiting for the daily
    # refit of `patron serve`.
    from patron.scores.refit import run_refits

    run_refits(database, utcnow())
    try:
        write_keys_file(keys_file, summary.keys, summary.vouchers, summary.people)
        kept: Path | None = keys_file
    except OSError as exc:
        console.print(f"[yellow]demo: could not keep the keys in {keys_file} ({exc}); "
                      "copy them now, they are shown once[/]")
        kept = None
    print_summary(summary, settings=settings, keys_file=kept, try_key_label=TRY_KEY_LABEL,
                  headline=f"Patron demo ready: {counts}", out=sys.stdout)


def _build(session: Session, *, members: int, seed: int, console: Console
           ) -> tuple[DemoSummary, str]:
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    keys: list[DemoKey] = []
    ensure_operator(session, name="Patron Demo Coalition")
    _, operator_key = issue_key(session, role=Role.operator, label="demo operator")
    keys.append(DemoKey("operator", Role.operator, key=operator_key))
    coalition: list[BuiltMerchant] = []
    for spec in MERCHANTS:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=spec.number, name=spec.name, currency=spec.currency,
            timezone=spec.timezone, country=spec.country))
        built = BuiltMerchant(spec, merchant)
        coalition.append(built)
        _, merchant_key = issue_key(session, role=Role.merchant, merchant_id=merchant.id,
                                    label=f"demo {spec.name}")
        keys.append(DemoKey(merchant_label(spec), Role.merchant, merchant_number=spec.number,
                            key=merchant_key))
        for store_index, store_spec in enumerate(spec.stores):
            store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                                 data=StoreCreate(code=store_spec.code, name=store_spec.name,
                                                  address=store_spec.address,
                                                  latitude=store_spec.latitude,
                                                  longitude=store_spec.longitude,
                                                  kind=store_spec.kind))
            built_store = BuiltStore(store_spec, store)
            built.stores.append(built_store)
            for terminal_spec in _terminals_for(store_spec):
                call_number = None
                if store_index == 0 and terminal_spec.code == "pos-1":
                    call_number = _phone(rng, spec)
                terminal, terminal_key = create_terminal(
                    session, actor=SYSTEM, store_id=store.id,
                    data=TerminalCreate(code=terminal_spec.code, kind=terminal_spec.kind,
                                        points_per_tap=terminal_spec.points_per_tap,
                                        call_number=call_number))
                built_store.terminals.append((terminal_spec, terminal_key))
                if store_index == 0 and terminal_spec.code in SHOWN_TERMINALS:
                    keys.append(DemoKey(terminal_label(spec, store_spec, terminal_spec.code),
                                        Role.terminal, merchant_number=spec.number,
                                        terminal_id=str(terminal.id), key=terminal_key))
    # The coalition's miles: about one mile per yen's worth spent, worth about a yen.
    put_rates(session, actor=SYSTEM, data=RatesWrite(rates=[
        RateWrite(currency="JPY", spend_per_mile=100, mile_value_milli=1000),
        RateWrite(currency="KRW", spend_per_mile=1000, mile_value_milli=9000),
        RateWrite(currency="USD", spend_per_mile=100, mile_value_milli=670)]))
    vouchers = _demo_offers(session, coalition)
    _, rep_key = issue_key(session, role=Role.sales_rep, label="demo sales rep")
    keys.append(DemoKey("sales rep", Role.sales_rep, key=rep_key))
    samples = _enrol_members(session, coalition, members=members, rng=rng, console=console)
    customers, history = add_purchase_history(session, coalition, members=members, seed=seed,
                                              console=console)
    events = _record_register_events(session, coalition, seed=seed, console=console)
    campaigns = _demo_campaigns(session, coalition)
    sales, away = _live_sales(session, coalition, rng=rng)
    stores = sum(len(spec.stores) for spec in MERCHANTS)
    counts = (f"{len(MERCHANTS)} merchants, {stores} stores, "
              f"{max(members, len(samples))} members, {campaigns} running campaigns, "
              f"{customers:,} customers of a previous system with {history:,} purchases of "
              f"the last year imported, "
              f"{events:,} register events over {EVENT_DAYS} days, "
              f"{sales} sales at the registers in the last {LIVE_SALE_DAYS} days "
              f"({away} of them spending miles at another merchant)")
    people = _demo_people(session, coalition)
    return DemoSummary(keys=keys, vouchers=vouchers, samples=samples, missing_keys=[],
                       people=people,
                       merchant_numbers=[spec.number for spec in MERCHANTS]), counts


def _demo_people(session: Session, coalition: list[BuiltMerchant]) -> list[DemoPerson]:
    """Staff users to sign in to the web app with: the operator, and each merchant's
    manager and cashier; passwords chosen at random (a demo's, kept in the keys file)."""
    wanted: list[tuple[str, StaffRole, Merchant | None, str]] = [
        ("operator", StaffRole.operator, None, "operator@demo.patron.example")]
    for built in coalition:
        number = built.spec.number
        wanted += [(f"{built.spec.name} manager", StaffRole.manager, built.merchant,
                    f"manager.{number:05d}@demo.patron.example"),
                   (f"{built.spec.name} cashier", StaffRole.cashier, built.merchant,
                    f"cashier.{number:05d}@demo.patron.example")]
    people = []
    for label, role, merchant, email in wanted:
        password = secrets.token_urlsafe(9)
        create_staff(session, inviter=None, email=email, name=label.title(), role=role,
                     merchant_id=merchant.id if merchant else None, password=password)
        people.append(DemoPerson(label=label, role=role.value, email=email, password=password))
    return people


def _enrol_members(session: Session, coalition: list[BuiltMerchant], *, members: int,
                   rng: random.Random, console: Console) -> list[SampleMember]:
    samples = []
    for built in coalition:
        for index, data in enumerate(_sample_members(built.spec, built.merchant), start=1):
            member = enrol(session, actor=SYSTEM, data=data)
            samples.append(SampleMember(
                merchant_number=built.spec.number, merchant_name=built.spec.name,
                member_number=member.member_number,
                card_uid=sample_card_uid(built.spec.number, index), phone=data.phone))
    others = max(0, members - len(samples))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("enrolling demo members", total=others)
        for index in range(others):
            built = coalition[index % len(coalition)]
            data = _member(rng, built.spec, index)
            data.merchant_id = built.merchant.id
            enrol(session, actor=SYSTEM, data=data)
            progress.advance(task)
    return samples


def add_purchase_history(session: Session, coalition: list[BuiltMerchant], *, members: int,
                         seed: int, console: Console) -> tuple[int, int]:
    """A year of each merchant's purchases, as a merchant that moved to Patron brings them:
    customers of its previous system and their purchases, through the history import
    (``patron.imports``, in the demo's one transaction). Runs before the campaigns are
    created; imported purchases set off none anyway. The customers and the purchases
    imported."""
    end = utcnow() - timedelta(days=1)
    per_merchant = max(10, members // (2 * len(coalition)))
    imported = customers = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("importing a year of purchase history",
                                 total=len(coalition))
        for index, built in enumerate(coalition):
            spec = built.spec
            people, purchases = io.StringIO(), io.StringIO()
            write_history(people, purchases, members=per_merchant, purchases=4 * per_merchant,
                          start=end - timedelta(days=365), end=end,
                          store_codes=[store.spec.code for store in built.stores],
                          currency=spec.currency,
                          minor_units=currency_minor_units(spec.currency),
                          seed=seed + index, prefix=f"P{spec.number}-",
                          email_domain="previous-system.example")

            def scope() -> contextlib.nullcontext[Session]:
                return contextlib.nullcontext(session)

            customers += runner.import_members(
                scope, actor=SYSTEM, merchant_id=built.merchant.id,
                file=io.BytesIO(people.getvalue().encode())).imported
            summary = runner.import_purchases(scope, actor=SYSTEM,
                                              merchant_id=built.merchant.id,
                                              file=io.BytesIO(purchases.getvalue().encode()))
            imported += summary.imported
            progress.advance(task)
    return customers, imported


def _record_register_events(session: Session, coalition: list[BuiltMerchant], *, seed: int,
                            console: Console) -> int:
    """Every terminal's events over the last ``EVENT_DAYS`` days in its store's time zone,
    sent as the terminal itself sends them (``record_events`` with its own key), in batches
    of the API's size. Each terminal draws from its own seeded generator, so its events
    do not depend on how many members or other terminals the demo has."""
    now = utcnow()
    recorded = 0
    work = [(built, store, terminal, key) for built in coalition for store in built.stores
            for terminal, key in store.terminals]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("recording register events", total=len(work))
        for built, store, terminal, key in work:
            timezone = ZoneInfo(built.spec.timezone)
            days = event_days(now.astimezone(timezone).date())
            rng = random.Random(  # noqa: S311 - reproducible demo data
                f"{seed}/events/{built.spec.number}/{store.spec.code}/{terminal.code}")
            events = register_events(rng, days=days, hours=_hours(built.spec, store.spec),
                                     register=terminal.reports, timezone=timezone, until=now)
            actor = authenticate(session, key=key)
            for start in range(0, len(events), MAX_BATCH):
                result = record_events(session, actor=actor, batch=EventBatch(
                    events=events[start:start + MAX_BATCH]))
                recorded += result.accepted
            progress.advance(task)
    return recorded


def event_days(today: date) -> list[date]:
    """The days the register events cover, oldest first, ending ``today``."""
    return [today - timedelta(days=back) for back in range(EVENT_DAYS - 1, -1, -1)]


def _hours(spec: DemoMerchant, store: DemoStore) -> Hours:
    if store.kind == StoreKind.web:
        return ALWAYS_ON
    if store.kind == StoreKind.ad_board:
        return BOARD_HOURS
    return spec.hours


def _demo_offers(session: Session, coalition: list[BuiltMerchant]) -> list[Voucher]:
    """A 10 %-off offer per merchant with a few bearer codes; one code of each to print."""
    samples = []
    for built in coalition:
        spec = built.spec
        built.offer = create_offer(session, actor=SYSTEM, data=OfferWrite(
            name=f"{spec.name}: 10% off", kind=OfferKind.percent_off, value=10,
            merchant_id=built.merchant.id, valid_days=365))
        issued = insert_codes(session, offer=built.offer, count=3, member_id=None,
                              max_redemptions=5, source="demo")
        samples.append(Voucher(merchant_label(spec), display(issued[0])))
    return samples


def _demo_campaigns(session: Session, coalition: list[BuiltMerchant]) -> int:
    """A few campaigns per merchant that run now: started weeks ago, ending months ahead."""
    now = utcnow()
    created = 0
    for built in coalition:
        assert built.offer is not None
        for days_running, days_left, data in _campaigns_for(built.spec, built.offer):
            data.merchant_id = built.merchant.id
            data.valid_from = now - timedelta(days=days_running)
            data.valid_until = now + timedelta(days=days_left)
            create_campaign(session, actor=SYSTEM, data=data)
            created += 1
    return created


def _campaigns_for(spec: DemoMerchant, offer: Offer) -> list[tuple[int, int, CampaignWrite]]:
    """(days since it started, days until it ends, the campaign) for a merchant: a checkout
    bonus with a 10 % control group (so its results show an uplift), a welcome on
    enrolment, a birthday present."""
    once_ever = PerMember(count=1, period_days=3660)
    once_a_year = PerMember(count=1, period_days=365)
    if spec.currency == "JPY":
        return [
            (21, 70, CampaignWrite(
                name="Morning coffee bonus", trigger=Trigger.checkout,
                conditions={"all": [{"field": "env.hour", "op": "lt", "value": 11},
                                    {"field": "purchase.total_minor", "op": "ge",
                                     "value": 500}]},
                actions=[BonusPoints(type="bonus_points", points=20),
                         Message(type="message", text="おはようございます! Morning bonus: "
                                                      "20 points")],
                per_member=PerMember(count=1, period_days=1), priority=10,
                control_share_bp=1000)),
            (60, 305, CampaignWrite(
                name="Welcome to Sakura Coffee", trigger=Trigger.enrolment,
                actions=[BonusPoints(type="bonus_points", points=100),
                         Message(type="message", text="Welcome! 100 points to start")],
                per_member=once_ever)),
            (45, 320, CampaignWrite(
                name="Birthday treat", trigger=Trigger.birthday,
                actions=[IssueVoucher(type="issue_voucher", offer_id=offer.id),
                         Message(type="message", text="Happy birthday! 10% off your next "
                                                      "visit")],
                per_member=once_a_year)),
        ]
    if spec.currency == "KRW":
        return [
            (14, 90, CampaignWrite(
                name="Weekend double points", trigger=Trigger.checkout,
                conditions={"field": "env.weekday", "op": "in", "value": [6, 7]},
                actions=[PointsMultiplier(type="points_multiplier", multiplier_bp=20000),
                         Message(type="message", text="주말 포인트 2배! Double points today")],
                priority=5, control_share_bp=1000)),
            (90, 275, CampaignWrite(
                name="Welcome to Hangang Bakery", trigger=Trigger.enrolment,
                actions=[BonusPoints(type="bonus_points", points=300),
                         Message(type="message", text="환영합니다! 300 points to start")],
                per_member=once_ever)),
            (30, 335, CampaignWrite(
                name="Birthday cake points", trigger=Trigger.birthday,
                actions=[BonusPoints(type="bonus_points", points=1000),
                         Message(type="message", text="생일 축하합니다! 1,000 points")],
                per_member=once_a_year)),
        ]
    return [
        (10, 50, CampaignWrite(
            name="Spend $50, get 200 bonus points", trigger=Trigger.checkout,
            conditions={"field": "purchase.total_minor", "op": "ge", "value": 5000},
            actions=[BonusPoints(type="bonus_points", points=200),
                     Message(type="message", text="200 bonus points for a $50 basket")],
            per_member=PerMember(count=1, period_days=7), max_outcomes=5000, priority=10,
            control_share_bp=1000)),
        (120, 245, CampaignWrite(
            name="Welcome, reader", trigger=Trigger.enrolment,
            actions=[IssueVoucher(type="issue_voucher", offer_id=offer.id),
                     Message(type="message", text="Welcome! 10% off your next book")],
            per_member=once_ever)),
        (40, 325, CampaignWrite(
            name="Birthday bonus", trigger=Trigger.birthday,
            actions=[BonusPoints(type="bonus_points", points=500),
                     Message(type="message", text="Happy birthday from Golden Gate Books!")],
            per_member=once_a_year)),
    ]


LIVE_SALE_DAYS = 14
LIVE_SALE_MEMBERS = 12  # per merchant
LIVE_SALE_HOURS = (9, 13, 18)  # store-local: a morning, a lunch and an evening sale
# Two items per currency: (sku, name, category, unit price in minor units).
LIVE_SALE_ITEMS = {
    "JPY": (("LATTE", "Latte", "coffee", 550), ("CROISSANT", "Croissant", "bakery", 320)),
    "KRW": (("BREAD", "Milk bread", "bread", 4500), ("CAKE", "Strawberry cake", "cake", 28000)),
    "USD": (("NOVEL", "Paperback novel", "books", 1899), ("ATLAS", "World atlas", "books", 5600)),
}


def _live_sales(session: Session, coalition: list[BuiltMerchant], *,
                rng: random.Random) -> tuple[int, int]:
    """Sales at each merchant's first register over the last two weeks, committed by the
    POS's own commit (``pos.service.commit``, as the till's key), so that the running
    campaigns have results and the coalition's miles move: members of each merchant buy at
    its first store in the morning, at lunch and in the evening, on weekdays and weekends;
    then some of them spend the miles they earned at the next merchant of the coalition,
    which the settlement shows. The sales, and those that spent miles elsewhere."""
    now = utcnow()
    tills = [authenticate(session, key=next(key for terminal, key in built.stores[0].terminals
                                            if terminal.code == "pos-1"))
             for built in coalition]
    buyers = [session.execute(select(Member.id, Member.member_number).where(
        Member.merchant_id == built.merchant.id, Member.external_ref.is_(None),
        Member.status == MemberStatus.active.value).order_by(Member.customer_no).limit(
            LIVE_SALE_MEMBERS)).all() for built in coalition]
    sales = away = 0
    for built, till, numbers in zip(coalition, tills, buyers, strict=True):
        zone = ZoneInfo(built.spec.timezone)
        items = LIVE_SALE_ITEMS[built.spec.currency]
        for index, (_, number) in enumerate(numbers):
            day = (now - timedelta(days=1 + index % LIVE_SALE_DAYS)).astimezone(zone).date()
            for hour in LIVE_SALE_HOURS:
                at = datetime.combine(day, time(hour, rng.randrange(60)), zone)
                lines = [_line(item, rng.randint(1, 3))
                         for item in items if rng.random() < 0.8] or [_line(items[0], 1)]
                commit(session, actor=till, data=PurchaseWrite(
                    receipt_no=f"D{index:03d}-{hour:02d}", occurred_at=at,
                    currency=built.spec.currency, member=MemberIdentification(barcode=number),
                    lines=lines))
                sales += 1
    # Miles earned at one merchant, spent at the next: the coalition's settlement.
    for position, numbers in enumerate(buyers):
        host = (position + 1) % len(coalition)
        spec = coalition[host].spec
        for index, (member_id, number) in enumerate(numbers[:3]):
            miles = miles_balance(session, member_id=member_id) // 2
            if miles <= 0:
                continue
            commit(session, actor=tills[host], data=PurchaseWrite(
                receipt_no=f"M{position}-{index:03d}", occurred_at=now - timedelta(hours=2),
                currency=spec.currency, member=MemberIdentification(barcode=number),
                lines=[_line(LIVE_SALE_ITEMS[spec.currency][1], 1)], miles_to_burn=miles))
            sales += 1
            away += 1
    return sales, away


def _line(item: tuple[str, str, str, int], quantity: int) -> LineWrite:
    sku, name, category, price = item
    return LineWrite(sku=sku, name=name, category=category, quantity=quantity,
                     unit_price=price)


def _terminals_for(store: DemoStore) -> list[DemoTerminal]:
    if store.kind == StoreKind.web:
        return [DemoTerminal("web-shop", TerminalKind.online, 0, DemoRegister(0, till=False))]
    if store.kind == StoreKind.ad_board:
        return [DemoTerminal("reader-1", TerminalKind.reader, 10, DemoRegister(0, till=False))]
    return [DemoTerminal("pos-1", TerminalKind.pos, 0, DemoRegister(1.0)),
            DemoTerminal("pos-2", TerminalKind.pos, 0, DemoRegister(0.55)),
            DemoTerminal("reader-1", TerminalKind.reader, 5, DemoRegister(0, till=False))]


# --- a later run on a filled database -------------------------------------------------------

def existing_summary(session: Session, keys_file: Path) -> DemoSummary | None:
    """What an earlier `patron demo` made, for a run that adds nothing: the keys kept in the
    keys file that still work (the commands for fresh ones otherwise), and the sample
    members found by their cards. None when the merchants are not the demo's."""
    merchants = {merchant.number: merchant for merchant in list_merchants(session, actor=SYSTEM)}
    demo = [(spec, merchants[spec.number]) for spec in MERCHANTS
            if spec.number in merchants and merchants[spec.number].name == spec.name]
    if not demo:
        return None
    samples = _find_samples(session, demo)
    expected = _expected_keys(session, demo)
    recorded = read_keys_file(keys_file)
    note = None
    working: list[DemoKey] = []
    vouchers: list[Voucher] = []
    people: list[DemoPerson] = []
    if recorded is None:
        note = (f"The demo's API keys are stored only as hashes, and {keys_file} (where "
                "`patron demo` keeps them) is missing.")
    else:
        keys, vouchers, recorded_people = recorded
        people = [person for person in recorded_people if _signs_in(session, person)]
        for key in keys:
            try:
                authenticate(session, key=key.key)
            except PatronError:
                continue
            working.append(key)
        if not working:
            note = f"The keys in {keys_file} do not work with this database."
            vouchers = []
        elif len(working) < len(keys):
            note = "Some of the demo's keys no longer work (revoked, or their terminal off)."
    kept = {key.label for key in working}
    missing = [key for key in expected if key.label not in kept]
    vouchers_note = None if vouchers else (
        "Voucher codes: issue some with POST /v1/offers/{offer_id}/codes (GET /v1/offers "
        "lists the offers).")
    return DemoSummary(keys=working, vouchers=vouchers, samples=samples,
                       missing_keys=missing, keys_note=note, vouchers_note=vouchers_note,
                       people=people, merchant_numbers=[spec.number for spec, _ in demo])


def _signs_in(session: Session, person: DemoPerson) -> bool:
    """Whether a recorded demo sign-in still works (its user exists, with that password)."""
    user = session.scalars(select(StaffUser).where(
        StaffUser.email_hash == staff_email_lookup(person.email))).first()
    return (user is not None and user.disabled_at is None
            and secret_matches(user.password_hash, person.password))


def _find_samples(session: Session, demo: list[tuple[DemoMerchant, Merchant]]
                  ) -> list[SampleMember]:
    """The sample members that still answer to their cards (and phone) as a till would
    find them; one that cannot be found (erased, card blocked) is left out."""
    samples = []
    for spec, _ in demo:
        for index in (1, 2):
            card_uid = sample_card_uid(spec.number, index)
            try:
                found = identify(session, actor=SYSTEM,
                                 request=IdentifyRequest(card_uid=card_uid))
            except PatronError:
                continue
            phone = spec.sample_phone if index == 1 else None
            if phone is not None:
                try:
                    by_phone = identify(session, actor=SYSTEM,
                                        request=IdentifyRequest(phone=phone))
                except PatronError:
                    phone = None
                else:
                    phone = phone if by_phone.member_id == found.member_id else None
            samples.append(SampleMember(merchant_number=spec.number, merchant_name=spec.name,
                                        member_number=found.member_number, card_uid=card_uid,
                                        phone=phone))
    return samples


def _expected_keys(session: Session, demo: list[tuple[DemoMerchant, Merchant]]
                   ) -> list[DemoKey]:
    """The keys the demo gives, without their secrets, in the order it prints them."""
    keys = [DemoKey("operator", Role.operator)]
    for spec, merchant in demo:
        keys.append(DemoKey(merchant_label(spec), Role.merchant, merchant_number=spec.number))
        first = spec.stores[0]
        store = next((store for store in list_stores(session, actor=SYSTEM,
                                                     merchant_id=merchant.id)
                      if store.code == first.code), None)
        if store is None:
            continue
        terminals = {terminal.code: terminal
                     for terminal in list_terminals(session, actor=SYSTEM, store_id=store.id)}
        for code in SHOWN_TERMINALS:
            if code in terminals:
                keys.append(DemoKey(terminal_label(spec, first, code), Role.terminal,
                                    merchant_number=spec.number,
                                    terminal_id=str(terminals[code].id)))
    keys.append(DemoKey("sales rep", Role.sales_rep))
    return keys

