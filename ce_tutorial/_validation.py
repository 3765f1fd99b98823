"""Input validation shared by every public function.

All checks live here so that every error is worded the same way and names the
argument and the offending value, in the manner of scikit-learn's messages::

    ValueError: y[3] = 5 is out of range for 4 classes (0 <= y < 4)

Nothing in this module renormalises, clips or otherwise repairs its input: a
value that breaks the contract raises, it is never silently changed.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable

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
    """Convert ``x`` to a plain ndarray, naming ``name`` when that is impossible.

    Subclasses (``np.matrix``, ``np.memmap``) become plain arrays, so that a
    result has the shape the docstring promises. A masked array that hides
    any entry raises ``ValueError``: its hidden values are still in memory,
    and computing on them would silently answer a different question. (A
    masked array with nothing masked is just its data.)
    """
    if isinstance(x, np.ma.MaskedArray) and np.ma.is_masked(x):
        hidden = int(np.ma.count_masked(x))
        raise ValueError(
            f"{name} is a masked array with {hidden} masked "
            f"entr{'y' if hidden == 1 else 'ies'}; ce_tutorial does not honour "
            f"masks and never computes on hidden values: pass {name}.filled(...) "
            f"or drop the masked rows (for logits, filling with -inf masks a class)"
        )
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be read as an array: {exc}") from None
    return arr if type(arr) is np.ndarray else arr.view(np.ndarray)


def compute_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """The floating dtype in which to compute for an input of ``dtype``.

    Integers compute in float64, float16 in float32 (so that ``exp(12)`` does
    not overflow), and float32/float64/longdouble in themselves. bool, complex,
    strings, objects, structured records, datetimes and timedeltas are not
    real numbers and raise ``TypeError`` (NumPy counts ``timedelta64`` as an
    integer type, so it is tested by kind first).
    """
    if dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.float64)
    if np.issubdtype(dtype, np.floating):
        return np.promote_types(dtype, np.float32)
    raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")


# The row-sum rule: a row of C probabilities may sum to 1 within
# (SUM_TOLERANCE_ULPS + sqrt(C)) units of the coarser of float32's machine
# epsilon and the row's own dtype's.
SUM_TOLERANCE_ULPS = 32


def sum_tolerance(dtype: np.dtype, n_classes: int) -> float:
    """How far from 1 a row of ``n_classes`` probabilities may sum.

    One rule for every function that checks row sums:

    .. math:: \\text{tol} = (32 + \\sqrt{C}) \\cdot \\max(\\epsilon_{\\text{dtype}},
        \\epsilon_{\\text{float32}}),

    so 4.2e-6 for 10 classes, 7.6e-6 for 1,000 and 3.1e-5 for 50,257 in
    float32, float64, longdouble or integer rows, and about 32 times as much
    in float16. Probabilities are often computed in float32 (a GPU's
    softmax) and converted to float64 afterwards: such a row sums to 1 only
    to float32 precision. The 32 ulps cover the rounding of its entries and
    of the check's own sum; :math:`\\sqrt{C}` ulps the rounding errors of a
    sum of :math:`C` float32 terms, which add up like a random walk (PyTorch's
    float32 softmax of random logits over 128,256 classes has row sums up to
    166 ulps, 2e-5, from 1; the rule allows 390). A row off by 1e-4 is still
    refused at any precision from float32 up, for every :math:`C` below about
    650,000.
    """
    eps = np.finfo(np.float32).eps
    if dtype.kind == "f":
        eps = max(eps, np.finfo(dtype).eps)
    return float((SUM_TOLERANCE_ULPS + np.sqrt(n_classes)) * eps)


def check_reduction(reduction: object) -> str:
    """Return ``reduction`` if it is one of ``"none"``, ``"mean"``, ``"sum"``."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'none', 'mean' or 'sum', got {reduction!r}"
        )
    return reduction


def reduce(
    losses: np.ndarray, reduction: str, n_kept: float | None = None
) -> np.ndarray | np.floating:
    """Apply a checked ``reduction`` to per-example ``losses`` of shape (N,).

    ``n_kept`` is what ``"mean"`` divides by when it is not N: the number of
    rows that count, when the others hold a loss of 0 that ``"mean"`` must
    not count (rows skipped by ``ignore_index``), or the sum of the kept
    rows' class weights. See :func:`sum_of` and :func:`mean_of`.
    """
    if reduction == "none":
        return losses
    if reduction == "sum":
        return sum_of(losses)
    check_mean_batch(reduction, losses.shape[0])
    return mean_of(losses, n_kept)


