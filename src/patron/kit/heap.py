"""The server process's heap, settled once it has started.

CPython's cyclic garbage collector walks every tracked object of the oldest generation on
a full collection. A started server holds a few hundred thousand long-lived objects (the
modules, FastAPI's routes and models, SQLAlchemy's mappers and compiled statements), so a
full collection paused a worker for 40-170 ms several times a minute under load — every
request in flight on that worker waited for it (docs/benchmarks.md). ``settle()`` collects
once and moves everything alive into the permanent generation (``gc.freeze``), which the
collector no longer walks: later collections look at what requests allocate only.

Only for a server process, which starts once and lives long: in a process that builds many
apps (the tests) frozen objects would never be collected when they later form garbage
cycles.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect, then freeze what is alive; the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
