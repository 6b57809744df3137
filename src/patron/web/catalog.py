"""The pages' message catalog: what the templates and page code ask to translate, and the
catalogs of each language (``locale/<language>/LC_MESSAGES/messages.po``).

``python -m patron.web.catalog`` (``make messages``) extracts the messages and updates
every catalog: a new or changed message arrives untranslated, and the test of
the catalogs (tests/web/test_catalog.py) fails until a translator has done them."""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from patron.kit.i18n import BABEL_LOCALES, DEFAULT_LANGUAGE
from patron.web.i18n import DOMAIN, LOCALE_DIR

WEB = Path(__file__).resolve().parent
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


def po_path(language: str) -> Path:
    return LOCALE_DIR / BABEL_LOCALES[language] / "LC_MESSAGES" / f"{DOMAIN}.po"


def read(language: str) -> Catalog:
    with po_path(language).open("rb") as source:
        return read_po(source, locale=BABEL_LOCALES[language])


def update() -> None:
    template = extract()
    for language, babel_name in BABEL_LOCALES.items():
        if language == DEFAULT_LANGUAGE:
            continue
        path = po_path(language)
        if path.exists():
            catalog = read(language)
            # No guessing from similar messages: a guess is a wrong translation until a
            # translator looks, and it would pass for a done one in the running app.
            catalog.update(template, no_fuzzy_matching=True, update_header_comment=False,
                           keep_user_comments=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=babel_name, domain=DOMAIN, project="Patron", fuzzy=False)
            catalog.update(template)
        with path.open("wb") as target:
            write_po(target, catalog, width=100, omit_header=False, sort_output=False,
                     ignore_obsolete=True, include_previous=True)


if __name__ == "__main__":
    update()