def sum_of(losses: np.ndarray) -> np.floating:
    """``losses.sum()``; ``inf`` without a warning when it exceeds the range.

    The losses are non-negative, so an overflowing sum is beyond the dtype's
    range, and ``inf`` is its correctly rounded value.
    """
    with np.errstate(over="ignore"):
        return losses.sum()


def mean_of(losses: np.ndarray, divisor: float | None = None) -> np.floating:
    """The mean of non-negative ``losses``: ``sum / divisor`` (N by default).

    Computed as :func:`numpy.mean` computes it (``sum / divisor`` in the
    losses' dtype), so that it is the same number, unless that sum
    overflows. A sum of finite losses can exceed the dtype's range where
    their mean does not (three losses of 1e308), so the sum is then taken
    again with every loss scaled by a power of two :math:`2^{-k} \\le 1/N`,
    which is exact (short of underflow, which loses nothing worth counting
    next to a sum this large), divided by ``divisor`` and scaled back, in
    at least float64. A mean beyond the range is ``inf``; no warning leaks.
    """
    n = losses.shape[0]
    if divisor is None or divisor == n:
        with np.errstate(over="ignore"):
            mean = losses.mean()
        divisor = n
    else:
        total = sum_of(losses)
        with np.errstate(over="ignore"):
            mean = total.dtype.type(total / divisor)
    if not np.isinf(mean) or not np.isfinite(losses).all():
        return mean
    wide = np.promote_types(losses.dtype, np.float64)
    k = max(1, int(n).bit_length())
    with np.errstate(over="ignore", under="ignore"):
        scaled = np.ldexp(losses, -k).sum(dtype=wide) / wide.type(divisor)
        return losses.dtype.type(np.ldexp(scaled, k))


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
    """Convert ``y`` to an array; an empty Python sequence becomes integer.

    A Python integer beyond the int64 range makes NumPy store the whole
    sequence as float64 or object; that raises ``ValueError`` here, naming
    the label, rather than a confusing "got dtype float64" later.
    """
    arr = as_array(y, name)
    if not isinstance(y, np.ndarray) and arr.size:
        # Only an integer beyond int64 turns a list of integers into float64
        # (then some |value| >= 2**63) or object: look closer only then.
        with np.errstate(invalid="ignore"):
            beyond = arr.dtype.kind == "f" and bool((np.abs(arr) >= 2.0**63).any())
        if beyond or arr.dtype.kind == "O":
            _check_python_integer_range(y, arr.shape, name)
    if arr.size == 0 and not isinstance(y, np.ndarray) and arr.dtype == np.float64:
        # ``np.asarray([])`` is float64, but an empty list holds no floats.
        arr = arr.astype(np.intp)
    return arr


def _check_python_integer_range(y: object, shape: tuple[int, ...], name: str):
    """Raise if ``y`` is all Python integers, some beyond the int64 range."""
    try:
        values = np.empty(shape, dtype=object)
        values[...] = y
    except (ValueError, TypeError):  # not a regular nested sequence
        return
    flat = values.ravel()
    if not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)
        for v in flat
    ):
        return
    info = np.iinfo(np.int64)
    for k, v in enumerate(flat):
        if not info.min <= v <= info.max:
            where = format_index(np.unravel_index(k, shape))
            raise ValueError(
                f"{name}{where} = {int(v)} is out of the integer range of labels "
                f"({info.min} <= {name} <= {info.max})"
            )


def check_ignore_index(ignore_index: object) -> int | None:
    """Return ``ignore_index`` as a Python int, or None.

    Any integer is accepted, as in PyTorch: -100 (PyTorch's default), or even
    a class in range, whose rows are then all skipped. A NumPy integer is an
    integer; ``True`` and ``-100.0`` are not, although Python counts ``bool``
    as an ``int``: they raise ``TypeError``.
    """
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool | np.bool_) or not isinstance(
        ignore_index, numbers.Integral
    ):
        raise TypeError(
            f"ignore_index must be an integer or None, got {ignore_index!r}"
        )
    return int(ignore_index)


