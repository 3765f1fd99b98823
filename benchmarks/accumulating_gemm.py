"""What an accumulating matrix product would buy the fused head.

Run as a script (timings belong in a report, not in CI)::

    python benchmarks/accumulating_gemm.py
    python benchmarks/accumulating_gemm.py --repeats 5

NumPy's ``matmul`` has no ``C += A @ B``: ``linear_cross_entropy`` adds each
chunk's share of ``grad_weight`` through a slice-sized temporary (one more
pass over ``V x d`` numbers per chunk). BLAS's ``sgemm`` with ``beta = 1``
adds in place. This script calls the ``cblas_sgemm`` of the OpenBLAS that
NumPy itself is linked to (found with ``threadpoolctl``, called with
``ctypes``; an experiment only, never used by the package) and times, at
each of ``bench_fused.py``'s shapes and at 1 and 2 BLAS threads, each
contender right after a call of the three whole-batch products:

- ``chunked products``: ``bench_fused.py``'s contender, the three products
  in the package's chunks and slices and nothing else;
- ``chunked, beta=1``: the same, with each chunk's ``grad_weight`` share
  added by ``sgemm`` with ``beta = 1`` (one call per chunk, no slices);
- ``ce_tutorial``: ``linear_cross_entropy(..., return_grad=True)``;
- ``ce_tutorial, beta=1``: the same with its ``grad_weight`` update made by
  that ``sgemm`` (the package's ``_accumulate`` replaced for one call).

It prints each median time divided by that of the three products, and the
largest difference between the two versions' ``grad_weight``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ce_tutorial import _fused, linear_cross_entropy

sys.path.insert(0, os.path.dirname(__file__))
from bench_fused import (
    SHAPES,
    chunked_products,
    make_data,
    products,
    time_after_products,
)

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
# (symbol, integer type): OpenBLAS as NumPy's wheels ship it, then plain builds.
CANDIDATES = (
    ("scipy_cblas_sgemm64_", ctypes.c_int64),
    ("cblas_sgemm64_", ctypes.c_int64),
    ("cblas_sgemm", ctypes.c_int),
)


def numpy_sgemm() -> Callable:
    """``cblas_sgemm`` of the OpenBLAS NumPy uses, or ``RuntimeError``."""
    import numpy.linalg  # noqa: F401  (loads NumPy's BLAS before the lookup)

    for info in threadpool_info():
        if info.get("internal_api") != "openblas":
            continue
        lib = ctypes.CDLL(info["filepath"])
        for name, index in CANDIDATES:
            if hasattr(lib, name):
                f = getattr(lib, name)
                ptr = ctypes.c_void_p
                f.argtypes = [ctypes.c_int] * 3 + [index] * 3 + [ctypes.c_float]
                f.argtypes += [ptr, index, ptr, index, ctypes.c_float, ptr, index]
                f.restype = None
                return f
    raise RuntimeError("NumPy's BLAS is not an OpenBLAS with a cblas_sgemm")


SGEMM = None


def add_product(grad_w: np.ndarray, g: np.ndarray, hc: np.ndarray, beta: float):
    """``grad_w <- g.T @ hc + beta * grad_w`` in place, float32 only."""
    global SGEMM
    if SGEMM is None:
        SGEMM = numpy_sgemm()
    for name, a in (("grad_w", grad_w), ("g", g), ("hc", hc)):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous float32, got {a.dtype}")
    (r, v), d = g.shape, hc.shape[1]
    if hc.shape[0] != r or grad_w.shape != (v, d):
        raise ValueError(f"shapes {grad_w.shape} != {g.shape}.T @ {hc.shape}")
    SGEMM(ROW_MAJOR, TRANS, NO_TRANS, v, d, r, 1.0, g.ctypes.data, v,
          hc.ctypes.data, d, beta, grad_w.ctypes.data, d)  # fmt: skip


def chunked_beta1(h, w, y):
    """``bench_fused.chunked_products`` with one ``beta = 1`` call per chunk."""

    def add_share(grad_w, g, hc, first: bool) -> None:
        add_product(grad_w, g, hc, 0.0 if first else 1.0)

    return chunked_products(h, w, y, "forward+backward", add_share)


def _accumulate_beta1(head, g, start, stop, grads, coef=None) -> None:
    """The package's ``_accumulate`` with its ``grad_weight`` slices replaced
    by one ``beta = 1`` product."""
    hc = head.h[start:stop]
    out = grads.h[start:stop]
    with np.errstate(over="ignore", invalid="ignore"):
        _fused._grad_features(g, head.w, out, grads.partial)
        if coef is not None:
            out *= coef[:, None]
            hc = hc * coef[:, None]
        add_product(grads.w, g, hc, 0.0 if start == 0 else 1.0)
        if grads.bias is not None:
            grads.bias += np.add.reduce(g, axis=0) if coef is None else coef @ g


def ours_beta1(h, w, y):
    """``linear_cross_entropy`` with ``_accumulate_beta1``, restored after."""

    def run():
        saved = _fused._accumulate
        _fused._accumulate = _accumulate_beta1
        try:
            return linear_cross_entropy(h, w, y, return_grad=True)
        finally:
            _fused._accumulate = saved

    return run


HEADS = ("chunked products", "chunked, beta=1", "ce_tutorial", "ce_tutorial, beta=1")


def compare(n, d, v, threads: int, repeats: int) -> str:
    h, w, y = make_data(n, d, v)
    calls = {
        "3 products": products(h, w, y, "forward+backward"),
        "chunked products": chunked_products(h, w, y, "forward+backward"),
        "chunked, beta=1": chunked_beta1(h, w, y),
        "ce_tutorial": lambda: linear_cross_entropy(h, w, y, return_grad=True),
        "ce_tutorial, beta=1": ours_beta1(h, w, y),
    }
    with threadpool_limits(threads, user_api="blas"):
        plain, accumulated = calls["ce_tutorial"](), calls["ce_tutorial, beta=1"]()
        for name in ("3 products", "chunked products", "chunked, beta=1"):
            calls[name]()
        times = time_after_products(calls, HEADS, repeats)
    diff = float(np.abs(plain[2] - accumulated[2]).max() / np.abs(plain[2]).max())
    base = float(np.median(times["3 products"]))
    ratios = " ".join(f"{float(np.median(times[k])) / base:>9.3f}" for k in HEADS)
    load = os.getloadavg()[0]
    shape = f"{n}x{d}x{v}"
    return f"{shape:>16} {threads:>2} {base:>8.3f} {ratios} {diff:>9.1e} {load:>5.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("time / 3 products of: chunked products | chunked, beta=1 | ce_tutorial |")
    print("ce_tutorial, beta=1; then the relative grad_weight difference, the load")
    for shape in SHAPES:
        for threads in (1, 2):
            print(compare(*shape, threads, args.repeats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
