"""The issue's acceptance, against a running server (``patron serve``'s app, its delivery
worker inside): a checkout whose campaign issues a voucher puts the code in the member's
mailbox (a real SMTP server) and SMS inbox (a fake provider) within 5 seconds, in the
member's language; a member without marketing consent at that merchant gets nothing,
and the delivery record says why."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from bench.sinks import smtp_server, webhook_receiver
from fastapi.testclient import TestClient

from patron.db import Database
from tests.conftest import World, auth
from tests.live_server import live_server
from tests.notify.helpers import enrol, member_deliveries
from tests.notify.test_email import COFFEE, text_of, voucher_campaign
from tests.pos.conftest import purchase

pytestmark = pytest.mark.slow

WITHIN = 5.0


def _within(seconds: float, found: Callable[[], bool]) -> float | None:
    """How long it took ``found`` to hold, or None if it did not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if found():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def test_a_checkouts_voucher_reaches_email_and_sms_within_5_seconds(
        client: TestClient, database: Database, world: World) -> None:
    voucher_campaign(client, world)
    members = {
        "ja": enrol(client, world.a.merchant_key, email="ja@example.jp",
                    phone="+81 90-3333-0001", language="ja",
                    consents={"email": True, "sms": True}),
        "en": enrol(client, world.a.merchant_key, email="en@example.com",
                    phone="+81 90-3333-0002", language="en",
                    consents={"email": True, "sms": True}),
        "none": enrol(client, world.a.merchant_key, email="none@example.jp",
                      phone="+81 90-3333-0003", language="ja"),
    }
    with smtp_server() as mailbox, webhook_receiver() as provider, live_server(
            database.url, workers=2, env={
                "PATRON_DELIVERIES_IN_SERVE": "true", "PATRON_SMTP_URL": mailbox.url,
                "PATRON_MAIL_FROM": "offers@patron.example", "PATRON_SMS_PROVIDER": "http",
                "PATRON_SMS_URL": provider.url,
                "PATRON_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}) as base:
        took: dict[str, float | None] = {}
        codes: dict[str, str] = {}
        for language, member in members.items():
            answer = httpx.post(f"{base}/v1/pos/transactions",
                                headers=auth(world.a.pos_key), timeout=30,
                                json=purchase(receipt_no=f"R-{language}", lines=[COFFEE],
                                              member={"member_id": member["id"]}))
            assert answer.status_code == 201, answer.text
            [offer] = [item for item in answer.json()["offers"] if item.get("voucher")]
            code = codes[language] = offer["voucher"]["code"]
            address = member.get("email_masked")
            assert address is not None

            def arrived(code: str = code, language: str = language) -> bool:
                email = [m for m in mailbox.messages if code in text_of(m)]
                sms = [r for r in provider.received if code in r.json["text"]]
                return bool(email and sms) if language != "none" else False

            took[language] = _within(WITHIN, arrived)
        # The member without consent: give the worker the same 5 s, then look.
        time.sleep(WITHIN if took["none"] is None else 0)

    assert took["ja"] is not None and took["en"] is not None, took
    print(f"checkout to inbox (e-mail and SMS): ja {took['ja']:.2f} s, "
          f"en {took['en']:.2f} s")
    ja_mail = next(m for m in mailbox.messages if codes["ja"] in text_of(m))
    en_mail = next(m for m in mailbox.messages if codes["en"] in text_of(m))
    assert ja_mail["To"] == "ja@example.jp" and "クーポン" in ja_mail["Subject"]
    assert en_mail["To"] == "en@example.com" and "voucher" in en_mail["Subject"]
    ja_sms = next(r.json for r in provider.received if codes["ja"] in r.json["text"])
    en_sms = next(r.json for r in provider.received if codes["en"] in r.json["text"])
    assert ja_sms["to"] == "+819033330001" and "クーポン" in ja_sms["text"]
    assert en_sms["to"] == "+819033330002" and "Voucher" in en_sms["text"]
    # Nothing at all reached the member without consent; the records say why.
    assert not [m for m in mailbox.messages if m["To"] == "none@example.jp"]
    assert not [r for r in provider.received if r.json["to"] == "+819033330003"]
    refused = [(d["channel"], d["event_type"], d["status"], d["reason"])
               for channel in ("email", "sms")
               for d in member_deliveries(client, world.a.merchant_key,
                                          members["none"]["id"], channel)]
    assert sorted(refused) == sorted(
        (channel, event, "suppressed", "no_marketing_consent")
        for channel in ("email", "sms") for event in ("member.enrolled", "campaign.outcome"))
