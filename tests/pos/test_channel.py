"""The purchase channel comes from the terminal: a store's POS sells in the store, the web
shop's `online` terminal online; a body that says otherwise is refused (docs/pos.md)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.pos.channel import sale_channel, terminal_channel
from patron.pos.errors import ChannelMismatch
from patron.pos.models import Channel, PosTransaction
from patron.vouchers.models import VoucherRedemption
from tests.conftest import World, auth
from tests.offline.conftest import entry, replay, sale
from tests.pos.conftest import JPY_PROGRAM, put_program
from tests.pos.conftest import purchase as purchase_body
from tests.vouchers.conftest import make_codes, make_offer


def web_shop(client: TestClient, world: World) -> str:
    """Merchant A's web shop terminal (kind `online`); its key."""
    response = client.post(f"/v1/stores/{world.a.store_id}/terminals",
                           headers=auth(world.operator_key),
                           json={"code": "web-1", "kind": "online"})
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


def transactions(database: Database) -> list[tuple[str, str]]:
    with database.session_scope() as session:
        return [(row.receipt_no, row.channel) for row in session.execute(
            select(PosTransaction.receipt_no, PosTransaction.channel)
            .order_by(PosTransaction.receipt_no))]


def purchase(receipt_no: str, channel: str | None) -> dict[str, Any]:
    body = purchase_body(receipt_no=receipt_no)
    del body["channel"]
    if channel is not None:
        body["channel"] = channel
    return body


@pytest.mark.parametrize(("kind", "channel"), [
    ("pos", Channel.store), ("kiosk", Channel.store), ("reader", Channel.store),
    ("online", Channel.online)])
def test_the_terminal_kind_decides_the_channel(kind: str, channel: Channel) -> None:
    assert terminal_channel(kind) == channel
    assert sale_channel(kind, None) == channel
    assert sale_channel(kind, channel) == channel
    other = Channel.store if channel == Channel.online else Channel.online
    with pytest.raises(ChannelMismatch) as refused:
        sale_channel(kind, other)
    assert refused.value.extra == {"field": "channel", "expected": channel.value}


def test_a_store_pos_cannot_record_an_online_sale(client: TestClient, world: World,
                                                  database: Database) -> None:
    put_program(client, world.a, JPY_PROGRAM)
    for path in ("/v1/pos/quote", "/v1/pos/transactions"):
        refused = client.post(path, headers=auth(world.a.pos_key),
                              json=purchase("R-1", "online"))
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert (problem["code"], problem["field"], problem["expected"]) == (
            "channel_not_terminals", "channel", "store")
        assert problem["detail"] == ("a pos terminal's sales are 'store', not 'online': "
                                     "leave channel out or send 'store'")
    assert transactions(database) == []

    stated = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                         json=purchase("R-2", "store"))
    body = purchase("R-3", None)
    unstated = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json=body)
    assert (stated.status_code, unstated.status_code) == (201, 201)
    assert stated.json()["channel"] == unstated.json()["channel"] == "store"
    assert transactions(database) == [("R-2", "store"), ("R-3", "store")]
    # A body without the channel replays as the same body with the terminal's channel.
    again = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                        json={**body, "channel": "store"})
    assert (again.status_code, again.text) == (201, unstated.text)


def test_the_web_shop_cannot_record_a_store_sale(client: TestClient, world: World,
                                                 database: Database) -> None:
    put_program(client, world.a, JPY_PROGRAM)
    web = web_shop(client, world)
    for path in ("/v1/pos/quote", "/v1/pos/transactions"):
        refused = client.post(path, headers=auth(web), json=purchase("W-1", "store"))
        assert refused.status_code == 422, refused.text
        assert (refused.json()["code"], refused.json()["expected"]) == (
            "channel_not_terminals", "online")
    assert transactions(database) == []

    committed = client.post("/v1/pos/transactions", headers=auth(web),
                            json=purchase("W-2", None))
    assert committed.status_code == 201, committed.text
    assert committed.json()["channel"] == "online"
    assert transactions(database) == [("W-2", "online")]


def test_an_offline_entry_with_a_contradicting_channel_is_refused(
        client: TestClient, world: World, database: Database) -> None:
    put_program(client, world.a, JPY_PROGRAM)
    web = web_shop(client, world)
    store_sale = sale("O-1")
    del store_sale["channel"]
    online_sale = sale("O-2", channel="online")
    web_sale = sale("O-3")
    del web_sale["channel"]
    at_pos = replay(client, world.a.pos_key, [entry(1, store_sale), entry(2, online_sale)])
    at_web = replay(client, web, [entry(1, web_sale)])
    assert (at_pos.status_code, at_web.status_code) == (200, 200), at_pos.text
    results = at_pos.json()["results"]
    assert [result["status"] for result in results] == ["committed", "refused"]
    assert results[1]["problem"]["code"] == "channel_not_terminals"
    assert at_web.json()["results"][0]["transaction"]["channel"] == "online"
    assert transactions(database) == [("O-1", "store"), ("O-3", "online")]


def test_a_store_pos_cannot_use_an_online_only_voucher_by_saying_online(
        client: TestClient, world: World, database: Database) -> None:
    offer = make_offer(client, world.a.merchant_key, channels=["online"])
    [code] = make_codes(client, world.a.merchant_key, offer["id"])
    validated = client.post("/v1/vouchers/validate", headers=auth(world.a.pos_key),
                            json={"code": code, "channel": "online"})
    redeemed = client.post(f"/v1/vouchers/{code}/redeem", headers=auth(world.a.pos_key),
                           json={"channel": "online"})
    for refused in (validated, redeemed):
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "channel_not_terminals"
    plain = client.post(f"/v1/vouchers/{code}/redeem", headers=auth(world.a.pos_key), json={})
    assert plain.status_code == 409 and plain.json()["code"] == "voucher_wrong_channel"
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(VoucherRedemption)) == 0
    web = web_shop(client, world)
    assert client.post(f"/v1/vouchers/{code}/redeem", headers=auth(web),
                       json={}).status_code == 200
