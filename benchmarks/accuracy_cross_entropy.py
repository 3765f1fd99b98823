"""How accurate the cross-entropy loss from logits is, against a reference.

Run as a script::

    python benchmarks/accuracy_cross_entropy.py
    python benchmarks/accuracy_cross_entropy.py --rows 5000

It compares two ways of computing the loss of integer labels from logits:

- ``ce_tutorial``: :func:`ce_tutorial.cross_entropy_from_logits`, which shifts
  each row by its true-class logit and takes ``log1p`` (its Notes say when it
  falls back to the row maximum);
- ``max shift``: the usual stable formula, ``(m - z_y) + log(sum(exp(z - m)))``
  with ``m`` the row maximum, in the same dtype (``ce_tutorial`` computed this
  until its streaming kernel changed).

The reference is ``log1p(sum_{j != y} exp(z_j - z_y))`` in ``np.longdouble``,
whose error is far below one ulp of float64 on x86-64 Linux, where
``longdouble`` has a 64-bit significand. (On platforms where it is plain
float64, the float64 rows mean nothing; the script says so.)

For each dtype, number of classes and logit scale it prints two error
measures, as maxima over the rows:

- **abs**: ``|loss - ref| / (eps * max(|ref|, 1))``, the error in units of the
  last place of ``max(loss, 1)``. This is what the package's tests bound.
- **rel**: ``|loss - ref| / (eps * ref)`` over rows whose loss is at least
  ``2**30`` times the dtype's smallest normal number: the error relative to the
  loss itself, which matters for the tiny losses of confident predictions.

A third of the rows are made confident by adding ``10 * scale`` to the true
class's logit.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

import ce_tutorial

DTYPES = (np.float32, np.float64)
CLASSES = (2, 10, 1000)
SCALES = (0.1, 1.0, 5.0, 30.0, 100.0)


def max_shift_losses(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(m - z_y) + log(sum(exp(z - m)))``, all in ``z.dtype``."""
    m = z.max(axis=1)
    s = np.exp(z - m[:, None]).sum(axis=1)
    with np.errstate(over="ignore"):
        return (m - z[np.arange(len(z)), y]) + np.log(s)


def reference_losses(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The loss in long double, in a form that is accurate for tiny losses."""
    zl = z.astype(np.longdouble)
    rows = np.arange(len(z))
    e = np.exp(zl - zl[rows, y][:, None])
    e[rows, y] = 0
    return np.log1p(e.sum(axis=1))


def errors(
    loss: np.ndarray, ref: np.ndarray, dtype: type[np.floating]
) -> tuple[float, float]:
    """The largest abs and rel errors, in ulps, as described above."""
    info = np.finfo(dtype)
    error = np.abs(loss.astype(np.longdouble) - ref)
    absolute = error / (info.eps * np.maximum(np.abs(ref), 1))
    normal = ref >= info.tiny * 2.0**30
    relative = error[normal] / (info.eps * ref[normal])
    return float(absolute.max()), float(relative.max(initial=0.0))


def make_data(
    rng: np.random.Generator, n: int, c: int, scale: float, dtype: type[np.floating]
) -> tuple[np.ndarray, np.ndarray]:
    z = (rng.standard_normal((n, c)) * scale).astype(dtype)
    y = rng.integers(0, c, size=n)
    confident = n // 3
    z[np.arange(confident), y[:confident]] += dtype(10 * scale)
    return z, y


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        print("warning: longdouble is float64 here; the float64 rows are not valid")
    rng = np.random.default_rng(1)
    print(
        f"{'dtype':8} {'classes':>7} {'scale':>6} | {'ce_tutorial':^23} | "
        f"{'max shift':^23}"
    )
    print(f"{'':8} {'':>7} {'':>6} | {'abs':>10} {'rel':>12} | {'abs':>10} {'rel':>12}")
    for dtype in DTYPES:
        for c in CLASSES:
            rows = args.rows if c < 1000 else args.rows // 10
            for scale in SCALES:
                z, y = make_data(rng, rows, c, scale, dtype)
                ref = reference_losses(z, y)
                ours = errors(ce_tutorial.cross_entropy_from_logits(z, y), ref, dtype)
                theirs = errors(max_shift_losses(z, y), ref, dtype)
                print(
                    f"{np.dtype(dtype).name:8} {c:>7} {scale:>6g} | "
                    f"{ours[0]:>10.2f} {ours[1]:>12.4g} | "
                    f"{theirs[0]:>10.2f} {theirs[1]:>12.4g}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
