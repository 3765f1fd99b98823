r"""Targets of the losses on logits: labels, distributions, weights, smoothing.

:func:`ce_tutorial.cross_entropy_from_logits` and
:func:`ce_tutorial.cross_entropy_grad` take the options of PyTorch's
``F.cross_entropy``. Every rule about them is written once, here:

- **shapes**: logits of shape ``(N, C)`` or ``(N, C, d1, ..., dK)``, the
  class axis being axis 1; integer labels of shape ``(N, d1, ..., dK)``, or
  target distributions of the logits' shape. Each of the
  :math:`M = N d_1 \cdots d_K` positions is one *row* of :math:`C` logits;
  for more than two dimensions the rows are gathered block by block (see
  :func:`ce_tutorial._softmax._as_rows`), never by copying the whole input.
- **ignore_index**: a label that marks a row to skip (integer labels only).
- **weight** :math:`\omega` of shape ``(C,)`` and **label_smoothing**
  :math:`\varepsilon \in [0, 1]`: every loss is
  :math:`\ell_i = \sum_c a_{ic} (\operatorname{logsumexp}(z_i) - z_{ic})`,
  with the coefficients

  .. math::

      a_{ic} = \omega_c \bigl((1 - \varepsilon)\, p_{ic} + \varepsilon / C\bigr),

  where :math:`p_i` is the one-hot encoding of label :math:`y_i` or the
  target distribution (:math:`\omega_c = 1` without ``weight``). With labels
  this is :math:`(1 - \varepsilon)\,\omega_{y_i}\,\ell^{\text{nll}}_i +
  \frac{\varepsilon}{C} \sum_c \omega_c (\operatorname{logsumexp}(z_i) -
  z_{ic})`, PyTorch's formula.
- **the mean**: with labels, ``"mean"`` divides the sum of the kept rows'
  losses by :math:`\sum_{i\ \text{kept}} \omega_{y_i}` (the number of kept
  rows without ``weight``); with target distributions, by :math:`M`. These
  are PyTorch's two rules.

A class whose coefficient is 0 (no target mass, or weight 0) adds nothing to
the loss, even where its logit is ``-inf``: :math:`0 \cdot \infty = 0` here,
where PyTorch gives NaN. Which coefficients are positive is decided from the
inputs, never from a product that could underflow to 0.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._softmax import _as_rows, _locator, row_maxima
from ._streaming import MAX_BLOCK_FRACTION, block_size
from ._validation import (
    as_array,
    as_labels,
    check_ignore_index,
    check_kept_rows,
    check_mean_batch,
    check_target_dtype,
    class_axis_index,
    compute_dtype,
    find_label_error,
    find_logit_error,
    find_value_error,
    ignored_label,
    raise_first,
    sum_tolerance,
)


def check_label_smoothing(label_smoothing: object) -> float:
    """Return ``label_smoothing`` as a float in [0, 1]."""
    if isinstance(label_smoothing, bool | np.bool_) or not isinstance(
        label_smoothing, numbers.Real
    ):
        raise TypeError(
            f"label_smoothing must be a real number in [0, 1], got {label_smoothing!r}"
        )
    value = float(label_smoothing)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    return value


def prepare_weight(weight: npt.ArrayLike | None, n_classes: int) -> np.ndarray | None:
    """Class weights of shape ``(C,)``, finite and >= 0, in at least float64."""
    if weight is None:
        return None
    w = as_array(weight, "weight")
    compute_dtype(w.dtype, "weight")  # real numbers only
    if w.shape != (n_classes,):
        raise ValueError(
            f"weight has shape {w.shape}, but the logits have {n_classes} classes: "
            f"expected shape ({n_classes},), one weight per class"
        )
    bad = ~((w >= 0) & (w < np.inf))  # True for NaN
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(
            f"weight[{j}] = {w[j]!s} is not a finite, non-negative number; class "
            f"weights must be finite and >= 0"
        )
    return w.astype(np.promote_types(w.dtype, np.float64))


def _shape_error(arr: np.ndarray, shape: tuple[int, ...]) -> ValueError:
    """``y`` has neither the labels' shape nor the logits' shape."""
    lead = (shape[0], *shape[2:])
    if len(shape) == 2:
        return ValueError(
            f"y must be integer labels of shape (n_samples,) or target "
            f"distributions of shape (n_samples, n_classes), got shape {arr.shape}"
        )
    return ValueError(
        f"y has shape {arr.shape}, but the logits have shape {shape}: expected "
        f"integer labels of shape {lead} or target distributions of shape {shape}"
    )


@dataclass
class LogitTargets:
    """Logits and validated targets, as rows of ``C`` classes.

    ``rows`` has shape ``(M, C)``: a view of the logits, or for more than two
    dimensions an object whose ``[a:b]`` gathers rows ``a`` to ``b``.
    ``labels`` (shape ``(M,)``) or ``dist`` (rows like ``rows``, of the
    targets as given, values checked by :meth:`target_error`) holds the
    targets. ``weight`` is None or ``(C,)`` in at least float64.
    """

    logits: np.ndarray
    rows: object
    lead: tuple[int, ...]
    dtype: np.dtype
    labels: np.ndarray | None
    dist: object | None
    dist_dtype: np.dtype | None
    weight: np.ndarray | None
    smoothing: float
    ignore: int | None
    skip_label: np.integer | None
    n_kept: int

    @property
    def n_rows(self) -> int:
        return self.rows.shape[0]

    @property
    def n_classes(self) -> int:
        return self.rows.shape[1]

    @property
    def plain(self) -> bool:
        """No weight and no smoothing: the targets alone decide the loss."""
        return self.weight is None and self.smoothing == 0.0

    @property
    def fraction(self) -> int:
        """The blocks' share of the rows (see :func:`stream_rows`).

        Halved where a block needs more block-sized arrays than the plain
        routes do: rows gathered from more than two dimensions (a copy of
        the logits' block, and of the targets'), and coefficients.
        """
        gathered = not isinstance(self.rows, np.ndarray)
        return (
            2 * MAX_BLOCK_FRACTION if gathered or not self.plain else MAX_BLOCK_FRACTION
        )

    @property
    def wide(self) -> np.dtype:
        """The dtype of coefficient arithmetic: at least float64."""
        wide = np.promote_types(self.dtype, np.float64)
        if self.dist_dtype is not None and self.dist_dtype.kind == "f":
            wide = np.promote_types(wide, self.dist_dtype)
        if self.weight is not None:
            wide = np.promote_types(wide, self.weight.dtype)
        return wide

    def locate(self, row: int) -> str:
        """Name row ``row`` of the logits, e.g. ``logits[3]`` or ``logits[3, :, 5]``."""
        return "logits" + class_axis_index(self.lead, row, None)

    def locator(self, offset: int):
        """``locate`` for the rows of a block that starts at row ``offset``."""
        return _locator("logits", self.lead, 1, offset)

    def target_error(self, a: int, b: int) -> tuple[int, ValueError] | None:
        """The first bad row among target distributions ``a:b``."""
        q = self.dist[a:b]
        lead = None if len(self.lead) == 1 else self.lead
        tol = sum_tolerance(q.dtype, self.n_classes)
        return find_value_error(q, "y", tol, a, upper=False, lead=lead)

    def skipped(self, a: int, b: int) -> np.ndarray | None:
        """The mask of rows ``a:b`` that ``ignore_index`` skips, or None."""
        if self.skip_label is None:
            return None
        skip = self.labels[a:b] == self.skip_label
        return skip if skip.any() else None

    def coefficients(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mass, a)`` of rows ``a:b``: where ``a_ic > 0``, and ``a_ic``.

        ``a`` is in :attr:`wide`; ``mass`` is decided from the inputs, so
        that a coefficient that underflows to 0 still counts as mass.
        """
        c, eps = self.n_classes, self.smoothing
        w = np.ones(c, self.wide) if self.weight is None else self.weight
        if self.labels is None:
            p = self.dist[a:b]
            coef = p.astype(self.wide) * (1.0 - eps)
            mass = p > 0 if eps < 1.0 else np.zeros(p.shape, bool)
        else:
            coef = np.zeros((b - a, c), self.wide)
            mass = np.zeros((b - a, c), bool)
            labels = self.labels[a:b]
            skip = self.skipped(a, b)
            rows = np.arange(b - a)
            if skip is not None:
                rows, labels = rows[~skip], labels[~skip]
            coef[rows, labels] = 1.0 - eps
            mass[rows, labels] = eps < 1.0
        if eps > 0.0:
            coef += eps / c
            if self.labels is None:
                mass[...] = True
            else:
                kept = np.ones(b - a, bool) if skip is None else ~skip
                mass[kept] = True
        coef *= w
        mass &= w > 0
        return mass, coef

    def row_weights(self, a: int, b: int) -> np.ndarray:
        """:math:`\\sum_c a_{ic}` of rows ``a:b``, in :attr:`wide`."""
        _, coef = self.coefficients(a, b)
        return coef.sum(axis=1)

    def divisor(self) -> float:
        """What ``"mean"`` divides the sum of the losses by.

        Target distributions: every row, :math:`M`. Labels: the sum of the
        kept rows' class weights, or their number without ``weight``.
        """
        if self.labels is None or self.weight is None:
            return self.n_kept if self.labels is not None else self.n_rows
        counts = np.zeros(self.n_classes, np.int64)
        step = 1 << 16
        for a in range(0, self.n_rows, step):
            labels = self.labels[a : a + step]
            skip = self.skipped(a, a + labels.shape[0])
            if skip is not None:
                labels = labels[~skip]
            counts += np.bincount(labels.astype(np.intp), minlength=self.n_classes)
        return float(np.dot(counts.astype(self.weight.dtype), self.weight))


