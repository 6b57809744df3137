"""Merchants and members for program tests, made through the real services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from patron.db import Database
from patron.members.schemas import MemberCreate
from patron.members.service import enrol
from patron.tenancy.schemas import MerchantCreate
from patron.tenancy.service import SYSTEM, create_merchant


@dataclass(frozen=True)
class Shop:
    merchant_id: uuid.UUID
    other_merchant_id: uuid.UUID
    member_id: uuid.UUID
    other_member_id: uuid.UUID


@pytest.fixture
def shop(database: Database) -> Shop:
    with database.session_scope() as session:
        merchants = [create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=20001 + index, name=f"Cafe {index}", currency=currency,
            timezone="Asia/Tokyo", country="JP")).id
            for index, currency in enumerate(("JPY", "USD"))]
        members = [enrol(session, actor=SYSTEM, data=MemberCreate(merchant_id=merchants[0])).id
                   for _ in range(2)]
    return Shop(merchant_id=merchants[0], other_merchant_id=merchants[1],
                member_id=members[0], other_member_id=members[1])
