"""The register SDK against the test app: connected, disconnected by itself when the
server cannot be reached, allowances, replay in order exactly once, crash safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.pos.models import PosTransaction
from patron.pos_client import OfflineRefused, OutcomeUnknown, Register
from patron.pos_client.queue import Queue
from tests.conftest import World, auth
from tests.pos.conftest import JPY_PROGRAM, enrol, give_points, put_program
from tests.pos_client.conftest import FlakyTransport

BREAD = [{"sku": "BR-1", "name": "Bread", "category": "bakery", "quantity": 1,
          "unit_price": 1234}]
COFFEE = [{"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 2,
           "unit_price": 350}]


@pytest.fixture
def member(client: TestClient, world: World, database: Database) -> dict[str, Any]:
    put_program(client, world.a, JPY_PROGRAM)
    member = enrol(client, world.a, email="till@example.com")
    give_points(database, world.a.merchant_id, member["id"], 1000)
    return member


def points(client: TestClient, world: World, member: dict[str, Any]) -> int:
    response = client.get(f"/v1/members/{member['id']}/balances",
                          headers=auth(world.a.merchant_key))
    assert response.status_code == 200, response.text
    [row] = response.json()["points"]
    assert row["merchant_id"] == world.a.merchant_id
    return int(row["balance"])


def transactions(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(PosTransaction)) or 0)


def test_connected_offline_and_back(client: TestClient, world: World, database: Database,
                                    member: dict[str, Any], make_register: Any,
                                    transport: FlakyTransport) -> None:
    register: Register = make_register(world.a.pos_key)
    register.refresh_package()
    who = {"barcode": member["member_number"]}
    online = register.checkout(BREAD, member=who)
    assert online.mode == "online" and online.transaction is not None
    assert online.transaction["points_earned"] == 12
    register.prepare({"member_id": member["id"]})

    online_quote = register.quote(BREAD, member=who, points_to_burn=300)
    assert (online_quote["points_earned"], online_quote["total"]) == (9, 934)

    transport.mode = "down"
    local_quote = register.quote(BREAD, member={"member_id": member["id"]}, points_to_burn=300)
    assert local_quote["provisional"] is True and not register.connected
    assert (local_quote["points_earned"], local_quote["total"]) == (9, 934)
    offline = register.checkout(BREAD, member={"member_id": member["id"]}, points_to_burn=300)
    assert offline.mode == "offline" and not register.connected
    assert offline.provisional is not None
    assert (offline.provisional["points_burned"], offline.provisional["points_earned"],
            offline.provisional["total"]) == (300, 9, 934)
    anonymous = register.checkout(COFFEE)
    assert anonymous.mode == "offline"
    for kwargs, code in [
            ({"member": who, "points_to_burn": 800}, "burn_over_allowance"),
            ({"member": {"barcode": "12345000000999"}, "points_to_burn": 100},
             "no_allowance"),
            ({"member": {"qr": "whatever"}}, "qr_offline"),
            ({"member": who, "miles_to_burn": 5}, "miles_offline"),
            ({"member": who, "points_to_burn": 50}, "burn_below_minimum"),
            ({"member": who, "vouchers": ["NOPE-NOPE"]}, "voucher_not_in_allowance")]:
        with pytest.raises(OfflineRefused) as refused:
            register.checkout(BREAD, **kwargs)
        assert refused.value.code == code, kwargs
    assert register.queue.size() == 2
    assert transactions(database) == 1

    transport.mode = "up"
    report = register.sync()
    assert (report.sent, report.committed, report.complete) == (2, 2, True)
    assert register.connected and register.queue.size() == 0
    assert transactions(database) == 3
    assert points(client, world, member) == 1000 + 12 - 300 + 9
    results = register.queue.results()
    assert [r["status"] for r in results] == ["committed", "committed"]


def test_a_lost_answer_is_queued_and_replayed_once(client: TestClient, world: World,
                                                   database: Database, member: dict[str, Any],
                                                   make_register: Any,
                                                   transport: FlakyTransport) -> None:
    register: Register = make_register(world.a.pos_key)
    register.refresh_package()
    transport.mode = "lost"
    # A burn without an allowance cannot be queued: the outcome is unknown, and said so.
    with pytest.raises(OutcomeUnknown) as unknown:
        register.checkout(BREAD, member={"member_id": member["id"]}, points_to_burn=100,
                          receipt_no="U-1")
    assert unknown.value.receipt_no == "U-1" and not register.connected
    assert transactions(database) == 1
    transport.mode = "up"
    assert register.probe() and register.connected
    again = register.retry_unknown("U-1")
    assert again.mode == "online" and again.transaction is not None
    assert transactions(database) == 1  # the same sale, answered again
    # A plain sale whose answer is lost is queued: the server already has it.
    transport.mode = "lost"
    result = register.checkout(BREAD, member={"member_id": member["id"]})
    assert result.mode == "offline" and register.queue.size() == 1
    assert transactions(database) == 2
    transport.mode = "up"
    report = register.sync()
    assert (report.replayed, report.committed) == (1, 0)
    assert transactions(database) == 2
    assert points(client, world, member) == 1000 - 100 + 11 + 12


def test_a_crash_between_the_servers_answer_and_the_ack_replays_without_duplicates(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        make_register: Any, transport: FlakyTransport, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    register: Register = make_register(world.a.pos_key, name="crash")
    register.refresh_package()
    transport.mode = "down"
    for _ in range(5):
        register.checkout(BREAD, member={"member_id": member["id"]})
    transport.mode = "up"

    def crash(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(register.queue, "acknowledge", crash)
    with pytest.raises(KeyboardInterrupt):
        register.sync()
    assert transactions(database) == 5
    register.close()
    monkeypatch.undo()
    restarted: Register = make_register(world.a.pos_key, name="crash")
    assert not restarted.connected and restarted.queue.size() == 5
    report = restarted.sync()
    assert (report.replayed, report.committed, report.complete) == (5, 0, True)
    assert transactions(database) == 5
    assert points(client, world, member) == 1000 + 5 * 12


WRITER = textwrap.dedent("""
    import json, os, signal, sys
    from patron.pos_client.queue import Queue
    queue = Queue(sys.argv[1])
    kill_after = int(sys.argv[2])
    for number in range(1, 1000):
        with queue.transaction() as db:
            queue.enqueue(db, receipt_no=f"K{number:05d}", queued_at="2026-01-01T00:00:00+00:00",
                          body={"transaction": {"receipt_no": f"K{number:05d}"},
                                "padding": "x" * 2000})
        print(number, flush=True)
        if number == kill_after:
            with queue.transaction() as db:
                queue.enqueue(db, receipt_no="HALF", queued_at="x", body={"half": True})
                os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("kill_after", [1, 17, 60])
def test_the_queue_survives_a_kill_mid_write(tmp_path: Path, kill_after: int) -> None:
    path = tmp_path / "queue.sqlite3"
    process = subprocess.run([sys.executable, "-c", WRITER, str(path), str(kill_after)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert process.returncode == -signal.SIGKILL
    acknowledged = [int(line) for line in process.stdout.split()]
    assert acknowledged == list(range(1, kill_after + 1))
    queue = Queue(path)
    try:
        pending = queue.pending()
        # Everything that was committed is there, in order; the write cut short is not.
        assert [entry.receipt_no for entry in pending] == [
            f"K{number:05d}" for number in acknowledged]
        assert all(entry.body["transaction"]["receipt_no"] == entry.receipt_no
                   for entry in pending)
    finally:
        queue.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert json.dumps(kill_after)
    assert os.path.exists(path)
