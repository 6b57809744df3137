"""Helpers of the pages' tests: a browser-like client (cookies over https, as the Secure
cookies need), staff users, the CSRF token of a page, members that joined on the join page."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from patron.db import Database
from patron.tenancy import staff
from patron.tenancy.models import StaffRole

PASSWORD = "correct horse battery staple"


def browser(app: Any) -> TestClient:
    return TestClient(app, base_url="https://testserver", raise_server_exceptions=False,
                      follow_redirects=True)


def csrf(response: Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert found, response.text[:500]
    return found.group(1)


def text_of(response: Response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def add_staff(database: Database, role: StaffRole, *, merchant_id: str | None = None,
              email: str | None = None, password: str | None = PASSWORD,
              store_id: str | None = None) -> str:
    email = email or f"{role.value}-{uuid.uuid4().hex[:8]}@example.com"
    with database.session_scope() as session:
        staff.create_staff(session, inviter=None, email=email, name=role.value.title(),
                           role=role, merchant_id=uuid.UUID(merchant_id) if merchant_id
                           else None, store_id=uuid.UUID(store_id) if store_id else None,
                           password=password)
    return email


def sign_in(client: TestClient, email: str, password: str = PASSWORD,
            follow: bool = True) -> Response:
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf(page), "email": email,
                                       "password": password},
                       follow_redirects=follow)


@dataclass
class Joined:
    client: TestClient
    member_id: str
    member_number: str


def join(app: Any, database: Database, merchant_number: int, *, email: str | None = None,
         ref: str | None = None, language: str = "en") -> Joined:
    """A member who joined on the join page in a browser of their own."""
    from sqlalchemy import select

    from patron.members.models import Member

    client = browser(app)
    page = client.get(f"/join?m={merchant_number:05d}&lang={language}")
    form = {"csrf_token": csrf(page), "m": f"{merchant_number:05d}", "language": language}
    if email:
        form["email"] = email
    if ref:
        form["ref"] = ref
    wallet = client.post("/join", data=form)
    assert wallet.status_code == 200 and wallet.url.path == "/wallet", wallet.text[:300]
    number = re.search(r'class="number"[^>]*>(\d{14})<', wallet.text)
    assert number, wallet.text[:500]
    with database.session_scope() as session:
        member_id = session.scalar(select(Member.id).where(
            Member.member_number == number.group(1)))
    return Joined(client=client, member_id=str(member_id), member_number=number.group(1))
