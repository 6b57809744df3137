"""Run every benchmark in turn: ``python -m bench [--database-url URL] [options]``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from bench import identify

BENCHMARKS: tuple[tuple[str, Callable[[Sequence[str] | None], None]], ...] = (
    ("identify", identify.main),
)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    for name, run in BENCHMARKS:
        print(f"=== bench.{name} ===", flush=True)
        run(args)
        print()
    print(f"all benchmarks finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
