"""Offline replay throughput: queued register sales through ``POST /v1/pos/offline/batches``
on PostgreSQL, against the production server (``patron serve``, one worker per core).

Acceptance (issue): >= 2,000 transactions/s through the batch endpoint.

What one run does: a fresh benchmark database (created and dropped), merchants with a
points program, tills and members with points, signed allowances for the members who
burn; then each till's queue (anonymous sales, identified sales, burns within their
allowance) goes to the server in batches of up to 500 entries, all tills at once, and the
wall time from the first request to the last answer is measured. Every entry must come
back ``committed`` (any other answer is counted and fails the row). A second pass sends
the same batches again: every entry must come back ``replayed`` (the resend path a
register takes after a lost answer), and nothing may change.

    python -m bench offline [--postgres-url URL] [--merchants 2] [--tills 2]
                            [--entries 6000] [--batch 500] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.environment import BENCH_SECRET_KEY, describe_machine
from bench.servers import (
    DEFAULT_POSTGRES_URL,
    POSTGRES_URL_ENV,
    postgres_database,
    running_server,
)
from patron.db import Database
from patron.ledger import service as ledger
from patron.pos.models import PosTransaction
from patron.tenancy.models import Role
from patron.tenancy.service import ensure_operator, issue_key

TARGET_PER_SECOND = 2_000
PROGRAM = {"earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
           "category_multipliers_bp": {"coffee": 20000}, "excluded_categories": ["tobacco"],
           "point_value_minor": 1, "min_burn": 100, "expiry_months": 24}
CATALOGUE = [("CF", "Coffee", "coffee", 350), ("BR", "Bread", "bakery", 1234),
             ("TB", "Cigarettes", "tobacco", 600), ("MK", "Milk", None, 199),
             ("RD", "Radio", "electronics", 4999)]


@dataclass
class Till:
    key: str
    merchant_number: int
    batches: list[list[dict[str, Any]]] = field(default_factory=list)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise SystemExit(f"set-up failed: {response.request.method} {response.request.url} "
                         f"{response.status_code} {response.text[:500]}")
    return response.json()


def _build(http: httpx.Client, database: Database, *, merchants: int, tills: int,
           entries: int, batch: int, members: int) -> list[Till]:
    with database.session_scope() as session:
        ensure_operator(session)
        _, op_key = issue_key(session, role=Role.operator, label="bench")
    rng = random.Random(11)
    made: list[Till] = []
    per_till = entries // (merchants * tills)
    for index in range(merchants):
        number = 70001 + index
        merchant = _ok(http.post("/v1/merchants", headers=_auth(op_key), json={
            "number": number, "name": f"Offline bench {number}", "currency": "JPY",
            "timezone": "Asia/Tokyo", "country": "JP"}))
        merchant_key = _ok(http.post("/v1/keys", headers=_auth(op_key), json={
            "role": "merchant", "merchant_id": merchant["id"]}))["key"]
        _ok(http.put(f"/v1/merchants/{merchant['id']}/program", headers=_auth(merchant_key),
                     json=PROGRAM))
        store = _ok(http.post(f"/v1/merchants/{merchant['id']}/stores",
                              headers=_auth(op_key), json={"code": "main", "name": "Main"}))
        enrolled = [_ok(http.post("/v1/members", headers=_auth(merchant_key),
                                  json={"email": f"m{number}.{n}@example.com"}))
                    for n in range(members)]
        with database.session_scope() as session:
            for member in enrolled:
                ledger.earn(session, merchant_id=uuid.UUID(merchant["id"]),
                            member_id=uuid.UUID(member["id"]), points=1_000_000,
                            expires_at=None, idempotency_key=f"bench:{member['id']}",
                            source="bench")
        for till_no in range(tills):
            key = _ok(http.post(f"/v1/stores/{store['id']}/terminals", headers=_auth(op_key),
                                json={"code": f"pos-{till_no}", "kind": "pos"}))["api_key"]
            till = Till(key=key, merchant_number=number)
            # This till's burners: members no other till of the merchant burns for.
            burners = enrolled[till_no::tills][:10]
            allowances = {m["id"]: _ok(http.post("/v1/pos/offline/allowances",
                                                 headers=_auth(key),
                                                 json={"member": {"member_id": m["id"]}}))
                          for m in burners}
            sales = [_sale(rng, f"T{till_no}-{n:06d}", enrolled, burners, allowances, n)
                     for n in range(per_till)]
            till.batches = [sales[start:start + batch] for start in range(0, len(sales), batch)]
            made.append(till)
    return made


def _sale(rng: random.Random, receipt_no: str, members: Sequence[dict[str, Any]],
          burners: Sequence[dict[str, Any]], allowances: dict[str, Any],
          seq: int) -> dict[str, Any]:
    lines = []
    for index in range(rng.randint(1, 5)):
        sku, name, category, price = rng.choice(CATALOGUE)
        line: dict[str, Any] = {"sku": f"{sku}-{index}", "name": name,
                                "quantity": rng.randint(1, 3), "unit_price": price}
        if category:
            line["category"] = category
        lines.append(line)
    transaction: dict[str, Any] = {
        "receipt_no": receipt_no, "occurred_at": datetime.now(UTC).isoformat(),
        "currency": "JPY", "lines": lines, "channel": "store"}
    roll = rng.random()
    allowance = None
    if roll < 0.3:
        pass
    elif roll < 0.8:
        transaction["member"] = {"barcode": rng.choice(members)["member_number"]}
    else:
        burner = rng.choice(burners)
        transaction["member"] = {"member_id": burner["id"]}
        transaction["points_to_burn"] = 100 if sum(
            line["quantity"] * line["unit_price"] for line in lines) >= 100 else 0
        allowance = allowances[burner["id"]] if transaction["points_to_burn"] else None
    return {"seq": seq + 1, "queued_at": datetime.now(UTC).isoformat(), "allowance": allowance,
            "transaction": transaction}


@dataclass
class Pass:
    seconds: float
    entries: int
    statuses: dict[str, int]
    batch_seconds: list[float]

    @property
    def per_second(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0


def _replay(base: str, tills: Sequence[Till]) -> Pass:
    statuses: dict[str, int] = {}
    timings: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def run(till: Till) -> None:
        with httpx.Client(base_url=base, timeout=600, headers=_auth(till.key)) as http:
            for batch in till.batches:
                started = time.perf_counter()
                response = http.post("/v1/pos/offline/batches", json={"entries": batch})
                elapsed = time.perf_counter() - started
                with lock:
                    timings.append(elapsed)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {response.text[:300]}")
                        continue
                    for result in response.json()["results"]:
                        statuses[result["status"]] = statuses.get(result["status"], 0) + 1

    threads = [threading.Thread(target=run, args=(till,)) for till in tills]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for error in errors[:5]:
        print(f"  error: {error}")
    if errors:
        statuses["http_error"] = len(errors)
    return Pass(seconds=seconds, entries=sum(len(b) for t in tills for b in t.batches),
                statuses=statuses, batch_seconds=timings)


def _show(name: str, result: Pass, expected: str, target: float | None) -> bool:
    good = result.statuses == {expected: result.entries}
    ordered = sorted(result.batch_seconds)
    p50 = statistics.median(ordered) * 1000 if ordered else 0.0
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else 0.0
    verdict = "" if target is None else (
        " PASS" if good and result.per_second >= target else " FAIL")
    print(f"  {name:<28} {result.entries:>7,} entries in {result.seconds:7.2f} s = "
          f"{result.per_second:8,.0f} transactions/s   batch p50 {p50:7.0f} ms, "
          f"p99 {p99:7.0f} ms{verdict}")
    if not good:
        print(f"    answers: {result.statuses} (every entry should be {expected})")
    return good


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench offline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=os.environ.get(
        POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL.replace("patron_bench", "patron_bench_offline")))
    parser.add_argument("--merchants", type=int, default=2)
    parser.add_argument("--tills", type=int, default=2, help="per merchant")
    parser.add_argument("--entries", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--members", type=int, default=100, help="per merchant")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    print(f"command: python -m bench offline {' '.join(sys.argv[2:] if argv is None else argv)}")
    print(f"machine: {describe_machine()}")
    os.environ["PATRON_SECRET_KEY"] = BENCH_SECRET_KEY
    with postgres_database(args.postgres_url) as url, \
            running_server(url, workers=args.workers) as server:
        database = Database(url)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                tills = _build(http, database, merchants=args.merchants, tills=args.tills,
                               entries=args.entries, batch=args.batch, members=args.members)
            print(f"  PostgreSQL, {args.workers} server workers, {args.merchants} merchants x "
                  f"{args.tills} tills replaying at once, batches of {args.batch}")
            first = _replay(server.url, tills)
            with database.session_scope() as session:
                committed = session.scalar(select(func.count()).select_from(PosTransaction))
            second = _replay(server.url, tills)
            with database.session_scope() as session:
                after = session.scalar(select(func.count()).select_from(PosTransaction))
                problems = ledger.check_invariants(session)
        finally:
            database.dispose()
    ok = _show("replay (first time)", first, "committed", TARGET_PER_SECOND)
    ok = _show("resend (answered again)", second, "replayed", None) and ok
    print(f"  transactions committed: {committed:,} (after the resend: {after:,}); "
          f"ledger invariants: {'hold' if not problems else problems[:3]}")
    print(f"  target: >= {TARGET_PER_SECOND:,} transactions/s through the batch endpoint")
    if not ok or committed != after or problems:
        print("  FAIL: see the answers above")
