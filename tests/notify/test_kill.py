"""A server killed with SIGKILL in the middle of a burst of 500 webhook deliveries: after
it is started again, every event reaches the receiver; the only repeats are the
deliveries that were in flight at the kill (at least once, the same ``webhook-id``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from bench.sinks import Receiver, webhook_receiver
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.db import Database
from patron.notify.models import Delivery
from patron.notify.outbox import EventType, emit
from tests.conftest import World, auth
from tests.live_server import _free_port, _tail, wait_until_ready

pytestmark = pytest.mark.slow

BURST = 500
PATRON = str(Path(sys.executable).parent / "patron")


def _serve(database_url: str, port: int, log: object) -> subprocess.Popen[bytes]:
    """``patron serve`` (one process: the server and its delivery worker)."""
    environment = {**os.environ, "PATRON_DATABASE_URL": database_url,
                   "PATRON_DELIVERIES_IN_SERVE": "true",
                   "PATRON_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                   # Small batches sent a few at a time: the kill lands mid-burst, with
                   # deliveries leased and in flight; a short timeout makes a short lease.
                   "PATRON_DELIVERY_BATCH": "40", "PATRON_DELIVERY_CONCURRENCY": "4",
                   "PATRON_WEBHOOK_TIMEOUT_SECONDS": "2"}
    return subprocess.Popen([PATRON, "serve", "--port", str(port)], env=environment,
                            stdout=subprocess.DEVNULL, stderr=log)  # type: ignore[arg-type]


def _wait_for(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def test_every_event_arrives_after_a_kill_9_in_the_middle_of_a_burst(
        client: TestClient, database: Database, world: World) -> None:
    with webhook_receiver() as receiver:
        receiver.delay = 0.02
        _burst(client, database, world, receiver)


def _burst(client: TestClient, database: Database, world: World,
           receiver: Receiver) -> None:
    at_kill = 0
    endpoint = client.post("/v1/webhook-endpoints", headers=auth(world.a.merchant_key),
                           json={"url": receiver.url, "events": ["points.earned"]})
    assert endpoint.status_code == 201, endpoint.text
    with database.session_scope() as session:
        for number in range(BURST):
            emit(session, type=EventType.points_earned,
                 merchant_id=uuid.UUID(world.a.merchant_id), member_id=None,
                 payload={"number": number})
    with tempfile.TemporaryFile() as log:
        port = _free_port()
        server = _serve(database.url, port, log)
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", server, log)
            _wait_for(lambda: len(receiver.received) >= BURST // 4, 120)
            server.send_signal(signal.SIGKILL)
            server.wait()
            # Requests the server made before it died finish arriving (each answer takes
            # the receiver 20 ms).
            time.sleep(1)
            at_kill = len(receiver.unique_ids())
            assert BURST // 4 <= at_kill < BURST, "the kill must come mid-burst"
            seen_before_restart = receiver.unique_ids()

            server = _serve(database.url, port, log)
            wait_until_ready(f"http://127.0.0.1:{port}", server, log)
            _wait_for(lambda: len(receiver.unique_ids()) >= BURST, 120)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            print(f"--- end of the server's log ---\n{_tail(log)}")

    ids = [item.webhook_id for item in receiver.received]
    assert len(set(ids)) == BURST
    repeated = {webhook_id for webhook_id in ids if ids.count(webhook_id) > 1}
    # Only what was in flight when the server died comes twice: at most one batch.
    assert repeated <= seen_before_restart
    assert len(repeated) <= 40
    print(f"burst {BURST}: {at_kill} received before the kill, {len(ids)} requests in all, "
          f"{len(repeated)} sent twice")
    payloads = {item.json["data"]["number"] for item in receiver.received}
    assert payloads == set(range(BURST))
    with database.session_scope() as session:
        statuses = dict(session.execute(select(Delivery.status, func.count())
                                        .group_by(Delivery.status)).all())
    assert statuses == {"delivered": BURST}
