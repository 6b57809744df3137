"""Run every benchmark in turn: ``python -m bench``; or one, with its own options:
``python -m bench NAME [options]`` (e.g. ``python -m bench checkout --sizes 10000``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from bench import (
    checkout,
    clv,
    codes,
    deliveries,
    identify,
    imports,
    offline,
    pages,
    rules,
    startup,
    vouchers,
)

BENCHMARKS: tuple[tuple[str, Callable[[Sequence[str] | None], None]], ...] = (
    ("startup", startup.main),
    ("identify", identify.main),
    ("checkout", checkout.main),
    ("codes", codes.main),
    ("offline", offline.main),
    ("imports", imports.main),
    ("vouchers", vouchers.main),
    ("deliveries", deliveries.main),
    ("pages", pages.main),
    ("clv", clv.main),
    ("rules", rules.main),
)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    chosen = [(name, run) for name, run in BENCHMARKS if args[:1] == [name]]
    if chosen:
        args = args[1:]
    elif args:
        # Each benchmark has its own options: say which one they are for.
        names = " | ".join(name for name, _ in BENCHMARKS)
        raise SystemExit(f"options go to one benchmark: python -m bench {{{names}}} [options]")
    started = time.perf_counter()
    for name, run in chosen or BENCHMARKS:
        print(f"=== bench.{name} ===", flush=True)
        run(args)
        print()
    print(f"all benchmarks finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
