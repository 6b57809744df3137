"""Synthetic purchase histories drawn from known BG/NBD and Gamma-Gamma parameters: what
the tests and the benchmark fit the models to (patron.scores.clv).

Per member, exactly as the models assume:

- the age T (days since the first purchase) is uniform between ``min_age`` and
  ``max_age``: first purchases spread evenly over the programme's life;
- a purchase rate lambda ~ Gamma(r, rate alpha) and a dropout probability p ~ Beta(a, b);
  repeat purchases arrive as a Poisson process of rate lambda, and right after each one
  the member drops out for good with probability p;
- a spend rate nu ~ Gamma(q, rate v), and each repeat purchase's spend ~ Gamma(p, nu).

Drawn without a loop over members or purchases: the number of repeat purchases until the
dropout is geometric (J), the Poisson process makes N ~ Poisson(lambda T) arrivals in
(0, T], so x = min(J, N); given N, the arrival times are N uniform points, so the x-th
is T times a Beta(x, N - x + 1) draw. The mean of x Gamma(p, nu) spends is
Gamma(p x, x nu). The ``horizon_days`` after T continue the same process, counted in
``future_purchases``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from patron.scores.clv import BgNbdParameters, FloatArray, GammaGammaParameters


@dataclass(frozen=True)
class SyntheticMembers:
    frequency: FloatArray  # x, repeat purchases in (0, T]
    recency: FloatArray  # t_x, days from the first purchase to the last
    T: FloatArray  # days from the first purchase to the end of observation
    monetary: FloatArray  # mean spend of the x repeat purchases; 0 where x = 0
    alive: npt.NDArray[np.bool_]  # still buying at T (hidden from the models)
    future_purchases: FloatArray  # purchases in (T, T + horizon_days]

    @property
    def members(self) -> int:
        return int(self.frequency.size)


def draw_members(bgnbd: BgNbdParameters, gamma_gamma: GammaGammaParameters, *,
                 members: int, rng: np.random.Generator, min_age: float = 30.0,
                 max_age: float = 730.0, horizon_days: float = 0.0) -> SyntheticMembers:
    if members < 1:
        raise ValueError(f"members must be 1 or more, got {members}")
    if not 0 <= min_age <= max_age:
        raise ValueError(f"ages must satisfy 0 <= min_age <= max_age, got {min_age}, {max_age}")
    if horizon_days < 0:
        raise ValueError(f"horizon_days must be >= 0, got {horizon_days}")
    age = rng.uniform(min_age, max_age, members)
    rate = rng.gamma(bgnbd.r, 1 / bgnbd.alpha, members)
    # Clipped: a draw that underflows to 0 would be a member who never drops out.
    dropout = np.maximum(rng.beta(bgnbd.a, bgnbd.b, members), 1e-12)
    # Repeat purchases up to and including the one after which the member drops out.
    until_dropout = rng.geometric(dropout)
    arrivals = rng.poisson(rate * age)
    frequency = np.minimum(until_dropout, arrivals)
    repeat = frequency > 0
    recency = np.zeros(members)
    recency[repeat] = age[repeat] * rng.beta(
        frequency[repeat], arrivals[repeat] - frequency[repeat] + 1)
    alive = until_dropout > arrivals
    later = rng.poisson(rate * horizon_days)
    future = np.where(alive, np.minimum(until_dropout - arrivals, later), 0)
    return SyntheticMembers(
        frequency=frequency.astype(np.float64), recency=recency, T=age,
        monetary=_mean_spends(gamma_gamma, frequency, rng), alive=alive,
        future_purchases=future.astype(np.float64))


def _mean_spends(parameters: GammaGammaParameters, frequency: npt.NDArray[np.int64],
                 rng: np.random.Generator) -> FloatArray:
    spend_rate = rng.gamma(parameters.q, 1 / parameters.v, frequency.size)
    monetary = np.zeros(frequency.size)
    repeat = frequency > 0
    x = frequency[repeat]
    monetary[repeat] = rng.gamma(parameters.p * x, 1 / (x * spend_rate[repeat]))
    return monetary
