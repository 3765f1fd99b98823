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

A second table gives the worst error per function, in float32 and float64,
against mpmath at 50 digits: :func:`ce_tutorial.cross_entropy_from_logits`
(integer labels), :func:`ce_tutorial.log_softmax`,
:func:`ce_tutorial.logsumexp` and :func:`ce_tutorial.softmax`, over every
entry of ``--mp-rows`` rows of each number of classes (a tenth as many for
1,000 classes) at every scale, a third of them confident. Its two measures
are those above, per entry: **abs** in ulps of ``max(|ref|, 1)`` and **rel**
in ulps of ``|ref|`` (over references above the subnormal range). The
"max shift" columns compute the same functions by the textbook stable
formulas in the same dtype: ``m + log(sum(exp(z - m)))``, ``(z - m) -
log(sum(exp(z - m)))``, ``exp(z - m) / sum(exp(z - m))`` and, for the loss,
as above.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import mpmath
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


def max_shift_functions(z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The textbook stable formulas, all in ``z.dtype``."""
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    return {
        "cross_entropy_from_logits": max_shift_losses(z, y),
        "log_softmax": (z - m) - np.log(s),
        "logsumexp": (m + np.log(s))[:, 0],
        "softmax": e / s,
    }


def ce_tutorial_functions(z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "cross_entropy_from_logits": ce_tutorial.cross_entropy_from_logits(z, y),
        "log_softmax": ce_tutorial.log_softmax(z),
        "logsumexp": ce_tutorial.logsumexp(z),
        "softmax": ce_tutorial.softmax(z),
    }


FUNCTIONS = ("cross_entropy_from_logits", "log_softmax", "logsumexp", "softmax")


def mpmath_references(z: np.ndarray, y: np.ndarray) -> dict[str, list]:
    """Every function's exact values (to 50 digits) on the rows of ``z``."""
    out: dict[str, list] = {name: [] for name in FUNCTIONS}
    with mpmath.workdps(50):
        for row, label in zip(z, y, strict=True):
            v = [mpmath.mpf(float(x)) for x in row]
            k = max(range(len(v)), key=v.__getitem__)
            t = [x - v[k] for x in v]  # exact at 50 digits for these inputs
            log_s = mpmath.log1p(
                mpmath.fsum(mpmath.exp(x) for j, x in enumerate(t) if j != k)
            )
            true = v[label]
            loss = mpmath.log1p(
                mpmath.fsum(mpmath.exp(x - true) for j, x in enumerate(v) if j != label)
            )
            out["cross_entropy_from_logits"].append([loss])
            out["logsumexp"].append([v[k] + log_s])
            out["log_softmax"].append([x - log_s for x in t])
            out["softmax"].append([mpmath.exp(x - log_s) for x in t])
    return out


def worst_ulps(values: np.ndarray, refs: list, dtype) -> tuple[float, float]:
    """The largest abs and rel errors of ``values`` against mpmath ``refs``."""
    info = np.finfo(dtype)
    eps, normal = mpmath.mpf(float(info.eps)), mpmath.mpf(float(info.tiny)) * 2**30
    worst_abs = worst_rel = mpmath.mpf(0)
    flat = np.asarray(values).reshape(len(refs), -1)
    with mpmath.workdps(50):
        for got_row, ref_row in zip(flat, refs, strict=True):
            for got, ref in zip(got_row, ref_row, strict=True):
                error = abs(mpmath.mpf(float(got)) - ref)
                worst_abs = max(worst_abs, error / (eps * max(abs(ref), 1)))
                if abs(ref) >= normal:
                    worst_rel = max(worst_rel, error / (eps * abs(ref)))
    return float(worst_abs), float(worst_rel)


def function_table(
    rng: np.random.Generator, rows: int, print_line: Callable[[str], None] = print
) -> dict[tuple[str, str], tuple[float, ...]]:
    """Print and return the worst error per function and dtype."""
    worst: dict[tuple[str, str], list[float]] = {}
    for dtype in DTYPES:
        for c in CLASSES:
            n = rows if c < 1000 else max(1, rows // 10)
            for scale in SCALES:
                z, y = make_data(rng, n, c, scale, dtype)
                refs = mpmath_references(z, y)
                ours = ce_tutorial_functions(z, y)
                with np.errstate(divide="ignore", over="ignore"):
                    theirs = max_shift_functions(z, y)
                for name in FUNCTIONS:
                    key = (name, np.dtype(dtype).name)
                    cell = worst.setdefault(key, [0.0, 0.0, 0.0, 0.0])
                    found = (
                        *worst_ulps(ours[name], refs[name], dtype),
                        *worst_ulps(theirs[name], refs[name], dtype),
                    )
                    worst[key] = [max(a, b) for a, b in zip(cell, found, strict=True)]
    print_line("")
    print_line(f"{'function':26} {'dtype':8} | {'ce_tutorial':^23} | {'max shift':^23}")
    print_line(f"{'':26} {'':8} | {'abs':>10} {'rel':>12} | {'abs':>10} {'rel':>12}")
    for (name, dtype_name), (a, r, a2, r2) in sorted(worst.items()):
        ours, theirs = f"{a:>10.2f} {r:>12.4g}", f"{a2:>10.2f} {r2:>12.4g}"
        print_line(f"{name:26} {dtype_name:8} | {ours} | {theirs}")
    return {k: tuple(v) for k, v in worst.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument(
        "--mp-rows",
        type=int,
        default=None,
        help="rows per case for the mpmath table (default: min(100, --rows))",
    )
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
    mp_rows = min(100, args.rows) if args.mp_rows is None else args.mp_rows
    function_table(np.random.default_rng(2), mp_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
