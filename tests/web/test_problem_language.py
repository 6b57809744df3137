"""The API's problems follow Accept-Language (docs/errors.md, "Languages"): the title, and
the detail when it is a message of the catalog, in Japanese, Chinese or Korean; the code,
the status and every other member stay as they are."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.web.i18n import PROBLEMS, translations
from tests.conftest import World, auth


def _in(language: str, text: str) -> str:
    translated: str = translations(language, PROBLEMS).ugettext(text)
    assert translated != text, f"the {language} catalog lacks {text!r}"
    return translated


@pytest.mark.parametrize(("header", "language"), [
    ("ja", "ja"), ("ja-JP,ja;q=0.9,en;q=0.8", "ja"), ("fr, ko;q=0.5", "ko"),
    ("zh-CN", "zh-Hans"), ("zh-Hans-SG;q=0.8, de", "zh-Hans")])
def test_a_problem_is_answered_in_the_callers_language(client: TestClient, header: str,
                                                       language: str) -> None:
    answer = client.get("/v1/merchants", headers={"Accept-Language": header})
    assert answer.status_code == 401
    assert answer.headers["content-language"] == language
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert int(answer.headers["content-length"]) == len(answer.content)
    problem = answer.json()
    assert problem["code"] == "unauthenticated" and problem["status"] == 401
    assert problem["title"] == _in(language, "Missing or invalid API key")
    assert problem["detail"] == _in(language,
                                    "send the API key as 'Authorization: Bearer <key>'")


@pytest.mark.parametrize("header", [None, "en", "en-US,ja;q=0.5", "fr", "*"])
def test_english_or_a_language_patron_does_not_speak_answers_in_english(
        client: TestClient, header: str | None) -> None:
    headers = {"Accept-Language": header} if header else {}
    answer = client.get("/v1/merchants", headers=headers)
    assert answer.json()["title"] == "Missing or invalid API key"
    assert "content-language" not in answer.headers


def test_a_detail_made_with_values_stays_english_and_the_rest_of_the_problem_is_kept(
        client: TestClient, world: World) -> None:
    answer = client.post("/v1/members", headers={**auth(world.a.merchant_key),
                                                 "Accept-Language": "ko"},
                         json={"birth_year": "last year"})
    problem: dict[str, Any] = answer.json()
    assert answer.status_code == 422 and problem["code"] == "validation_failed"
    assert problem["title"] == _in("ko", "Invalid input")
    assert "birth_year" in problem["detail"]  # pydantic's words, as sent in English
    assert problem["errors"][0]["loc"] == ["body", "birth_year"]


def test_a_path_no_route_has_and_answers_that_are_not_problems(client: TestClient,
                                                               world: World) -> None:
    missing = client.get("/v1/nothing-here", headers={"Accept-Language": "ja"})
    assert missing.status_code == 404 and missing.json()["title"] == _in("ja", "Not Found")
    fine = client.get("/v1/merchants", headers={**auth(world.operator_key),
                                                "Accept-Language": "ja"})
    assert fine.status_code == 200 and "content-language" not in fine.headers
