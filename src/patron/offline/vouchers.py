"""What offline replay needs from the vouchers area, in one place: a code's canonical
form, the codes on a purchase, a purchase without one of them, and a member's personal
codes priced for an allowance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from patron.offline.schemas import AllowanceCode
from patron.pos.schemas import PurchaseWrite
from patron.vouchers.codes import CodeCheckError, CodeFormatError, parse_code
from patron.vouchers.errors import VoucherRefused
from patron.vouchers.service import usable_personal_codes

__all__ = ["VoucherRefused", "canonical", "codes_of", "personal_codes", "without_voucher"]


def canonical(text: str) -> str:
    """The canonical code of what was typed; text that is no code stays as it is (it then
    matches no allowance code)."""
    try:
        return parse_code(text)
    except (CodeFormatError, CodeCheckError):
        return text


def codes_of(data: PurchaseWrite) -> list[str]:
    return [use.code for use in data.vouchers]


def without_voucher(data: PurchaseWrite, code: str | None) -> PurchaseWrite:
    """The purchase without the voucher whose canonical code is ``code`` (None: without any
    voucher)."""
    if not data.vouchers:
        return data
    kept = [use for use in data.vouchers if code is not None and canonical(use.code) != code]
    return data.model_copy(update={"vouchers": kept})


def personal_codes(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID,
                   now: datetime) -> list[AllowanceCode]:
    """The member's unused personal single-use codes at the merchant, with their terms."""
    codes = usable_personal_codes(session, merchant_id=merchant_id, member_id=member_id,
                                  now=now)
    return [AllowanceCode(
        code=voucher.code, kind=str(voucher.offer.kind), value=voucher.offer.value,
        max_discount=voucher.offer.max_discount, min_spend=voucher.offer.min_spend,
        item_sku=voucher.offer.item_sku, item_category=voucher.offer.item_category,
        categories=list(voucher.offer.categories),
        valid_until=(None if voucher.valid_until is None
                     else voucher.valid_until.astimezone(UTC).isoformat()))
        for voucher in codes]
