"""Two versions of the fused head side by side, against the three matrix products.

Run as a script (timings belong in a report, not in CI)::

    git show 306e5fe:ce_tutorial/_fused.py > /tmp/old_fused.py
    python benchmarks/compare_fused.py /tmp/old_fused.py
    python benchmarks/compare_fused.py /tmp/old_fused.py --shape 2048x128x6405

``OLD`` is a copy of an earlier ``ce_tutorial/_fused.py``; it is loaded as a
module of the installed package, beside the current one, so both run in the
same process on the same arrays. For each shape and thread count (1 and 2
BLAS threads, ``threadpoolctl``) the three contenders, the old and the new
``linear_cross_entropy(..., return_grad=True)`` and ``bench_fused.py``'s
``3 products``, are timed in the order products, old, products, new (new
first every other repeat), 0.2 s of rest before each call, and the medians
are printed with their ratio to the products. Each version of the head
runs right after the products, never after the other version: the products
write a full ``N x V`` array, and whatever runs next starts with the caches
and the memory that leaves (a call right after them measured up to 6 %
slower than the same code after another call). A change is judged by
``new / old`` in the same run: on a shared machine, runs at different times
differ more than that.
The largest difference between the old and the new answers, relative to the
largest entry of each output, is printed too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

import ce_tutorial._fused as new

sys.path.insert(0, os.path.dirname(__file__))
from bench_fused import SHAPES, make_data, products, time_after_products


def load_old(path: str):
    """The module in ``path``, loaded as ``ce_tutorial._fused_old``."""
    spec = importlib.util.spec_from_file_location("ce_tutorial._fused_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def compare(old, n: int, d: int, v: int, threads: int, repeats: int) -> str:
    h, w, y = make_data(n, d, v)
    calls = {
        "3 products": products(h, w, y, "forward+backward"),
        "old": lambda: old.linear_cross_entropy(h, w, y, return_grad=True),
        "new": lambda: new.linear_cross_entropy(h, w, y, return_grad=True),
    }
    with threadpool_limits(threads, user_api="blas"):
        answers = {name: calls[name]() for name in ("old", "new")}
        calls["3 products"]()
        times = time_after_products(calls, ("old", "new"), repeats)
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))
        for a, b in zip(answers["old"], answers["new"], strict=True)
    )
    med = {name: float(np.median(t)) for name, t in times.items()}
    base = med["3 products"]
    return (
        f"{f'{n}x{d}x{v}':>16} {threads:>7} {base:9.3f} {med['old']:7.3f} "
        f"{med['new']:7.3f} {med['old'] / base:9.3f} {med['new'] / base:9.3f} "
        f"{med['new'] / med['old']:7.3f} {diff:9.1e} {os.getloadavg()[0]:5.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="a copy of an earlier ce_tutorial/_fused.py")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", action="append", metavar="NxDxV")
    args = parser.parse_args(argv)
    old = load_old(args.old)
    shapes = SHAPES
    if args.shape:
        shapes = [tuple(int(k) for k in s.split("x")) for s in args.shape]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, old: {args.old}")
    print(
        f"{'N x d x V':>16} {'threads':>7} {'3 prod s':>9} {'old s':>7} "
        f"{'new s':>7} {'old/3prod':>9} {'new/3prod':>9} {'new/old':>7} "
        f"{'max diff':>9} {'load':>5}"
    )
    for shape in shapes:
        for threads in (1, 2):
            print(compare(old, *shape, threads, args.repeats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
