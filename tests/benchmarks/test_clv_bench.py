"""The customer-lifetime benchmark (bench/clv.py) at a tiny size, so that it cannot rot:
what it runs and prints, never how fast."""

from __future__ import annotations

import numpy as np
import pytest
from bench import clv as bench_clv

from patron.scores.synthetic import draw_members


def test_the_benchmark_runs_and_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    bench_clv.main(["--members", "3000", "--runs", "2", "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine:  Python ")
    assert lines[1].startswith("synthetic histories: 3,000 members (seed 1), ")
    assert lines[2].startswith("BG/NBD fit, 3,000 members: best ")
    assert lines[3].startswith("  r ") and "(true 0.24, " in lines[3]
    assert lines[4].startswith("Gamma-Gamma fit, ")
    assert lines[5].startswith("  p ") and "(true 6.25, " in lines[5]
    assert lines[6].startswith("scoring 3,000 members (P(alive), expected purchases in 90 "
                               "days, expected spend, CLV): best ")
    assert lines[7].startswith("both fits: best ")
    assert lines[8].startswith("target: both fits for 3,000 members <= 5 s (slowest of 2 "
                               "runs, ")
    assert lines[8].endswith(": PASS")
    assert len(lines) == 9


def test_the_target_is_judged_on_the_slowest_run() -> None:
    members = draw_members(bench_clv.TRUE_BGNBD, bench_clv.TRUE_GAMMA_GAMMA, members=500,
                           rng=np.random.default_rng(2))
    measured = bench_clv.measure(members, runs=1)
    runs = [bench_clv.Run(bgnbd_seconds=1.0, gamma_gamma_seconds=0.5, scoring_seconds=0.1),
            bench_clv.Run(bgnbd_seconds=4.0, gamma_gamma_seconds=1.5, scoring_seconds=0.1)]
    lines = bench_clv.report(bench_clv.Measured(members=members, runs=runs,
                                                bgnbd=measured.bgnbd,
                                                gamma_gamma=measured.gamma_gamma))
    assert lines[-2] == "both fits: best 1.500 s, median 3.500 s, slowest 5.500 s"
    assert lines[-1] == "target: both fits for 500 members <= 5 s (slowest of 2 runs, " \
                        "5.500 s): FAIL"
    runs[1] = bench_clv.Run(bgnbd_seconds=3.0, gamma_gamma_seconds=2.0, scoring_seconds=0.1)
    lines = bench_clv.report(bench_clv.Measured(members=members, runs=runs,
                                                bgnbd=measured.bgnbd,
                                                gamma_gamma=measured.gamma_gamma))
    assert lines[-1].endswith("(slowest of 2 runs, 5.000 s): PASS")


def test_sizes_below_one_are_refused() -> None:
    for option in ("--members", "--runs"):
        with pytest.raises(SystemExit):
            bench_clv.parse_args([option, "0"])
