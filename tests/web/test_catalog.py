"""Every page's text in every language: a message the pages ask for and a catalog lacks
(or holds untranslated, or as a guess) fails here (docs/web.md, "Languages")."""

from __future__ import annotations

import re

import pytest

from patron.kit.i18n import LANGUAGES
from patron.web import catalog
from patron.web.i18n import DOMAIN, PROBLEMS

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@pytest.fixture(scope="module")
def wanted() -> dict[str, object]:
    return {message.id: message for message in catalog.extract() if message.id}


@pytest.fixture(scope="module")
def problems() -> dict[str, object]:
    return {message.id: message for message in catalog.extract_problems() if message.id}


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_every_message_of_the_pages_is_translated(wanted: dict[str, object],
                                                  language: str) -> None:
    _complete(wanted, language, DOMAIN)


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_every_problem_title_and_detail_of_the_api_is_translated(
        problems: dict[str, object], language: str) -> None:
    _complete(problems, language, PROBLEMS)


def test_the_problems_catalog_holds_every_errors_title(problems: dict[str, object]) -> None:
    titles = {cls.title for cls in catalog.problem_classes()}
    assert len(titles) > 150 and titles <= set(problems)
    assert "the request body is not valid JSON" in problems  # a detail marked with N_


def _complete(wanted: dict[str, object], language: str, domain: str) -> None:
    held = {message.id: message for message in catalog.read(language, domain) if message.id}
    missing = [key for key in wanted if key not in held]
    assert not missing, f"{language}: run `make messages`; missing {missing[:5]}"
    untranslated, guessed, placeholders = [], [], []
    for key in wanted:
        message = held[key]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            untranslated.append(key)
        if message.fuzzy:
            guessed.append(key)
        ids = key if isinstance(key, tuple) else (key,)
        expected = set(PLACEHOLDER.findall(ids[-1]))
        if any(set(PLACEHOLDER.findall(text)) != expected for text in strings if text):
            placeholders.append(key)
    assert not untranslated, f"{language}: untranslated {untranslated[:5]}"
    assert not guessed, f"{language}: fuzzy {guessed[:5]}"
    assert not placeholders, f"{language}: placeholders differ {placeholders[:5]}"


def test_the_extraction_finds_the_templates_and_the_page_code(wanted: dict[str, object]
                                                               ) -> None:
    # One message of a template, one of Python page code (translate(language, "…")).
    assert "Skip to content" in wanted
    assert "Choose where you join." in wanted
