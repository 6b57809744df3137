"""Validators for codes from international standards (currency, country, time zone, language)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.core import get_global
from babel.numbers import get_currency_precision, list_currencies
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field

# Text that names or identifies something: no control characters (PostgreSQL's text cannot
# hold NUL, and no name or reference needs a tab or an escape).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]+$"


@lru_cache
def _currencies() -> frozenset[str]:
    # The currencies some territory uses as legal tender today (CLDR): not the ISO 4217
    # codes that are not money (XXX "no currency", XTS "testing", XAU gold, XDR ...), nor
    # withdrawn ones (DEM).
    in_use = {code for periods in get_global("territory_currencies").values()
              for code, _start, end, tender in periods if tender and end is None}
    return frozenset(in_use & set(list_currencies()))


# Files a system's zoneinfo directory holds beside the IANA zones: `localtime` is the
# machine's own setting, `posixrules` a default rule, `Factory` "zone not set".
_NOT_IANA_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_IANA_ZONES


def currency_code(value: str) -> str:
    code = value.upper()
    if len(code) != 3 or code not in _currencies():
        raise ValueError("must be the ISO 4217 code of a currency in use, such as JPY, KRW "
                         "or USD")
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


# --- the shared input types: every field of a request body or query that takes a datetime,
# a boolean or an integer uses one of these (``audit_input_fields`` refuses a model that
# does not), so a new field cannot forget the bounds.

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# The earliest and the latest instant a request may name (UTC). Outside them a date is a
# typo, and near year 1 or 9999 the conversion to UTC or a few hours' arithmetic overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)

_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_text(value: Any) -> Any:
    # pydantic would read a number (or a numeric string, as every query value is) as Unix
    # seconds: `?since=0.5` would be 1970. Only ISO 8601 text is a date here.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_8601.match(value.strip()):
        raise ValueError("must be an ISO 8601 date and time with its UTC offset, such as "
                         "2026-12-07T09:30:00+09:00")
    return value


def _in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 1900-01-01T00:00:00Z and 9998-12-31T23:59:59Z "
                         "once converted to UTC")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_range)]
"""A point in time: ISO 8601 text with its UTC offset, between ``EARLIEST`` and ``LATEST``."""

Flag = Annotated[bool, Field(strict=True)]
"""A boolean: JSON ``true`` or ``false`` only (not 0, 0.0 or "yes")."""

def _fits(lowest: int, highest: int, column: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not lowest <= value <= highest:
            raise ValueError(f"must be from {lowest} to {highest} (a {column} column)")
        return value
    check.column_bound = True  # type: ignore[attr-defined]
    return check


# The column's range is a validator, not Ge/Le: a field narrows it with Field(ge=, le=),
# which pydantic would otherwise let the type's own Ge/Le override.
Int64 = Annotated[int, Field(strict=True), AfterValidator(_fits(INT64_MIN, INT64_MAX,
                                                                "BIGINT"))]
"""An integer that goes to a BIGINT column (narrow it further with ``Field(ge=, le=)``)."""

Int32 = Annotated[int, Field(strict=True), AfterValidator(_fits(INT32_MIN, INT32_MAX,
                                                                "INTEGER"))]
"""An integer that goes to an INTEGER column."""


def _leaves(annotation: Any, outer: list[Any]) -> list[tuple[Any, list[Any]]]:
    """The scalar types inside an annotation, each with the metadata that applies to it."""
    if get_origin(annotation) is Annotated:
        inner, *meta = get_args(annotation)
        return _leaves(inner, [*outer, *meta])
    args = get_args(annotation)
    if get_origin(annotation) in (Union, UnionType):
        return [leaf for arg in args for leaf in _leaves(arg, outer)]
    if args:  # a container: its own metadata (lengths) is not its items'
        return [leaf for arg in args for leaf in _leaves(arg, [])]
    return [(annotation, outer)]


def _constraints(metadata: list[Any]) -> tuple[bool, bool, bool]:
    strict = column_bound = instant = False
    for item in metadata:
        for part in [item, *getattr(item, "metadata", [])]:
            strict = strict or getattr(part, "strict", None) is True
            function = getattr(part, "func", None)
            column_bound = column_bound or getattr(function, "column_bound", False)
            instant = instant or function is _in_range
    return strict, column_bound, instant


def audit_input_fields(model: type[BaseModel]) -> None:
    """Refuse (at import) a request model with a datetime that is not an ``Instant``, a
    boolean that is not a ``Flag``, or an integer that is not an ``Int64`` or ``Int32``."""
    for name, field in model.model_fields.items():
        annotation = field.rebuild_annotation()
        for leaf, metadata in _leaves(annotation, []):
            strict, column_bound, instant = _constraints(metadata)
            where = f"{model.__module__}.{model.__qualname__}.{name}"
            if leaf in (datetime, AwareDatetime) and not instant:
                raise TypeError(f"{where}: use kit.validation.Instant for a datetime")
            if leaf is bool and not strict:
                raise TypeError(f"{where}: use kit.validation.Flag for a boolean")
            if leaf is int and not (strict and column_bound):
                raise TypeError(f"{where}: use kit.validation.Int64 or Int32 (the range of "
                                "the column it goes to) for an integer")
