"""Information theory: entropy and the Kullback-Leibler divergence, in nats.

Together with :func:`ce_tutorial.cross_entropy` on target distributions they
satisfy ``H(p, q) = H(p) + KL(p || q)``: the cross-entropy is the entropy of
the targets plus the extra cost of predicting ``q`` where ``p`` is true.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._validation import (
    as_array,
    check_probabilities,
    compute_dtype,
    find_value_error,
    raise_first,
    sum_tolerance,
)

__all__ = ["entropy", "kl_divergence"]


def _distributions(p: npt.ArrayLike, name: str) -> tuple[np.ndarray, float]:
    """``p`` in its compute dtype, and its sum tolerance; values unchecked."""
    arr = as_array(p, name)
    dtype = compute_dtype(arr.dtype, name)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(
            f"{name} must hold distributions along its last axis, got shape {arr.shape}"
        )
    return arr.astype(dtype, copy=False), sum_tolerance(arr.dtype, arr.shape[-1])


def _prepare_distributions(p: npt.ArrayLike, name: str) -> np.ndarray:
    """Validate probability distributions along the last axis of ``p``."""
    arr, tol = _distributions(p, name)
    check_probabilities(arr, name, tol)
    return arr


def _safe_log(p: np.ndarray) -> np.ndarray:
    """``log(p)`` where ``p > 0`` and 0 elsewhere, without a warning."""
    out = np.zeros_like(p)
    np.log(p, out=out, where=p > 0)
    return out


def entropy(p: npt.ArrayLike) -> np.ndarray | np.floating:
    r"""The Shannon entropy of distributions along the last axis, in nats.

    .. math:: H(p) = -\sum_j p_j \log p_j, \qquad 0 \log 0 = 0.

    Parameters
    ----------
    p : array_like of shape (..., n_classes)
        Probability distributions: finite, within [0, 1], summing to 1 along
        the last axis within ``(32 + sqrt(n_classes))`` times the machine
        epsilon of float32 (or of the dtype, if coarser).

    Returns
    -------
    h : ndarray of shape (...), or scalar
        ``>= 0``; 0 for a one-hot distribution and ``log(n_classes)`` for the
        uniform one. A NumPy scalar for 1-D input.

    Raises
    ------
    TypeError
        If ``p`` is not real-valued.
    ValueError
        If ``p`` is a scalar, its last axis is empty, or it is not a
        distribution along the last axis.

    Examples
    --------
    >>> from ce_tutorial import entropy
    >>> entropy([[0.5, 0.5], [1.0, 0.0]])
    array([0.69314718, 0.        ])
    """
    arr = _prepare_distributions(p, "p")
    return (arr * (0.0 - _safe_log(arr))).sum(axis=-1)[()]


def kl_divergence(p: npt.ArrayLike, q: npt.ArrayLike) -> np.ndarray | np.floating:
    r"""The Kullback-Leibler divergence KL(p || q) along the last axis, in nats.

    .. math:: \mathrm{KL}(p \,\|\, q) = \sum_j p_j \log \frac{p_j}{q_j},
        \qquad 0 \log \frac{0}{q} = 0.

    Parameters
    ----------
    p : array_like of shape (..., n_classes)
        The true distributions.
    q : array_like of the same shape as ``p``
        The approximating distributions.

    Returns
    -------
    kl : ndarray of shape (...), or scalar
        0 where ``p == q``; ``inf`` where some ``p_j > 0`` has ``q_j == 0``.
        A NumPy scalar for 1-D input.

    Raises
    ------
    TypeError
        If ``p`` or ``q`` is not real-valued.
    ValueError
        If either is not a distribution along its last axis, or their shapes
        differ.

    Notes
    -----
    ``H(p, q) = H(p) + KL(p || q)``, where ``H(p, q)`` is the cross-entropy,
    which :func:`ce_tutorial.cross_entropy` computes with target
    distributions ``p`` and predictions ``q``.

    Examples
    --------
    >>> from ce_tutorial import kl_divergence
    >>> kl_divergence([0.5, 0.5], [0.5, 0.5])
    np.float64(0.0)
    >>> print(round(kl_divergence([1.0, 0.0], [0.25, 0.75]), 8))
    1.38629436
    """
    pa, p_tol = _distributions(p, "p")
    qa, q_tol = _distributions(q, "q")
    if pa.shape != qa.shape:
        raise ValueError(f"p has shape {pa.shape} but q has shape {qa.shape}")
    # The first bad row of either is reported; on a tie, p's.
    raise_first(find_value_error(pa, "p", p_tol), find_value_error(qa, "q", q_tol))
    dtype = np.result_type(pa, qa)
    pa, qa = pa.astype(dtype, copy=False), qa.astype(dtype, copy=False)
    terms = pa * (_safe_log(pa) - _safe_log(qa))
    terms[(pa > 0) & (qa == 0)] = np.inf
    return terms.sum(axis=-1)[()]
