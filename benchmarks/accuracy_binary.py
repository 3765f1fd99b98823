"""How accurate the binary cross-entropy functions are, against mpmath.

Run as a script::

    python benchmarks/accuracy_binary.py
    python benchmarks/accuracy_binary.py --points 5000

For float32 and float64 it draws logits ``z`` over ``|z| <= 700`` (half of
them uniformly, half as ``±10**u`` with ``u`` uniform in [-3, log10(700)], so
that small and large magnitudes are both well covered), rounds them to the
dtype, and compares each function with a 50-digit mpmath evaluation at the
same (exactly converted) inputs. It prints the largest error in units of the
last place (ulps) of the reference value in that dtype; below the dtype's
smallest normal number, the unit is the subnormal spacing.

- ``sigmoid``, ``log_sigmoid``;
- ``bce_from_logits`` with hard labels (y = 0 and y = 1; the error is relative
  to the loss itself), with soft targets uniform in [0, 1], and with hard
  labels and a ``pos_weight`` uniform in [0, 10];
- ``bce_grad`` (``reduction="sum"``) with hard labels, relative to the result,
  and with soft targets, relative to the larger of its two terms
  ``(1 - y) sigma(z)`` and ``y sigma(-z)`` (the two can cancel);
- ``binary_cross_entropy`` from probabilities ``y_hat = sigmoid(z)`` rounded to
  the dtype, with hard and soft targets.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import mpmath
import numpy as np

import ce_tutorial as ct

DIGITS = 50
DTYPES = (np.float32, np.float64)


def mp(x) -> mpmath.mpf:
    return mpmath.mpf(float(x))


def softplus(z: mpmath.mpf) -> mpmath.mpf:
    if z > 0:
        return z + mpmath.log1p(mpmath.exp(-z))
    return mpmath.log1p(mpmath.exp(z))


def sig(z: mpmath.mpf) -> mpmath.mpf:
    return 1 / (1 + mpmath.exp(-z))


def worst_ulps(
    ours: np.ndarray, refs: Sequence[mpmath.mpf], scales: Sequence, dtype
) -> float:
    worst = 0.0
    with mpmath.workdps(DIGITS):
        for value, ref, scale in zip(ours, refs, scales, strict=True):
            unit = float(np.spacing(np.abs(dtype(float(scale)))))
            worst = max(worst, float(abs(mp(value) - ref) / mp(unit)))
    return worst


def logits(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    uniform = rng.uniform(-700, 700, n - n // 2)
    mags = 10 ** rng.uniform(-3, np.log10(700), n // 2)
    signs = rng.choice([-1.0, 1.0], n // 2)
    return np.concatenate([uniform, signs * mags]).astype(dtype)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"worst error in ulps over {args.points} logits with |z| <= 700")
    print(f"{'function':34} {'float32':>10} {'float64':>10}")
    rows: dict[str, list[float]] = {}
    for dtype in DTYPES:
        z = logits(rng, args.points, dtype)
        hard = rng.integers(0, 2, z.size).astype(np.float64)
        soft = rng.uniform(size=z.size)
        w = rng.uniform(0, 10, z.size)
        with mpmath.workdps(DIGITS):
            zm = [mp(v) for v in z]
            cases: list[tuple[str, Callable[[], np.ndarray], list, list]] = []
            s_ref = [sig(v) for v in zm]
            cases.append(("sigmoid", lambda z=z: ct.sigmoid(z), s_ref, s_ref))
            ls_ref = [-softplus(-v) for v in zm]
            cases.append(("log_sigmoid", lambda z=z: ct.log_sigmoid(z), ls_ref, ls_ref))
            for label, y in (("hard", hard), ("soft", soft)):
                ref = [
                    mp(t) * softplus(-v) + (1 - mp(t)) * softplus(v)
                    for v, t in zip(zm, y, strict=True)
                ]
                cases.append(
                    (
                        f"bce_from_logits, {label} y",
                        lambda z=z, y=y: ct.binary_cross_entropy_from_logits(z, y),
                        ref,
                        ref,
                    )
                )
            ref = [
                mp(wi) * mp(t) * softplus(-v) + (1 - mp(t)) * softplus(v)
                for v, t, wi in zip(zm, hard, w, strict=True)
            ]
            pos_weight_rows = [
                ct.binary_cross_entropy_from_logits(
                    z[i : i + 1], hard[i : i + 1], pos_weight=w[i : i + 1]
                )[0]
                for i in range(z.size)
            ]
            cases.append(
                (
                    "bce_from_logits, hard y, pos_weight",
                    lambda r=pos_weight_rows: np.array(r),
                    ref,
                    ref,
                )
            )
            for label, y in (("hard", hard), ("soft", soft)):
                neg = [(1 - mp(t)) * sig(v) for v, t in zip(zm, y, strict=True)]
                pos = [mp(t) * sig(-v) for v, t in zip(zm, y, strict=True)]
                ref = [a - b for a, b in zip(neg, pos, strict=True)]
                scale = [max(a, b) for a, b in zip(neg, pos, strict=True)]
                cases.append(
                    (
                        f"bce_grad, {label} y",
                        lambda z=z, y=y: ct.binary_cross_entropy_grad(
                            z, y, reduction="sum"
                        ),
                        ref,
                        scale,
                    )
                )
            y_hat = ct.sigmoid(z)
            for label, y in (("hard", hard), ("soft", soft)):
                ref = []
                for p, t in zip(y_hat, y, strict=True):
                    pp, tt = mp(p), mp(t)
                    terms = []
                    if tt > 0:
                        terms.append(-tt * mpmath.log(pp) if pp > 0 else mpmath.inf)
                    if tt < 1:
                        terms.append(
                            -(1 - tt) * mpmath.log1p(-pp) if pp < 1 else mpmath.inf
                        )
                    ref.append(mpmath.fsum(terms))
                ours = ct.binary_cross_entropy(y_hat, y)
                finite = [i for i, r in enumerate(ref) if r != mpmath.inf]
                assert all(ours[i] == np.inf for i in range(z.size) if i not in finite)
                ref_f = [ref[i] for i in finite]
                cases.append(
                    (
                        f"bce (probabilities), {label} y",
                        lambda o=ours[finite]: o,
                        ref_f,
                        ref_f,
                    )
                )
            for name, compute, ref, scale in cases:
                ours = np.asarray(compute())
                assert ours.dtype == dtype, (name, ours.dtype)
                rows.setdefault(name, []).append(worst_ulps(ours, ref, scale, dtype))
    for name, (e32, e64) in rows.items():
        print(f"{name:34} {e32:>10.3f} {e64:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
