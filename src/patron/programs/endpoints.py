from __future__ import annotations

import uuid

from fastapi import APIRouter

from patron.http import AUTHED, Caller, Db, problems
from patron.programs import service
from patron.programs.schemas import ProgramRead, ProgramWrite

router = APIRouter(prefix="/v1", tags=["programs"])


@router.get("/merchants/{merchant_id}/program", response_model=ProgramRead,
            responses=problems(*AUTHED))
def get_program(merchant_id: uuid.UUID, db: Db, caller: Caller) -> ProgramRead:
    """The merchant's points program and tiers; `configured: false` means the default
    program (1 point per 100 minor units, floor, 1 point = 1 minor unit, no expiry)."""
    with db.session_scope() as session:
        return service.to_read(
            service.read_program(session, actor=caller, merchant_id=merchant_id))


@router.put("/merchants/{merchant_id}/program", response_model=ProgramRead,
            responses=problems(*AUTHED))
def put_program(merchant_id: uuid.UUID, data: ProgramWrite, db: Db,
                caller: Caller) -> ProgramRead:
    """Replace the whole program, tiers and categories included (merchant or operator key).

    422 codes besides `validation_failed`: `base_tier_threshold_not_zero`,
    `tiers_not_increasing`, `duplicate_tier_name`, `duplicate_category`,
    `category_multiplied_and_excluded` — each with `field` naming the value to fix.
    """
    with db.session_scope() as session:
        return service.to_read(service.put_program(session, actor=caller,
                                                   merchant_id=merchant_id, data=data))