def ignored_label(dtype: np.dtype, ignore_index: int | None) -> np.integer | None:
    """``ignore_index`` as a scalar of the labels' integer ``dtype``.

    None if ``ignore_index`` is None or no label of that dtype can equal it
    (-100 for unsigned labels, ``2**70`` for any): then no row is skipped.
    Comparing labels with this scalar never depends on NumPy's rules for
    Python integers beyond a dtype's range.
    """
    if ignore_index is None:
        return None
    info = np.iinfo(dtype)
    if not info.min <= ignore_index <= info.max:
        return None
    return dtype.type(ignore_index)


def ignored_rows(y: np.ndarray, ignore_index: int | None) -> np.ndarray | None:
    """The mask of labels equal to ``ignore_index``, or None if there are none.

    ``y`` holds integer labels of shape (n_samples,).
    """
    skip = ignored_label(y.dtype, ignore_index)
    if skip is None:
        return None
    mask = y == skip
    return mask if mask.any() else None


def check_kept_rows(reduction: str, n_kept: int, ignore_index: int | None) -> None:
    """``reduction="mean"`` needs a row that ``ignore_index`` does not skip.

    Call :func:`check_mean_batch` first: an empty batch has its own message.
    PyTorch returns NaN here (0 / 0); a NaN loss would only surface later, as
    NaN weights, so this is an error instead.
    """
    if reduction == "mean" and n_kept == 0 and ignore_index is not None:
        raise ValueError(
            f"reduction='mean' is undefined when every label equals ignore_index "
            f"= {ignore_index}: no row is left to average over (PyTorch returns "
            f"nan); use reduction='sum' or 'none'"
        )


def find_label_error(
    y: np.ndarray,
    n_classes: int,
    name: str = "y",
    ignore_index: int | None = None,
    *,
    shape: tuple[int, ...] | None = None,
) -> tuple[int, ValueError] | None:
    """The first label of ``y`` (1-D, integer) outside ``[0, n_classes)``.

    A label equal to ``ignore_index`` (if not None) is not an error, whatever
    its value. Returns ``(i, error)`` for the first bad label ``y[i]``, or
    None. ``shape``, if given, is the shape ``y`` was flattened from: the
    message then names the label by its index in that shape, ``y[1, 4]``.
    """
    if y.size == 0:
        return None
    bad = (y < 0) | (y >= n_classes)
    skip = ignored_label(y.dtype, ignore_index)
    if skip is not None:
        bad &= y != skip
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    also = "" if ignore_index is None else f", and is not ignore_index = {ignore_index}"
    where = f"[{i}]" if shape is None else format_index(np.unravel_index(i, shape))
    return i, ValueError(
        f"{name}{where} = {y[i]} is out of range for {n_classes} classes "
        f"(0 <= {name} < {n_classes}){also}"
    )


# The one dtype gate for labels and targets: what each kind of target accepts,
# by ``dtype.kind`` ("b" bool, "i"/"u" signed/unsigned integers, "f" floats).
# NumPy's ``np.issubdtype(dtype, np.integer)`` is True for ``timedelta64``, and
# ``bool`` passes an ``isinstance(x, int)`` test: the kind letters admit
# neither by accident, so every family that checks a target dtype asks here.
TARGET_KINDS = {
    "labels": ("iu", "integer class labels"),
    "binary labels": ("biu", "bool or integer 0/1 labels"),
    "binary targets": ("biuf", "bool, integer 0/1 or float targets in [0, 1]"),
    "distributions": ("iuf", "real numbers"),
}


def check_target_dtype(
    y: np.ndarray, name: str = "y", kind: str = "labels", hint: str = ""
) -> None:
    """Raise ``TypeError`` unless ``y``'s dtype suits targets of ``kind``.

    ``kind`` is a key of ``TARGET_KINDS``: ``"labels"`` (integer class
    labels: signed or unsigned integers only), ``"binary labels"`` (bool or
    integer 0/1), ``"binary targets"`` (bool, integer or float, the soft
    targets of the binary losses) or ``"distributions"`` (integers or floats,
    target distributions). bool, timedelta, datetime, complex, strings,
    objects and records are refused wherever the table does not list them;
    ``hint`` is appended to the message. Only the dtype is checked, not the
    values.
    """
    kinds, what = TARGET_KINDS[kind]
    if y.dtype.kind not in kinds:
        raise TypeError(f"{name} must hold {what}, got dtype {y.dtype}{hint}")


DISTRIBUTIONS_HINT = (
    " (pass target distributions as a 2-D array of shape (n_samples, n_classes))"
)


