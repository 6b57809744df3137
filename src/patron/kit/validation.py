"""Validators for codes from international standards (currency, country, time zone, language)."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_precision, list_currencies


@lru_cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@lru_cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def currency_code(value: str) -> str:
    code = value.upper()
    if len(code) != 3 or code not in _currencies():
        raise ValueError("must be an ISO 4217 currency code such as JPY, KRW or USD")
    return code


def currency_minor_units(code: str) -> int:
    return int(get_currency_precision(code))


def country_code(value: str) -> str:
    code = value.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code such as JP, KR or US")
    return code


def timezone_name(value: str) -> str:
    if value not in _timezones():
        raise ValueError("must be an IANA time zone such as Asia/Tokyo")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone such as Asia/Tokyo") from exc
    return value


def language_tag(value: str) -> str:
    try:
        locale = Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError("must be a language tag such as en, ja or ko-KR") from exc
    return str(locale).replace("_", "-")
