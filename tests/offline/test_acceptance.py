"""Acceptance, with real processes on PostgreSQL: three registers lose the server, each
records 200 sales (burns and vouchers within their allowances, two of them using the same
single-use code), the server comes back, and the queues replay while a proxy cuts and
refuses connections at random moments and one register process is killed and restarted
mid-replay. Then: every sale exactly once, nothing lost, balances equal to a fault-free
run of the same sales in an identically set-up second merchant, the double-used code once
in the exceptions list."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patron.db import Database
from patron.ledger import service as ledger
from patron.offline.models import OfflineException
from patron.pos.models import PosTransaction
from tests.conftest import TEST_DATABASE_URL, auth, make_tenant, operator_key
from tests.live_server import live_server
from tests.pos.conftest import JPY_PROGRAM, give_points
from tests.proxy import FaultProxy

REGISTERS = 3
SALES = 200
CHAOS_EVENTS = 12
ROOT = Path(__file__).resolve().parents[2]


def _world(http: httpx.Client, database: Database, op_key: str, number: int) -> dict[str, Any]:
    """A merchant with three tills, a program, members with points, one personal code."""
    tenant = make_tenant(http, op_key, number=number, country="JP",  # type: ignore[arg-type]
                         currency="JPY", timezone="Asia/Tokyo")
    program = http.put(f"/v1/merchants/{tenant.merchant_id}/program",
                       headers=auth(tenant.merchant_key), json=JPY_PROGRAM)
    assert program.status_code == 200, program.text
    keys = [tenant.pos_key]
    for index in range(2, REGISTERS + 1):
        till = http.post(f"/v1/stores/{tenant.store_id}/terminals", headers=auth(op_key),
                         json={"code": f"pos-{index}", "kind": "pos"})
        assert till.status_code == 201, till.text
        keys.append(till.json()["api_key"])

    def enrol(email: str, points: int) -> dict[str, Any]:
        response = http.post("/v1/members", headers=auth(tenant.merchant_key),
                             json={"email": email})
        assert response.status_code == 201, response.text
        member: dict[str, Any] = response.json()
        if points:
            give_points(database, tenant.merchant_id, member["id"], points)
        return member

    shared = enrol(f"shared{number}@example.com", 0)
    burners = [enrol(f"burner{index}.{number}@example.com", 20_000)
               for index in range(REGISTERS)]
    plain = [enrol(f"plain{index}.{number}@example.com", 0) for index in range(5)]
    offer = http.post("/v1/offers", headers=auth(tenant.merchant_key),
                      json={"name": "Gift 300 off", "kind": "amount_off", "value": 300})
    assert offer.status_code == 201, offer.text
    codes = http.post(f"/v1/offers/{offer.json()['id']}/codes",
                      headers=auth(tenant.merchant_key),
                      json={"count": 1, "member_id": shared["id"]})
    assert codes.status_code == 201, codes.text
    return {"tenant": tenant, "keys": keys, "shared": shared, "burners": burners,
            "plain": plain, "code": codes.json()["codes"][0],
            "members": {"shared": shared, **{f"burner{i}": m for i, m in enumerate(burners)},
                        **{f"plain{i}": m for i, m in enumerate(plain)}}}


def _configs(world: dict[str, Any], url: str, folder: Path, label: str) -> list[Path]:
    paths = []
    for index in range(REGISTERS):
        config = {"url": url, "key": world["keys"][index],
                  "queue": str(folder / f"{label}-register{index}.sqlite3"),
                  "prefix": f"R{index}-", "batch_size": 20, "seed": 1000 + index,
                  "count": SALES, "shared": world["shared"],
                  "shared_code": world["code"], "burner": world["burners"][index],
                  "plain": world["plain"],
                  # Registers 0 and 1 both take the shared single-use code.
                  "voucher_at": {0: 50, 1: 120}.get(index)}
        path = folder / f"{label}-register{index}.json"
        path.write_text(json.dumps(config))
        paths.append(path)
    return paths


def _start(phase: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.offline.register_process", phase,
                             str(config)], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(phase: str, configs: list[Path]) -> None:
    started = time.monotonic()
    processes = [_start(phase, config) for config in configs]
    for process in processes:
        _, stderr = process.communicate(timeout=400)
        assert process.returncode == 0, stderr[-3000:]
    print(f"{phase}: {time.monotonic() - started:.1f} s", file=sys.stderr)


def _output(config: Path, phase: str) -> Any:
    queue = json.loads(config.read_text())["queue"]
    return json.loads(Path(f"{queue}.{phase}.json").read_text())


def _queued(config: Path) -> int:
    import sqlite3

    queue = json.loads(config.read_text())["queue"]
    with sqlite3.connect(queue, timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])


def _outcome(database: Database, world: dict[str, Any]) -> dict[str, Any]:
    merchant_id = world["tenant"].merchant_id
    with database.session_scope() as session:
        import uuid as _uuid

        merchant = _uuid.UUID(merchant_id)
        balances = {role: ledger.points_balance(session, merchant_id=merchant,
                                                member_id=_uuid.UUID(member["id"]))
                    for role, member in world["members"].items()}
        receipts = sorted(session.scalars(select(PosTransaction.receipt_no)
                                          .where(PosTransaction.merchant_id == merchant)))
        exceptions = [(row.kind, row.code, row.voucher_code) for row in session.scalars(
            select(OfflineException).where(OfflineException.merchant_id == merchant))]
        problems = ledger.check_invariants(session)
        totals = session.execute(
            select(func.sum(PosTransaction.total), func.sum(PosTransaction.points_earned),
                   func.sum(PosTransaction.points_burned),
                   func.sum(PosTransaction.voucher_discount))
            .where(PosTransaction.merchant_id == merchant)).one()
    return {"balances": balances, "receipts": receipts, "exceptions": exceptions,
            "invariants": problems, "totals": tuple(int(value or 0) for value in totals)}


@pytest.mark.postgres
def test_three_registers_offline_replay_exactly_once_under_faults(
        database: Database, tmp_path: Path) -> None:
    op_key = operator_key(database)
    with live_server(TEST_DATABASE_URL, workers=2) as base:
        proxy = FaultProxy("127.0.0.1", int(base.rsplit(":", 1)[1]))
        # The fault-free run's own way in: down while recording, then simply up.
        quiet = FaultProxy("127.0.0.1", int(base.rsplit(":", 1)[1]))
        proxy.up()
        quiet.up()
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                faulty = _world(http, database, op_key, 61001)
                clean = _world(http, database, op_key, 61002)
            faulty_configs = _configs(faulty, proxy.url, tmp_path, "faulty")
            clean_configs = _configs(clean, quiet.url, tmp_path, "clean")

            # Connected: packages and allowances.
            _run("prepare", faulty_configs + clean_configs)
            # The server is gone for the faulty registers: every sale is recorded offline.
            proxy.down()
            quiet.down()
            _run("record", faulty_configs + clean_configs)
            recorded = {str(c): _output(c, "record") for c in faulty_configs + clean_configs}
            for config in faulty_configs + clean_configs:
                assert len(recorded[str(config)]["recorded"]) == SALES
                assert recorded[str(config)]["refused"] == []

            # The fault-free run of the same sales.
            quiet.up()
            _run("sync", clean_configs)

            # The server is back; replay under random cuts, one register killed mid-way.
            proxy.up()
            stop = threading.Event()
            rng = random.Random(7)

            def chaos() -> None:
                # Cuts and refusals at random moments while the queues replay; a bounded
                # number of them, so that the replay also gets time to finish.
                for _ in range(CHAOS_EVENTS):
                    if stop.wait(rng.uniform(0.1, 0.6)):
                        break
                    if rng.random() < 0.7:
                        proxy.cut()
                    else:
                        proxy.down()
                        time.sleep(rng.uniform(0.05, 0.3))
                        proxy.up()
                proxy.up()

            chaos_thread = threading.Thread(target=chaos, daemon=True)
            chaos_thread.start()
            processes = [_start("sync", config) for config in faulty_configs]
            victim = faulty_configs[1]
            before_kill = _queued(victim)
            deadline = time.monotonic() + 60
            while _queued(victim) == before_kill and time.monotonic() < deadline:
                time.sleep(0.02)
            processes[1].send_signal(signal.SIGKILL)
            processes[1].wait(timeout=30)
            killed_with = _queued(victim)
            assert 0 < killed_with < before_kill, "the kill must come mid-replay"
            processes[1] = _start("sync", victim)
            for process in processes:
                _, stderr = process.communicate(timeout=400)
                assert process.returncode == 0, stderr[-3000:]
            stop.set()
            chaos_thread.join(timeout=5)
        finally:
            proxy.stop()
            quiet.stop()

    assert proxy.cuts > 0
    faulty_outcome = _outcome(database, faulty)
    clean_outcome = _outcome(database, clean)
    for config in faulty_configs:
        assert _queued(config) == 0
    # Every recorded sale exactly once (the receipt is unique per till), nothing lost.
    expected = sorted(receipt for config in faulty_configs
                      for receipt in recorded[str(config)]["recorded"])
    assert faulty_outcome["receipts"] == expected
    assert len(expected) == len(set(expected)) == REGISTERS * SALES
    # The same books as the fault-free run.
    assert faulty_outcome["balances"] == clean_outcome["balances"]
    assert faulty_outcome["totals"] == clean_outcome["totals"]
    assert faulty_outcome["invariants"] == [] and clean_outcome["invariants"] == []
    # The shared code: honoured once, the other use once in the exceptions list.
    assert [(kind, code) for kind, code, _ in faulty_outcome["exceptions"]] == [
        ("voucher_refused", "voucher_already_redeemed")]
    assert [(kind, code) for kind, code, _ in clean_outcome["exceptions"]] == [
        ("voucher_refused", "voucher_already_redeemed")]
    results = [result for config in faulty_configs
               for result in _output(config, "sync")["results"]]
    assert len(results) == REGISTERS * SALES
    assert "refused" not in {result["status"] for result in results}
    # (a resent entry is answered "replayed", with its exceptions as the first time)
    assert [len(result["answer"]["exceptions"]) for result in results].count(1) == 1
