"""The history-import benchmark (bench/imports.py) at a tiny size on SQLite, so that it
cannot rot: it runs the two commands, reads their summaries and judges the second run,
never how fast."""

from __future__ import annotations

import re

import pytest
from bench import imports as bench_imports

from tests.conftest import IS_POSTGRES

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="runs its own SQLite files")


def test_the_benchmark_imports_a_history_twice_and_prints_its_figures(
        capsys: pytest.CaptureFixture[str]) -> None:
    bench_imports.main(["--members", "200", "--purchases", "600", "--no-postgres"])
    printed = capsys.readouterr().out
    assert "SQLite: 20 members" in printed and "SQLite: 200 members" in printed
    assert printed.count("run again: 0 and 0 imported") == 2
    assert "imported 200 members and" in printed
    assert "peak memory" in printed and "purchases/s" in printed
    assert "target: <= 30 s and <= 300 MB" in printed
    assert "history import:" in printed
    # The refit after the import scores every member with purchases on two days or more.
    [(repeaters, scored)] = re.findall(
        r"([\d,]+) have purchases on two days or more, ([\d,]+) of them scored",
        printed.split("SQLite: 200 members")[1])
    assert int(scored.replace(",", "")) == int(repeaters.replace(",", "")) > 0


def test_a_summary_figure_is_read_from_the_commands_output() -> None:
    said = "2,000 rows read: 1,234 purchases imported, 5 already there, 0 refused"
    assert bench_imports._count(said, "purchases imported") == 1234
    assert bench_imports._count(said, "members imported") == -1
