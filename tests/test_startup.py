"""A server worker starts without the heavy libraries: SciPy, NumPy, holidays, zxing-cpp
and Pillow are imported where they are used, so ``patron serve`` answers ``/health`` soon
after it starts (``python -m bench startup`` prints the time it takes)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("scipy", "numpy", "holidays", "zxingcpp", "PIL")

# In a fresh interpreter: this one has imported them all for other tests.
_IMPORTED_AT_START = f"""
import json, sys
import patron.cli.main
import patron.app
patron.app.server_app()
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))))
"""


def test_a_server_worker_starts_without_the_heavy_libraries() -> None:
    run = subprocess.run([sys.executable, "-c", _IMPORTED_AT_START], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []
