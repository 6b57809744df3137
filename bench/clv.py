"""Customer-lifetime models: the fit time of BG/NBD and Gamma-Gamma for 20,000 members.

Acceptance (issue 5): ``make bench`` prints the fit time for 20,000 members, target
<= 5 s (both fits).

What one run does, in this process and without a database: ``--members`` synthetic
purchase histories are drawn from known parameters (``patron.scores.synthetic``; not
timed): BG/NBD r = 0.24, alpha = 30.87 days, a = 0.79, b = 2.43 (the CDNOW estimates of
Fader, Hardie & Lee 2005 with alpha turned from weeks into days) and Gamma-Gamma p = 6.25,
q = 3.74, v = 15.44, members' ages uniform over 30 to 730 days. Then, ``--runs`` times on
the same histories: ``fit_bgnbd``, ``fit_gamma_gamma`` and ``score_members`` (P(alive),
expected purchases in 90 days, expected spend and CLV for every member), each timed. The
target is judged on the slowest run's two fits together. The recovered parameters are
printed beside the true ones (at 20,000 members the Gamma-Gamma ones can be 10-15 % off:
that is sampling error, which the tests bound at larger sizes).

    python -m bench clv [--members 20000] [--runs 3] [--seed 2005]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.environment import describe_machine, say, verdict
from patron.scores.clv import (
    DEFAULT_HORIZON_DAYS,
    BgNbdFit,
    BgNbdParameters,
    GammaGammaFit,
    GammaGammaParameters,
    fit_bgnbd,
    fit_gamma_gamma,
    score_members,
)
from patron.scores.synthetic import SyntheticMembers, draw_members

TARGET_SECONDS = 5.0
TRUE_BGNBD = BgNbdParameters(r=0.24, alpha=4.41 * 7, a=0.79, b=2.43)
TRUE_GAMMA_GAMMA = GammaGammaParameters(p=6.25, q=3.74, v=15.44)


@dataclass(frozen=True)
class Run:
    bgnbd_seconds: float
    gamma_gamma_seconds: float
    scoring_seconds: float

    @property
    def fit_seconds(self) -> float:
        return self.bgnbd_seconds + self.gamma_gamma_seconds


@dataclass(frozen=True)
class Measured:
    members: SyntheticMembers
    runs: list[Run]
    bgnbd: BgNbdFit
    gamma_gamma: GammaGammaFit


def measure(members: SyntheticMembers, runs: int) -> Measured:
    timed = []
    for _ in range(runs):
        started = time.perf_counter()
        bgnbd = fit_bgnbd(frequency=members.frequency, recency=members.recency, T=members.T)
        fitted = time.perf_counter()
        gamma_gamma = fit_gamma_gamma(frequency=members.frequency, monetary=members.monetary)
        both = time.perf_counter()
        score_members(bgnbd.parameters, gamma_gamma.parameters, frequency=members.frequency,
                      recency=members.recency, T=members.T, monetary=members.monetary,
                      horizon_days=DEFAULT_HORIZON_DAYS)
        scored = time.perf_counter()
        timed.append(Run(bgnbd_seconds=fitted - started, gamma_gamma_seconds=both - fitted,
                         scoring_seconds=scored - both))
    return Measured(members=members, runs=timed, bgnbd=bgnbd, gamma_gamma=gamma_gamma)


def _times(seconds: list[float]) -> str:
    if len(seconds) == 1:
        return f"{seconds[0]:.3f} s"
    return (f"best {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s, "
            f"slowest {max(seconds):.3f} s")


def _recovered(names: Sequence[str], fitted: object, true: object) -> str:
    parts = []
    for name in names:
        estimate, actual = getattr(fitted, name), getattr(true, name)
        parts.append(f"{name} {estimate:.4g} (true {actual:g}, {estimate / actual - 1:+.1%})")
    return ", ".join(parts)


def report(measured: Measured) -> list[str]:
    members, runs = measured.members, measured.runs
    count = members.members
    bgnbd, gamma_gamma = measured.bgnbd, measured.gamma_gamma
    slowest = max(run.fit_seconds for run in runs)
    return [
        f"BG/NBD fit, {count:,} members: {_times([run.bgnbd_seconds for run in runs])} "
        f"({bgnbd.iterations} iterations, {bgnbd.evaluations} evaluations)",
        f"  {_recovered(('r', 'alpha', 'a', 'b'), bgnbd.parameters, TRUE_BGNBD)}; "
        f"log-likelihood {bgnbd.log_likelihood:,.1f}",
        f"Gamma-Gamma fit, {gamma_gamma.members:,} members with repeat purchases: "
        f"{_times([run.gamma_gamma_seconds for run in runs])} "
        f"({gamma_gamma.iterations} iterations, {gamma_gamma.evaluations} evaluations)",
        f"  {_recovered(('p', 'q', 'v'), gamma_gamma.parameters, TRUE_GAMMA_GAMMA)}; "
        f"log-likelihood {gamma_gamma.log_likelihood:,.1f}",
        f"scoring {count:,} members (P(alive), expected purchases in "
        f"{DEFAULT_HORIZON_DAYS:g} days, expected spend, CLV): "
        f"{_times([run.scoring_seconds for run in runs])}",
        f"both fits: {_times([run.fit_seconds for run in runs])}",
        f"target: both fits for {count:,} members <= {TARGET_SECONDS:g} s (slowest of "
        f"{len(runs)} runs, {slowest:.3f} s): {verdict(slowest <= TARGET_SECONDS)}",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench clv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=20_000,
                        help="synthetic members (default 20000)")
    parser.add_argument("--runs", type=int, default=3,
                        help="timed runs on the same histories (default 3)")
    parser.add_argument("--seed", type=int, default=2005,
                        help="seed of the synthetic histories (default 2005)")
    args = parser.parse_args(argv)
    for option in ("members", "runs"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    say(f"machine:  {describe_machine()}")
    started = time.perf_counter()
    members = draw_members(TRUE_BGNBD, TRUE_GAMMA_GAMMA, members=args.members,
                           rng=np.random.default_rng(args.seed))
    repeat = members.frequency > 0
    say(f"synthetic histories: {members.members:,} members (seed {args.seed}), "
        f"{int(repeat.sum()):,} with repeat purchases, mean {members.frequency.mean():.2f} "
        f"and most {int(members.frequency.max())} repeat purchases, ages "
        f"{members.T.min():.0f}-{members.T.max():.0f} days; drawn in "
        f"{time.perf_counter() - started:.2f} s (not timed)")
    for line in report(measure(members, args.runs)):
        say(line)


if __name__ == "__main__":
    main()
