"""Units of work that more than one boundary runs — the API's endpoints and the web app's
pages — so that each is written once: its transaction, and the throttles around it
(``security.attempts``)."""

from __future__ import annotations

import uuid

from patron.db import Database
from patron.identity import service as identity
from patron.identity.schemas import IdentifyRequest, IdentifyResult
from patron.members.service import get_member
from patron.pos import service as pos
from patron.pos.schemas import PurchaseWrite, QuoteRead
from patron.security.attempts import identification_attempt, voucher_attempt
from patron.security.models import SecurityEventKind
from patron.tenancy.service import Principal
from patron.vouchers import batches
from patron.vouchers import service as vouchers
from patron.vouchers.schemas import MAX_CODES_AT_ONCE, CodesRead, CodesWrite


def names_member(data: PurchaseWrite) -> bool:
    """Whether a purchase says who the customer is by a number, code, card or phone rather
    than naming one the till has identified already (by id): an identification, counted
    as at ``POST /v1/identify``."""
    return data.member is not None and data.member.member_id is None


def identify(db: Database, *, caller: Principal, address: str,
             data: IdentifyRequest) -> IdentifyResult:
    with (identification_attempt(db, caller=caller, address=address) as attempt,
          attempt.session() as session):
        return identity.identify(session, actor=caller, request=data)


def quote(db: Database, *, caller: Principal, address: str, data: PurchaseWrite,
          explain: bool = False) -> QuoteRead:
    with (identification_attempt(db, caller=caller, address=address,
                                 identifies=names_member(data)) as identifying,
          voucher_attempt(db, caller=caller, address=address, kind=SecurityEventKind.pos_quote,
                          codes=[use.code for use in data.vouchers]) as attempt,
          attempt.session() as session):
        identifying.check(session)
        return pos.quote(session, actor=caller, data=data, explain=explain)


def commit(db: Database, *, caller: Principal, address: str, data: PurchaseWrite,
           explain: bool = False) -> str:
    """The purchase committed; its answer as the JSON text the API sends."""
    with (identification_attempt(db, caller=caller, address=address,
                                 identifies=names_member(data)) as identifying,
          voucher_attempt(db, caller=caller, address=address, kind=SecurityEventKind.pos_commit,
                          codes=[use.code for use in data.vouchers]) as attempt,
          attempt.session() as session):
        identifying.check(session)
        return pos.commit(session, actor=caller, data=data, explain=explain)


def issue_codes(db: Database, *, caller: Principal, offer_id: uuid.UUID, data: CodesWrite,
                in_background: bool) -> CodesRead:
    """Codes of an offer: up to ``MAX_CODES_AT_ONCE`` issued now (personal codes into a
    member's wallet the caller may see — any other id, real or not, is the same 404), more
    bearer codes as a batch job (``batch_id``), started in this process's background when
    ``in_background`` (else by ``patron vouchers generate`` or the scheduler)."""
    if data.count > MAX_CODES_AT_ONCE and data.member_id is None:
        with db.session_scope() as session:
            batch = batches.start_batch(session, actor=caller, offer_id=offer_id,
                                        count=data.count, max_redemptions=data.max_redemptions)
            batch_id = batch.id
        if in_background:
            batches.run_in_background(db, batch_id)
        return CodesRead(offer_id=offer_id, codes=[], batch_id=batch_id)
    with db.session_scope() as session:
        if data.member_id is not None:
            get_member(session, actor=caller, member_id=data.member_id)
        issued = vouchers.issue_codes(session, actor=caller, offer_id=offer_id,
                                      count=data.count, member_id=data.member_id,
                                      max_redemptions=data.max_redemptions)
    return CodesRead(offer_id=offer_id, codes=issued)
