"""How the rows of a (N, C, d1, ..., dK) input are copied, side by side.

Run as a script::

    python benchmarks/bench_k_dim_rows.py

``cross_entropy_from_logits`` on logits whose classes are on axis 1 copies
each block of rows from its strided positions (``_softmax._GatheredRows``):
by runs of consecutive positions, one slice per sample, where the positions
merge into one axis and the runs are at least ``MIN_RUN`` long, and by
fancy indexing otherwise. This times both ways on the same arrays,
round-robin, one thread, and prints the median times and their ratio.
"""

from __future__ import annotations

import time

import numpy as np

import ce_tutorial as ct
from ce_tutorial import _softmax

SHAPES = [
    ((2_000, 10, 100), "float64"),
    ((8, 10, 25_000), "float64"),
    ((8, 1_000, 512), "float32"),
    ((64, 50, 64), "float64"),
]


def main(repeats: int = 9) -> None:
    ct.set_num_threads(1)
    rng = np.random.default_rng(0)
    cls = _softmax._GatheredRows
    print(f"MIN_RUN = {cls.MIN_RUN}; median of {repeats} calls, one thread")
    print(
        f"{'shape':>18} {'dtype':>8} {'runs ms':>9} {'index ms':>9} {'index/runs':>11}"
    )
    for shape, dtype in SHAPES:
        z = rng.standard_normal(shape).astype(dtype)
        y = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
        times = {"runs": [], "index": []}
        for _ in range(repeats):
            for way in times:
                cls.MIN_RUN = 1 if way == "runs" else np.iinfo(np.int64).max
                start = time.perf_counter()
                ct.cross_entropy_from_logits(z, y)
                times[way].append(time.perf_counter() - start)
        cls.MIN_RUN = 256
        runs, index = (float(np.median(t)) * 1e3 for t in times.values())
        print(
            f"{'x'.join(map(str, shape)):>18} {dtype:>8} {runs:9.1f} {index:9.1f} "
            f"{index / runs:11.2f}"
        )


if __name__ == "__main__":
    main()
