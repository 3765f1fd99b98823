"""What a looser memory rule would buy the fused head: time and memory against
the chunk size.

Run as a script (timings belong in a report, not in CI)::

    python benchmarks/sweep_chunk_fraction.py
    python benchmarks/sweep_chunk_fraction.py --fractions 11 8 6 4 --repeats 3

``linear_cross_entropy`` takes chunks of at most ``ceil(N / 11)`` rows
(``MAX_CHUNK_FRACTION``), so that its memory stays under an eighth of the
``N x V`` logits. For each fraction ``k`` given, this script sets the
constant to ``k`` for the length of one measurement (an experiment only: the
package never changes it) and reports, at each of ``bench_fused.py``'s shapes
and at 1 and 2 BLAS threads:

- the median time of ``linear_cross_entropy(..., return_grad=True)`` divided
  by that of the three whole-batch products (``bench_fused.py``'s
  ``3 products``), all timed in one run, each fraction's call right after a
  call of the products (the order of the fractions reversed every other
  repeat);
- the peak memory beyond the returned gradients (``tracemalloc``, one call),
  as a fraction of the logits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ce_tutorial import _fused, linear_cross_entropy

sys.path.insert(0, os.path.dirname(__file__))
from bench_fused import SHAPES, make_data, products, time_after_products


def with_fraction(fraction: int, call):
    """Run ``call()`` with ``MAX_CHUNK_FRACTION = fraction``, then restore it."""
    saved = _fused.MAX_CHUNK_FRACTION
    _fused.MAX_CHUNK_FRACTION = fraction
    try:
        return call()
    finally:
        _fused.MAX_CHUNK_FRACTION = saved


def memory_share(h, w, y, fraction: int) -> float:
    """Peak extra memory of one call, beyond its gradients, over the logits."""

    def traced():
        tracemalloc.start()
        try:
            _, grad_h, grad_w = linear_cross_entropy(h, w, y, return_grad=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return peak - grad_h.nbytes - grad_w.nbytes

    extra = with_fraction(fraction, traced)
    return extra / (h.shape[0] * w.shape[0] * h.dtype.itemsize)


def sweep(n, d, v, fractions: Sequence[int], threads: int, repeats: int) -> str:
    h, w, y = make_data(n, d, v)
    calls = {"3 products": products(h, w, y, "forward+backward")}
    for k in fractions:
        calls[k] = lambda k=k: with_fraction(
            k, lambda: linear_cross_entropy(h, w, y, return_grad=True)
        )
    with threadpool_limits(threads, user_api="blas"):
        for call in calls.values():
            call()
        times = time_after_products(calls, fractions, repeats)
    base = float(np.median(times["3 products"]))
    cells = []
    for k in fractions:
        rows = with_fraction(k, lambda: _fused.chunk_rows(n, v, h.dtype.itemsize, d))
        ratio = float(np.median(times[k])) / base
        share = memory_share(h, w, y, k) if threads == 1 else float("nan")
        cells.append(f"N/{k}: {rows} rows {ratio:.3f}x mem {share:.3f}")
    load = os.getloadavg()[0]
    return f"{f'{n}x{d}x{v}':>16} {threads} | " + " | ".join(cells) + f" | {load:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fractions",
        type=int,
        nargs="+",
        default=[_fused.MAX_CHUNK_FRACTION, 8, 6, 4],
        help="k in chunks of N/k rows (default: the package's rule first)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; per fraction: "
        "chunk rows, time / 3 products, memory / logits (1 thread only); load"
    )
    for shape in SHAPES:
        for threads in (1, 2):
            print(sweep(*shape, args.fractions, threads, args.repeats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
