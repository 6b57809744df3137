"""`patron pos` as a cashier runs it: a subprocess talking to a live server, through a
proxy that takes the server away and brings it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from patron.db import Database
from tests.conftest import TEST_DATABASE_URL, auth, make_tenant, operator_key
from tests.live_server import live_server
from tests.pos.conftest import JPY_PROGRAM, give_points
from tests.proxy import FaultProxy


def pos(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = subprocess.run([sys.executable, "-m", "patron.cli.main", "pos", *args],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == code, (result.stdout, result.stderr)
    return json.loads(result.stdout) if result.stdout.strip() else result.stderr


def test_the_pos_command_sells_offline_and_syncs(database: Database, tmp_path: Path) -> None:
    op_key = operator_key(database)
    with live_server(TEST_DATABASE_URL, workers=1) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            tenant = make_tenant(http, op_key, number=12345,  # type: ignore[arg-type]
                                 country="JP", currency="JPY", timezone="Asia/Tokyo")
            assert http.put(f"/v1/merchants/{tenant.merchant_id}/program",
                            headers=auth(tenant.merchant_key),
                            json=JPY_PROGRAM).status_code == 200
            member = http.post("/v1/members", headers=auth(tenant.merchant_key),
                               json={"email": "cli@example.com"}).json()
        give_points(database, tenant.merchant_id, member["id"], 1000)
        proxy = FaultProxy("127.0.0.1", int(base.rsplit(":", 1)[1]))
        proxy.up()
        env = {**os.environ, "PATRON_POS_URL": proxy.url, "PATRON_POS_KEY": tenant.pos_key,
               "PATRON_POS_QUEUE": str(tmp_path / "till.sqlite3")}
        try:
            assert pos(env, "status")["server_reachable"] is True
            assert pos(env, "package")["currency"] == "JPY"
            assert pos(env, "prepare", "--barcode", member["member_number"])[
                "burn_limit"] == 1000
            online = pos(env, "checkout", "--line", "BR-1:Bread:1:1234:bakery",
                         "--barcode", member["member_number"])
            assert (online["mode"], online["transaction"]["points_earned"]) == ("online", 12)

            proxy.down()
            offline = pos(env, "checkout", "--line", "BR-1:Bread:1:1234:bakery",
                          "--barcode", member["member_number"], "--burn", "200")
            assert offline["mode"] == "offline"
            assert offline["provisional"]["points_burned"] == 200
            refused = pos(env, "checkout", "--line", "BR-1:Bread:1:1234", "--burn", "900",
                          "--barcode", member["member_number"], code=1)
            assert "burn_over_allowance" in refused
            assert [e["receipt_no"] for e in pos(env, "queue")["pending"]] == [
                offline["receipt_no"]]
            assert pos(env, "sync", code=1)["remaining"] == 1

            proxy.up()
            report = pos(env, "sync")
            assert (report["committed"], report["complete"]) == (1, True)
            assert pos(env, "queue", "--results")["results"][0]["status"] == "committed"
            assert pos(env, "status")["queued"] == 0
        finally:
            proxy.stop()
