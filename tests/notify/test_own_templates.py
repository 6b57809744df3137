"""A merchant's own message templates: checked when saved (syntax, variables, the SMS's
parts at the longest values, the sandbox), used instead of the built-in ones, removed with
`body: null`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from bench.sinks import Mailbox
from fastapi.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.notify.messages import MESSAGE_EVENTS
from patron.notify.outbox import EventType, emit
from patron.notify.worker import Deliverer
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.notify.helpers import enrol
from tests.notify.test_email import text_of


def _put(client: TestClient, world: World, **body: Any) -> Any:
    return client.put(f"/v1/merchants/{world.a.merchant_id}/message-templates",
                      headers=auth(world.a.merchant_key), json=body)


def test_the_merchants_template_is_used_and_null_brings_the_builtin_back(
        client: TestClient, world: World, database: Database, mailbox: Mailbox) -> None:
    saved = _put(client, world, event_type="tier.changed", channel="email", language="en",
                 subject="{{ merchant }}: welcome to {{ tier }}",
                 body="Dear member {{ member_number }},\nyou are {{ tier }} now.")
    assert saved.status_code == 200, saved.text
    assert saved.json()["builtin"] is False
    member = enrol(client, world.a.merchant_key, email="gold@example.com", language="en",
                   consents={"email": True})
    with database.session_scope() as session:
        emit(session, type=EventType.tier_changed, merchant_id=uuid.UUID(world.a.merchant_id),
             member_id=uuid.UUID(member["id"]), payload={"from": None, "to": "Gold"})
    worker = Deliverer(database, get_settings().model_copy(update={"smtp_url": mailbox.url}))
    try:
        worker.run_once()
    finally:
        worker.close()
    [mail] = [m for m in mailbox.to("gold@example.com") if "Gold" in m["Subject"]]
    assert mail["Subject"].endswith(": welcome to Gold")
    assert f"Dear member {member['member_number']}," in text_of(mail)

    removed = _put(client, world, event_type="tier.changed", channel="email", language="en",
                   body=None)
    assert removed.status_code == 200 and removed.json()["builtin"] is True
    listed = client.get(f"/v1/merchants/{world.a.merchant_id}/message-templates",
                        headers=auth(world.a.merchant_key)).json()["items"]
    assert len(listed) == len(MESSAGE_EVENTS) * 3 * 4  # e-mail, SMS, push; 4 languages
    assert all(item["builtin"] for item in listed)
    assert all(item["sms_parts"] >= 1 for item in listed if item["channel"] == "sms")


@pytest.mark.parametrize(("body", "says"), [
    ("{{ merchant }}: " + "Big sale! " * 40 + "{{ link }}", "parts"),
    ("Your tier is {{ tierr }}", "undefined"),
    ("{% if tier %}Gold", "does not render"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "does not render"),
    ("{{ points + 1 }}", "does not render"),
], ids=["too_long", "unknown_variable", "syntax", "sandbox", "type_error"])
def test_a_template_that_cannot_be_used_is_refused_and_nothing_stored(
        client: TestClient, world: World, database: Database, body: str, says: str) -> None:
    before = snapshot(database)
    response = _put(client, world, event_type="tier.changed", channel="sms", language="ja",
                    body=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_template"
    assert says in response.json()["detail"]
    assert changed_tables(before, snapshot(database)) == []


def test_a_japanese_sms_counts_ucs2_parts(client: TestClient, world: World) -> None:
    fits = _put(client, world, event_type="tier.changed", channel="sms", language="ja",
                body="{{ merchant }}: ランクが{{ tier }}になりました。"
                + "ご来店お待ちしております。" * 6)
    assert fits.status_code == 200, fits.text
    assert fits.json()["sms_parts"] == 2
    longer = _put(client, world, event_type="tier.changed", channel="sms", language="ja",
                  body="{{ merchant }}: " + "ご来店お待ちしております。" * 20)
    assert longer.status_code == 422


def test_an_sms_has_no_subject_and_only_member_messages_have_templates(
        client: TestClient, world: World) -> None:
    subject = _put(client, world, event_type="tier.changed", channel="sms", language="en",
                   subject="Hi", body="{{ tier }}")
    assert subject.status_code == 422 and subject.json()["field"] == "subject"
    unknown = _put(client, world, event_type="transaction.committed", channel="email",
                   language="en", body="Thanks")
    assert unknown.status_code == 422 and unknown.json()["field"] == "event_type"


def test_a_push_template_is_saved_with_a_title_and_refused_when_a_phone_would_cut_it(
        client: TestClient, world: World, database: Database) -> None:
    saved = _put(client, world, event_type="tier.changed", channel="push", language="en",
                 subject="{{ merchant }}", body="You are {{ tier }} now.")
    assert saved.status_code == 200, saved.text
    assert (saved.json()["subject"], saved.json()["builtin"]) == ("{{ merchant }}", False)
    before = snapshot(database)
    # With the longest merchant name the title passes 100 characters; the text passes 300.
    for field, body in (("subject", {"subject": "{{ merchant }} " * 4, "body": "Hi"}),
                        ("body", {"body": "{{ message }} " * 12})):
        refused = _put(client, world, event_type="points.expiring", channel="push",
                       language="ja", **body)
        assert refused.status_code == 422, refused.text
        assert (refused.json()["code"], refused.json()["field"]) == ("invalid_template", field)
    assert changed_tables(before, snapshot(database)) == []
    listed = client.get(f"/v1/merchants/{world.a.merchant_id}/message-templates",
                        headers=auth(world.a.merchant_key)).json()["items"]
    [builtin] = [item for item in listed if (item["event_type"], item["channel"],
                                             item["language"]) == ("points.expiring", "push",
                                                                   "ja")]
    # A built-in push notification is the e-mail's subject and the SMS's text.
    assert builtin["builtin"] and builtin["subject"] and builtin["body"]