def check_label_dtype_and_shape(
    y: np.ndarray, n_samples: int, name: str = "y", hint: str = DISTRIBUTIONS_HINT
):
    """``y`` must hold integers (not bool, not timedelta) of shape (n_samples,).

    ``hint`` ends the dtype error: by default, how to pass target
    distributions, for the functions that accept them.
    """
    check_target_dtype(y, name, "labels", hint)
    if y.shape != (n_samples,):
        raise ValueError(
            f"{name} has shape {y.shape}, but there are {n_samples} samples: "
            f"expected shape ({n_samples},)"
        )


def check_labels(y: np.ndarray, n_samples: int, n_classes: int, name: str = "y"):
    """``y`` must hold integer labels of shape (n_samples,) in [0, n_classes).

    A negative label is an error, never an index from the end: the classic
    one-liner ``y_hat[range(len(y_hat)), y]`` silently reads the last class
    for ``y = -1``.
    """
    check_label_dtype_and_shape(y, n_samples, name)
    raise_first(find_label_error(y, n_classes, name))


def raise_first(*found: tuple[int, Exception] | None) -> None:
    """Raise the error of the lowest row among ``found``; None entries pass.

    Every ``find_*`` helper returns ``(row, error)`` or None. When two
    arguments are bad, the error reported is the one in the earliest row, so
    it never depends on how the rows were cut into blocks or threads; a tie
    goes to the earlier argument in ``found``.
    """
    best = None
    for item in found:
        if item is not None and (best is None or item[0] < best[0]):
            best = item
    if best is not None:
        raise best[1]


def check_one_hot_size(n_samples: int, num_classes: int) -> None:
    """Refuse a one-hot matrix larger than this machine's memory.

    The rule: ``n_samples * num_classes`` float64 entries must fit in NumPy's
    index range and in the physical memory (``os.sysconf``; where that is not
    available, only the index range applies). Anything larger could never be
    allocated, or would swap the machine to a halt before failing, so it is a
    ``ValueError`` naming ``num_classes`` and the bytes it would take.
    """
    entries = n_samples * num_classes
    size = entries * 8
    limit = np.iinfo(np.intp).max
    what = "NumPy's largest array"
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        memory = 0
    if 0 < memory < limit:
        limit, what = memory, f"this machine's memory ({memory:,} bytes)"
    if entries > np.iinfo(np.intp).max or size > limit:
        raise ValueError(
            f"num_classes = {num_classes} would make a one-hot matrix of "
            f"{n_samples} x {num_classes} float64 entries, {size:,} bytes, more "
            f"than {what}"
        )


def class_axis_index(lead: tuple[int, ...], row: int, col: int | None) -> str:
    """Name row ``row`` (entry ``col``) of an array whose class axis is 1.

    ``lead`` is the shape ``(N, d1, ..., dK)`` of the positions, the array's
    shape without its class axis; ``row`` counts positions in C order. The
    result is ``[n, col, d1, ..., dK]``, with ``:`` for a whole row; a
    trailing ``:`` is dropped, so that a row of an ``(N, C)`` array is ``[n]``.
    """
    parts = [str(int(k)) for k in np.unravel_index(row, lead)]
    parts.insert(1, ":" if col is None else str(int(col)))
    while parts[-1] == ":":
        parts.pop()
    return "[" + ", ".join(parts) + "]"


