"""Start-up: how long ``patron serve`` takes from its start to its first ``/health`` 200.

Acceptance (issue 15, item 18): on an idle machine ``patron serve`` answers ``/health``
within 3 s of starting.

What one run does: a fresh SQLite database is migrated (not timed); then ``patron serve``
(one worker, the production app ``patron.app:server_app``) is started on a free port and
``/health`` is asked every 20 ms; the time from starting the process to the first 200 is
one figure. ``--runs`` runs; printed: the machine (its load says whether it was idle),
each run's figure, the median and the worst, PASS / FAIL on the median.

    python -m bench startup [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.environment import describe_machine, say, verdict

TARGET_S = 3.0
DEADLINE_S = 120.0
_PATRON = ("-c", "from patron.cli.main import app; app()")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_to_health(env: dict[str, str]) -> float:
    """Seconds from starting ``patron serve`` to its first ``/health`` 200."""
    port = _free_port()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *_PATRON, "serve", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - started < DEADLINE_S:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise SystemExit(f"patron serve stopped: {process.stderr.read().decode()}")
            time.sleep(0.02)
        raise SystemExit(f"patron serve did not answer /health within {DEADLINE_S:.0f} s")
    finally:
        process.terminate()
        process.communicate(timeout=30)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    say(f"machine:  {describe_machine()}")
    with tempfile.TemporaryDirectory(prefix="patron-startup-") as directory:
        env = {**os.environ, "PATRON_DATABASE_URL": f"sqlite:///{Path(directory)}/start.db",
               "PATRON_JOBS_INTERVAL_SECONDS": "0"}
        subprocess.run([sys.executable, *_PATRON, "db", "upgrade"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        figures = [time_to_health(env) for _ in range(args.runs)]
    say("time to /health: " + ", ".join(f"{figure:.2f} s" for figure in figures))
    median = statistics.median(figures)
    say(f"median {median:.2f} s, worst {max(figures):.2f} s (target <= {TARGET_S:.0f} s on "
        f"an idle machine): {verdict(median <= TARGET_S)}")


if __name__ == "__main__":
    main()
