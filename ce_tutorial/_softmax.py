"""The softmax family: ``softmax``, ``log_softmax`` and ``logsumexp``.

All three subtract the maximum along the class axis before exponentiating, so
``exp`` never overflows, and all three stream over blocks of rows, so the
extra memory they need stays a small fraction of the input's size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ._streaming import stream_rows
from ._validation import as_array, check_axis, check_row_maxima, compute_dtype

__all__ = ["log_softmax", "logsumexp", "softmax"]

# Up to this many classes, row maxima are taken one column at a time: NumPy's
# ``max(axis=1)`` over rows this short spends most of its time on loop
# overhead, while ``np.maximum`` over whole columns runs at full speed.
NARROW_CLASSES = 16
# Up to this many classes, ``argmax`` along rows costs no more than ``max``
# (less, from about 100 classes); on longer rows it costs about 2.7 times as
# much (0.15 against 0.06 ns per element for 50,257 float32 classes, a tenth
# of an ``exp``), so :func:`shifted_log1p_sum` avoids it there.
ARGMAX_CLASSES = 4096


def row_maxima(block: np.ndarray) -> np.ndarray:
    """``block.max(axis=1)``, NaN included, computed fast for narrow rows."""
    if block.shape[1] > NARROW_CLASSES:
        return block.max(axis=1)
    m = block[:, 0].copy()
    for j in range(1, block.shape[1]):
        np.maximum(m, block[:, j], out=m)  # propagates NaN, as max does
    return m


def row_sums(block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``block.sum(axis=1)``, computed fast for narrow rows.

    Rows of more than ``NARROW_CLASSES`` entries use NumPy's pairwise
    summation. Shorter rows, where ``sum(axis=1)`` spends most of its time on
    per-row overhead, go through ``einsum``'s vectorised loop, which adds them
    in a different order but just as accurately at this length.
    """
    if block.shape[1] > NARROW_CLASSES:
        return np.add.reduce(block, axis=1, out=out)  # np.sum, minus a wrapper
    return np.einsum("ij->i", block, out=out)


def shifted_exp_sum(
    block: np.ndarray,
    dtype: np.dtype,
    locate: Callable[[int], str],
    work: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the row maxima ``m`` and ``s = sum(exp(block - m))`` of a block.

    ``work`` (same shape as ``block``, of ``dtype``) receives
    ``exp(block - m)``. The maxima also validate the block: NaN, ``+inf`` and
    rows that are entirely ``-inf`` raise ``ValueError``.

    Four passes over a block that sits in the cache: the maxima, the
    subtraction into ``work``, ``exp`` in place, and the row sums. The shift
    matters for accuracy as well as for overflow: the largest term of each row
    is exactly 1, so ``1 <= s <= n_cols`` and ``log(s)`` is accurate to about
    one unit in the last place of 1. (When ``s`` is within a few ulps of 1,
    that is an absolute, not a relative, accuracy: summing the other terms
    apart and taking ``log1p`` would make it relative too.)
    """
    m = row_maxima(block).astype(dtype, copy=False)
    check_row_maxima(m, locate)
    # ``block - m`` overflows to -inf only when the true difference is below
    # -max(dtype); exp of it is 0, which is the correctly rounded answer.
    with np.errstate(over="ignore"):
        np.subtract(block, m[:, None], out=work)
    np.exp(work, out=work)
    return m, work.sum(axis=1)


def shifted_log1p_sum(
    block: np.ndarray,
    dtype: np.dtype,
    locate: Callable[[int], str],
    work: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the row maxima ``m`` and ``logsumexp(block) - m``, accurately.

    The same ``log(1 + r)`` as :func:`shifted_log_sum`, with ``r`` the sum
    of ``exp(z_j - m)`` over every entry but one maximum, so that the result
    is accurate relative to its own size when it is tiny. Rows of
    ``NARROW_CLASSES`` to ``ARGMAX_CLASSES`` entries go through
    :func:`shifted_log_sum` itself, whose ``argmax`` costs no more than a
    maximum there. On narrower rows ``argmax`` costs about three times an
    ``exp`` (and on much longer ones more than a maximum), so the block is
    shifted by :func:`row_maxima` and exponentiated as in
    :func:`shifted_exp_sum`, and summed. Where that sum ``s`` is below 2, the
    row has exactly one term equal to 1.0 (a tie for the maximum, or a term
    within half an ulp of it, would give ``s >= 2``); that 1.0 is set to 0
    (by a multiplication by ``work < 1`` over the whole block for short rows,
    and through ``argmax`` of that row alone for long ones) and the row
    summed again, for ``log1p``. Rows with ``s >= 2`` keep ``log(s)``, which is accurate
    relative to its size ``>= log(2)``. ``work`` (same shape as ``block``,
    of ``dtype``) is scratch space; the maxima validate the block, as in
    :func:`shifted_exp_sum`.
    """
    n_cols = block.shape[1]
    if NARROW_CLASSES < n_cols <= ARGMAX_CLASSES:
        return shifted_log_sum(block, dtype, locate, work)
    m = row_maxima(block).astype(dtype, copy=False)
    check_row_maxima(m, locate)
    with np.errstate(over="ignore"):  # as in shifted_exp_sum
        np.subtract(block, m[:, None], out=work)
    np.exp(work, out=work)
    s = row_sums(work)
    near = s < 2
    log_s = np.log(s, out=s)
    if not near.any():
        return m, log_s
    if n_cols <= NARROW_CLASSES:  # short rows: the whole block at full speed
        np.multiply(work, work < 1.0, out=work)
        r = row_sums(work)
        np.copyto(log_s, np.log1p(r, out=r), where=near)
    else:  # long rows, so few of them: one at a time, in place
        for i in np.flatnonzero(near):
            row = work[i]
            row[np.argmax(row)] = 0.0
            log_s[i] = np.log1p(np.add.reduce(row))
    return m, log_s


def shifted_log_sum(
    block: np.ndarray,
    dtype: np.dtype,
    locate: Callable[[int], str] | None,
    work: np.ndarray,
    *,
    check: Callable[[np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the row maxima ``m`` and ``logsumexp(block) - m``, accurately.

    ``logsumexp(z) - m = log(1 + r)``, where ``r`` sums ``exp(z_j - m)`` over
    every entry but the (first) maximum. Computing ``log1p(r)`` from ``r``,
    rather than ``log`` of a sum that already holds the maximum's 1, keeps the
    result accurate relative to its own size when it is tiny, as it is for a
    confident prediction [1]_. ``work`` (same shape as ``block``, of ``dtype``)
    is scratch space, and may be ``block`` itself. The maxima validate the
    block, as in :func:`shifted_exp_sum`, unless ``check`` is given: then
    ``check(m)`` is called instead, to validate the maxima together with
    whatever else belongs to these rows.

    References
    ----------
    .. [1] P. Blanchard, D. J. Higham and N. J. Higham, "Accurately computing
       the log-sum-exp and softmax functions", IMA Journal of Numerical
       Analysis 41(4), 2021.
    """
    rows = np.arange(block.shape[0])
    top = np.argmax(block, axis=1)  # a row's first NaN, if it has one
    m = block[rows, top].astype(dtype, copy=False)
    if check is None:
        check_row_maxima(m, locate)
    else:
        check(m)
    with np.errstate(over="ignore"):  # as in shifted_exp_sum
        np.subtract(block, m[:, None], out=work)
    np.exp(work, out=work)
    work[rows, top] = 0.0
    return m, np.log1p(row_sums(work))


def prepare_logits(
    logits: npt.ArrayLike, axis: object, name: str = "logits"
) -> tuple[np.ndarray, np.dtype, int]:
    """Return the logits as an array, the dtype to compute in, and the axis."""
    z = as_array(logits, name)
    dtype = compute_dtype(z.dtype, name)
    if z.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    ax = check_axis(axis, z.ndim, name)
    if z.shape[ax] == 0:
        raise ValueError(
            f"{name} has shape {z.shape}: the class axis (axis={axis}) is empty"
        )
    return z, dtype, ax


class _GatheredRows:
    """Rows of an array that cannot be viewed as a matrix of rows.

    Moving a middle class axis to the end, as in a (200, 50, 1000) array
    reduced along axis 1, gives an array whose rows no single stride can
    step through, so ``reshape`` would copy the whole input. Indexing this
    object with ``[a:b]`` instead copies rows ``a`` to ``b`` only, one block
    at a time, which keeps the extra memory a small fraction of the input.

    The axes before the class axis are ``(n, d)``: where the axes after the
    first one merge into one ``d`` axis without a copy (as they do for a
    C-contiguous input) and its runs are long (``d >= MIN_RUN``), a block is
    copied slice by slice, one run of consecutive ``d`` per ``n``; otherwise
    its rows are gathered by index, which costs less than a Python loop over
    many short runs.
    """

    MIN_RUN = 256

    def __init__(self, moved: np.ndarray) -> None:
        self.moved = moved
        self.lead = moved.shape[:-1]
        self.shape = (int(np.prod(self.lead)), moved.shape[-1])
        self.runs = None  # (N, D, C) view: rows n * D + d
        n = self.lead[0] if self.lead else 0
        d = self.shape[0] // n if n else 0
        if len(self.lead) >= 2 and d >= self.MIN_RUN:
            try:
                self.runs = moved.reshape(n, d, moved.shape[-1], copy=False)
            except (ValueError, TypeError):  # no view; or NumPy < 2.1
                self.runs = None

    def __getitem__(self, rows: slice) -> np.ndarray:
        a, b = rows.start, rows.stop
        if self.runs is None:
            index = np.unravel_index(np.arange(a, b), self.lead)
            return self.moved[index]
        d = self.runs.shape[1]
        out = np.empty((b - a, self.shape[1]), self.moved.dtype)
        i = a
        while i < b:
            n, start = divmod(i, d)
            stop = min(d, start + (b - i))
            out[i - a : i - a + stop - start] = self.runs[n, start:stop]
            i += stop - start
        return out


def _as_rows(
    z: np.ndarray, ax: int
) -> tuple[np.ndarray | _GatheredRows, tuple[int, ...]]:
    """View ``z`` as 2-D rows with the class axis last, and the leading shape.

    Where no view exists, the rows are gathered block by block instead (see
    :class:`_GatheredRows`); never is the whole input copied.
    """
    moved = np.moveaxis(z, ax, -1)
    try:
        rows = moved.reshape(-1, moved.shape[-1], copy=False)
    except ValueError:  # a copy would be needed
        rows = _GatheredRows(moved)
    except TypeError:  # NumPy < 2.1 has no ``copy`` argument
        rows = moved.reshape(-1, moved.shape[-1])
    return rows, moved.shape[:-1]


def _locator(
    name: str, lead: tuple[int, ...], ax: int, offset: int
) -> Callable[[int], str]:
    """Name row ``i`` of a block as an index into the original array."""

    def locate(i: int) -> str:
        parts = [str(int(k)) for k in np.unravel_index(offset + i, lead)]
        parts.insert(ax, ":")
        while parts and parts[-1] == ":":
            parts.pop()
        return name + ("[" + ", ".join(parts) + "]" if parts else "")

    return locate


def _from_rows(
    rows: np.ndarray, lead: tuple[int, ...], ax: int, keep_class_axis: bool
) -> np.ndarray:
    """Undo ``_as_rows`` for a result computed row by row."""
    if keep_class_axis:
        return np.moveaxis(rows.reshape(*lead, rows.shape[-1]), -1, ax)
    return rows.reshape(lead)[()]


def logsumexp(logits: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    r"""Compute ``log(sum(exp(logits)))`` along an axis without overflow.

    Parameters
    ----------
    logits : array_like of shape (..., n_classes, ...)
        Real-valued scores. ``-inf`` marks a masked entry that contributes
        nothing. Integer input is computed in float64, float16 in float32.
    axis : int, default=-1
        The axis to reduce, the class axis.

    Returns
    -------
    lse : ndarray or scalar
        ``logits`` reduced along ``axis``; a NumPy scalar for 1-D input.

    Raises
    ------
    TypeError
        If ``logits`` is not real-valued (bool, complex, strings), or ``axis``
        is not an integer.
    ValueError
        If ``logits`` is a scalar, ``axis`` is out of bounds, the class axis is
        empty, a slice along ``axis`` holds NaN or ``+inf``, or a slice is
        ``-inf`` everywhere.

    Notes
    -----
    With :math:`m = \max_j z_j`,

    .. math:: \log \sum_j e^{z_j} = m + \log \sum_j e^{z_j - m},

    where every :math:`e^{z_j - m} \le 1`, so nothing overflows, and the
    largest term is exactly 1, so the sum cannot underflow to zero [1]_.
    That 1 is kept out of the sum: with :math:`k` one index of the maximum,
    the result is :math:`m + \operatorname{log1p}(\sum_{j \ne k} e^{z_j - m})`,
    which stays accurate relative to its own size when it is tiny (one
    dominant entry near 0), where ``log`` of a sum that holds the 1 would
    round it away.

    References
    ----------
    .. [1] P. Blanchard, D. J. Higham and N. J. Higham, "Accurately computing
       the log-sum-exp and softmax functions", IMA Journal of Numerical
       Analysis 41(4), 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import logsumexp
    >>> logsumexp([[0.0, 0.0], [10.0, 10.0]])
    array([ 0.69314718, 10.69314718])
    >>> print(logsumexp([1000.0, 1000.0]))
    1000.6931471805599

    The naive formula overflows where the shifted one does not:

    >>> with np.errstate(over="ignore"):
    ...     print(np.log(np.sum(np.exp([1000.0, 1000.0]))))
    inf

    and it rounds a tiny result to 0, where ``log1p`` keeps every digit:

    >>> print(np.log(np.sum(np.exp([0.0, -40.0]))), logsumexp([0.0, -40.0]))
    0.0 4.248354255291589e-18
    """
    z, dtype, ax = prepare_logits(logits, axis)
    rows, lead = _as_rows(z, ax)
    n, c = rows.shape
    out = np.empty(n, dtype=dtype)

    def kernel(a: int, b: int, work: np.ndarray) -> None:
        locate = _locator("logits", lead, ax, a)
        m, log_s = shifted_log1p_sum(rows[a:b], dtype, locate, work)
        out[a:b] = m + log_s

    stream_rows(n, c, dtype, kernel)
    return _from_rows(out, lead, ax, keep_class_axis=False)


def softmax(logits: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    r"""Turn scores into probabilities: ``exp(z) / sum(exp(z))`` along an axis.

    Parameters
    ----------
    logits : array_like of shape (..., n_classes, ...)
        Real-valued scores. ``-inf`` marks a masked class, which gets
        probability exactly 0. Integer input is computed in float64, float16 in
        float32.
    axis : int, default=-1
        The class axis, along which the result sums to 1.

    Returns
    -------
    probabilities : ndarray of the same shape as ``logits``
        Non-negative, summing to 1 along ``axis``.

    Raises
    ------
    TypeError
        If ``logits`` is not real-valued, or ``axis`` is not an integer.
    ValueError
        If ``logits`` is a scalar, ``axis`` is out of bounds, the class axis is
        empty, a slice holds NaN or ``+inf``, or a slice is ``-inf`` everywhere.

    Notes
    -----
    .. math:: \operatorname{softmax}(z)_j = \frac{e^{z_j - m}}{\sum_k e^{z_k - m}},
        \qquad m = \max_k z_k.

    Subtracting :math:`m` changes nothing mathematically (it cancels between
    numerator and denominator) but keeps every exponential in :math:`(0, 1]`.

    Examples
    --------
    >>> from ce_tutorial import softmax
    >>> softmax([[1.0, 2.0, 3.0], [1000.0, 1000.0, -float("inf")]])
    array([[0.09003057, 0.24472847, 0.66524096],
           [0.5       , 0.5       , 0.        ]])
    """
    z, dtype, ax = prepare_logits(logits, axis)
    rows, lead = _as_rows(z, ax)
    n, c = rows.shape
    out = np.empty((n, c), dtype=dtype)

    def kernel(a: int, b: int, work: None) -> None:
        # The output itself is the workspace: exp(z - m), then divided by s.
        locate = _locator("logits", lead, ax, a)
        _, s = shifted_exp_sum(rows[a:b], dtype, locate, out[a:b])
        out[a:b] /= s[:, None]

    stream_rows(n, c, dtype, kernel, scratch=False)
    return _from_rows(out, lead, ax, keep_class_axis=True)


def log_softmax(logits: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    r"""Compute ``log(softmax(logits))`` accurately, as ``z - logsumexp(z)``.

    Parameters
    ----------
    logits : array_like of shape (..., n_classes, ...)
        Real-valued scores. ``-inf`` marks a masked class, whose
        log-probability is ``-inf``. Integer input is computed in float64,
        float16 in float32.
    axis : int, default=-1
        The class axis.

    Returns
    -------
    log_probabilities : ndarray of the same shape as ``logits``
        Non-positive, with ``exp`` of each slice summing to 1.

    Raises
    ------
    TypeError
        If ``logits`` is not real-valued, or ``axis`` is not an integer.
    ValueError
        If ``logits`` is a scalar, ``axis`` is out of bounds, the class axis is
        empty, a slice holds NaN or ``+inf``, or a slice is ``-inf`` everywhere.

    Notes
    -----
    .. math:: \log \operatorname{softmax}(z)_j = (z_j - m) - \log \sum_k e^{z_k - m},

    where the logarithm is taken as ``log1p`` of the sum without the
    maximum's term, as in :func:`logsumexp`, so that the log-probability of
    a confident prediction's top class is accurate relative to its size.

    Computing ``np.log(softmax(z))`` instead loses every probability that
    underflows to 0: its log becomes ``-inf`` although the true value is an
    ordinary number such as -999.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import log_softmax, softmax
    >>> log_softmax([1000.0, 1.0])
    array([   0., -999.])
    >>> with np.errstate(divide="ignore"):
    ...     print(np.log(softmax([1000.0, 1.0])))
    [  0. -inf]
    """
    z, dtype, ax = prepare_logits(logits, axis)
    rows, lead = _as_rows(z, ax)
    n, c = rows.shape
    out = np.empty((n, c), dtype=dtype)

    def kernel(a: int, b: int, work: np.ndarray) -> None:
        locate = _locator("logits", lead, ax, a)
        block = rows[a:b]
        m, log_s = shifted_log1p_sum(block, dtype, locate, work)
        # (z - m) - log(s), in this order: z - m is exact near the maximum,
        # whereas z - (m + log(s)) would round m + log(s) first.
        with np.errstate(over="ignore"):
            np.subtract(block, m[:, None], out=out[a:b])
        out[a:b] -= log_s[:, None]

    stream_rows(n, c, dtype, kernel)
    return _from_rows(out, lead, ax, keep_class_axis=True)
