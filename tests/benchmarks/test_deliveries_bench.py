"""The deliveries benchmark (bench/deliveries.py) at a tiny size, so that it cannot rot:
what it runs and prints, never how fast."""

from __future__ import annotations

import pytest
from bench import deliveries

pytestmark = pytest.mark.slow


def test_the_benchmark_runs_and_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    deliveries.main(["--events", "40", "--members", "10", "--rate", "4", "--seconds", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine:  Python ")
    assert lines[1].startswith("webhooks: 40 deliveries to a local sink at ")
    assert lines[2].startswith("e-mail: 40 deliveries to a local sink at ")
    assert lines[3].startswith("commit to inbox at 4 checkouts/s for 2 s: 8 of 8 arrived; p50 ")
    assert len(lines) == 4
