"""Control groups (``patron.campaigns.control``): the configured share held out over
10,000 synthetic members, and each member always in the same group."""

from __future__ import annotations

import random
import uuid

import pytest

from patron.campaigns.control import bucket, held_out


def _members(count: int, seed: int) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


def _held_share(share_bp: int, seed: int) -> float:
    campaign = uuid.UUID(int=random.Random(seed * 7).getrandbits(128), version=4)
    members = _members(10_000, seed)
    held = sum(held_out(campaign_id=campaign, member_id=m, share_bp=share_bp)
               for m in members)
    return held / 10_000


@pytest.mark.parametrize("share_bp", [500, 1000, 2000])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_held_out_share_is_within_one_point_of_the_configured_share(
        share_bp: int, seed: int) -> None:
    """Control groups of 5-20 %: over 10,000 members the sampling error's standard
    deviation is 0.2-0.4 points, so 1 point is 2.5 deviations or more."""
    assert abs(_held_share(share_bp, seed) - share_bp / 10_000) <= 0.01 + 1e-12


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_half_and_half_split_is_as_even_as_chance_allows(seed: int) -> None:
    """At 50 % the deviation is 0.5 points over 10,000 members: 1 point is only two of
    them (one seed here lands on exactly 1.0), so this bound is four."""
    assert abs(_held_share(5000, seed) - 0.5) <= 0.02


def test_the_same_member_is_always_in_the_same_group() -> None:
    campaign = uuid.uuid4()
    members = _members(10_000, 9)
    first = [held_out(campaign_id=campaign, member_id=m, share_bp=1000) for m in members]
    again = [held_out(campaign_id=uuid.UUID(str(campaign)), member_id=uuid.UUID(str(m)),
                      share_bp=1000) for m in members]
    assert first == again
    # A larger share keeps everyone the smaller one held out (buckets do not move).
    wider = [held_out(campaign_id=campaign, member_id=m, share_bp=2000) for m in members]
    assert all(w for f, w in zip(first, wider, strict=True) if f)


def test_each_campaign_draws_its_own_group() -> None:
    members = _members(10_000, 4)
    one, two = uuid.uuid4(), uuid.uuid4()
    in_one = {m for m in members if held_out(campaign_id=one, member_id=m, share_bp=1000)}
    in_two = {m for m in members if held_out(campaign_id=two, member_id=m, share_bp=1000)}
    # Independent draws: about 1 % of members are in both, not 10 %.
    assert len(in_one & in_two) < 200


def test_the_edges_and_bad_shares() -> None:
    member, campaign = uuid.uuid4(), uuid.uuid4()
    assert not held_out(campaign_id=campaign, member_id=member, share_bp=0)
    assert held_out(campaign_id=campaign, member_id=member, share_bp=10_000)
    assert 0 <= bucket(campaign_id=campaign, member_id=member) < 10_000
    for bad in (-1, 10_001):
        with pytest.raises(ValueError, match="share_bp"):
            held_out(campaign_id=campaign, member_id=member, share_bp=bad)
