"""The pages' message catalog: what the templates and page code ask to translate, and the
catalogs of each language (``locale/<language>/LC_MESSAGES/messages.po``).

``python -m patron.web.catalog`` (``make messages``) extracts the messages and updates
every catalog: a new or changed message arrives untranslated, and the test of
the catalogs (tests/web/test_catalog.py) fails until a translator has done them."""

from __future__ import annotations

import contextlib
import importlib
import io
import pkgutil
import re
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

import patron
from patron.errors import PatronError
from patron.kit.i18n import BABEL_LOCALES, DEFAULT_LANGUAGE
from patron.web.i18n import DOMAIN, LOCALE_DIR, PROBLEMS

WEB = Path(__file__).resolve().parent
SOURCE = WEB.parent
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_.]*")
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
# Templates say _("…"); page code says translate(language, "…").
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "translate": (2,)}


def extract() -> Catalog:
    catalog = Catalog(project="Patron", domain=DOMAIN, fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
            str(WEB), method_map=METHODS, options_map=OPTIONS, keywords=KEYWORDS,
            comment_tags=("Translators:",), strip_comment_tags=True):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments,
                    context=context)
    return catalog


def problem_classes() -> list[type[PatronError]]:
    """Every error of the domain (every module imported, so that each class exists)."""
    for module in pkgutil.walk_packages(patron.__path__, "patron."):
        importlib.import_module(module.name)
    found: list[type[PatronError]] = []
    pending: list[type[PatronError]] = [PatronError]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.__subclasses__())
    return sorted(set(found), key=lambda cls: (cls.__module__, cls.__name__))


def extract_problems() -> Catalog:
    """What the API's problems say: every error class's title, and every detail written
    as text where an error is raised (``SomeError("…")``) or marked with ``N_("…")``.
    A detail made with values (an f-string) is not a message: it stays English."""
    catalog = Catalog(project="Patron", domain=PROBLEMS, fuzzy=False)
    classes = problem_classes()
    for cls in classes:
        catalog.add(cls.title, None, [(f"{cls.__module__}.{cls.__name__}", 0)],
                    auto_comments=[f"The title of the problem `{cls.code}`."])
    keywords: dict[str, Any] = {cls.__name__: (1,) for cls in classes}
    keywords["N_"] = None
    with contextlib.redirect_stderr(io.StringIO()):
        # Babel warns of every f-string detail: they are not messages, on purpose.
        found = list(extract_from_dir(str(SOURCE), method_map=[("**.py", "python")],
                                      keywords=keywords, comment_tags=("Translators:",),
                                      strip_comment_tags=True))
    for filename, lineno, message, comments, context in found:
        # A field's name (`field="phone"`) is a literal of the call, not a sentence.
        if isinstance(message, str) and message and not IDENTIFIER.fullmatch(message):
            catalog.add(message, None, [(filename, lineno)], auto_comments=comments,
                        context=context)
    return catalog


def po_path(language: str, domain: str = DOMAIN) -> Path:
    return LOCALE_DIR / BABEL_LOCALES[language] / "LC_MESSAGES" / f"{domain}.po"


def read(language: str, domain: str = DOMAIN) -> Catalog:
    with po_path(language, domain).open("rb") as source:
        return read_po(source, locale=BABEL_LOCALES[language])


def update() -> None:
    for domain, template in ((DOMAIN, extract()), (PROBLEMS, extract_problems())):
        _update(domain, template)


def _update(domain: str, template: Catalog) -> None:
    for language, babel_name in BABEL_LOCALES.items():
        if language == DEFAULT_LANGUAGE:
            continue
        path = po_path(language, domain)
        if path.exists():
            catalog = read(language, domain)
            # No guessing from similar messages: a guess is a wrong translation until a
            # translator looks, and it would pass for a done one in the running app.
            catalog.update(template, no_fuzzy_matching=True, update_header_comment=False,
                           keep_user_comments=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=babel_name, domain=domain, project="Patron", fuzzy=False)
            catalog.update(template)
        with path.open("wb") as target:
            write_po(target, catalog, width=100, omit_header=False, sort_output=False,
                     ignore_obsolete=True, include_previous=True)


if __name__ == "__main__":
    update()
