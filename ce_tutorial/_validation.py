"""Input validation shared by every public function.

All checks live here so that every error is worded the same way and names the
argument and the offending value, in the manner of scikit-learn's messages::

    ValueError: y[3] = 5 is out of range for 4 classes (0 <= y < 4)

Nothing in this module renormalises, clips or otherwise repairs its input: a
value that breaks the contract raises, it is never silently changed.
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

REDUCTIONS = ("none", "mean", "sum")


def format_index(index: tuple[int, ...]) -> str:
    """Render an index tuple as it would be typed, e.g. ``[1, 2]``."""
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _shift(index: tuple, offset: int) -> tuple:
    """Move a block-local index to the whole array's row numbering."""
    return (index[0] + offset, *index[1:]) if index else index


def as_array(x: npt.ArrayLike, name: str) -> np.ndarray:
    """Convert ``x`` to an ndarray, naming ``name`` when that is impossible."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be read as an array: {exc}") from None


def compute_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """The floating dtype in which to compute for an input of ``dtype``.

    Integers compute in float64, float16 in float32 (so that ``exp(12)`` does
    not overflow), and float32/float64/longdouble in themselves. bool, complex,
    strings and objects are not real numbers and raise ``TypeError``.
    """
    if dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype bool")
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.float64)
    if np.issubdtype(dtype, np.floating):
        return np.promote_types(dtype, np.float32)
    raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")


def sum_tolerance(dtype: np.dtype) -> float:
    """How far from 1 a probability row may sum: ``sqrt(eps)`` of its dtype."""
    if np.issubdtype(dtype, np.floating):
        return float(np.sqrt(np.finfo(dtype).eps))
    return float(np.sqrt(np.finfo(np.float64).eps))


def check_reduction(reduction: object) -> str:
    """Return ``reduction`` if it is one of ``"none"``, ``"mean"``, ``"sum"``."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'none', 'mean' or 'sum', got {reduction!r}"
        )
    return reduction


def reduce(losses: np.ndarray, reduction: str) -> np.ndarray | np.floating:
    """Apply a checked ``reduction`` to per-example ``losses`` of shape (N,)."""
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    check_mean_batch(reduction, losses.shape[0])
    return losses.mean()


def check_mean_batch(reduction: str, n_samples: int) -> None:
    """``reduction="mean"`` needs at least one sample to average over."""
    if reduction == "mean" and n_samples == 0:
        raise ValueError(
            "reduction='mean' is undefined for an empty batch (0 samples); "
            "use reduction='sum' or 'none'"
        )


def check_axis(axis: object, ndim: int, name: str) -> int:
    """Return ``axis`` as a non-negative int for an array of ``ndim`` dimensions."""
    if isinstance(axis, bool | np.bool_) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"axis = {axis} is out of bounds for {name} with {ndim} dimension(s)"
        )
    return int(axis) % ndim


def check_num_classes(num_classes: object) -> int:
    """Return ``num_classes`` as an int >= 1."""
    if isinstance(num_classes, bool | np.bool_) or not isinstance(
        num_classes, numbers.Integral
    ):
        raise TypeError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return int(num_classes)


def check_matrix(x: np.ndarray, name: str) -> None:
    """``x`` must be 2-D, of shape (n_samples, n_classes) with n_classes >= 1."""
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D, of shape (n_samples, n_classes), got shape {x.shape}"
        )
    if x.shape[1] < 1:
        raise ValueError(
            f"{name} has shape {x.shape}: at least one class (column) is needed"
        )


def as_labels(y: npt.ArrayLike, name: str = "y") -> np.ndarray:
    """Convert ``y`` to an array; an empty Python sequence becomes integer."""
    arr = as_array(y, name)
    if arr.size == 0 and not isinstance(y, np.ndarray) and arr.dtype == np.float64:
        # ``np.asarray([])`` is float64, but an empty list holds no floats.
        arr = arr.astype(np.intp)
    return arr


def check_labels(y: np.ndarray, n_samples: int, n_classes: int, name: str = "y"):
    """``y`` must hold integer labels of shape (n_samples,) in [0, n_classes).

    A negative label is an error, never an index from the end: the classic
    one-liner ``y_hat[range(len(y_hat)), y]`` silently reads the last class
    for ``y = -1``.
    """
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer class labels, got dtype {y.dtype} "
            f"(pass target distributions as a 2-D array of shape (n_samples, "
            f"n_classes))"
        )
    if y.shape != (n_samples,):
        raise ValueError(
            f"{name} has shape {y.shape}, but there are {n_samples} samples: "
            f"expected shape ({n_samples},)"
        )
    if n_samples == 0:
        return
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {y[i]} is out of range for {n_classes} classes "
            f"(0 <= {name} < {n_classes})"
        )


def _raise_at_first(
    bad: np.ndarray, x: np.ndarray, name: str, offset: int, why: str
) -> None:
    """Raise ``ValueError("name[i, j] = value why")`` at the first True of ``bad``."""
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), x.shape)
        raise ValueError(f"{name}{format_index(_shift(idx, offset))} = {x[idx]} {why}")


def check_probabilities(p: np.ndarray, name: str, tol: float, offset: int = 0) -> None:
    """Rows of ``p`` along the last axis must be distributions.

    Every entry finite and within [0, 1], and every row summing to 1 within
    ``tol``. ``p`` must already be a floating array.
    """
    _raise_at_first(~np.isfinite(p), p, name, offset, "is not finite")
    rule = "probabilities must lie in [0, 1]"
    _raise_at_first(p < 0, p, name, offset, f"is negative; {rule}")
    _raise_at_first(p > 1, p, name, offset, f"is greater than 1; {rule}")
    check_row_sums(p, name, tol, offset)


def check_distributions(q: np.ndarray, name: str, tol: float, offset: int = 0) -> None:
    """Rows of ``q`` must be finite, non-negative and sum to 1 within ``tol``."""
    _raise_at_first(~np.isfinite(q), q, name, offset, "is not finite")
    rule = "target distributions must be non-negative"
    _raise_at_first(q < 0, q, name, offset, f"is negative; {rule}")
    check_row_sums(q, name, tol, offset)


def check_row_sums(p: np.ndarray, name: str, tol: float, offset: int = 0) -> None:
    """Every row of ``p`` (along the last axis) sums to 1 within ``tol``."""
    sums = p.sum(axis=-1)
    bad = np.abs(sums - 1) > tol
    if np.any(bad):
        idx = np.unravel_index(int(np.argmax(bad)), sums.shape)
        where = format_index(_shift(idx, offset)) if idx else ""
        raise ValueError(
            f"{name}{where} sums to {sums[idx]}, not 1 (tolerance {tol:.1e}); "
            f"each row must be a probability distribution"
        )


def check_row_maxima(m: np.ndarray, locate) -> None:
    """Validate logits from their row maxima, which costs no extra pass.

    A row's maximum is NaN if the row holds a NaN, ``+inf`` if it holds
    ``+inf`` (and no NaN), and ``-inf`` only if every entry is ``-inf``.
    ``-inf`` elsewhere is allowed: it marks a masked class. ``locate(i)``
    names row ``i`` of the block, e.g. ``"logits[3]"``.
    """
    if np.isfinite(m).all():
        return
    i = int(np.argmin(np.isfinite(m)))
    where, value = locate(i), m[i]
    if np.isnan(value):
        raise ValueError(f"{where} contains NaN")
    if value > 0:
        raise ValueError(
            f"{where} contains +inf; logits must be finite or -inf (a masked class)"
        )
    raise ValueError(f"{where} is -inf in every class, so its softmax is undefined")
