"""The pages' languages: Babel catalogs (``locale/<language>/LC_MESSAGES/messages.po``,
compiled to ``.mo`` by ``make setup``), the language of a request, and numbers, money and
dates formatted for it."""

from __future__ import annotations

import io
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, get_currency_precision
from babel.support import NullTranslations, Translations

from patron.kit.i18n import BABEL_LOCALES, DEFAULT_LANGUAGE, from_accept_language, supported

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
# The pages' text; and the API's problems (titles and details), by Accept-Language.
DOMAIN = "messages"
PROBLEMS = "problems"
DOMAINS = (DOMAIN, PROBLEMS)


@lru_cache(maxsize=len(BABEL_LOCALES) * len(DOMAINS))
def translations(language: str, domain: str = DOMAIN) -> NullTranslations:
    """The catalog of ``language``: the compiled ``.mo`` that ``make setup`` writes, else
    the ``.po`` it is compiled from (an install that did not run the build step); English
    is the messages themselves."""
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    folder = LOCALE_DIR / BABEL_LOCALES[language] / "LC_MESSAGES"
    compiled = folder / f"{domain}.mo"
    if compiled.exists():
        with compiled.open("rb") as source:
            return Translations(source, domain=domain)
    with (folder / f"{domain}.po").open("rb") as source:
        catalog = read_po(source)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=domain)


def language_of(chosen: str | None, accept_language: str | None) -> str:
    """A request's language: the signed-in person's setting, else the browser's
    ``Accept-Language``, else English."""
    return supported(chosen) or from_accept_language(accept_language) or DEFAULT_LANGUAGE


def babel_locale(language: str) -> Locale:
    return Locale.parse(BABEL_LOCALES[language])


def number(value: int | float, language: str) -> str:
    return format_decimal(value, locale=BABEL_LOCALES[language])


def money(minor: int, currency: str, language: str) -> str:
    """An amount in the currency's minor unit (DESIGN.md rule 4), in the language's way."""
    digits = get_currency_precision(currency)
    return format_currency(minor / 10 ** digits if digits else minor, currency,
                           locale=BABEL_LOCALES[language])


def day(value: date | datetime, language: str, zone: str | None = None) -> str:
    if isinstance(value, datetime) and zone:
        value = value.astimezone(ZoneInfo(zone))
    return format_date(value, format="medium", locale=BABEL_LOCALES[language])


def moment(value: datetime, language: str, zone: str | None = None) -> str:
    return format_datetime(value, format="medium",
                           tzinfo=ZoneInfo(zone) if zone else None,
                           locale=BABEL_LOCALES[language])
