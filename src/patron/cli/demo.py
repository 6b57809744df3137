"""A demo coalition: 3 merchants in three currencies and time zones, 12 stores, terminals,
readers and members with varied data. Built through the services, like real data."""

from __future__ import annotations

import random
from dataclasses import dataclass

import phonenumbers
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from patron.coalition.schemas import RatesWrite, RateWrite
from patron.coalition.service import put_rates
from patron.config import get_settings
from patron.db import Database
from patron.members.schemas import Consents, Gender, MemberCreate
from patron.members.service import enrol
from patron.tenancy.models import Merchant, Role, StoreKind, TerminalKind
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import (
    SYSTEM,
    create_merchant,
    create_store,
    create_terminal,
    ensure_operator,
    issue_key,
)
from patron.vouchers.codes import display
from patron.vouchers.models import OfferKind
from patron.vouchers.offers import create_offer
from patron.vouchers.schemas import OfferWrite
from patron.vouchers.service import insert_codes


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
    )),
    DemoMerchant(20002, "Hangang Bakery", "KRW", "Asia/Seoul", "KR", ("ko", "en"), "+8210",
                 ("06236", "04536", "04066", "48094"), ("Seoul", "Busan", "Gyeonggi"), (
        DemoStore("gangnam", "Hangang Bakery Gangnam", "396 Gangnam-daero, Seoul", 37.4979,
                  127.0276),
        DemoStore("myeongdong", "Hangang Bakery Myeongdong", "26 Myeongdong-gil, Seoul",
                  37.5636, 126.9826),
        DemoStore("hongdae", "Hangang Bakery Hongdae", "94 Wausan-ro, Seoul", 37.5563, 126.9220),
        DemoStore("haeundae", "Hangang Bakery Haeundae", "264 Haeundaehaebyeon-ro, Busan",
                  35.1587, 129.1604),
    )),
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
    )),
)


def _phone(rng: random.Random, merchant: DemoMerchant) -> str:
    # Mobile numbers: +81 90 + 8 digits, +82 10 + 8 digits, +1 415 + 7 digits.
    length = 7 if merchant.country == "US" else 8
    for _ in range(1000):
        candidate = merchant.mobile_prefix + str(rng.randint(2, 9)) + "".join(
            str(rng.randint(0, 9)) for _ in range(length - 1))
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate
    raise RuntimeError(f"cannot make a valid demo phone number for {merchant.country}")


def _member(rng: random.Random, merchant: DemoMerchant, index: int) -> MemberCreate:
    anonymous = rng.random() < 0.15

    def give(share: float) -> bool:
        return not anonymous and rng.random() < share

    consents = Consents(sms=rng.random() < 0.4, email=rng.random() < 0.5,
                        push=rng.random() < 0.6) if not anonymous else None
    return MemberCreate(
        merchant_id=None,
        phone=_phone(rng, merchant) if give(0.65) else None,
        email=f"member{merchant.number}.{index}@example.com" if give(0.4) else None,
        card_uid=f"04{rng.getrandbits(48):012X}" if anonymous or rng.random() < 0.3 else None,
        birth_year=rng.randint(1945, 2008) if give(0.7) else None,
        gender=rng.choice(list(Gender)) if give(0.6) else None,
        postcode=rng.choice(merchant.postcodes) if give(0.5) else None,
        region=rng.choice(merchant.regions) if give(0.5) else None,
        language=rng.choice(merchant.languages) if give(0.8) else None,
        consents=consents,
        pin=f"{rng.randint(0, 9999):04d}" if give(0.02) else None,
        source="demo",
    )


