"""RFM quintiles, scores and named segments (``patron.scores.rfm``)."""

from __future__ import annotations

import pytest

from patron.scores.rfm import Boundaries, Segment, score, segment


def test_boundaries_are_the_quintile_cuts_of_each_measure() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    cuts = Boundaries.of(recency_days=values, frequency=values, spend_minor=values)
    assert cuts.recency_days == pytest.approx((20.8, 40.6, 60.4, 80.2))
    assert Boundaries.from_json(cuts.as_json()) == cuts


def test_scores_run_from_1_to_5_with_recency_reversed() -> None:
    values = [float(v) for v in range(1, 101)]
    cuts = Boundaries.of(recency_days=values, frequency=values, spend_minor=values)
    best = score(cuts, recency_days=1, frequency=100, spend_minor=100, days_since_first=400)
    worst = score(cuts, recency_days=100, frequency=1, spend_minor=1, days_since_first=400)
    assert (best.recency, best.frequency, best.monetary) == (5, 5, 5)
    assert (worst.recency, worst.frequency, worst.monetary) == (1, 1, 1)
    middle = score(cuts, recency_days=50, frequency=50, spend_minor=50, days_since_first=400)
    assert (middle.recency, middle.frequency, middle.monetary) == (3, 3, 3)
    assert best.segment == Segment.champions and worst.segment == Segment.hibernating


def test_ties_put_everyone_with_the_common_value_in_one_score() -> None:
    """Most members bought once: the cuts coincide and one purchase scores 1 for all."""
    frequency = [1.0] * 80 + [2.0] * 10 + [5.0] * 10
    cuts = Boundaries.of(recency_days=[10.0] * 100, frequency=frequency,
                         spend_minor=[100.0] * 100)
    once = score(cuts, recency_days=10, frequency=1, spend_minor=100, days_since_first=60)
    often = score(cuts, recency_days=10, frequency=5, spend_minor=100, days_since_first=60)
    assert once.frequency == 1 and often.frequency == 5


@pytest.mark.parametrize(("recency", "frequency", "purchases", "since_first", "expected"), [
    (5, 1, 1, 10, Segment.new),
    (5, 1, 1, 45, Segment.promising),  # one purchase, no longer new
    (5, 5, 9, 300, Segment.champions),
    (4, 4, 6, 300, Segment.champions),
    (3, 4, 6, 300, Segment.loyal),
    (2, 4, 6, 300, Segment.at_risk),
    (1, 3, 4, 300, Segment.at_risk),
    (2, 2, 2, 300, Segment.hibernating),
    (1, 1, 1, 300, Segment.hibernating),
    (4, 2, 2, 300, Segment.promising),
    (3, 3, 3, 300, Segment.needs_attention),
])
def test_named_segments(recency: int, frequency: int, purchases: int, since_first: float,
                        expected: Segment) -> None:
    assert segment(recency=recency, frequency=frequency, purchases=purchases,
                   days_since_first=since_first) == expected


def test_boundaries_need_one_value_per_member() -> None:
    with pytest.raises(ValueError, match="one value per member"):
        Boundaries.of(recency_days=[], frequency=[], spend_minor=[])
    with pytest.raises(ValueError, match="one value per member"):
        Boundaries.of(recency_days=[1.0], frequency=[1.0, 2.0], spend_minor=[1.0])
