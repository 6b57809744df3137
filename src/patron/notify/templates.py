"""Member messages rendered from templates: per event, channel and language.

The built-in templates are ``templates/messages.<language>.toml`` (en, ja, zh-Hans, ko):
per event an e-mail ``subject`` and ``body`` and an ``sms`` text, Jinja2, plus the
e-mail's frame (``_frame``); a push notification says the subject and the SMS's text.
The values a template sees are formatted for its language by the caller (Babel:
numbers, dates). Pure: no session, no network.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from patron.kit.i18n import COUNTRY_LANGUAGES, DEFAULT_LANGUAGE, supported

FOLDER = Path(__file__).resolve().parent / "templates"


# What a template is tried with when a merchant saves one: every variable a message may
# have, at a realistic length (a long merchant name, a full code and link).
SAMPLE: dict[str, Any] = {
    "merchant": "Golden Gate Books & Coffee", "member_number": "12345000000184",
    "campaign": "Coffee lovers", "message": "Thank you for your visit!",
    "code": "7K3Q-DRX2-M9T4-WC", "barcode": "1234500012345678", "offer": "Free croissant",
    "valid_until": "Dec 31, 2026",
    "link": "https://patron.example/wallet/vouchers/7K3Q-DRX2-M9T4-WC", "points": "1,000",
    "role": "referrer", "tier": "Gold", "last_day": "Dec 31, 2026", "minutes": 10,
    "threshold": "1,000 points", "subject": "Autumn sale", "text": "20% off this weekend",
}


def language_for(member_language: str | None, merchant_country: str | None) -> str:
    """The language of a member's messages: theirs when Patron speaks it (``ja-JP`` is
    ``ja``, ``zh-CN`` and ``zh-Hans-*`` are ``zh-Hans``), else the merchant's country's,
    else English."""
    language = supported(member_language)
    if language is not None:
        return language
    return COUNTRY_LANGUAGES.get((merchant_country or "").upper(), DEFAULT_LANGUAGE)


@lru_cache
def catalogue(language: str) -> dict[str, dict[str, str]]:
    with (FOLDER / f"messages.{language}.toml").open("rb") as source:
        return tomllib.load(source)


# Template text is the project's (or, later, a merchant's): sandboxed all the same, and an
# unknown variable is an error, not an empty string.
_TEXT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                             keep_trailing_newline=False,
                             # A value the event does not have prints as nothing.
                             finalize=lambda value: "" if value is None else value)
_PAGES = Environment(loader=FileSystemLoader(FOLDER), undefined=StrictUndefined,
                     autoescape=select_autoescape(["html"]))


@lru_cache(maxsize=1024)
def _compiled(source: str) -> Template:
    return _TEXT.from_string(source)


def render_text(source: str, values: dict[str, Any]) -> str:
    return _compiled(source).render(values).strip()


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Override:
    """A merchant's own template of one event, channel and language."""

    subject: str | None
    body: str


# An address in a message's text: a link in the HTML (and, tracked, in both parts).
URL = re.compile("https?://[^\\s<>\"'\uff09\u300d\u3001\u3002]+")


def _linked(paragraph: str, track: Callable[[str], str] | None) -> Markup:
    """A paragraph for the HTML part: its text escaped, its addresses links."""
    parts: list[Markup | str] = []
    last = 0
    for found in URL.finditer(paragraph):
        address = found.group(0)
        parts.append(escape(paragraph[last:found.start()]))
        parts.append(Markup('<a href="{}" style="color:#1d4ed8">{}</a>').format(
            track(address) if track else address, address))
        last = found.end()
    parts.append(escape(paragraph[last:]))
    return Markup("").join(parts)


def email(event_type: str, language: str, values: dict[str, Any], *,
          unsubscribe_url: str | None, override: Override | None = None,
          track: Callable[[str], str] | None = None, open_image: str | None = None) -> Email:
    """An e-mail of the event in the language (the merchant's template if it has one):
    subject, plain text and HTML, with the footer and, for marketing, the unsubscribe
    link. ``track`` turns each address of the body into a tracked one (in both parts);
    ``open_image`` is the address of the image that records an open."""
    templates = catalogue(language)[event_type]
    frame = catalogue(language)["_frame"]
    subject_source = (override.subject if override is not None and override.subject
                      else templates["subject"])
    subject = " ".join(render_text(subject_source, values).split())
    body = render_text(override.body if override is not None else templates["body"], values)
    footer = render_text(frame["footer"], values)
    unsubscribe = render_text(frame["unsubscribe"], values) if unsubscribe_url else None
    paragraphs = [line for line in body.splitlines() if line.strip()]
    shown = ([URL.sub(lambda found: track(found.group(0)), line) for line in paragraphs]
             if track else paragraphs)
    text = "\n".join(shown) + f"\n\n--\n{footer}\n"
    if unsubscribe_url:
        text += f"{unsubscribe}: {unsubscribe_url}\n"
    html = _PAGES.get_template("email.html").render(
        language=language, subject=subject,
        paragraphs=[_linked(line, track) for line in paragraphs], footer=footer,
        code=values.get("code"), unsubscribe=unsubscribe, unsubscribe_url=unsubscribe_url,
        open_image=open_image)
    return Email(subject=subject, text=text, html=html)


def sms(event_type: str, language: str, values: dict[str, Any],
        override: Override | None = None) -> str:
    source = override.body if override is not None else catalogue(language)[event_type]["sms"]
    return " ".join(render_text(source, values).split())


@dataclass(frozen=True)
class Push:
    title: str
    body: str


# A notification's title and text are cut to what a phone shows.
PUSH_TITLE_MAX = 100
PUSH_BODY_MAX = 300


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def push_texts(event_type: str, language: str, values: dict[str, Any],
               override: Override | None = None) -> Push:
    """A push notification's title and text as rendered, before they are cut: by default
    the e-mail's subject and the SMS's text (the merchant's push template if it has
    one)."""
    built_in = catalogue(language)[event_type]
    title = (override.subject if override is not None and override.subject
             else built_in["subject"])
    body = override.body if override is not None else built_in["sms"]
    return Push(title=" ".join(render_text(title, values).split()),
                body=" ".join(render_text(body, values).split()))


def push(event_type: str, language: str, values: dict[str, Any],
         override: Override | None = None) -> Push:
    """A push notification of the event, cut to what a phone shows."""
    texts = push_texts(event_type, language, values, override)
    return Push(title=_clip(texts.title, PUSH_TITLE_MAX), body=_clip(texts.body, PUSH_BODY_MAX))


# GSM 03.38's basic alphabet (and its extension, two septets each): an SMS in it carries 160
# characters, 153 a part when split; any other character makes it UCS-2: 70, and 67.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = frozenset("^{}\\[~]|€")


def sms_parts(text: str) -> int:
    """How many SMS parts a text takes (GSM-7 if every character is in it, else UCS-2,
    counted in UTF-16 code units)."""
    if all(char in _GSM_BASIC or char in _GSM_EXTENDED for char in text):
        septets = sum(2 if char in _GSM_EXTENDED else 1 for char in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def phrase(language: str, name: str, values: dict[str, Any]) -> str:
    """One of the frame's phrases (a benefit's threshold, the unsubscribe page's texts)."""
    return render_text(catalogue(language)["_frame"][name], values)


def page(name: str, **values: Any) -> str:
    return _PAGES.get_template(name).render(**values)
