"""Why the fused head's chunked products can be slower on two BLAS threads.

Run as a script (timings belong in a report, not in CI)::

    python benchmarks/bench_fused_threads.py             # quiet machine
    python benchmarks/bench_fused_threads.py --busy      # one core held by a spinner

For one chunk of each shape of ``bench_fused.py`` (``R`` rows, the chunk
``linear_cross_entropy`` takes), it times the products of the chunk the way
the fused head can make them, at one and at two BLAS threads
(``threadpoolctl``), as the minimum and the median of ``--repeats`` calls:

- ``G W``: ``g @ w`` (the ``R x d`` result directly) and ``(w.T @ g.T).T``
  (the same numbers, computed transposed into a ``d x R`` scratch and
  copied back), the product with the long inner dimension ``V``;
- ``G^T H`` in vocabulary slices of the size the fused head uses, and in
  one call: the number of BLAS calls, each ending with its threads waiting
  for each other.

``--busy`` starts one process that spins on a core for the length of the run
(and stops it at the end), standing in for the other work of a shared machine.
The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ce_tutorial import _fused  # the chunk and slice rules

SHAPES = [(2048, 512, 32000), (4096, 768, 50257), (2048, 128, 6405)]


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def best_and_median(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3, float(np.median(times)) * 1e3


def contenders(n: int, d: int, v: int) -> dict[str, Callable[[], object]]:
    rows = _fused.chunk_rows(n, v, 4, d)
    step = _fused.vocab_block_rows(rows, v, d)
    rng = np.random.default_rng(0)
    g = rng.random((rows, v), dtype=np.float32)
    h = rng.standard_normal((rows, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    out, scratch = np.empty((rows, d), np.float32), np.empty((d, rows), np.float32)
    grad_w = np.empty((v, d), np.float32)

    def transposed():
        np.matmul(w.T, g.T, out=scratch)
        out[...] = scratch.T

    def slices():
        for k in range(0, v, step):
            np.matmul(g[:, k : k + step].T, h, out=grad_w[k : k + step])

    return {
        f"G W: g @ w ({rows} rows)": lambda: np.matmul(g, w, out=out),
        "G W: (w.T @ g.T).T": transposed,
        f"G^T H: {len(range(0, v, step))} slices": slices,
        "G^T H: 1 call": lambda: np.matmul(g.T, h, out=grad_w),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--busy", action="store_true", help="hold one core")
    args = parser.parse_args(argv)
    spinner = None
    if args.busy:
        spinner = multiprocessing.Process(target=_spin, args=(3600.0,), daemon=True)
        spinner.start()
    try:
        print(f"load average at the start: {os.getloadavg()}, busy={args.busy}")
        header = ("N x d x V", "product", "1 thread ms", "2 threads ms")
        print("{:>16} {:>30} {:>16} {:>16}".format(*header))
        for shape in SHAPES:
            for name, call in contenders(*shape).items():
                cells = []
                for threads in (1, 2):
                    with threadpool_limits(threads, user_api="blas"):
                        low, mid = best_and_median(call, args.repeats)
                    cells.append(f"{low:7.1f} / {mid:6.1f}")
                label = "x".join(map(str, shape))
                line = f"{label:>16} {name:>30} {cells[0]:>16} {cells[1]:>16}"
                print(line, flush=True)
        print(f"load average at the end: {os.getloadavg()}")
    finally:
        if spinner is not None:
            spinner.terminate()
            spinner.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
