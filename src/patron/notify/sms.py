"""SMS: member messages through a provider adapter, and STOP replies.

Providers (``PATRON_SMS_PROVIDER``):
- ``http``: a generic HTTP provider, enough for the common ones: ``PATRON_SMS_URL``,
  ``PATRON_SMS_AUTH`` (``basic:user:password``, ``bearer:token`` or
  ``header:Name:value``), a body template (``PATRON_SMS_BODY``, Jinja2 over ``to``,
  ``sender``, ``text`` and ``id``) sent as JSON or a form (``PATRON_SMS_BODY_TYPE``);
  2xx is sent, 429 and 5xx are tried again (``Retry-After`` honoured), another 4xx is
  final.
- ``console``: each message is logged (development).
- ``file``: each message is appended to ``PATRON_SMS_FILE`` as a JSON line (development,
  tests of an installation).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from pathlib import Path
from typing import Protocol

import httpx
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from patron.config import Settings
from patron.kit.clock import utcnow
from patron.notify import rules, templates
from patron.notify.messages import MemberChannel, Outgoing
from patron.notify.rules import AttemptOutcome, DeliveryChannel
from patron.notify.worker import Attempt, Send

log = logging.getLogger("patron.sms")

class SmsSettingsError(ValueError):
    pass


class SmsProvider(Protocol):
    def send(self, *, to: str, text: str, message_id: str) -> Attempt: ...


class ConsoleProvider:
    def send(self, *, to: str, text: str, message_id: str) -> Attempt:
        log.info("SMS %s to %s: %s", message_id, to, text)
        return Attempt(AttemptOutcome.delivered, 0)


class FileProvider:
    def __init__(self, path: str, sender: str) -> None:
        self.path = Path(path)
        self.sender = sender
        self._lock = threading.Lock()

    def send(self, *, to: str, text: str, message_id: str) -> Attempt:
        line = json.dumps({"id": message_id, "to": to, "from": self.sender, "text": text,
                           "at": utcnow().isoformat()}, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
        return Attempt(AttemptOutcome.delivered, 0)


_BODIES = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
# The body a provider gets unless PATRON_SMS_BODY says otherwise: the template encodes its
# values itself (tojson, urlencode).
DEFAULT_BODIES = {
    "json": ('{"to": {{ to | tojson }}, "from": {{ sender | tojson }}, '
             '"text": {{ text | tojson }}, "reference": {{ id | tojson }}}'),
    "form": "To={{ to | urlencode }}&From={{ sender | urlencode }}&Body={{ text | urlencode }}",
}


def _auth_headers(auth: str | None) -> dict[str, str]:
    if not auth:
        return {}
    kind, _, rest = auth.partition(":")
    if kind == "bearer" and rest:
        return {"authorization": f"Bearer {rest}"}
    if kind == "basic" and ":" in rest:
        user, _, password = rest.partition(":")
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"authorization": f"Basic {pair}"}
    if kind == "header" and ":" in rest:
        name, _, value = rest.partition(":")
        return {name: value}
    raise SmsSettingsError("PATRON_SMS_AUTH must be basic:user:password, bearer:token or "
                           "header:Name:value")


class HttpProvider:
    def __init__(self, client: httpx.Client, *, url: str, sender: str, auth: str | None,
                 body: str | None, body_type: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise SmsSettingsError("PATRON_SMS_URL must be an http(s) address")
        if body_type not in ("json", "form"):
            raise SmsSettingsError("PATRON_SMS_BODY_TYPE must be json or form")
        self.client = client
        self.url = url
        self.sender = sender
        self.headers = {**_auth_headers(auth), "content-type": (
            "application/json" if body_type == "json"
            else "application/x-www-form-urlencoded")}
        self.template = _BODIES.from_string(body or DEFAULT_BODIES[body_type])

    def body(self, *, to: str, text: str, message_id: str) -> bytes:
        return self.template.render(to=to, sender=self.sender, text=text,
                                    id=message_id).encode()

    def send(self, *, to: str, text: str, message_id: str) -> Attempt:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            response = self.client.post(self.url, content=self.body(
                to=to, text=text, message_id=message_id), headers=self.headers)
        except httpx.HTTPError as exc:
            return Attempt(AttemptOutcome.retry, took(), error=f"{type(exc).__name__}: {exc}")
        status = response.status_code
        if 200 <= status < 300:
            return Attempt(AttemptOutcome.delivered, took(), status_code=status)
        final = 400 <= status < 500 and status != 429
        return Attempt(AttemptOutcome.failed if final else AttemptOutcome.retry, took(),
                       status_code=status, error=f"the provider answered {status}: "
                                                 f"{response.text[:200]}",
                       retry_after=rules.parse_retry_after(
                           response.headers.get("retry-after"), utcnow()))


def provider_for(settings: Settings, client: httpx.Client) -> SmsProvider | None:
    kind = settings.sms_provider
    if not kind:
        return None
    if kind == "console":
        return ConsoleProvider()
    if kind == "file":
        if not settings.sms_file:
            raise SmsSettingsError("PATRON_SMS_PROVIDER=file needs PATRON_SMS_FILE")
        return FileProvider(settings.sms_file, settings.sms_from)
    if kind == "http":
        if not settings.sms_url:
            raise SmsSettingsError("PATRON_SMS_PROVIDER=http needs PATRON_SMS_URL")
        return HttpProvider(client, url=settings.sms_url, sender=settings.sms_from,
                            auth=settings.sms_auth, body=settings.sms_body,
                            body_type=settings.sms_body_type)
    raise SmsSettingsError(f"unknown PATRON_SMS_PROVIDER {kind!r}: http, console or file")


class SmsChannel(MemberChannel):
    name = DeliveryChannel.sms.value

    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider

    def build(self, outgoing: Outgoing) -> Send:
        text = self.render(outgoing, lambda override: templates.sms(
            outgoing.due.event_type, outgoing.language, outgoing.values, override))
        to, message_id = outgoing.address, str(outgoing.due.id)

        def send() -> Attempt:
            return self.provider.send(to=to, text=text, message_id=message_id)
        return send