def build_demo(database: Database, *, members: int, if_empty: bool, seed: int,
               console: Console) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    settings = get_settings()
    keys: list[tuple[str, str]] = []
    with database.session_scope() as session:
        if session.scalar(select(exists().where(Merchant.id.isnot(None)))):
            if if_empty:
                console.print("demo: the database already has merchants; nothing to do")
                return
            raise SystemExit("demo: the database already has merchants; use an empty one")
        ensure_operator(session, name="Patron Demo Coalition")
        _, operator_key = issue_key(session, role=Role.operator, label="demo operator")
        keys.append(("operator", operator_key))
        created: list[tuple[DemoMerchant, Merchant]] = []
        for spec in MERCHANTS:
            merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
                number=spec.number, name=spec.name, currency=spec.currency,
                timezone=spec.timezone, country=spec.country))
            created.append((spec, merchant))
            _, merchant_key = issue_key(session, role=Role.merchant, merchant_id=merchant.id,
                                        label=f"demo {spec.name}")
            keys.append((f"merchant {spec.number:05d} {spec.name}", merchant_key))
            for store_index, store_spec in enumerate(spec.stores):
                store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                                     data=StoreCreate(code=store_spec.code,
                                                      name=store_spec.name,
                                                      address=store_spec.address,
                                                      latitude=store_spec.latitude,
                                                      longitude=store_spec.longitude,
                                                      kind=store_spec.kind))
                terminal_specs = _terminals_for(store_spec)
                for code, kind, per_tap in terminal_specs:
                    call_number = None
                    if store_index == 0 and code == "pos-1":
                        call_number = _phone(rng, spec)
                    _, terminal_key = create_terminal(
                        session, actor=SYSTEM, store_id=store.id,
                        data=TerminalCreate(code=code, kind=kind, points_per_tap=per_tap,
                                            call_number=call_number))
                    if store_index == 0 and code in ("pos-1", "reader-1"):
                        keys.append((f"terminal {spec.number:05d}/{store_spec.code}/{code}",
                                     terminal_key))
        # The coalition's miles: about one mile per yen's worth spent, worth about a yen.
        put_rates(session, actor=SYSTEM, data=RatesWrite(rates=[
            RateWrite(currency="JPY", spend_per_mile=100, mile_value_milli=1000),
            RateWrite(currency="KRW", spend_per_mile=1000, mile_value_milli=9000),
            RateWrite(currency="USD", spend_per_mile=100, mile_value_milli=670)]))
        samples = _demo_offers(session, created)
        _, rep_key = issue_key(session, role=Role.sales_rep, label="demo sales rep")
        keys.append(("sales rep", rep_key))
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("enrolling demo members", total=members)
            for index in range(members):
                spec, merchant = created[index % len(created)]
                data = _member(rng, spec, index)
                data.merchant_id = merchant.id
                enrol(session, actor=SYSTEM, data=data)
                progress.advance(task)
    base = settings.public_base_url
    print(f"Patron demo ready: {len(MERCHANTS)} merchants, "
          f"{sum(len(m.stores) for m in MERCHANTS)} stores, {members} members")
    print(f"  API:      {base}/v1")
    print(f"  API docs: {base}/docs")
    print(f"  Health:   {base}/health")
    print("API keys (shown once; use as 'Authorization: Bearer <key>'):")
    for label, key in keys:
        print(f"  {label:40s} {key}")
    print("Voucher codes (10% off, 5 uses each; POST /v1/vouchers/validate with a terminal key):")
    for label, code in samples:
        print(f"  {label:40s} {code}")


def _demo_offers(session: Session, created: list[tuple[DemoMerchant, Merchant]]
                 ) -> list[tuple[str, str]]:
    """A 10 %-off offer per merchant with a few bearer codes; one code of each to print."""
    samples = []
    for spec, merchant in created:
        offer = create_offer(session, actor=SYSTEM, data=OfferWrite(
            name=f"{spec.name}: 10% off", kind=OfferKind.percent_off, value=10,
            merchant_id=merchant.id, valid_days=365))
        issued = insert_codes(session, offer=offer, count=3, member_id=None,
                              max_redemptions=5, source="demo")
        samples.append((f"merchant {spec.number:05d} {spec.name}", display(issued[0])))
    return samples


def _terminals_for(store: DemoStore) -> list[tuple[str, TerminalKind, int]]:
    if store.kind == StoreKind.web:
        return [("web-shop", TerminalKind.online, 0)]
    if store.kind == StoreKind.ad_board:
        return [("reader-1", TerminalKind.reader, 10)]
    return [("pos-1", TerminalKind.pos, 0), ("pos-2", TerminalKind.pos, 0),
            ("reader-1", TerminalKind.reader, 5)]
