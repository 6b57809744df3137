"""The benchmarks run here at a tiny size, in the test process: they point the settings at
their own database and secret key (``bench.environment``), which must not outlive them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from patron.config import get_settings


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
