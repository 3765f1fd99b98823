"""Side by side: ``logsumexp`` and ``log_softmax`` in the ``log1p`` form, and before.

Run as a script (one thread by default, so that the ratio measures the
kernel, not the scheduler)::

    python benchmarks/bench_log1p.py
    python benchmarks/bench_log1p.py --repeats 9 --threads 2

``old`` is the kernel ``ce_tutorial`` used before: shift by the row maximum,
``m + log(sum(exp(z - m)))``, built here from the same streaming helpers.
``new`` is :func:`ce_tutorial.logsumexp` and :func:`ce_tutorial.log_softmax`
as they are now, which take ``log1p`` of the sum without the maximum's term
on rows where that sum is below 2. The two run alternately, ``--repeats``
times each; the script prints the median times and their ratio new/old.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

import ce_tutorial
from ce_tutorial._softmax import _as_rows, _locator, prepare_logits, shifted_exp_sum
from ce_tutorial._streaming import stream_rows

SHAPES = (
    ((1_000_000, 10), np.float64),
    ((100_000, 1_000), np.float32),
    ((512, 50_257), np.float32),
)


def old_logsumexp(logits: np.ndarray) -> np.ndarray:
    z, dtype, ax = prepare_logits(logits, -1)
    rows, lead = _as_rows(z, ax)
    n, c = rows.shape
    out = np.empty(n, dtype=dtype)

    def kernel(a: int, b: int, work: np.ndarray) -> None:
        m, s = shifted_exp_sum(rows[a:b], dtype, _locator("logits", lead, ax, a), work)
        out[a:b] = m + np.log(s)

    stream_rows(n, c, dtype, kernel)
    return out


def old_log_softmax(logits: np.ndarray) -> np.ndarray:
    z, dtype, ax = prepare_logits(logits, -1)
    rows, lead = _as_rows(z, ax)
    n, c = rows.shape
    out = np.empty((n, c), dtype=dtype)

    def kernel(a: int, b: int, work: np.ndarray) -> None:
        block = rows[a:b]
        m, s = shifted_exp_sum(block, dtype, _locator("logits", lead, ax, a), work)
        np.subtract(block, m[:, None], out=out[a:b])
        out[a:b] -= np.log(s)[:, None]

    stream_rows(n, c, dtype, kernel)
    return out


def median_time(f, z: np.ndarray, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(z)
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=float, default=5.0)
    args = parser.parse_args(argv)
    previous = ce_tutorial.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    pairs = (
        ("logsumexp", old_logsumexp, ce_tutorial.logsumexp),
        ("log_softmax", old_log_softmax, ce_tutorial.log_softmax),
    )
    print(f"threads={args.threads} scale={args.scale} repeats={args.repeats}")
    print(
        f"{'function':12} {'shape':>16} {'dtype':8} {'old ms':>8} {'new ms':>8} "
        f"{'new/old':>8}"
    )
    try:
        for shape, dtype in SHAPES:
            z = (rng.standard_normal(shape) * args.scale).astype(dtype)
            for name, old, new in pairs:
                old(z), new(z)  # warm up
                t_old, t_new = [], []
                for _ in range(args.repeats):  # alternate, so drift hits both
                    t_old += median_time(old, z, 1)
                    t_new += median_time(new, z, 1)
                a, b = np.median(t_old), np.median(t_new)
                print(
                    f"{name:12} {'x'.join(map(str, shape)):>16} "
                    f"{np.dtype(dtype).name:8} {a * 1e3:8.1f} {b * 1e3:8.1f} "
                    f"{b / a:8.3f}"
                )
    finally:
        ce_tutorial.set_num_threads(previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
