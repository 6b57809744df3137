"""Every list of the API is cursor-paginated: `limit` and `cursor` in, `items` and
`next_cursor` out, never a bare array."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.api.operations import Operation, all_operations, resolve
from tests.conftest import World, auth

GETS = [op for op in all_operations() if op.method == "GET"]


def _answer_schema(op: Operation) -> dict[str, object]:
    content = op.spec["responses"].get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    return resolve(schema) if schema else {}


LISTS = [op for op in GETS if "next_cursor" in _answer_schema(op).get("properties", {})]


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in GETS])
def test_no_answer_is_a_bare_array(op: Operation) -> None:
    assert _answer_schema(op).get("type") != "array", f"{op.id}: page it (PageQuery, Page)"


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in LISTS])
def test_every_list_takes_a_limit_and_a_cursor(op: Operation) -> None:
    names = {p["name"] for p in op.spec.get("parameters", []) if p["in"] == "query"}
    assert {"limit", "cursor"} <= names


def test_the_lists_that_were_bare_arrays_are_pages() -> None:
    paged = {op.path for op in LISTS}
    assert paged >= {"/v1/merchants", "/v1/merchants/{merchant_id}/stores",
                     "/v1/stores/{store_id}/terminals", "/v1/keys", "/v1/offers",
                     "/v1/campaigns", "/v1/benefit-rules", "/v1/members/{member_id}/vouchers",
                     "/v1/members/{member_id}/cards", "/v1/offline/exceptions"}


def test_a_list_is_walked_page_by_page_in_a_stable_order(client: TestClient,
                                                         world: World) -> None:
    made = []
    for number in range(5):
        store = client.post(f"/v1/merchants/{world.a.merchant_id}/stores",
                            headers=auth(world.operator_key),
                            json={"code": f"s{number}", "name": f"Store {number}"})
        assert store.status_code == 201, store.text
        made.append(store.json()["id"])
    url = f"/v1/merchants/{world.a.merchant_id}/stores"
    whole = client.get(url, headers=auth(world.a.merchant_key)).json()
    assert whole["next_cursor"] is None and len(whole["items"]) == 6
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, params=params, headers=auth(world.a.merchant_key))
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 2
        seen += [store["id"] for store in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [store["id"] for store in whole["items"]]
    assert seen == [world.a.store_id, *made]  # oldest first


@pytest.mark.parametrize(("params", "code"), [({"cursor": "not-a-cursor"}, "invalid_cursor"),
                                              ({"limit": 0}, "validation_failed"),
                                              ({"limit": 1001}, "validation_failed")])
def test_a_bad_cursor_or_limit_says_what_to_fix(client: TestClient, world: World,
                                                params: dict[str, object], code: str) -> None:
    response = client.get("/v1/offers", params=params, headers=auth(world.a.merchant_key))
    assert response.status_code == 422
    assert response.json()["code"] == code
