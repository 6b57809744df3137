"""The rules benchmark (bench/rules.py) at a tiny size, so that it cannot rot: what it
runs and prints, never how fast."""

from __future__ import annotations

import random

import pytest
from bench import rules as bench_rules

from patron.campaigns.conditions import FIELDS


def test_the_benchmark_runs_and_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    bench_rules.main(["--campaigns", "20", "--lines", "10", "--baskets", "50"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine:  Python ")
    assert lines[1].startswith("20 campaigns, 10-line baskets, 50 checkouts: ")
    assert lines[2].startswith("rules evaluation per checkout: p50 ")
    assert lines[3].startswith("target: p99 <= 2 ms: ")
    assert len(lines) == 4


def test_the_campaigns_read_every_group_and_some_hold() -> None:
    conditions = bench_rules.draw_campaigns(100, random.Random(5))
    read = set().union(*(condition.fields for condition in conditions))
    assert {name.split(".")[0] for name in read} == {"purchase", "member", "env",
                                                      "inventory"}
    assert read <= set(FIELDS)
    measured = bench_rules.measure(campaigns=100, lines=50, baskets=20, seed=5)
    assert len(measured.per_checkout_ms) == 20
    assert 0 < measured.held < 100 * 20  # neither nothing nor everything holds
