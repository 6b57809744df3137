"""Settings, read from the environment with the ``PATRON_`` prefix."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from patron.db import DEFAULT_POOL, PoolLimits
from patron.kit.net import Network, parse_networks

# Only for a local demo; `patron serve` warns when it is still in use.
DEV_SECRET_KEY = "patron-development-secret-key-change-me"  # noqa: S105


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATRON_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./var/patron.db"
    secret_key: str = DEV_SECRET_KEY
    # 32 bytes, base64; derived from secret_key when not given so a dev setup needs one secret.
    pii_encryption_key: str | None = None
    telephony_webhook_secret: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    # A member's referral link: the merchant's sign-up page with the code
    # (docs/referrals.md); {base} is public_base_url, {code} the member's code.
    referral_link: str = "{base}/join?ref={code}"
    # Each process's pool of database connections (PostgreSQL): this many kept open, up to
    # db_max_overflow more under a burst, and a request waits at most db_pool_timeout_seconds
    # for one before it is answered 503 (docs/configuration.md, "Connection budget").
    db_pool_size: int = Field(default=DEFAULT_POOL.size, ge=1, le=1000)
    db_max_overflow: int = Field(default=DEFAULT_POOL.overflow, ge=0, le=1000)
    db_pool_timeout_seconds: float = Field(default=DEFAULT_POOL.timeout_seconds, gt=0, le=300)
    host: str = "127.0.0.1"
    port: int = 8000
    # `patron serve` logs a line per request (uvicorn's access log). Off by default: the
    # proxy in front logs requests, and the line costs a worker about 8 % of its CPU
    # (docs/architecture.md, "The server process"). `make run` turns it on.
    access_log: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # The history import's files (POST /v1/imports/...): streamed to a temporary file,
    # never held in memory.
    max_import_bytes: int = Field(default=2 * 1024 ** 3, ge=1024)
    qr_step_seconds: int = Field(default=30, ge=5)
    pin_max_failures: int = 5
    pin_lock_minutes: int = 15
    caller_id_wait_seconds: int = 120
    default_region: str = "US"
    # A reader grants a member points at most once per this many minutes.
    tap_interval_minutes: int = Field(default=60, ge=1, le=525_600)
    # `patron serve` runs the scheduled jobs (points expiry, notices) this often; 0 = never.
    jobs_interval_seconds: float = Field(default=300, ge=0, le=86_400)
    # Bulk code batches start in a background thread of the process that accepted them
    # (false: only `patron vouchers generate` and the scheduler's resume job run them).
    code_batches_in_background: bool = True
    # The web app (docs/web.md): a staff user's browser session lasts this many hours; a
    # member's wallet stays signed in on its device this many days after its last use.
    staff_session_hours: int = Field(default=12, ge=1, le=720)
    wallet_device_days: int = Field(default=365, ge=1, le=3650)
    # Session cookies carry the Secure flag (browsers keep them on https, and on http for
    # localhost only). Off only for a test deployment served over plain http elsewhere.
    cookie_secure: bool = True
    # A pulled weather feed for the stores (docs/campaigns.md): a file or an http(s)
    # address; the weather-feed job reads it every tick. None: weather is only pushed.
    weather_feed: str | None = None
    # A points.expiring notice goes out this many days before points expire.
    expiry_notice_days: int = Field(default=30, ge=1, le=366)
    # Abuse controls: a terminal, a client address or a member with this many failed
    # voucher attempts within the window is refused (429) until they age out; 0 = off.
    voucher_failure_limit: int = Field(default=5, ge=0, le=1000)
    voucher_failure_window_seconds: float = Field(default=5, gt=0, le=86_400)
    # The same for failed identifications (no member for the number, phone, card or QR
    # given): a terminal, or a client address at one merchant, with this many within the
    # window is refused (429) until they age out; 0 = off (docs/identification.md).
    identify_failure_limit: int = Field(default=10, ge=0, le=1000)
    identify_failure_window_seconds: float = Field(default=60, gt=0, le=86_400)
    # The reverse proxies whose X-Forwarded-For is believed: addresses or networks,
    # comma-separated ("10.0.0.5, 10.1.0.0/16"). Empty: none, the client address is the
    # connection's peer (docs/configuration.md, "Client address").
    trusted_proxies: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        parse_networks(value)  # a typo is an error at start-up, not a silently open door
        return value

    @property
    def proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    # Deliveries (docs/notify.md): `patron serve` runs the delivery worker (false: only
    # `patron worker` does); an idle worker looks for new events this often; a batch
    # holds at most delivery_batch deliveries, sent delivery_concurrency at a time.
    deliveries_in_serve: bool = True
    delivery_interval_seconds: float = Field(default=0.1, gt=0, le=3600)
    delivery_batch: int = Field(default=200, ge=1, le=10_000)
    delivery_concurrency: int = Field(default=16, ge=1, le=256)
    # Member e-mail (docs/notify.md): smtp://user:pass@host:587 (STARTTLS) or
    # smtps://user:pass@host:465; none: no e-mail is sent. The sender's address; the
    # display name is the merchant's.
    smtp_url: str | None = None
    mail_from: str = "patron@localhost"
    # Targeted e-mails count their opens (an image) and clicks (links through Patron).
    email_tracking: bool = True
    # Member SMS (docs/notify.md, "SMS"): http, console or file; none: no SMS is sent.
    sms_provider: str | None = None
    sms_from: str = "Patron"
    sms_url: str | None = None
    sms_auth: str | None = None
    # Jinja2 over to, sender, text and id; by default a JSON object (or, for a form, the
    # fields To, From, Body) — docs/notify.md.
    sms_body: str | None = None
    sms_body_type: str = "json"
    sms_file: str | None = None
    # A merchant's SMS template must fit in this many parts (checked when it is saved).
    sms_max_parts: int = Field(default=3, ge=1, le=10)
    # The inbound SMS webhook's secret (STOP replies); derived from the secret when unset.
    sms_inbound_secret: str | None = None
    # The event stream (docs/notify.md): nats://host:4222 relays every outbox event to
    # NATS JetStream, on {subject}.{merchant number}.{event type}, into the stream named
    # (made if missing). None: no stream.
    event_stream_url: str | None = None
    event_stream_subject: str = "patron.events"
    event_stream_name: str = "PATRON_EVENTS"
    # Web push to members' browsers (docs/notify.md, "Web push"): the VAPID private key
    # (base64url of 32 bytes, or a PEM; `patron push-keys` makes one) and the contact the
    # push services see (default mailto: the sender's address). None: no push is sent.
    vapid_private_key: str | None = None
    vapid_subject: str | None = None
    # How long a push service keeps a message for a browser that is offline.
    push_ttl_seconds: int = Field(default=24 * 3600, ge=0, le=28 * 24 * 3600)
    # Webhooks and push may not reach loopback, private, link-local or reserved addresses
    # (the database, a cloud's metadata service) unless this is true (tests, a private
    # network).
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = Field(default=15, gt=0, le=120)
    # A rotated webhook secret still signs (beside the new one) this long.
    webhook_rotation_hours: int = Field(default=24, ge=0, le=24 * 30)

    # Idempotency-Keys (and the answers they replay) are kept this long, per API key.
    idempotency_key_hours: int = Field(default=24, ge=24, le=24 * 30)

    def database_pool(self) -> PoolLimits:
        return PoolLimits(size=self.db_pool_size, overflow=self.db_max_overflow,
                          timeout_seconds=self.db_pool_timeout_seconds)

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, derived from the secret key (domain-separated)."""
        return hashlib.sha256(f"patron:{purpose}:{self.secret_key}".encode()).digest()

    @property
    def encryption_key(self) -> bytes:
        if self.pii_encryption_key:
            key = base64.b64decode(self.pii_encryption_key)
            if len(key) != 32:
                raise ValueError("PATRON_PII_ENCRYPTION_KEY must be 32 bytes, base64-encoded")
            return key
        return self.derived_key("pii-encryption")

    @property
    def lookup_key(self) -> bytes:
        return self.derived_key("pii-lookup")

    @property
    def qr_key(self) -> bytes:
        return self.derived_key("qr-token")

    @property
    def sms_inbound_token(self) -> str:
        return self.sms_inbound_secret or self.derived_key("sms-inbound").hex()

    @property
    def telephony_secret(self) -> str:
        return self.telephony_webhook_secret or self.derived_key("telephony").hex()


@lru_cache
def get_settings() -> Settings:
    return Settings()
