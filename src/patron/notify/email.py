"""E-mail over SMTP: the message (multipart text and HTML, the member's language, the
merchant as sender, RFC 8058 one-click unsubscribe on marketing) and its sender.

``PATRON_SMTP_URL``: ``smtp://user:pass@host:587`` sends with STARTTLS (required, except
to a loopback host: a local relay); ``smtps://user:pass@host:465`` with TLS from the
start. Each sending thread keeps one connection open and reuses it.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
import threading
import time
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from urllib.parse import unquote, urlsplit

from patron.kit.clock import utcnow
from patron.members.models import Purpose
from patron.notify import templates, tracking
from patron.notify.messages import MemberChannel, Outgoing, Unsubscribe, unsubscribe_url
from patron.notify.outbox import EventType
from patron.notify.rules import AttemptOutcome, DeliveryChannel
from patron.notify.worker import Attempt, Send


class SmtpSettingsError(ValueError):
    pass


class SmtpServer:
    """Where and how to send: parsed once from ``PATRON_SMTP_URL``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise SmtpSettingsError("PATRON_SMTP_URL must look like smtp://user:pass@host:587 "
                                    "or smtps://user:pass@host:465")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        self.require_starttls = not self.implicit_tls and not loopback
        self._local = threading.local()

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if self.implicit_tls:
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                          context=context)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            connection.ehlo()
            if connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
            elif self.require_starttls:
                connection.close()
                raise smtplib.SMTPNotSupportedError(
                    "the server offers no STARTTLS; use smtps:// or a server that does")
        if self.username:
            connection.login(self.username, self.password or "")
        return connection

    def send(self, message: Message) -> None:
        """Send on this thread's connection, opening (or reopening once) as needed."""
        connection: smtplib.SMTP | None = getattr(self._local, "connection", None)
        for fresh in (False, True):
            if connection is None or fresh:
                self.close_thread_connection()
                connection = self._connect()
                self._local.connection = connection
            try:
                connection.send_message(message)
                return
            except smtplib.SMTPServerDisconnected:
                if fresh:
                    raise
                connection = None

    def close_thread_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()


def attempt_of(error: Exception | None, took_ms: int) -> Attempt:
    """What an SMTP exchange came to: a 5xx refusal of the recipient or the message is
    final; a 4xx, a lost connection or a timeout is tried again."""
    if error is None:
        return Attempt(AttemptOutcome.delivered, took_ms)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        final = all(code >= 500 for code in codes)
        return Attempt(AttemptOutcome.failed if final else AttemptOutcome.retry, took_ms,
                       status_code=codes[0] if codes else None,
                       error=f"the recipient was refused ({codes})")
    if isinstance(error, smtplib.SMTPResponseException):
        said = error.smtp_error
        text = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
        return Attempt(AttemptOutcome.failed if error.smtp_code >= 500
                       else AttemptOutcome.retry, took_ms, status_code=error.smtp_code,
                       error=f"the server answered {error.smtp_code}: {text[:200]}")
    return Attempt(AttemptOutcome.retry, took_ms, error=f"{type(error).__name__}: {error}")


class EmailChannel(MemberChannel):
    name = DeliveryChannel.email.value

    def __init__(self, server: SmtpServer, *, mail_from: str, tracking: bool = True) -> None:
        self.server = server
        self.sender_address = Address(addr_spec=mail_from)
        # Whether targeted e-mails count their opens and clicks (PATRON_EMAIL_TRACKING).
        self.tracking = tracking

    def message(self, outgoing: Outgoing) -> Message:
        due = outgoing.due
        marketing = due.purpose != Purpose.transactional
        unsubscribe = unsubscribe_url(Unsubscribe(
            member_id=due.member_id, merchant_id=due.merchant_id,  # type: ignore[arg-type]
            channel=self.name, delivery_id=due.id)) if marketing else None
        # A targeted message's opens and clicks are counted (docs/notify.md).
        tracked = self.tracking and due.event_type == EventType.targeted_message
        track = tracking.tracker(due.merchant_id, due.event_id) if tracked else None
        open_image = tracking.open_url(due.merchant_id, due.event_id) if tracked else None
        rendered = self.render(outgoing, lambda override: templates.email(
            due.event_type, outgoing.language, outgoing.values, unsubscribe_url=unsubscribe,
            override=override, track=track, open_image=open_image))
        # The classic MIME classes: their headers cost a fraction of EmailMessage's
        # (header parsing was most of the time a message took to make).
        message = MIMEMultipart("alternative")
        settings = outgoing.settings
        sender_name = (settings.sender_name if settings is not None and settings.sender_name
                       else outgoing.merchant.name)
        message["From"] = formataddr((sender_name, self.sender_address.addr_spec),
                                     charset="utf-8")
        if settings is not None and settings.reply_to:
            message["Reply-To"] = settings.reply_to
        message["To"] = outgoing.address
        message["Subject"] = Header(rendered.subject, "utf-8").encode()
        message["Date"] = format_datetime(utcnow())
        # The delivery's id: the same at every attempt, so a mailbox can tell a repeat.
        message["Message-ID"] = f"<{due.id}@{self.sender_address.domain or 'patron'}>"
        if unsubscribe is not None:
            message["List-Unsubscribe"] = f"<{unsubscribe}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["Content-Language"] = outgoing.language
        message.attach(MIMEText(rendered.text, "plain", "utf-8"))
        message.attach(MIMEText(rendered.html, "html", "utf-8"))
        return message

    def build(self, outgoing: Outgoing) -> Send:
        message = self.message(outgoing)

        def send() -> Attempt:
            started = time.monotonic()
            error: Exception | None = None
            try:
                self.server.send(message)
            except (smtplib.SMTPException, OSError) as exc:
                error = exc
            return attempt_of(error, int((time.monotonic() - started) * 1000))
        return send