def find_value_error(
    p: np.ndarray,
    name: str,
    tol: float,
    offset: int = 0,
    *,
    upper: bool = True,
    lead: tuple[int, ...] | None = None,
) -> tuple[int, ValueError] | None:
    """The first row of ``p`` (rows along the last axis) that is no distribution.

    Returns ``(row, error)`` or None, where ``row`` counts rows of the
    flattened leading axes, plus ``offset``. Within a row the checks run in
    this order: an entry not finite, an entry below 0, an entry above 1 (if
    ``upper``), and the row's sum further than ``tol`` from 1. ``p`` must
    already be a floating array. If ``lead`` is given, ``p`` holds rows of
    an array whose class axis is 1 (see :func:`class_axis_index`), and the
    message names them by their index in that array.
    """
    if p.ndim == 0 or p.size == 0:
        return None
    row_shape = p.shape[:-1]
    flat = p.reshape(-1, p.shape[-1])
    # Overflow of a sum, and inf - inf, only make a row's sum wrong, and a
    # wrong sum is what the check reports: no warning may leak.
    with np.errstate(over="ignore", invalid="ignore"):
        sums = flat.sum(axis=-1)
        sum_ok = np.abs(sums - 1) <= tol  # False for NaN
    finite = np.isfinite(flat)
    entry_bad = ~finite
    entry_bad |= flat < 0
    if upper:
        entry_bad |= flat > 1
    row_bad = entry_bad.any(axis=-1)
    row_bad |= ~sum_ok
    if not row_bad.any():
        return None
    r = int(np.argmax(row_bad))
    row = flat[r]
    lead_index = np.unravel_index(r, row_shape) if row_shape else ()
    rule = (
        "probabilities must lie in [0, 1]"
        if upper
        else "target distributions must be non-negative"
    )
    checks = [(~finite[r], "is not finite"), (row < 0, f"is negative; {rule}")]
    if upper:
        checks.append((row > 1, f"is greater than 1; {rule}"))
    for bad, why in checks:
        if bad.any():
            j = int(np.argmax(bad))
            if lead is None:
                where = format_index(_shift((*lead_index, j), offset))
            else:
                where = class_axis_index(lead, r + offset, j)
            return r + offset, ValueError(f"{name}{where} = {row[j]!s} {why}")
    if lead is not None:
        where = class_axis_index(lead, r + offset, None)
    else:
        where = format_index(_shift(lead_index, offset)) if p.ndim > 1 else ""
    return r + offset, ValueError(
        f"{name}{where} sums to {sums[r]!s}, not 1 (tolerance {tol:.1e}); "
        f"each row must be a probability distribution"
    )


def check_probabilities(p: np.ndarray, name: str, tol: float, offset: int = 0) -> None:
    """Rows of ``p`` along the last axis must be distributions.

    Every entry finite and within [0, 1], and every row summing to 1 within
    ``tol``. ``p`` must already be a floating array. The first bad row is
    reported (see :func:`find_value_error`).
    """
    raise_first(find_value_error(p, name, tol, offset))


def check_distributions(q: np.ndarray, name: str, tol: float, offset: int = 0) -> None:
    """Rows of ``q`` must be finite, non-negative and sum to 1 within ``tol``."""
    raise_first(find_value_error(q, name, tol, offset, upper=False))


def check_row_sums(p: np.ndarray, name: str, tol: float, offset: int = 0) -> None:
    """Every row of ``p`` (along the last axis) sums to 1 within ``tol``."""
    with np.errstate(over="ignore", invalid="ignore"):  # see find_value_error
        sums = p.sum(axis=-1)
        bad = ~(np.abs(sums - 1) <= tol)
    if np.any(bad):
        idx = np.unravel_index(int(np.argmax(bad)), sums.shape)
        where = format_index(_shift(idx, offset)) if idx else ""
        raise ValueError(
            f"{name}{where} sums to {sums[idx]!s}, not 1 (tolerance {tol:.1e}); "
            f"each row must be a probability distribution"
        )


def find_logit_error(
    m: np.ndarray, locate: Callable[[int], str], offset: int = 0
) -> tuple[int, ValueError] | None:
    """The first bad row of logits, found from the row maxima ``m``.

    A row's maximum is NaN if the row holds a NaN, ``+inf`` if it holds
    ``+inf`` (and no NaN), and ``-inf`` only if every entry is ``-inf``.
    ``-inf`` elsewhere is allowed: it marks a masked class. ``locate(i)``
    names row ``i`` of ``m``, e.g. ``"logits[3]"``. Returns
    ``(offset + i, error)`` for the first bad row ``i``, or None.
    """
    finite = np.isfinite(m)
    if finite.all():
        return None
    i = int(np.argmin(finite))
    where, value = locate(i), m[i]
    if np.isnan(value):
        error = ValueError(f"{where} contains NaN")
    elif value > 0:
        error = ValueError(
            f"{where} contains +inf; logits must be finite or -inf (a masked class)"
        )
    else:
        error = ValueError(
            f"{where} is -inf in every class, so its softmax is undefined"
        )
    return offset + i, error


def check_row_maxima(m: np.ndarray, locate: Callable[[int], str]) -> None:
    """Validate logits from their row maxima, which costs no extra pass.

    See :func:`find_logit_error`; this raises its error, if any.
    """
    raise_first(find_logit_error(m, locate))
