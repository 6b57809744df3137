"""Control groups: which members a campaign holds out, chosen deterministically.

A member is held out of a campaign when the first 8 bytes of SHA-256 over the
campaign's and the member's ids, read as an integer and reduced modulo 10,000, fall
below the campaign's share in basis points. The same member is always in the same group
of a campaign (no state to store or lose, the same answer on every server), each
campaign draws its own group (the campaign's id is in the hash), and over many members
the share held out is the configured share (SHA-256 is uniform). Pure.
"""

from __future__ import annotations

import hashlib
import uuid

BASIS_POINTS = 10_000


def bucket(*, campaign_id: uuid.UUID, member_id: uuid.UUID) -> int:
    """The member's bucket for this campaign, 0 to 9,999."""
    digest = hashlib.sha256(b"patron:control:" + campaign_id.bytes + member_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") % BASIS_POINTS


def held_out(*, campaign_id: uuid.UUID, member_id: uuid.UUID, share_bp: int) -> bool:
    """Whether the member is in the campaign's control group (``share_bp``: 0 to 10,000)."""
    if not 0 <= share_bp <= BASIS_POINTS:
        raise ValueError(f"share_bp must be 0 to {BASIS_POINTS}, got {share_bp}")
    return bucket(campaign_id=campaign_id, member_id=member_id) < share_bp
