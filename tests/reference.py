"""Reference values computed with mpmath at 50 significant digits.

Each float is converted to an ``mpf`` exactly, so the reference is the true
value of the function at the same inputs the package sees, correct far beyond
float64; comparing to it measures the package's own rounding error.
"""

from __future__ import annotations

import mpmath
import numpy as np

DIGITS = 50


def exact_mpf(x) -> mpmath.mpf:
    """``x`` as an mpf, exactly (long doubles through their shortest repr)."""
    if not np.isfinite(x):
        return mpmath.mpf(float(x))
    if np.asarray(x).dtype == np.longdouble:
        return mpmath.mpf(np.format_float_scientific(x, unique=True))
    return mpmath.mpf(float(x))


def _row_logsumexp(row) -> mpmath.mpf:
    finite = [mpmath.mpf(float(x)) for x in row if np.isfinite(x)]
    return mpmath.log(mpmath.fsum(mpmath.exp(x) for x in finite))


def logsumexp_rows(z: np.ndarray) -> list[mpmath.mpf]:
    """``log(sum(exp(z[i])))`` for every row of a 2-D array; -inf entries skip."""
    with mpmath.workdps(DIGITS):
        return [_row_logsumexp(row) for row in z]


def log_softmax_rows(z: np.ndarray) -> list[list[mpmath.mpf]]:
    """``z[i, j] - logsumexp(z[i])`` for every entry of a 2-D array."""
    with mpmath.workdps(DIGITS):
        out = []
        for row in z:
            lse = _row_logsumexp(row)
            out.append([mpmath.mpf(float(x)) - lse for x in row])
        return out


def cross_entropy_rows(
    z: np.ndarray, y: np.ndarray
) -> tuple[list[mpmath.mpf], list[mpmath.mpf]]:
    """The losses ``logsumexp(z[i]) - z[i, y[i]]`` and the log-sums themselves."""
    with mpmath.workdps(DIGITS):
        lse = [_row_logsumexp(row) for row in z]
        losses = [lse[i] - mpmath.mpf(float(z[i, y[i]])) for i in range(len(z))]
        return losses, lse


def label_losses_rows(z: np.ndarray, y: np.ndarray) -> list[mpmath.mpf]:
    """The losses ``log(1 + sum_{j != y[i]} exp(z[i, j] - z[i, y[i]]))``.

    The same values as :func:`cross_entropy_rows`, computed in a form whose
    precision is relative to the loss itself, so that it stays a reference for
    losses far below the 50 digits' resolution of ``logsumexp(z)``.
    """
    with mpmath.workdps(DIGITS):
        out = []
        for row, label in zip(z, y, strict=True):
            true = mpmath.mpf(float(row[label]))
            others = (
                mpmath.exp(mpmath.mpf(float(x)) - true)
                for j, x in enumerate(row)
                if j != label and np.isfinite(x)
            )
            out.append(mpmath.log1p(mpmath.fsum(others)))
        return out


def ulp_error_bound(
    ours: float, ref: mpmath.mpf, lse_ref: mpmath.mpf, dtype, k: int = 4
) -> tuple[float, float]:
    """``(|ours - ref|, k * eps * max(|ref|, |lse_ref|, 1))`` as floats."""
    with mpmath.workdps(DIGITS):
        error = float(abs(mpmath.mpf(float(ours)) - ref))
        scale = float(max(abs(ref), abs(lse_ref), mpmath.mpf(1)))
    return error, k * float(np.finfo(dtype).eps) * scale


def log1p_rows(z: np.ndarray) -> tuple[list[mpmath.mpf], list[list[mpmath.mpf]]]:
    """``logsumexp`` and ``log_softmax`` of every row, accurate relative to size.

    With ``m`` a row's maximum (at index ``k``) and ``t_j = z_j - m`` (exact
    at 50 digits), ``log_s = log1p(sum_{j != k} exp(t_j))``; then
    ``logsumexp = m + log_s`` and ``log_softmax_j = t_j - log_s``. Unlike
    :func:`logsumexp_rows`, a tiny ``log_s`` keeps all its digits, so these
    stay references for the top log-probability of a confident row.
    """
    with mpmath.workdps(DIGITS):
        lse, lp = [], []
        for row in z:
            v = [mpmath.mpf(float(x)) if np.isfinite(x) else None for x in row]
            finite = [x for x in v if x is not None]
            m = max(finite)
            k = v.index(m)
            log_s = mpmath.log1p(
                mpmath.fsum(
                    mpmath.exp(x - m)
                    for j, x in enumerate(v)
                    if j != k and x is not None
                )
            )
            lse.append(m + log_s)
            lp.append([(x - m) - log_s if x is not None else -mpmath.inf for x in v])
        return lse, lp


def softplus(z: mpmath.mpf) -> mpmath.mpf:
    """log(1 + e^z), accurate relative to its size at any z."""
    if z > 0:
        return z + mpmath.log1p(mpmath.exp(-z))
    return mpmath.log1p(mpmath.exp(z))


def sigmoid(z: mpmath.mpf) -> mpmath.mpf:
    """1 / (1 + e^-z)."""
    return 1 / (1 + mpmath.exp(-z))


def binary_loss(z, y, w=1.0) -> mpmath.mpf:
    """``w y softplus(-z) + (1 - y) softplus(z)``, the binary loss from logits."""
    with mpmath.workdps(DIGITS):
        zz, yy, ww = exact_mpf(z), exact_mpf(y), exact_mpf(w)
        return ww * yy * softplus(-zz) + (1 - yy) * softplus(zz)


def binary_grad(z, y, w=1.0) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Its derivative in z, and the larger of its two terms (its error's scale)."""
    with mpmath.workdps(DIGITS):
        zz, yy, ww = exact_mpf(z), exact_mpf(y), exact_mpf(w)
        neg = (1 - yy) * sigmoid(zz)
        pos = ww * yy * sigmoid(-zz)
        return neg - pos, max(neg, pos)
