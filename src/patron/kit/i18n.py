"""The languages Patron speaks, and how a language tag or an ``Accept-Language`` header is
matched to one of them. Pure: the catalogs live with the pages (``patron.web.i18n``) and
the messages (``patron.notify.templates``)."""

from __future__ import annotations

LANGUAGES = ("en", "ja", "zh-Hans", "ko")
DEFAULT_LANGUAGE = "en"
# A merchant's country's language, for a member who never chose one.
COUNTRY_LANGUAGES = {"JP": "ja", "CN": "zh-Hans", "SG": "zh-Hans", "KR": "ko"}
# Babel's names of the languages.
BABEL_LOCALES = {"en": "en", "ja": "ja", "zh-Hans": "zh_Hans", "ko": "ko"}
# Each language's own name, for the language menus.
NATIVE_NAMES = {"en": "English", "ja": "日本語", "zh-Hans": "简体中文", "ko": "한국어"}


def supported(tag: str | None) -> str | None:
    """The language of ``LANGUAGES`` a tag asks for (``ja-JP`` is ``ja``; ``zh``,
    ``zh-CN``, ``zh-SG`` and ``zh-Hans-*`` are ``zh-Hans``; ``zh-TW`` is none), or None."""
    if not tag:
        return None
    tag = tag.strip().replace("_", "-").lower()
    if tag.startswith("zh"):
        if tag in ("zh", "zh-hans") or tag.startswith(("zh-hans-", "zh-cn", "zh-sg")):
            return "zh-Hans"
        return None
    primary = tag.split("-")[0]
    return primary if primary in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The first language Patron speaks among those an ``Accept-Language`` header lists,
    by their q-values (RFC 9110 12.5.4); None when it names none of them."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = supported(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else None
