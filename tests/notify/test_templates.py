"""The member messages' templates and the pure delivery rules, without a database."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest

from patron.kit.i18n import LANGUAGES
from patron.notify import rules, templates
from patron.notify.messages import MESSAGE_EVENTS
from patron.notify.rules import AttemptOutcome

SAMPLE = templates.SAMPLE


def test_every_event_has_every_template_in_every_language() -> None:
    english = templates.catalogue("en")
    for language in LANGUAGES:
        catalogue = templates.catalogue(language)
        assert set(catalogue) == set(english), language
        for name, entry in english.items():
            assert set(catalogue[name]) == set(entry), (language, name)
    assert set(MESSAGE_EVENTS) <= set(english)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("event", sorted(MESSAGE_EVENTS))
def test_each_message_renders_with_its_values(language: str, event: str) -> None:
    mail = templates.email(event, language, SAMPLE,
                           unsubscribe_url="https://patron.example/unsubscribe/t")
    assert mail.subject and "\n" not in mail.subject
    assert "{{" not in mail.text and "{%" not in mail.text
    assert "https://patron.example/unsubscribe/t" in mail.html
    assert f'lang="{language}"' in mail.html
    text = templates.sms(event, language, SAMPLE)
    assert "Golden Gate Books" in text  # an SMS names who sends it
    assert "{{" not in text


def test_html_escapes_what_the_values_say() -> None:
    mail = templates.email("campaign.outcome", "en",
                           {**SAMPLE, "message": "<script>alert(1)</script>"},
                           unsubscribe_url=None)
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<script>" in mail.text  # plain text is not HTML


def test_an_unknown_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(Exception, match="undefined"):
        templates.render_text("{{ nothing }}", {})


@pytest.mark.parametrize(("member", "country", "language"), [
    ("ja", "US", "ja"), ("ja-JP", "US", "ja"), ("en-GB", "JP", "en"), ("ko_KR", "US", "ko"),
    ("zh-CN", "US", "zh-Hans"), ("zh-Hans-SG", "US", "zh-Hans"), ("zh", "US", "zh-Hans"),
    ("zh-TW", "JP", "ja"), ("fr", "KR", "ko"), (None, "CN", "zh-Hans"), (None, "US", "en"),
    ("", "FR", "en")])
def test_the_language_is_the_members_else_the_merchants_country_else_english(
        member: str | None, country: str, language: str) -> None:
    assert templates.language_for(member, country) == language


NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_webhook_schedule_is_standard_webhooks_with_jitter() -> None:
    rng = random.Random(3)
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for attempts, seconds in enumerate(expected, start=1):
        due = rules.next_attempt(channel="webhook", round_attempts=attempts, now=NOW, rng=rng)
        assert due is not None
        assert seconds * 0.9 <= (due - NOW).total_seconds() <= seconds * 1.1
    assert rules.next_attempt(channel="webhook", round_attempts=8, now=NOW) is None
    assert rules.next_attempt(channel="email", round_attempts=5, now=NOW) is None


def test_retry_after_postpones_never_advances_and_is_capped() -> None:
    later = rules.next_attempt(channel="webhook", round_attempts=1, now=NOW,
                               retry_after=timedelta(minutes=2))
    assert later is not None and later - NOW == timedelta(minutes=2)
    sooner = rules.next_attempt(channel="webhook", round_attempts=3, now=NOW,
                                retry_after=timedelta(seconds=1))
    assert sooner is not None and sooner - NOW >= timedelta(minutes=27)
    capped = rules.next_attempt(channel="webhook", round_attempts=1, now=NOW,
                                retry_after=timedelta(days=3))
    assert capped is not None and capped - NOW == rules.MAX_RETRY_AFTER


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120), ("0", 0), ("Mon, 07 Dec 2026 12:05:00 GMT", 300),
    ("Mon, 07 Dec 2026 11:00:00 GMT", 0), ("soon", None), ("", None), (None, None),
    ("Mon, 07 Dec 2026 12:05:00", None)])
def test_retry_after_is_seconds_or_an_http_date(value: str | None,
                                                seconds: int | None) -> None:
    parsed = rules.parse_retry_after(value, NOW)
    assert (parsed.total_seconds() if parsed is not None else None) == seconds


@pytest.mark.parametrize(("status", "outcome"), [
    (200, AttemptOutcome.delivered), (204, AttemptOutcome.delivered),
    (301, AttemptOutcome.retry), (400, AttemptOutcome.retry), (410, AttemptOutcome.gone),
    (429, AttemptOutcome.retry), (500, AttemptOutcome.retry)])
def test_only_2xx_succeeds_and_410_is_gone(status: int, outcome: AttemptOutcome) -> None:
    assert rules.webhook_outcome(status) == outcome


@pytest.mark.parametrize(("address", "private"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("::1", True),
    ("fe80::1", True), ("fc00::1", True), ("::ffff:127.0.0.1", True), ("224.0.0.1", True),
    ("93.184.216.34", False), ("2606:2800:220:1:248:1893:25c8:1946", False),
    ("::ffff:93.184.216.34", False)])
def test_which_addresses_a_webhook_may_not_reach(address: str, private: bool) -> None:
    assert rules.private_address(ipaddress.ip_address(address)) is private
