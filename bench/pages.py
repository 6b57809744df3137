"""The web app's pages (docs/web.md): the member's wallet under load, and what each page
makes a browser download on its first visit.

Acceptance: the wallet page (``GET /wallet``) answers with p99 <= 50 ms under load; every
page's first load transfers at most 200 KB of JavaScript and CSS.

What it does, on a fresh database (SQLite unless ``--database-url``):

1. **Set-up, through the services**, in a few transactions: the checkout benchmark's shop
   (``bench.shop.build_shop``: merchant 10001, JPY, Asia/Tokyo, with its points program
   and tiers; a store with a POS terminal; the coalition's miles rate); ``--members``
   members (``members.service.enrol``, each with an e-mail address and e-mail consent),
   each with a wallet device bound as the join page binds one
   (``members.wallet.bind_device``: the cookie's token), the referral code the wallet's
   first view makes (joining lands on the wallet: these are returning members, whose
   views only read) and a personal 100-yen voucher
   (``vouchers.service.issue_personal``, as a campaign issues one); ``--purchases``
   purchases each, committed by the terminal (``pos.service.commit``, baskets of the
   checkout benchmark's catalogue, the last one burning 100 points when the member holds
   them), so each wallet shows points, a tier, miles, history lines and a voucher. Staff:
   a cashier, a manager and an operator with passwords (``tenancy.staff.create_staff``).
   On PostgreSQL then ``VACUUM ANALYZE`` (what autovacuum would have done).
2. **The server** in its production configuration, ``patron serve --workers N``.
3. **The wallet under load.** Before any load, one wallet is fetched and must be that
   member's (200, their 14-digit number in the page), and a cookie the server did not
   issue must be sent to the sign-in page (303). Then a load process (``bench.loadgen``:
   aiohttp, keep-alive, redirects not followed) sends ``GET /wallet`` with a random
   member's cookies (the wallet's and the CSRF cookie a returning browser holds); any
   answer but 200 is an error. Phases: a warm-up, **unloaded** (one request at a time),
   probes (closed loop at each ``--concurrency``), the **maximum** rate (closed loop at
   the best of them), then **under load**: Poisson arrivals at 70 % of the maximum,
   latency from each request's scheduled send time. The target is the p99 under load.
4. **First-load transfer sizes.** For ``/``, ``/join?m=10001``, ``/wallet/sign-in``,
   ``/login``, ``/wallet`` (a member's cookie) and, signed in through the login form, the
   cashier's ``/register/choose``, the manager's ``/console`` and the operator's
   ``/operator``: the page (200, no redirect), then every ``<script src>``, every
   ``<link rel="stylesheet">`` and the service worker a page registers
   (``data-service-worker``), each fetched once, bytes as sent (the server does not
   compress). The target is JS + CSS <= 200 KB (1 KB = 1,000 bytes) on every page; the
   gzip size of the same files is printed beside it for information.

    python -m bench pages [--members 300] [--purchases 3] [--workers 2] [--seconds 15]
                          [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import secrets
import shlex
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from html.parser import HTMLParser

import psycopg
from sqlalchemy import func, select

from bench.baskets import Kind, Purchase, PurchaseMaker, request_body
from bench.environment import (
    add_database_option,
    describe_database,
    describe_machine,
    fresh_database,
    is_postgres,
    say,
    some_numbers,
    stop_on_sigterm,
    verdict,
)
from bench.loadgen import LoadGenerator, Phase, PhaseResult, Request, RequestSource
from bench.servers import BenchSetupError, Server, running_server
from bench.shop import Shop, build_shop, libpq_url
from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import utcnow
from patron.members.schemas import MemberCreate
from patron.members.service import enrol
from patron.members.wallet import bind_device
from patron.notify.models import OutboxEvent
from patron.pos import service as pos
from patron.pos.schemas import PurchaseWrite
from patron.referrals.service import code_of as referral_code_of
from patron.tenancy.models import Role, StaffRole
from patron.tenancy.service import Principal
from patron.tenancy.staff import create_staff
from patron.vouchers.models import Offer, OfferKind
from patron.vouchers.offers import create_offer
from patron.vouchers.schemas import OfferWrite
from patron.vouchers.service import issue_personal

TARGET_P99_MS = 50.0
TARGET_KB = 200.0
KB = 1_000
# "Under load": Poisson arrivals at this share of the closed loop's maximum rate (as in
# bench/vouchers.py).
LOAD_SHARE = 0.70
# The cookies as the server names them with Secure cookies (``web.security.cookie_name``).
WALLET_COOKIE = "__Host-patron_wallet"
CSRF_COOKIE = "__Host-patron_csrf"
CSRF_FIELD = "csrf_token"
PASSWORD = "bench-pages-password"
MEMBERS_PER_TRANSACTION = 50
BURN = 100
SEED = 20261208


# --- set-up ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Wallet:
    member_number: str
    token: str
    # The CSRF cookie a returning browser holds (43 characters, as the server makes them).
    csrf: str

    @property
    def cookie(self) -> str:
        return f"{WALLET_COOKIE}={self.token}; {CSRF_COOKIE}={self.csrf}"


@dataclass(frozen=True)
class StaffLogin:
    role: StaffRole
    email: str
    page: str


@dataclass(frozen=True)
class Data:
    shop: Shop
    wallets: tuple[Wallet, ...]
    staff: tuple[StaffLogin, ...]
    purchases: int
    burns: int
    vouchers: int
    seconds: float


def vacuum_analyze(database: Database) -> float | None:
    """On PostgreSQL, what autovacuum would have done to tables that grew from nothing
    (without statistics the planner reads a member's journal entries through the
    merchant's index); its seconds. None on SQLite, which the product never analyses."""
    if not is_postgres(database.url):
        return None
    started = time.perf_counter()
    with psycopg.connect(libpq_url(database.url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def _terminal(shop: Shop) -> Principal:
    till = shop.tills[0]
    return Principal(key_id=None, role=Role.terminal, merchant_id=shop.merchant_id,
                     terminal_id=till.terminal_id, store_id=till.store_id)


def prepare(database: Database, *, members: int, purchases: int) -> Data:
    """The shop, its members with a wallet device, a voucher and purchases each, and the
    staff, through the services, ``MEMBERS_PER_TRANSACTION`` members a transaction."""
    started = time.perf_counter()
    shop = build_shop(database, stores=1, tills_per_store=1)
    merchant = Principal(key_id=None, role=Role.merchant, merchant_id=shop.merchant_id)
    terminal = _terminal(shop)
    baskets = PurchaseMaker(members=max(members, 1), seed=SEED).baskets
    rng = random.Random(SEED)
    with database.session_scope() as session:
        offer = create_offer(session, actor=merchant, data=OfferWrite(
            name="100 yen off your next coffee", kind=OfferKind.amount_off, value=100))
        offer_id = offer.id
    wallets: list[Wallet] = []
    committed = burns = 0
    now = utcnow()
    for first in range(0, members, MEMBERS_PER_TRANSACTION):
        with database.session_scope() as session:
            offer_row = session.get(Offer, offer_id)
            assert offer_row is not None
            for index in range(first, min(first + MEMBERS_PER_TRANSACTION, members)):
                member = enrol(session, actor=merchant, data=MemberCreate(
                    email=f"member{index}@bench.example", language="en",
                    consents={"email": True}))
                token = bind_device(session, member=member, source="join", label="bench")
                # Joining lands on the wallet, whose first view makes the member's referral
                # code: the members here are returning ones, whose views only read.
                referral_code_of(session, member.id, now=now)
                issue_personal(session, offer=offer_row, member_id=member.id,
                               merchant_number=shop.merchant_number, source="bench", now=now)
                wallets.append(Wallet(member.member_number, token, secrets.token_urlsafe(32)))
                balance = 0
                for number in range(purchases):
                    # Spread over the last 20 days, oldest first.
                    at = now - timedelta(days=20 * (purchases - number) / max(purchases, 1),
                                         minutes=rng.randint(0, 600))
                    burn = BURN if number == purchases - 1 and balance >= BURN else 0
                    purchase = Purchase(Kind.burn if burn else Kind.earn, None, burn,
                                        rng.choice(baskets))
                    data = PurchaseWrite.model_validate_json(request_body(
                        purchase, receipt_no=f"W{index}-{number}",
                        barcode=member.member_number, currency=shop.currency,
                        occurred_at=at))
                    answer = json.loads(pos.commit(session, actor=terminal, data=data))
                    balance = answer["balance_after"] or 0
                    committed += 1
                    burns += bool(burn)
    staff = (StaffLogin(StaffRole.cashier, "cashier@bench.example", "/register/choose"),
             StaffLogin(StaffRole.manager, "manager@bench.example", "/console"),
             StaffLogin(StaffRole.operator, "operator@bench.example", "/operator"))
    with database.session_scope() as session:
        for person in staff:
            operator = person.role == StaffRole.operator
            create_staff(session, inviter=None, email=person.email,
                         name=f"Bench {person.role.value}", role=person.role,
                         merchant_id=None if operator else shop.merchant_id,
                         store_id=shop.tills[0].store_id
                         if person.role == StaffRole.cashier else None,
                         password=PASSWORD)
    return Data(shop=shop, wallets=tuple(wallets), staff=staff, purchases=committed,
                burns=burns, vouchers=members, seconds=time.perf_counter() - started)


# --- the wallet under load -------------------------------------------------------------------

class WalletPages(RequestSource):
    """``GET /wallet`` with a random member's cookies."""

    ok_status = 200
    error_chars = 160

    def __init__(self, *, cookies: tuple[str, ...], seed: int) -> None:
        self.rng = random.Random(seed)
        self.headers = [{"Cookie": cookie} for cookie in cookies]

    def next(self) -> Request:
        return Request("/wallet", self.rng.choice(self.headers), b"", method="GET")


class PagesFailed(Exception):
    """A page is not what the benchmark asked for: there is nothing to time."""


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None  # a redirect is the answer (urllib raises it as an HTTPError)


class Browser:
    """A browser's first visit, with urllib: keeps the cookies the server sets and sends
    them back itself (a cookie jar sends Secure cookies over https only), follows no
    redirect, asks for no compression."""

    def __init__(self, base: str, cookies: dict[str, str] | None = None) -> None:
        self.base = base
        self.cookies = dict(cookies or {})
        self.opener = urllib.request.build_opener(_NoRedirects)

    def get(self, path: str) -> Answer:
        return self._open(urllib.request.Request(self.base + path, headers=self._headers()))

    def post_form(self, path: str, fields: dict[str, str]) -> Answer:
        headers = {**self._headers(), "Content-Type": "application/x-www-form-urlencoded"}
        return self._open(urllib.request.Request(
            self.base + path, data=urllib.parse.urlencode(fields).encode(), headers=headers,
            method="POST"))

    def _headers(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items())}

    def _open(self, request: urllib.request.Request) -> Answer:
        try:
            with self.opener.open(request, timeout=60) as response:
                answer = Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, error.headers, error.read())
        for cookie in answer.headers.get_all("Set-Cookie") or []:
            pair, _, attributes = cookie.partition(";")
            name, _, value = pair.strip().partition("=")
            if not value or "max-age=0" in attributes.lower().replace(" ", ""):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return answer


def settle(database: Database, *, timeout: float = 60.0) -> str:
    """Wait (at most ``timeout``) for the server's delivery worker to dispatch the outbox
    events the set-up wrote, so that the measured phases do not carry that backlog."""
    started = time.perf_counter()
    query = select(func.count()).select_from(OutboxEvent).where(
        OutboxEvent.delivered_at.is_(None))
    with database.session_scope() as session:
        written = session.scalar(select(func.count()).select_from(OutboxEvent)) or 0
    if not get_settings().deliveries_in_serve:
        return f"{written:,} outbox events (no delivery worker in the server)"
    while True:
        with database.session_scope() as session:
            pending = session.scalar(query) or 0
        waited = time.perf_counter() - started
        if not pending or waited > timeout:
            break
        time.sleep(0.5)
    return (f"{written:,} outbox events from the set-up, "
            + (f"{pending:,} still undispatched after {waited:.0f} s" if pending else
               "dispatched by the server's delivery worker before the load"))


def check_wallet(server: Server, wallet: Wallet) -> int:
    """One wallet, fetched before any load, must be the member's: 200 with their number in
    it; a cookie the server did not issue must go to the sign-in page. The page's size."""
    answer = Browser(server.url, {WALLET_COOKIE: wallet.token}).get("/wallet")
    if answer.status != 200 or wallet.member_number.encode() not in answer.body:
        raise PagesFailed(f"GET /wallet with member {wallet.member_number}'s cookie answered "
                          f"{answer.status} without the member's number "
                          f"(Location: {answer.headers.get('Location')})")
    stranger = Browser(server.url, {WALLET_COOKIE: secrets.token_urlsafe(32)}).get("/wallet")
    if stranger.status != 303 or stranger.headers.get("Location") != "/wallet/sign-in":
        raise PagesFailed(f"GET /wallet with a cookie the server did not issue answered "
                          f"{stranger.status} (Location: {stranger.headers.get('Location')})")
    return len(answer.body)


def _line(result: PhaseResult) -> str:
    line = (f"{result.rate:7.1f}/s  p50 {result.percentile(0.5):6.1f} ms  "
            f"p99 {result.percentile(0.99):6.1f} ms  ({result.requests:,} requests, "
            f"{result.ok:,} answered 200")
    if result.failed:
        line += f", {result.failed:,} FAILED: {'; '.join(result.errors)}"
    return line + ")"


def _measured(server: Server, database_url: str, load: LoadGenerator,
              phase: Phase) -> PhaseResult:
    result, waits = load.run_measured(phase, server_pid=server.pid, database_url=database_url)
    if result.cpu is not None and result.ok:
        server_ms, database_ms = result.cpu.per_checkout_ms(result.ok)
        say(f"    CPU per page: server {server_ms:.2f} ms"
            + (f", PostgreSQL {database_ms:.2f} ms" if database_ms is not None else "")
            + f"; load generator {result.client_cpu / result.ok * 1000:.2f} ms")
    if waits is not None:
        say(f"    PostgreSQL sessions in a transaction: {waits.shares()}")
    return result


@dataclass
class Run:
    page_bytes: int
    warm_up: PhaseResult
    unloaded: PhaseResult
    probes: list[PhaseResult]
    maximum: PhaseResult
    loaded: PhaseResult

    @property
    def phases(self) -> list[PhaseResult]:
        return [self.warm_up, self.unloaded, *self.probes, self.maximum, self.loaded]


def measure_wallet(server: Server, database_url: str, data: Data,
                   args: argparse.Namespace) -> Run:
    page_bytes = check_wallet(server, data.wallets[0])
    say(f"  checked: GET /wallet with member {data.wallets[0].member_number}'s cookie is "
        f"their wallet (200, their number in it, {page_bytes / KB:.1f} KB); a cookie the "
        f"server did not issue is sent to /wallet/sign-in (303)")
    source = WalletPages(cookies=tuple(wallet.cookie for wallet in data.wallets), seed=SEED)
    with LoadGenerator(server.url, source, seed=SEED, name="patron-bench-pages-load") as load:
        say(f"  warming up {args.warmup_seconds:g} s")
        warm = load.run(Phase("warm-up", args.warmup_seconds,
                              concurrency=max(args.concurrency)))
        if warm.failed:
            raise PagesFailed(f"the warm-up's wallet pages failed: {_line(warm)}")
        unloaded = load.run(Phase("unloaded", args.unloaded_seconds, concurrency=1))
        say(f"  unloaded, one at a time        {_line(unloaded)}")
        probes, best = load.probe(
            args.concurrency, args.probe_seconds,
            lambda probe: say(f"  probe, closed loop x{probe.concurrency:<3}       "
                              f"{_line(probe)}"))
        say(f"  maximum, closed loop x{best} for {args.seconds:g} s:")
        maximum = _measured(server, database_url, load,
                            Phase("maximum", args.seconds, concurrency=best))
        say(f"  maximum, closed loop x{best:<3}     {_line(maximum)}")
        rate = max(LOAD_SHARE * maximum.rate, 1.0)
        say(f"  under load, Poisson arrivals at {rate:.0f}/s ({LOAD_SHARE:.0%} of the "
            f"maximum) for {args.seconds:g} s:")
        loaded = _measured(server, database_url, load,
                           Phase("under load", args.seconds, rate=rate))
        say(f"  under load, open loop {rate:6.1f}/s {_line(loaded)}")
    return Run(page_bytes=page_bytes, warm_up=warm, unloaded=unloaded, probes=probes,
               maximum=maximum, loaded=loaded)


# --- first-load transfer sizes ------------------------------------------------------------

class _Assets(HTMLParser):
    """The files a page makes a browser fetch as code or style."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"])
        elif (tag == "link" and "stylesheet" in found.get("rel", "").lower().split()
              and found.get("href")):
            self.styles.append(found["href"])
        # The service worker a page registers is fetched on its first visit too.
        if found.get("data-service-worker"):
            self.scripts.append(found["data-service-worker"])


@dataclass
class PageSize:
    page: str
    status: int
    html: int = 0
    js: int = 0
    css: int = 0
    gzip: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        return self.js + self.css

    @property
    def passed(self) -> bool:
        return not self.problems and self.code <= TARGET_KB * KB


def page_size(browser: Browser, page: str) -> PageSize:
    """The page and every script and style sheet it names, each fetched once."""
    answer = browser.get(page)
    size = PageSize(page=page, status=answer.status, html=len(answer.body))
    if answer.status != 200:
        size.problems.append(f"{page} answered {answer.status} "
                             f"(Location: {answer.headers.get('Location')})")
        return size
    parser = _Assets()
    parser.feed(answer.body.decode("utf-8", errors="replace"))
    wanted = [(url, "js") for url in dict.fromkeys(parser.scripts)] + \
        [(url, "css") for url in dict.fromkeys(parser.styles)]
    bodies = []
    for url, kind in wanted:
        path = urllib.parse.urljoin(page, url)
        if urllib.parse.urlsplit(path).netloc:
            size.problems.append(f"{url}: another site's file")
            continue
        # Each file as a first visit would fetch it: the app's files need no cookie.
        asset = Browser(browser.base).get(path)
        sent = asset.headers.get("Content-Length")
        if asset.status != 200:
            size.problems.append(f"{url} answered {asset.status}")
        elif sent is not None and int(sent) != len(asset.body):
            size.problems.append(f"{url}: Content-Length {sent}, {len(asset.body)} bytes")
        elif asset.headers.get("Content-Encoding"):
            size.problems.append(f"{url}: sent {asset.headers.get('Content-Encoding')}")
        if kind == "js":
            size.js += len(asset.body)
        else:
            size.css += len(asset.body)
        bodies.append(asset.body)
        size.files += 1
    size.gzip = sum(len(gzip.compress(body)) for body in bodies)
    return size


def signed_in(server: Server, person: StaffLogin) -> Browser:
    """A browser signed in as ``person`` through the login form."""
    browser = Browser(server.url)
    form = browser.get("/login")
    found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', form.body.decode())
    if form.status != 200 or found is None or CSRF_COOKIE not in browser.cookies:
        raise PagesFailed(f"GET /login answered {form.status} without a CSRF token and cookie")
    answer = browser.post_form("/login", {CSRF_FIELD: found.group(1), "email": person.email,
                                          "password": PASSWORD, "next": ""})
    if answer.status != 303 or not any(name.endswith("patron_staff")
                                       for name in browser.cookies):
        raise PagesFailed(f"signing in as the {person.role.value} answered {answer.status}: "
                          f"{answer.body[:200].decode(errors='replace')}")
    return browser


def measure_sizes(server: Server, data: Data) -> list[tuple[str, PageSize]]:
    wallet = data.wallets[0]
    visits: list[tuple[str, Browser, str]] = [
        ("anyone", Browser(server.url), "/"),
        ("anyone", Browser(server.url), f"/join?m={data.shop.merchant_number}"),
        ("anyone", Browser(server.url), "/wallet/sign-in"),
        ("anyone", Browser(server.url), "/login"),
        ("member", Browser(server.url, {WALLET_COOKIE: wallet.token}), "/wallet"),
    ]
    for person in data.staff:
        visits.append((person.role.value, signed_in(server, person), person.page))
    return [(who, page_size(browser, page)) for who, browser, page in visits]


# --- report --------------------------------------------------------------------------------

def wallet_report(run: Run, data: Data) -> list[str]:
    lines = [
        f"The wallet page (GET /wallet, {run.page_bytes / KB:.1f} KB; a random member's "
        f"cookies out of {len(data.wallets):,}):",
        f"{'phase':<14}{'load':>22}{'requests':>10}{'pages/s':>10}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for phase in (run.unloaded, *run.probes, run.maximum, run.loaded):
        load = (f"closed loop x{phase.concurrency}" if phase.concurrency
                else f"Poisson {phase.offered_rate:.0f}/s")
        lines.append(f"{phase.name:<14}{load:>22}{phase.requests:>10,}{phase.rate:>10.1f}"
                     f"{phase.percentile(0.5):>9.1f}{phase.percentile(0.99):>9.1f}")
    return lines


def wallet_verdict(run: Run, database: str) -> str:
    loaded = run.loaded
    p99 = loaded.percentile(0.99)
    failed = sum(phase.failed for phase in run.phases)
    checks = [f"p99 <= {TARGET_P99_MS:g} ms {verdict(p99 <= TARGET_P99_MS and not failed)} "
              f"({p99:.1f} ms; p50 {loaded.percentile(0.5):.1f} ms)"]
    checks.append(f"FAIL: {failed:,} answers other than 200" if failed
                  else "every answer 200")
    return (f"wallet page, {database}, under load ({LOAD_SHARE:.0%} of the maximum, "
            f"{loaded.offered_rate:.0f}/s, {loaded.requests:,} requests): " + "; ".join(checks))


def sizes_report(sizes: list[tuple[str, PageSize]]) -> list[str]:
    lines = [
        f"First-load transfer per page (bytes as sent, uncompressed; 1 KB = {KB:,} bytes; "
        f"target JS + CSS <= {TARGET_KB:g} KB):",
        f"{'page':<20}{'who':>10}{'HTML KB':>9}{'JS KB':>8}{'CSS KB':>8}{'JS+CSS KB':>11}"
        f"{'':>2}{'verdict':<8}{'gzip JS+CSS KB':>15}",
    ]
    for who, size in sizes:
        lines.append(f"{size.page:<20}{who:>10}{size.html / KB:>9.1f}{size.js / KB:>8.1f}"
                     f"{size.css / KB:>8.1f}{size.code / KB:>11.1f}{'':>2}"
                     f"{verdict(size.passed):<8}{size.gzip / KB:>15.1f}")
    lines.append("gzip JS+CSS: what a compressing proxy in front of the server would send "
                 "(gzip.compress of the same files); information, not the figure judged. "
                 "JS includes the service worker a page registers.")
    for _who, size in sizes:
        lines.extend(f"  FAIL {size.page}: {problem}" for problem in size.problems)
    return lines


def sizes_verdict(sizes: list[tuple[str, PageSize]]) -> str:
    largest = max(sizes, key=lambda pair: pair[1].code)[1]
    failing = [size.page for _who, size in sizes if not size.passed]
    return (f"first-load JS + CSS <= {TARGET_KB:g} KB on every page: "
            f"{verdict(not failing)} (largest {largest.code / KB:.1f} KB, {largest.page}"
            + (f"; failing: {', '.join(failing)}" if failing else "") + ")")


# --- entry point ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench pages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=300,
                        help="members, each with a wallet device (default 300)")
    parser.add_argument("--purchases", type=int, default=3,
                        help="purchases per member, committed before the server starts "
                             "(default 3)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--concurrency", type=some_numbers, default=[2, 4, 8],
                        help="closed-loop concurrencies probed for the maximum rate "
                             "(default 2,4,8)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="length of the maximum-rate phase and of the phase under load")
    parser.add_argument("--unloaded-seconds", type=float, default=5.0)
    parser.add_argument("--probe-seconds", type=float, default=3.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    add_database_option(parser)
    args = parser.parse_args(argv)
    if args.members < 1:
        parser.error("--members must be 1 or more")
    if args.purchases < 0:
        parser.error("--purchases must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    given = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    say(f"command:  python -m bench pages {shlex.join(given)}".rstrip())
    say(f"settings: --members {args.members} --purchases {args.purchases} --workers "
        f"{args.workers} --concurrency {','.join(map(str, args.concurrency))} --seconds "
        f"{args.seconds:g} --unloaded-seconds {args.unloaded_seconds:g}")
    say(f"machine:  {describe_machine()}")
    try:
        with fresh_database(args.database_url) as database:
            described = describe_database(database)
            backend = described.split(" ", 1)[0]
            say(f"database: {described}")
            data = prepare(database, members=args.members, purchases=args.purchases)
            analysed = vacuum_analyze(database)
            say(f"set-up:   {len(data.wallets):,} members with a wallet device and a voucher "
                f"each, {data.purchases:,} purchases ({data.burns:,} burning points), 3 staff, "
                f"through the services in {data.seconds:.1f} s"
                + (f"; VACUUM ANALYZE {analysed:.1f} s" if analysed is not None else ""))
            with running_server(database.url, workers=args.workers) as server:
                say(f"server:   patron serve --workers {args.workers}; {settle(database)}")
                run = measure_wallet(server, database.url, data, args)
                sizes = measure_sizes(server, data)
    except BenchSetupError as exc:
        say(f"\npages benchmark: no figures ({str(exc).splitlines()[0]})")
        return
    except PagesFailed as exc:
        say(f"\npages benchmark: FAIL, {exc}")
        return
    say("")
    say("\n".join(wallet_report(run, data)))
    say("")
    say("\n".join(sizes_report(sizes)))
    say("")
    say(wallet_verdict(run, backend))
    say(sizes_verdict(sizes))
    say(f"\nmachine after: {describe_machine()}")
    say(f"pages benchmark finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