def prepare_logit_targets(
    logits: npt.ArrayLike,
    y: npt.ArrayLike,
    reduction: str,
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
) -> LogitTargets:
    """Check the logits, the targets and the options; return them as rows.

    Labels are checked here, in full, and an error names the earliest bad
    row of the labels or of the logits before it. Target distributions are
    checked only for dtype and shape: their values are checked block by
    block (:meth:`LogitTargets.target_error`), by the caller.
    """
    ignore = check_ignore_index(ignore_index)
    smoothing = check_label_smoothing(label_smoothing)
    z = as_array(logits, "logits")
    dtype = compute_dtype(z.dtype, "logits")
    if z.ndim < 2:
        raise ValueError(
            f"logits must be 2-D, of shape (n_samples, n_classes), or of shape "
            f"(n_samples, n_classes, d1, ..., dK), got shape {z.shape}"
        )
    if z.shape[1] < 1:
        raise ValueError(
            f"logits has shape {z.shape}: the class axis (axis=1) is empty"
        )
    rows, lead = _as_rows(z, 1)
    n_rows, n_classes = rows.shape
    w = prepare_weight(weight, n_classes)
    arr = as_labels(y, "y")
    if arr.ndim == z.ndim - 1:
        check_target_dtype(
            arr,
            "y",
            "labels",
            " (pass target distributions as an array of the logits' shape)",
        )
        if arr.shape != lead:
            if z.ndim == 2:
                raise ValueError(
                    f"y has shape {arr.shape}, but there are {n_rows} samples: "
                    f"expected shape ({n_rows},)"
                )
            raise _shape_error(arr, z.shape)
        return _label_targets(
            z, rows, lead, dtype, arr, w, smoothing, ignore, reduction
        )
    if arr.ndim != z.ndim:
        raise _shape_error(arr, z.shape)
    check_target_dtype(arr, "y", "distributions")
    if arr.shape != z.shape:
        raise ValueError(
            f"y has shape {arr.shape}, but the predictions have shape {z.shape}; "
            f"target distributions must have the same shape"
        )
    if ignore is not None:
        raise ValueError(
            f"ignore_index = {ignore} applies to integer labels only, but y holds "
            f"target distributions of shape {arr.shape}; to skip rows of target "
            f"distributions, leave them out (PyTorch raises for ignore_index >= 0 "
            f"with probability targets, and ignores a negative one)"
        )
    check_mean_batch(reduction, n_rows)
    dist, _ = _as_rows(arr, 1)
    return LogitTargets(
        z, rows, lead, dtype, None, dist, arr.dtype, w, smoothing, None, None, n_rows
    )


