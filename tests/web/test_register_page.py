"""The register page (docs/web.md, "The register"): identification by a scan, a phone
number or a card; the basket with its errors at their fields; the quote; the commit
through the API's own unit of work; the receipt; a return."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from patron.db import Database
from patron.pos.models import PosTransaction
from patron.tenancy.models import StaffRole
from tests.conftest import World, auth
from tests.web.people import add_staff, browser, csrf, join, sign_in, text_of

SALE_FIELDS = ("receipt_no", "seen_at", "member_id", "member_number", "sku", "name", "quantity",
               "unit_price", "category")


def _cashier(app: Any, database: Database, world: World) -> tuple[TestClient, Response]:
    client = browser(app)
    landed = sign_in(client, add_staff(database, StaffRole.cashier,
                                       merchant_id=world.a.merchant_id))
    assert landed.url.path == "/register/choose"
    page = client.post("/register/choose", data={"csrf_token": csrf(landed),
                                                  "terminal_id": world.a.pos_id})
    assert page.url.path == "/register"
    return client, page


def _sale(page: Response, **extra: str) -> dict[str, list[str] | str]:
    """The sale the page carries (the first form's hidden fields), as the browser sends it."""
    start = page.text.index('name="receipt_no"')
    form = page.text[page.text.rfind("<form", 0, start):page.text.index("</form>", start)]
    sale: dict[str, list[str] | str] = {}
    for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form):
        if name in SALE_FIELDS:
            sale.setdefault(name, []).append(value)  # type: ignore[union-attr]
    return {**sale, "csrf_token": csrf(page), **extra}


def _count(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(PosTransaction)) or 0)


def test_a_cashier_identifies_by_the_wallets_qr_rings_up_and_commits(
        app: Any, database: Database, world: World) -> None:
    member = join(app, database, world.a.number)
    token = re.search(r'data-token="([^"]+)"', member.client.get("/wallet/card").text)
    assert token
    client, page = _cashier(app, database, world)
    identified = client.post("/register/identify", data=_sale(page, scan=token.group(1)))
    assert identified.status_code == 200
    assert f"Member {member.member_number} identified" in text_of(identified)
    added = client.post("/register/line", data=_sale(
        identified, new_sku="4006381333931", new_name="Coffee beans", new_quantity="2",
        new_unit_price="1200", new_category="coffee"))
    assert added.status_code == 200 and "Coffee beans" in added.text
    quoted = client.post("/register/quote", data=_sale(added))
    quote_text = text_of(quoted)
    assert quoted.status_code == 200 and "Subtotal ¥2,400" in quote_text
    assert "To pay ¥2,400" in quote_text and _count(database) == 0  # a quote writes nothing
    receipt = client.post("/register/commit", data=_sale(quoted))
    assert receipt.status_code == 200 and receipt.url.path.startswith("/register/receipts/")
    assert "Total ¥2,400" in text_of(receipt) and _count(database) == 1
    # The same sale sent again (a double click) is the same receipt, not a second sale.
    again = client.post("/register/commit", data=_sale(quoted))
    assert again.url.path == receipt.url.path and _count(database) == 1
    transaction_id = receipt.url.path.rsplit("/", 1)[1]
    stored = client.get(f"/register/receipts/{transaction_id}")
    assert stored.status_code == 200
    answer = json.loads(TestClient(app).get(f"/v1/pos/transactions/{transaction_id}",
                                            headers=auth(world.a.pos_key)).text)
    assert answer["member_id"] == member.member_id and answer["total"] == 2400


def test_identification_by_number_and_phone_and_its_refusals(
        app: Any, database: Database, world: World, client: Any) -> None:
    member = join(app, database, world.a.number)
    register, page = _cashier(app, database, world)
    by_number = register.post("/register/identify", data=_sale(page,
                                                               scan=member.member_number))
    assert f"Member {member.member_number} identified" in text_of(by_number)
    unknown = register.post("/register/identify", data=_sale(page, scan="12345000000000"))
    assert unknown.status_code == 404 and 'id="e-scan"' in unknown.text
    assert "member_id" not in re.findall(r'name="member_id" value="([^"]+)"', unknown.text)
    by_phone = register.post("/register/identify", data=_sale(page, scan="090-1234-5678",
                                                              how="phone"))
    assert by_phone.status_code == 404 and 'id="e-scan"' in by_phone.text


def test_a_bad_line_is_refused_at_its_field_and_the_basket_is_kept(
        app: Any, database: Database, world: World) -> None:
    client, page = _cashier(app, database, world)
    added = client.post("/register/line", data=_sale(
        page, new_sku="TEA", new_name="Tea", new_quantity="1", new_unit_price="300"))
    bad = client.post("/register/line", data=_sale(
        added, new_sku="", new_quantity="0", new_unit_price="-5"))
    assert bad.status_code == 422
    for field in ("new_sku", "new_quantity", "new_unit_price"):
        assert f'id="e-{field}"' in bad.text
    assert "Tea" in bad.text  # the basket so far is still there
    empty = client.post("/register/commit", data=_sale(page))
    assert empty.status_code == 422 and _count(database) == 0


def test_a_receipt_is_returned_once(app: Any, database: Database, world: World) -> None:
    client, page = _cashier(app, database, world)
    added = client.post("/register/line", data=_sale(
        page, new_sku="TEA", new_name="Tea", new_quantity="1", new_unit_price="300"))
    receipt = client.post("/register/commit", data=_sale(added))
    path = receipt.url.path
    returned = client.post(f"{path}/return", data={"csrf_token": csrf(receipt)})
    assert returned.url.query == b"returned=1"
    again = client.post(f"{path}/return", data={"csrf_token": csrf(receipt)})
    assert again.url.query == b"returned=0"
    # Another merchant's register does not see the receipt.
    other = browser(app)
    landed = sign_in(other, add_staff(database, StaffRole.cashier,
                                      merchant_id=world.b.merchant_id))
    other.post("/register/choose", data={"csrf_token": csrf(landed),
                                         "terminal_id": world.b.pos_id})
    assert other.get(path).status_code == 404
