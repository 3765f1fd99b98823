"""Measure the memory a call allocates, for the tests' memory bounds."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any


def traced_peak(call: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``call()`` under ``tracemalloc``.

    Returns the peak number of bytes allocated during the call, above what was
    allocated before it, and the call's result.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return peak, result