def _label_targets(
    z, rows, lead, dtype, arr, weight, smoothing, ignore, reduction
) -> LogitTargets:
    """Check integer labels (shape ``lead``) and count the rows they keep."""
    labels = arr.reshape(-1)
    n_rows, n_classes = rows.shape
    shape = None if len(lead) == 1 else lead
    found = find_label_error(labels, n_classes, ignore_index=ignore, shape=shape)
    skip_label = ignored_label(labels.dtype, ignore)
    t = LogitTargets(
        z,
        rows,
        lead,
        dtype,
        labels,
        None,
        None,
        weight,
        smoothing,
        ignore,
        skip_label,
        0,
    )
    raise_in_row_order(t, found)
    check_mean_batch(reduction, n_rows)
    n_skipped = 0
    if skip_label is not None:
        n_skipped = int(np.count_nonzero(labels == skip_label))
    t.n_kept = n_rows - n_skipped
    if n_skipped == 0:
        t.skip_label = None  # nothing to skip: the kernels need not look
    check_kept_rows(reduction, t.n_kept, ignore)
    if reduction == "mean" and weight is not None and t.divisor() == 0:
        raise ValueError(
            "reduction='mean' is undefined when the weights of the kept rows' "
            "classes sum to 0: there is nothing to average by (PyTorch returns "
            "nan); use reduction='sum' or 'none'"
        )
    return t


def raise_in_row_order(t: LogitTargets, found) -> None:
    """Raise the error of the earliest bad row: in the logits or in ``found``.

    ``found`` is ``(row, error)`` for the first bad target row, or None. A
    bad logit in an earlier row (or the same row) is reported instead, so
    that the error never depends on the order the arguments are checked in,
    nor on how rows are cut into blocks and threads. The logits before it
    are read one block at a time.
    """
    if found is None:
        return
    step = block_size(found[0] + 1, t.n_classes, t.dtype.itemsize)
    for a in range(0, found[0] + 1, step):
        b = min(a + step, found[0] + 1)
        m = row_maxima(t.rows[a:b]).astype(t.dtype, copy=False)
        error = find_logit_error(m, t.locator(a), a)
        if error is not None:
            raise_first(error, found)
    raise found[1]
