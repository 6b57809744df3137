"""Who may open which page (docs/tenancy.md, "People"; ``tenancy.rules.AREA_ROLES``): each
page against every kind of person, signed in or not — the role x relation matrix of the
web app. Refusals change nothing and show nothing of the page."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.db import Database
from patron.tenancy.models import StaffRole
from tests.conftest import World
from tests.web.people import add_staff, browser, csrf, join, sign_in, text_of

PEOPLE = ("anonymous", "member", "cashier", "manager", "owner", "operator", "sales_rep",
          "other_manager")
SIGN_IN = "login"
WALLET_SIGN_IN = "wallet_sign_in"
CHOOSE = "choose"

# page -> person -> the answer: 200, 403, 404, or where it sends them.
MATRIX: dict[str, dict[str, object]] = {
    "/wallet": {"member": 200, **{p: WALLET_SIGN_IN for p in PEOPLE if p != "member"}},
    "/wallet/card": {"member": 200, **{p: WALLET_SIGN_IN for p in PEOPLE if p != "member"}},
    "/register": {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 200, "manager": 200,
                  "owner": 200, "operator": 403, "sales_rep": 403, "other_manager": CHOOSE},
    "/register/choose": {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 200,
                         "manager": 200, "owner": 200, "operator": 403, "sales_rep": 403,
                         "other_manager": 200},
    "/console": {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 403, "manager": 200,
                 "owner": 200, "operator": 403, "sales_rep": 403, "other_manager": 200},
    "/console/members": {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 403,
                         "manager": 200, "owner": 200, "operator": 403, "sales_rep": 403,
                         "other_manager": 200},
    # A member of merchant A: A's staff see them; B's manager gets the same 404 as for
    # no member at all.
    "/console/members/{member_id}": {"anonymous": SIGN_IN, "member": SIGN_IN,
                                     "cashier": 403, "manager": 200, "owner": 200,
                                     "operator": 403, "sales_rep": 403,
                                     "other_manager": 404},
    **{page: {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 403, "manager": 200,
              "owner": 200, "operator": 403, "sales_rep": 403, "other_manager": 200}
       for page in ("/console/program", "/console/benefits", "/console/referrals",
                    "/console/stores", "/console/security", "/console/settlements",
                    "/console/messages", "/console/webhooks", "/console/offers",
                    "/console/campaigns")},
    # The merchant's staff and its roles: the owner's alone.
    "/console/staff": {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 403,
                       "manager": 403, "owner": 200, "operator": 403, "sales_rep": 403,
                       "other_manager": 403},
    **{page: {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 403, "manager": 403,
              "owner": 403, "operator": 200, "sales_rep": 403, "other_manager": 403}
       for page in ("/operator", "/operator/rates", "/operator/settlements",
                    "/operator/staff", "/operator/keys", "/operator/jobs",
                    "/operator/deliveries")},
    # Every staff user's own account; nobody else's.
    "/account": {"anonymous": SIGN_IN, "member": SIGN_IN, "cashier": 200, "manager": 200,
                 "owner": 200, "operator": 200, "sales_rep": 200, "other_manager": 200},
    "/join": {p: 200 for p in PEOPLE},
    "/login": {p: 200 for p in PEOPLE},
    "/": {p: 200 for p in PEOPLE},
}


@pytest.fixture
def signed_in(app: Any, database: Database, world: World) -> tuple[dict[str, TestClient], str]:
    clients: dict[str, TestClient] = {"anonymous": browser(app)}
    member = join(app, database, world.a.number)
    clients["member"] = member.client
    roles = {"cashier": (StaffRole.cashier, world.a.merchant_id),
             "manager": (StaffRole.manager, world.a.merchant_id),
             "owner": (StaffRole.owner, world.a.merchant_id),
             "operator": (StaffRole.operator, None),
             "sales_rep": (StaffRole.sales_rep, None),
             "other_manager": (StaffRole.manager, world.b.merchant_id)}
    for person, (role, merchant_id) in roles.items():
        client = browser(app)
        landed = sign_in(client, add_staff(database, role, merchant_id=merchant_id))
        if person in ("cashier", "manager", "owner"):
            chosen = client.post("/register/choose", data={
                "csrf_token": csrf(landed), "terminal_id": world.a.pos_id})
            assert chosen.url.path == "/register", chosen.text[:300]
        clients[person] = client
    return clients, member.member_id


def _expected_location(answer: object) -> str:
    return {SIGN_IN: "/login", WALLET_SIGN_IN: "/wallet/sign-in",
            CHOOSE: "/register/choose"}[str(answer)]


def test_every_page_answers_each_person_as_the_rules_say(
        signed_in: tuple[dict[str, TestClient], str]) -> None:
    clients, member_id = signed_in
    wrong = []
    for page, answers in MATRIX.items():
        path = page.format(member_id=member_id)
        for person in PEOPLE:
            response = clients[person].get(path, follow_redirects=False)
            expected = answers[person]
            if isinstance(expected, int):
                ok = response.status_code == expected
            else:
                ok = (response.status_code == 303 and response.headers["location"]
                      .startswith(_expected_location(expected)))
            if not ok:
                wrong.append((path, person, expected, response.status_code,
                              response.headers.get("location")))
            if response.status_code in (403, 404):
                # A refusal is a page of its own, in HTML, saying nothing of the member.
                assert response.headers["content-type"].startswith("text/html")
                assert member_id not in response.text
    assert not wrong, wrong


def test_another_merchants_manager_cannot_find_the_member_by_number(
        app: Any, database: Database, world: World) -> None:
    member = join(app, database, world.a.number)
    client = browser(app)
    page = sign_in(client, add_staff(database, StaffRole.manager,
                                     merchant_id=world.b.merchant_id))
    search = client.post("/console/members", data={"csrf_token": csrf(page),
                                                   "query": member.member_number,
                                                   "how": "auto"})
    assert search.status_code == 404
    assert "No member of yours matches" in text_of(search)
    own = browser(app)
    page = sign_in(own, add_staff(database, StaffRole.manager,
                                  merchant_id=world.a.merchant_id))
    found = own.post("/console/members", data={"csrf_token": csrf(page),
                                               "query": member.member_number})
    assert found.status_code == 200 and found.url.path == f"/console/members/{member.member_id}"


def test_a_member_sees_only_their_own_wallet(app: Any, database: Database,
                                             world: World) -> None:
    first = join(app, database, world.a.number)
    second = join(app, database, world.a.number)
    assert first.member_number in first.client.get("/wallet").text
    assert first.member_number not in second.client.get("/wallet").text
    # The wallet's routes take no member id: nothing to swap for another's.
    export = second.client.get("/wallet/export")
    assert export.status_code == 200
    assert first.member_id not in export.text and second.member_id in export.text
