"""The softmax at a temperature, ``softmax(z / T)``, for the losses that use it.

:func:`ce_tutorial.distillation_loss` and :func:`ce_tutorial.info_nce` both
divide their logits by a temperature :math:`T > 0` before a softmax. Dividing
first, as ``log_softmax(z / T)`` does, overflows when :math:`T < 1` and the
logits are large (``1e308 / 0.5`` is ``inf``), although the softmax of
``z / T`` is an ordinary distribution. The helpers here shift each row by its
maximum *before* dividing, so nothing overflows that the true result does not.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ._validation import find_logit_error

__all__ = ["Tempered", "check_flag", "check_temperature", "logit_error", "tempered"]


def check_temperature(temperature: object, dtype: np.dtype) -> np.floating:
    """Return ``temperature`` as a positive, finite scalar of ``dtype``.

    A bool, a string or an array is a ``TypeError``; NaN, an infinity, zero
    or a negative number is a ``ValueError``, and so is a temperature that
    the dtype of the computation rounds to 0 or to ``inf`` (``1e-50`` in
    float32), since dividing by it would then be meaningless.
    """
    if isinstance(temperature, bool | np.bool_) or not isinstance(
        temperature, numbers.Real
    ):
        raise TypeError(f"temperature must be a real number, got {temperature!r}")
    try:
        value = float(temperature)
    except OverflowError:  # an int beyond float64: not finite
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"temperature must be positive and finite, got {temperature!r}"
        )
    with np.errstate(over="ignore", under="ignore"):
        cast = dtype.type(temperature)
    if not 0 < cast < np.inf:
        raise ValueError(
            f"temperature = {temperature!r} is {cast!s} in {dtype}, the dtype of "
            f"the computation; it must stay positive and finite there"
        )
    return cast


def check_flag(value: object, name: str) -> bool:
    """``value`` must be a bool (Python's or NumPy's)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def logit_error(z: np.ndarray, name: str):
    """The first bad row of 2-D logits ``z`` as ``(row, error)``, or None.

    NaN, ``+inf`` and a row that is ``-inf`` everywhere are errors;
    ``-inf`` elsewhere marks a masked class (see
    :func:`ce_tutorial._validation.find_logit_error`).
    """
    if z.shape[0] == 0:
        return None
    return find_logit_error(z.max(axis=1), lambda i: f"{name}[{i}]")


class Tempered(NamedTuple):
    """The pieces of ``log_softmax(z / T)`` for 2-D logits ``z``.

    ``log_softmax(z / T) = shifted - log_s[:, None]``, and
    ``T * log_softmax(z / T) = (z - m[:, None]) - T * log_s[:, None]``.
    """

    m: np.ndarray  # (N,) the row maxima of z
    shifted: np.ndarray  # (N, C) (z - m) / T: <= 0, exactly 0 at a maximum
    log_s: np.ndarray  # (N,) log(sum(exp(shifted))) >= 0


def tempered(z: np.ndarray, temperature: np.floating) -> Tempered:
    r"""Split ``log_softmax(z / T)`` into a shift and a log-sum, without overflow.

    ``z`` is a validated 2-D floating array (finite or ``-inf``, no row all
    ``-inf``) and ``temperature`` a positive scalar of its dtype. With
    :math:`m = \max_j z_j`,

    .. math:: \log \operatorname{softmax}(z / T)_j = \frac{z_j - m}{T}
        - \log\Bigl(1 + \sum_{j \ne k} e^{(z_j - m) / T}\Bigr),

    where :math:`k` is one index of the maximum: its term is exactly 1 and is
    kept out of the sum, so that ``log1p`` keeps a small log-sum accurate
    relative to its size, as :func:`ce_tutorial.logsumexp` does.

    :math:`z_j - m` is exact near the maximum (no cancellation, unlike
    :math:`z_j / T - m / T`). It overflows to ``-inf`` only where the logits
    span more than the dtype's largest number (``1e308`` and ``-1e308``);
    then, for :math:`T > 1`, where dividing may bring the true value back in
    range, that entry is recomputed as :math:`z_j / T - m / T`, whose terms
    cannot overflow. For :math:`T \le 1` the true value is below the dtype's
    range too, and ``-inf`` is its correctly rounded value.
    """
    n = z.shape[0]
    if n == 0:
        return Tempered(np.zeros(0, z.dtype), z.astype(z.dtype), np.zeros(0, z.dtype))
    m = z.max(axis=1)
    with np.errstate(over="ignore"):  # -inf where |z - m| exceeds the range
        diff = z - m[:, None]
        shifted = diff / temperature
    if temperature > 1:
        lost = np.isneginf(diff) & np.isfinite(z)
        if lost.any():
            rows = np.nonzero(lost)[0]
            shifted[lost] = z[lost] / temperature - m[rows] / temperature
    rest = np.exp(shifted)
    rest[np.arange(n), np.argmax(shifted, axis=1)] = 0.0
    log_s = np.log1p(rest.sum(axis=1))
    return Tempered(m, shifted, log_s)
