"""The member channels this deployment is configured for (docs/configuration.md)."""

from __future__ import annotations

import httpx

from patron.config import Settings
from patron.notify.worker import Channel


def member_channels(settings: Settings, client: httpx.Client) -> list[Channel]:
    from patron.notify.email import EmailChannel, SmtpServer
    from patron.notify.push import PushChannel
    from patron.notify.sms import SmsChannel, provider_for

    channels: list[Channel] = []
    if settings.smtp_url:
        channels.append(EmailChannel(SmtpServer(settings.smtp_url),
                                     mail_from=settings.mail_from,
                                     tracking=settings.email_tracking))
    provider = provider_for(settings, client)
    if provider is not None:
        channels.append(SmsChannel(provider))
    if settings.vapid_private_key:
        channels.append(PushChannel(client, settings))
    return channels
