"""RFM: recency, frequency and spend scored 1-5 against a merchant's quintiles, and the
named segment they put a member in. Pure: no session.

The scheduled refit (``scores.refit``) computes each merchant's quintile boundaries from
its members' stats; a member's scores are then computed from their live stats whenever
they are asked for (``score``), so the purchase just made already counts. Scores are 1 to
5, 5 the best: the most recent, the most frequent, the highest spending fifth.

Segments (docs/scores.md), first match wins:

============== ====================================================================
new            one purchase, made within ``NEW_DAYS``
champions      recency >= 4 and frequency >= 4
loyal          recency >= 3 and frequency >= 4
at_risk        recency <= 2 and frequency >= 3: they came often, and have stopped
hibernating    recency <= 2: they came rarely, long ago
promising      recency >= 4: recent, not frequent yet
needs_attention the rest (recency 3, frequency below 4)
============== ====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

QUINTILES = (0.2, 0.4, 0.6, 0.8)
NEW_DAYS = 30


class Segment(StrEnum):
    new = "new"
    champions = "champions"
    loyal = "loyal"
    at_risk = "at_risk"
    hibernating = "hibernating"
    promising = "promising"
    needs_attention = "needs_attention"


@dataclass(frozen=True)
class Boundaries:
    """The four cuts between quintiles of each measure, ascending."""

    recency_days: tuple[float, ...]
    frequency: tuple[float, ...]
    spend_minor: tuple[float, ...]

    @classmethod
    def of(cls, *, recency_days: Sequence[float], frequency: Sequence[float],
           spend_minor: Sequence[float]) -> Boundaries:
        """The quintile cuts of the members' measures (one value per member)."""
        if not len(recency_days) == len(frequency) == len(spend_minor) > 0:
            raise ValueError("one value per member of each measure, at least one member")
        return cls(recency_days=_cuts(recency_days), frequency=_cuts(frequency),
                   spend_minor=_cuts(spend_minor))

    def as_json(self) -> dict[str, list[float]]:
        return {"recency_days": list(self.recency_days), "frequency": list(self.frequency),
                "spend_minor": list(self.spend_minor)}

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> Boundaries:
        return cls(recency_days=tuple(data["recency_days"]),
                   frequency=tuple(data["frequency"]),
                   spend_minor=tuple(data["spend_minor"]))


def _cuts(values: Sequence[float]) -> tuple[float, ...]:
    import numpy as np  # here: the server's start does not pay for it

    array = np.asarray(values, dtype=np.float64)
    return tuple(float(cut) for cut in np.quantile(array, QUINTILES))


def _rank(value: float, cuts: tuple[float, ...]) -> int:
    """1 + the number of cuts strictly below ``value``: 1 to 5, higher for more."""
    return 1 + sum(1 for cut in cuts if value > cut)


@dataclass(frozen=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int
    segment: Segment


def score(boundaries: Boundaries, *, recency_days: float, frequency: int, spend_minor: int,
          days_since_first: float) -> Rfm:
    """A member's RFM scores and segment from their stats (recency: days since the last
    purchase; frequency: purchases; spend in minor units; days since the first)."""
    # Fewer days since the last purchase is better: rank the negated value.
    recency = 6 - _rank(recency_days, boundaries.recency_days)
    frequency_score = _rank(frequency, boundaries.frequency)
    monetary = _rank(spend_minor, boundaries.spend_minor)
    return Rfm(recency=recency, frequency=frequency_score, monetary=monetary,
               segment=segment(recency=recency, frequency=frequency_score,
                               purchases=frequency, days_since_first=days_since_first))


def segment(*, recency: int, frequency: int, purchases: int,
            days_since_first: float) -> Segment:
    if purchases <= 1 and days_since_first <= NEW_DAYS:
        return Segment.new
    if recency >= 4 and frequency >= 4:
        return Segment.champions
    if recency >= 3 and frequency >= 4:
        return Segment.loyal
    if recency <= 2 and frequency >= 3:
        return Segment.at_risk
    if recency <= 2:
        return Segment.hibernating
    if recency >= 4:
        return Segment.promising
    return Segment.needs_attention
