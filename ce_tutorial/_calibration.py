"""Calibration: are a classifier's predicted probabilities right?

- :func:`expected_calibration_error` and :func:`reliability_curve` compare the
  top-label confidence :math:`\\max_j \\hat{y}_j` of each prediction with how
  often the prediction is correct, in ``n_bins`` equal-width bins; given a
  1-D array of probabilities of the positive class and 0/1 labels, they
  compare that probability with the fraction of positives instead, as
  scikit-learn's ``calibration_curve`` and torchmetrics' binary calibration
  error do;
- :func:`classwise_calibration_error` bins every class's probability
  :math:`\\hat{y}_k` in turn against the frequency of class :math:`k`, and
  averages the C errors (Kull et al., 2019);
- :func:`fit_temperature` fits the temperature :math:`T > 0` of temperature
  scaling, :math:`\\operatorname{softmax}(\\mathbf{z} / T)`, by minimising the
  mean negative log-likelihood.

Binning convention (the same in every binned function): with :math:`M` bins,
bin :math:`B_m`, :math:`m = 0, \\dots, M - 1`, holds the confidences in
:math:`(m / M, (m + 1) / M]`, closed on the right. The edges are the
floating-point numbers ``np.arange(M + 1) / M`` in the dtype of the
computation, so a confidence that equals one of them exactly belongs to the bin
*below* it. A probability of exactly 0 (a class-wise or binary probability;
never a top-label confidence, which is at least :math:`1 / C`) is put in bin
0, so that the bins cover all of :math:`[0, 1]`.

The edges are never stored: each confidence's bin is found from
:math:`\\lceil c M \\rceil` and corrected by a step or two against the edges
computed on the fly, and only the occupied bins are kept, so time and memory
are :math:`O(N \\log N)` and :math:`O(N)` whatever :math:`M` is. The edges
are the ones above for every :math:`M`: ``m`` and :math:`M` are converted to
the dtype (so for :math:`M` beyond :math:`2^{53}` in float64, or
:math:`2^{24}` in float32, neighbouring ``m`` can give the same edge and
some bins are empty). :math:`M` must itself convert to a finite number in the
dtype (at most about 3.4e38 in float32).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt

from ._validation import (
    as_array,
    as_labels,
    check_labels,
    check_matrix,
    check_probabilities,
    check_target_dtype,
    compute_dtype,
    format_index,
    sum_tolerance,
)

__all__ = [
    "classwise_calibration_error",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_curve",
]

# fit_temperature stops when the bracket around 1/T is this narrow, relative to
# 1/T: far inside the promised relative accuracy of 1e-8.
_RTOL = 1e-13
_MAX_ITER = 200
# fit_temperature rescales the logits only if their largest difference is
# outside [2**-400, 2**400]: inside, exp, the squares and the sums stay finite.
_SCALE_EXPONENT = 400
# A bin search moves each confidence's guess by at most a couple of edges;
# more steps than this would mean a bug, not a hard input.
_MAX_EDGE_STEPS = 8
# expected_calibration_error sums its per-bin gaps as a dense array of all M
# bins (empty ones 0) when M <= max(N, this), as it always did: numpy's
# pairwise sum depends on where the zeros sit, so this keeps its results
# bit for bit. Beyond, the gaps of the occupied bins alone are summed.
_DENSE_SUM_BINS = 2**16


def _check_n_bins(n_bins: object) -> int:
    """Return ``n_bins`` as an int >= 1."""
    if isinstance(n_bins, bool | np.bool_) or not isinstance(n_bins, numbers.Integral):
        raise TypeError(f"n_bins must be a positive integer, got {n_bins!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    return int(n_bins)


def _labels(y: npt.ArrayLike, n_samples: int, n_classes: int) -> np.ndarray:
    """``y`` as integer class labels of shape (n_samples,) in [0, n_classes).

    These functions take labels only, so the shape is checked before the
    dtype: a 2-D ``y`` (target distributions) gets a message saying so.
    """
    labels = as_labels(y, "y")
    if labels.ndim != 1:
        raise ValueError(
            f"y must be a 1-D array of integer class labels of shape "
            f"({n_samples},); target distributions are not accepted here, "
            f"got shape {labels.shape}"
        )
    check_target_dtype(
        labels, "y", "labels", " (target distributions are not accepted here)"
    )
    check_labels(labels, n_samples, n_classes, "y")
    return labels


def _binary_labels(y: npt.ArrayLike, n_samples: int) -> np.ndarray:
    """``y`` as 0/1 labels (bool or integer) of shape (n_samples,), as bool."""
    labels = as_labels(y, "y")
    check_target_dtype(labels, "y", "binary labels")
    if labels.shape != (n_samples,):
        raise ValueError(
            f"y has shape {labels.shape}, but y_hat holds {n_samples} "
            f"probabilities: expected shape ({n_samples},)"
        )
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"y[{i}] = {labels[i]} is not a 0/1 label; with a 1-D y_hat (the "
            f"probability of the positive class), y must be 0 or 1"
        )
    return labels == 1


def _prepare_binned(
    y_hat: npt.ArrayLike, y: npt.ArrayLike, n_bins: object
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate; return each example's confidence, its outcome, and ``M``.

    A 2-D ``y_hat`` gives the top-label confidence and whether the top label
    is right; a 1-D one gives the probability of the positive class and
    whether the label is 1.
    """
    m_bins = _check_n_bins(n_bins)
    p = as_array(y_hat, "y_hat")
    dtype = compute_dtype(p.dtype, "y_hat")
    if p.ndim == 1:
        p = p.astype(dtype, copy=False)
        _check_unit_interval(p, "y_hat")
        outcome = _binary_labels(y, p.shape[0])
        _check_bins_fit(m_bins, dtype)
        return p, outcome, m_bins
    p, labels = _probabilities_and_labels(p, y)
    _check_bins_fit(m_bins, dtype)
    predicted = p.argmax(axis=1)  # ties: the first largest class, as np.argmax
    confidence = p[np.arange(p.shape[0]), predicted]
    return confidence, predicted == labels, m_bins


def _probabilities_and_labels(
    p: np.ndarray, y: npt.ArrayLike, *, binary_ok: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate an ``(N, C)`` array of distributions and its labels.

    ``binary_ok`` says whether the caller also takes a 1-D ``y_hat``, for
    the message of a ``y_hat`` of the wrong number of dimensions.
    """
    if p.ndim != 2 and binary_ok:
        raise ValueError(
            f"y_hat must be 1-D (the probability of the positive class) or 2-D, "
            f"of shape (n_samples, n_classes), got shape {p.shape}"
        )
    check_matrix(p, "y_hat")
    tol = sum_tolerance(p.dtype, p.shape[1])
    p = p.astype(compute_dtype(p.dtype, "y_hat"), copy=False)
    check_probabilities(p, "y_hat", tol)
    return p, _labels(y, p.shape[0], p.shape[1])


def _check_unit_interval(p: np.ndarray, name: str) -> None:
    """Every entry of the floating array ``p`` is a number in [0, 1]."""
    bad = ~((p >= 0) & (p <= 1))  # True for NaN
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{name}[{i}] = {p[i]!s} is not in [0, 1]; a 1-D {name} holds the "
            f"probability of the positive class"
        )


def _check_bins_fit(m_bins: int, dtype: np.dtype) -> None:
    """``M`` must convert to a finite number in the dtype of the edges."""
    if m_bins > int(np.finfo(dtype).max):
        raise ValueError(
            f"n_bins = {m_bins} is too large: the bin edges m / n_bins are "
            f"computed in {dtype}, whose largest number is {np.finfo(dtype).max!s}"
        )


def _bin_ends(confidence: np.ndarray, m_bins: int) -> np.ndarray:
    """For each confidence c, the x = m + 1 of its bin m, as a float.

    The edge of x is ``fl(x / fl(M))`` in the dtype of ``confidence``, where x
    runs over the integer-valued floats in [0, fl(M)] (the values of
    ``np.arange(M + 1, dtype=dtype)``). The bin of c is (edge(x - 1), edge(x)]
    with x the smallest such x >= 1 whose edge is >= c; c = 0 gets x = 1, bin
    0. x starts at ceil(c * M), within a couple of steps of the answer.
    """
    dtype = confidence.dtype
    big = dtype.type(m_bins)
    one = dtype.type(1)
    # every integer up to 2**(nmant + 1) is a float of the dtype; above, every
    # float is an integer
    dense = np.ldexp(one, np.finfo(dtype).nmant + 1)
    up = dtype.type(np.inf)
    x = np.clip(np.ceil(confidence * big), one, big)
    for _ in range(_MAX_EDGE_STEPS):  # up while the edge of x is below c
        low = x / big < confidence
        if not low.any():
            break
        xl = x[low]
        x[low] = np.where(xl < dense, xl + one, np.nextafter(xl, up))
    else:  # pragma: no cover - ceil(c M) is within two steps
        raise AssertionError("the bin search did not converge")
    for _ in range(_MAX_EDGE_STEPS):  # down while the edge below x is still >= c
        below = np.where(x <= dense, x - one, np.nextafter(x, dtype.type(0)))
        high = (below >= one) & (below / big >= confidence)
        if not high.any():
            break
        x[high] = below[high]
    else:  # pragma: no cover
        raise AssertionError("the bin search did not converge")
    return x


def _bin_sums(
    confidence: np.ndarray, outcome: np.ndarray, m_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per occupied bin: m + 1, the sums of confidence and outcome, the count.

    The sums accumulate in float64 (longdouble for longdouble input), in
    example order, and are rounded to the dtype of ``confidence``.
    """
    dtype = confidence.dtype
    ends, inverse = np.unique(_bin_ends(confidence, m_bins), return_inverse=True)
    counts = np.bincount(inverse, minlength=ends.size)
    # np.add.at adds in example order, as np.bincount(weights=...) did, and
    # works for longdouble, which bincount would cast to float64.
    acc_dtype = np.promote_types(dtype, np.float64)
    conf_sum = np.zeros(ends.size, acc_dtype)
    np.add.at(conf_sum, inverse, confidence.astype(acc_dtype))
    acc_sum = np.zeros(ends.size, acc_dtype)
    np.add.at(acc_sum, inverse, outcome.astype(acc_dtype))
    return ends, conf_sum.astype(dtype), acc_sum.astype(dtype), counts


def _binned(
    y_hat: npt.ArrayLike, y: npt.ArrayLike, n_bins: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate; per occupied bin: m + 1, confidence and outcome sums, count."""
    confidence, outcome, m_bins = _prepare_binned(y_hat, y, n_bins)
    return *_bin_sums(confidence, outcome, m_bins), confidence.shape[0]


def _weighted_gap(
    ends: np.ndarray, conf_sum: np.ndarray, acc_sum: np.ndarray, m_bins: int, n: int
) -> float:
    """``sum_m |acc_sum_m - conf_sum_m| / n``: the ECE of one set of bins."""
    gaps = np.abs(acc_sum - conf_sum)
    if m_bins <= max(n, _DENSE_SUM_BINS):
        dense = np.zeros(m_bins, gaps.dtype)
        dense[ends.astype(np.intp) - 1] = gaps
        gaps = dense
    return float(gaps.sum() / n)


def _refuse_empty(n: int, what: str) -> None:
    if n == 0:
        raise ValueError(f"the {what} is undefined for an empty batch (0 samples)")


def reliability_curve(
    y_hat: npt.ArrayLike, y: npt.ArrayLike, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, accuracy and count of every non-empty confidence bin.

    The points of a reliability diagram: for a calibrated model, the accuracy
    in each bin equals the mean confidence in it.

    Parameters
    ----------
    y_hat : array_like of shape (n_samples, n_classes), or (n_samples,)
        Predicted probabilities; every row must be a distribution. A 1-D
        array holds the probability of the positive class of a binary
        problem, each in ``[0, 1]``.
    y : array_like of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``; for a 1-D ``y_hat``, 0/1
        labels (integer or bool), 1 for the positive class.
    n_bins : int, default 15
        The number :math:`M` of equal-width bins on ``[0, 1]``.

    Returns
    -------
    confidence : ndarray of shape (n_nonempty,)
        The mean top-label confidence :math:`\\operatorname{conf}(B_m)` of each
        non-empty bin, in increasing order of ``m``; for a 1-D ``y_hat``, the
        mean probability of the positive class (scikit-learn's
        ``prob_pred``).
    accuracy : ndarray of shape (n_nonempty,)
        The fraction :math:`\\operatorname{acc}(B_m)` of the bin's predictions
        that are correct; for a 1-D ``y_hat``, the fraction of the bin's
        labels that are 1 (scikit-learn's ``prob_true``).
    count : ndarray of int of shape (n_nonempty,)
        :math:`|B_m|`, the number of examples in the bin (every entry >= 1).

    ``confidence`` and ``accuracy`` have the dtype of the computation: float32
    for float16 or float32 input, float64 for integers and float64, longdouble
    for longdouble. An empty batch gives three empty arrays.

    Raises
    ------
    ValueError
        If ``y_hat`` is neither 1-D nor 2-D, holds a value outside ``[0, 1]``
        or (2-D) a row not summing to 1, if ``y`` is not 1-D (target
        distributions are not accepted), has the wrong length or a label out
        of range (for a 1-D ``y_hat``, a label other than 0 and 1), or if
        ``n_bins < 1`` or ``n_bins`` is too large to convert to a finite
        number in the dtype of the computation.
    TypeError
        If ``y_hat`` is not real, ``y`` not integer (bool is accepted with a
        1-D ``y_hat``), or ``n_bins`` not an integer.

    See Also
    --------
    expected_calibration_error : the weighted mean gap between the two curves.
    sklearn.calibration.calibration_curve : the binary curve, ``strategy="uniform"``.

    Notes
    -----
    The top-label prediction of example :math:`i` is
    :math:`\\arg\\max_j \\hat{y}^{(i)}_j` (the first largest class on a tie) and
    its confidence is :math:`\\max_j \\hat{y}^{(i)}_j`. Bin :math:`B_m` holds
    the examples whose confidence lies in :math:`(m / M, (m + 1) / M]`; the
    module docstring gives the edge convention. Then

    .. math::

        \\operatorname{conf}(B_m) = \\frac{1}{|B_m|} \\sum_{i \\in B_m}
        \\max_j \\hat{y}^{(i)}_j, \\qquad
        \\operatorname{acc}(B_m) = \\frac{1}{|B_m|} \\sum_{i \\in B_m}
        [\\arg\\max_j \\hat{y}^{(i)}_j = y^{(i)}].

    For a 1-D ``y_hat``, the binned value of example :math:`i` is
    :math:`\\hat{y}^{(i)}` itself and its outcome is :math:`[y^{(i)} = 1]`:
    the curve of the positive class's probability, whatever side of 1/2 it
    is on. (The top-label curve of the same predictions, ``y_hat`` of shape
    ``(N, 2)``, bins :math:`\\max(\\hat{y}, 1 - \\hat{y})` instead.)

    Examples
    --------
    >>> import numpy as np
    >>> y_hat = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    >>> conf, acc, count = reliability_curve(y_hat, [0, 1, 1, 1], n_bins=5)
    >>> conf, acc, count
    (array([0.6 , 0.75, 0.9 ]), array([1. , 0.5, 1. ]), array([1, 2, 1]))

    The confidences 0.6 and 0.8 lie exactly on the edges 3/5 and 4/5, so they
    count in the bins below, (0.4, 0.6] and (0.6, 0.8].

    The same predictions as probabilities of class 1: 0.1 and 0.2 share the
    bin (0, 0.2], where one label in two is 1.

    >>> reliability_curve(y_hat[:, 1], [0, 1, 1, 1], n_bins=5)
    (array([0.15, 0.6 , 0.7 ]), array([0.5, 1. , 1. ]), array([2, 1, 1]))
    """
    _, conf_sum, acc_sum, counts, _ = _binned(y_hat, y, n_bins)
    n_kept = counts.astype(conf_sum.dtype)
    return conf_sum / n_kept, acc_sum / n_kept, counts


def expected_calibration_error(
    y_hat: npt.ArrayLike, y: npt.ArrayLike, n_bins: int = 15
) -> float:
    """The expected calibration error (ECE) of predicted probabilities.

    The mean absolute gap between confidence and accuracy over ``n_bins``
    equal-width bins of the top-label confidence, each bin weighted by its
    share of the examples (Guo et al., 2017). For a 1-D ``y_hat`` of
    probabilities of the positive class, the same gap between that
    probability and the fraction of positives: the binary ECE of
    torchmetrics, and the count-weighted gap of scikit-learn's
    ``calibration_curve``.

    Parameters
    ----------
    y_hat : array_like of shape (n_samples, n_classes), or (n_samples,)
        Predicted probabilities; every row must be a distribution. A 1-D
        array holds the probability of the positive class of a binary
        problem, each in ``[0, 1]``.
    y : array_like of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``; for a 1-D ``y_hat``, 0/1
        labels (integer or bool), 1 for the positive class.
    n_bins : int, default 15
        The number :math:`M` of equal-width bins on ``[0, 1]``.

    Returns
    -------
    float
        The ECE, in ``[0, 1]``.

    Raises
    ------
    ValueError
        If the batch is empty (the ECE is a mean over examples), if ``y_hat``
        is neither 1-D nor 2-D, holds a value outside ``[0, 1]`` or (2-D) a
        row not summing to 1, if ``y`` is not 1-D (target distributions are
        not accepted), has the wrong length or a label out of range (for a
        1-D ``y_hat``, a label other than 0 and 1), or if ``n_bins < 1`` or
        ``n_bins`` is too large to convert to a finite number in the dtype of
        the computation.
    TypeError
        If ``y_hat`` is not real, ``y`` not integer (bool is accepted with a
        1-D ``y_hat``), or ``n_bins`` not an integer.

    See Also
    --------
    reliability_curve : the per-bin confidence, accuracy and count.
    classwise_calibration_error : every class's probability, not the top one.

    Notes
    -----
    With :math:`\\operatorname{conf}(B_m)` and :math:`\\operatorname{acc}(B_m)`
    as in :func:`reliability_curve` and :math:`N` examples,

    .. math::

        \\mathrm{ECE} = \\sum_{m=0}^{M-1} \\frac{|B_m|}{N}
        \\bigl|\\operatorname{acc}(B_m) - \\operatorname{conf}(B_m)\\bigr|,

    where empty bins contribute 0. It is computed as
    :math:`\\frac{1}{N}\\sum_m |\\sum_{i \\in B_m} (\\text{correct}_i -
    \\text{conf}_i)|`; the sums over each bin accumulate in float64
    (longdouble for longdouble input), in example order, and are rounded to
    float32 for float16/float32 input. The ECE depends on
    :math:`M`, and it is not a proper scoring rule: a model that predicts the
    class frequencies for every input has an ECE near 0.

    For a 1-D ``y_hat``, :math:`\\operatorname{conf}(B_m)` is the mean
    probability of the positive class in the bin and
    :math:`\\operatorname{acc}(B_m)` the fraction of labels equal to 1 (see
    :func:`reliability_curve`). The top-label ECE of the same predictions as
    an ``(N, 2)`` array pools :math:`\\hat{y}` and :math:`1 - \\hat{y}` in
    one bin, and can hide a miscalibration that this one shows (Examples).

    References
    ----------
    Chuan Guo, Geoff Pleiss, Yu Sun and Kilian Q. Weinberger, "On Calibration
    of Modern Neural Networks", ICML 2017.

    Examples
    --------
    Two examples at confidence 0.9, one right and one wrong, and two at 0.6,
    both right: the bins hold gaps of :math:`|0.5 - 0.9| = 0.4` and
    :math:`|1 - 0.6| = 0.4`, each for half the examples.

    >>> import numpy as np
    >>> y_hat = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    >>> round(expected_calibration_error(y_hat, [0, 1, 1, 1], n_bins=10), 12)
    0.4

    Binary predictions of 0.2 and 0.8, where the labels are 1 half the time
    and every time: the positive class's probability is off by 0.3 and 0.2.
    As top-label predictions, all four have confidence 0.8 and three are
    right, which hides both gaps:

    >>> p = np.array([0.2, 0.2, 0.8, 0.8])
    >>> round(expected_calibration_error(p, [0, 1, 1, 1], n_bins=10), 12)
    0.25
    >>> top = np.column_stack([1 - p, p])
    >>> round(expected_calibration_error(top, [0, 1, 1, 1], n_bins=10), 12)
    0.05
    """
    ends, conf_sum, acc_sum, _, n = _binned(y_hat, y, n_bins)
    _refuse_empty(n, "expected calibration error")
    return _weighted_gap(ends, conf_sum, acc_sum, int(n_bins), n)


def classwise_calibration_error(
    y_hat: npt.ArrayLike, y: npt.ArrayLike, n_bins: int = 15
) -> float:
    """The class-wise expected calibration error (Kull et al., 2019).

    For each class :math:`k`, the probabilities :math:`\\hat{y}_k` of all
    examples are binned as in :func:`expected_calibration_error` and compared,
    bin by bin, with the fraction of the bin's examples whose label is
    :math:`k`; the count-weighted mean gap is class :math:`k`'s error, and
    the result is the mean of the :math:`C` errors. Unlike the top-label
    ECE, it sees the probabilities a model gives to the classes it does not
    predict.

    Parameters
    ----------
    y_hat : array_like of shape (n_samples, n_classes)
        Predicted probabilities; every row must be a distribution.
    y : array_like of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``.
    n_bins : int, default 15
        The number :math:`M` of equal-width bins on ``[0, 1]``, the same for
        every class.

    Returns
    -------
    float
        The class-wise ECE, in ``[0, 1]``.

    Raises
    ------
    ValueError
        If the batch is empty, if ``y_hat`` is not 2-D, holds a value outside
        ``[0, 1]`` or a row not summing to 1, if ``y`` is not 1-D, has the
        wrong length or a label out of range, or if ``n_bins < 1`` or
        ``n_bins`` is too large to convert to a finite number in the dtype of
        the computation.
    TypeError
        If ``y_hat`` is not real, ``y`` not integer, or ``n_bins`` not an integer.

    See Also
    --------
    expected_calibration_error : the top-label (or binary) ECE.

    Notes
    -----
    With :math:`B_{mk}` the examples whose :math:`\\hat{y}^{(i)}_k` lies in
    bin :math:`m` (the bins and edges of the module docstring; a probability
    of exactly 0 goes to bin 0), :math:`N` examples and :math:`C` classes,

    .. math::

        \\text{classwise-ECE} = \\frac{1}{C} \\sum_{k=0}^{C-1}
        \\sum_{m=0}^{M-1} \\frac{|B_{mk}|}{N}
        \\Bigl| \\frac{1}{|B_{mk}|} \\sum_{i \\in B_{mk}} [y^{(i)} = k]
        - \\frac{1}{|B_{mk}|} \\sum_{i \\in B_{mk}} \\hat{y}^{(i)}_k \\Bigr|,

    where empty bins contribute 0. Class :math:`k`'s term is the binary ECE
    of :func:`expected_calibration_error` for the 1-D probabilities
    ``y_hat[:, k]`` and the labels ``y == k``, computed in the same way.

    References
    ----------
    Meelis Kull, Miquel Perello-Nieto, Markus Kängsepp, Telmo Silva Filho,
    Hao Song and Peter Flach, "Beyond temperature scaling: Obtaining
    well-calibrated multiclass probabilities with Dirichlet calibration",
    NeurIPS 2019.

    Examples
    --------
    Two examples of class 0 predicted as ``[0.6, 0.4, 0.0]`` and two of class 1
    as ``[0.3, 0.7, 0.0]``. Class 0's probabilities are 0.6 (right every time)
    and 0.3 (never right): gaps 0.4 and 0.3, each for half the examples, so
    0.35; class 1's are the same by symmetry, 0.35, and class 2's are 0 and
    never right, 0. The mean over three classes is 0.7 / 3:

    >>> import numpy as np
    >>> y_hat = np.array([[0.6, 0.4, 0.0]] * 2 + [[0.3, 0.7, 0.0]] * 2)
    >>> y = [0, 0, 1, 1]
    >>> round(classwise_calibration_error(y_hat, y, n_bins=10), 12)
    0.233333333333
    >>> round(expected_calibration_error(y_hat, y, n_bins=10), 12)
    0.35
    """
    m_bins = _check_n_bins(n_bins)
    p = as_array(y_hat, "y_hat")
    compute_dtype(p.dtype, "y_hat")
    p, labels = _probabilities_and_labels(p, y, binary_ok=False)
    _check_bins_fit(m_bins, p.dtype)
    n, c = p.shape
    _refuse_empty(n, "class-wise calibration error")
    errors = [
        _weighted_gap(*_bin_sums(p[:, k], labels == k, m_bins)[:3], m_bins, n)
        for k in range(c)
    ]
    return math.fsum(errors) / c


def _prepare_fit(logits: npt.ArrayLike, y: npt.ArrayLike):
    """Validate; return logits shifted so that each row's maximum is 0, labels."""
    z = as_array(logits, "logits")
    dtype = compute_dtype(z.dtype, "logits")
    check_matrix(z, "logits")
    labels = _labels(y, z.shape[0], z.shape[1])
    if z.shape[0] == 0:
        raise ValueError(
            "fit_temperature needs at least one example, got an empty batch (0 samples)"
        )
    bad = ~np.isfinite(z)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), z.shape)
        raise ValueError(
            f"logits{format_index(idx)} = {z[idx]!s} is not finite; "
            f"fit_temperature needs finite logits (a -inf that masks a class "
            f"is not supported here either)"
        )
    # At least float64, whatever came in: T is returned to 1e-8.
    u = z.astype(np.promote_types(dtype, np.float64))
    # z - max(z) overflows for logits of both signs beyond half the range
    # (1e308 - (-1e308)): halve them first, which is exact (a subnormal may
    # lose its last bit, nothing next to a difference this large), and
    # return the power of two that T must be multiplied by.
    halved = 0
    if np.abs(u).max() > np.finfo(u.dtype).max / 2:
        u, halved = np.ldexp(u, -1), 1
    u = u - u.max(axis=1, keepdims=True)  # <= 0; exact for rows of one scale
    return u, labels, halved


def _short(x: np.floating) -> str:
    """Three significant digits of a float64 or longdouble, without overflow."""
    return np.format_float_scientific(x, precision=2)


def _accurate_sum(x: np.ndarray) -> float:
    """The sum of a float64 or longdouble array, correctly rounded to float64.

    A longdouble is split exactly into a float64 and a float64 remainder
    (exact while the remainder is a normal float64), and math.fsum adds all.
    """
    hi = x.astype(np.float64)
    lo = (x - hi).astype(np.float64)
    return math.fsum(np.concatenate([hi, lo]).tolist())


def _slopes(beta: float, u: np.ndarray, u_true: np.ndarray) -> tuple[float, float]:
    """First and second derivative in beta = 1/T of the mean NLL."""
    w = np.exp(beta * u)  # u <= 0 and beta > 0: no overflow
    w /= w.sum(axis=1, keepdims=True)
    mean = (w * u).sum(axis=1)
    var = (w * (u - mean[:, None]) ** 2).sum(axis=1)
    return float(np.mean(mean - u_true)), float(np.mean(var))


def fit_temperature(logits: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """The temperature that minimises the mean NLL of ``softmax(logits / T)``.

    Temperature scaling (Guo et al., 2017) recalibrates a trained classifier
    with one number: fit :math:`T` on held-out data, then predict
    :math:`\\operatorname{softmax}(\\mathbf{z} / T)`. Dividing by :math:`T > 0`
    never changes which logit is largest (up to ties made by rounding), so
    accuracy is unchanged.

    Parameters
    ----------
    logits : array_like of shape (n_samples, n_classes)
        Finite logits of held-out examples. A ``-inf`` that masks a class
        (accepted by the losses) is rejected here.
    y : array_like of shape (n_samples,)
        Their integer class labels in ``[0, n_classes)``.

    Returns
    -------
    float
        The minimiser :math:`T > 0`, to a relative accuracy of 1e-8 (Notes
        say when rounding limits it).

    Raises
    ------
    ValueError
        If the mean NLL has no finite minimiser, with the direction in which
        it keeps falling: as :math:`T \\to 0` when every example's true-class
        logit is the largest of its row, and as :math:`T \\to \\infty` when
        the true-class logits are on average no larger than their rows' means
        (then :math:`T \\to \\infty`, the uniform prediction, does best),
        or larger only by less than the rounding error of that mean (see
        Notes). Also
        if every row is constant (such rows carry no information about
        :math:`T`), if the batch is empty, if ``logits`` is not 2-D or holds
        NaN or an infinity (``-inf`` included), if ``y`` is not 1-D (target
        distributions are not accepted), has the wrong length or a label out
        of range, or if the fitted :math:`T` of longdouble logits is outside
        the float64 range.
    TypeError
        If ``logits`` is not real or ``y`` not integer.

    Notes
    -----
    Write :math:`\\beta = 1/T` and :math:`u_{ij} = z^{(i)}_j - \\max_k
    z^{(i)}_k`. The mean NLL :math:`f(\\beta) = \\frac{1}{N}\\sum_i
    [\\operatorname{LSE}(\\beta \\mathbf{u}^{(i)}) - \\beta u_{i y^{(i)}}]` has

    .. math::

        f'(\\beta) = \\frac{1}{N}\\sum_i \\bigl(\\mathbb{E}_{\\mathbf{s}^{(i)}}
        [u_{i\\cdot}] - u_{i y^{(i)}}\\bigr), \\qquad
        f''(\\beta) = \\frac{1}{N}\\sum_i
        \\operatorname{Var}_{\\mathbf{s}^{(i)}}[u_{i\\cdot}] \\ge 0,

    with :math:`\\mathbf{s}^{(i)} = \\operatorname{softmax}(\\beta
    \\mathbf{u}^{(i)})`, so :math:`f` is convex in :math:`\\beta`, strictly so
    once a row is not constant. :math:`f'` rises from :math:`f'(0) =
    \\frac{1}{N}\\sum_i (\\bar{u}_i - u_{iy^{(i)}})` to :math:`f'(\\infty) =
    -\\frac{1}{N}\\sum_i u_{iy^{(i)}} \\ge 0`; a finite minimiser exists if
    and only if :math:`f'(0) < 0 < f'(\\infty)`, which are the two error
    cases. Constant rows add 0 to both derivatives and are dropped first.

    The root of :math:`f'` is found by Newton's method on :math:`\\beta`,
    safeguarded by bisection: a bracket :math:`[\\beta_{lo}, \\beta_{hi}]`
    with :math:`f'(\\beta_{lo}) < 0 < f'(\\beta_{hi})` is grown from
    :math:`\\beta = 1` by doubling or halving, and any Newton step that leaves
    it is replaced by the midpoint. Logits whose largest difference
    :math:`\\max |u_{ij}|` lies outside :math:`[2^{-400}, 2^{400}]` are first
    scaled by a power of 2 so that it is near 1, which keeps every
    intermediate finite; the result is scaled back. It computes in float64
    (longdouble for longdouble input) whatever the input dtype, and returns a
    Python float. Thread-safe: it keeps no state.

    Rounding and :math:`T \\to \\infty`. The margin :math:`\\mu = -f'(0) =
    \\frac{1}{N}\\sum_i d_i`, :math:`d_i = u_{iy^{(i)}} - \\bar{u}_i`, decides
    whether the minimiser is finite, and an exact 0 can come out of the
    arithmetic as a tiny positive number, which would give a huge finite
    :math:`T` (such as 2.25e15) where the answer is :math:`T = \\infty`. With
    unit roundoff :math:`\\epsilon` of the computation (:math:`2^{-53}` in
    float64), :math:`U = \\max_{ij} |u_{ij}|` and :math:`C` classes, each
    computed :math:`d_i` is off by at most :math:`(C + 4)\\,\\epsilon U` to
    first order: :math:`\\epsilon U` each for rounding :math:`u_{iy^{(i)}}`,
    the row mean of the rounded :math:`u_{ij}`, the division by :math:`C` and
    the subtraction, and :math:`(C - 1)\\,\\epsilon U` for adding the
    :math:`C` terms (in any order, that sum is off by at most
    :math:`(C - 1)\\,\\epsilon\\, C U`, and it is divided by :math:`C`). The
    :math:`d_i` are then added exactly by :func:`math.fsum`, with one rounding
    of the sum and one of the division by :math:`N`, both relative to
    :math:`\\mu`, so the error of :math:`\\mu` has the same bound, whatever
    :math:`N` is. Twice it, :math:`B = 2 (C + 4)\\,\\epsilon U`, absorbs the
    second-order terms and those two roundings; a computed
    :math:`\\mu \\le B` raises the :math:`T \\to \\infty` error, since its
    sign is not resolved. The bound covers the arithmetic on the logits as
    converted to the computation dtype (integers beyond :math:`2^{53}` are
    rounded on conversion). The computed :math:`f'` near the root has an
    error of the same order, so the relative accuracy of the returned
    :math:`T` is of order :math:`B / \\mu` at worst: the promised 1e-8 is
    assured only for :math:`\\mu` above about :math:`10^8 B` (for logits of
    order 1 and a few classes, :math:`\\mu` above about 1e-7). Differences
    below the smallest normal number relative to :math:`U` (subnormal ones)
    are also at the edge of the format, and then the fit can be off.

    References
    ----------
    Chuan Guo, Geoff Pleiss, Yu Sun and Kilian Q. Weinberger, "On Calibration
    of Modern Neural Networks", ICML 2017.

    Examples
    --------
    Two examples with the same logits, one of each class: the NLL is smallest
    where the predicted probability of class 0 is 1/2, at :math:`T = \\infty`.
    A third example of class 0 makes the best probability 2/3, which
    :math:`\\operatorname{softmax}([1, 0] / T)` reaches at
    :math:`T = 1 / \\log 2`.

    >>> import numpy as np
    >>> z = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    >>> T = fit_temperature(z, [0, 0, 1])
    >>> round(T, 12), round(1 / float(np.log(2)), 12)
    (1.442695040889, 1.442695040889)
    >>> fit_temperature(z[:2], [0, 1])
    Traceback (most recent call last):
    ...
    ValueError: the mean NLL keeps falling as T -> inf (to within rounding \
error), so it has no finite minimiser: the true-class logits are on average \
not above their rows' means (mean of z[y] - mean(z) = 0.0 <= 0)
    """
    u, labels, exponent = _prepare_fit(logits, y)
    informative = (u != 0).any(axis=1)
    if not informative.any():
        raise ValueError(
            "every row of logits is constant, so the NLL does not depend on T "
            "and there is nothing to fit"
        )
    u, labels = u[informative], labels[informative]
    if not u[np.arange(u.shape[0]), labels].any():  # f'(inf) = 0
        raise ValueError(
            "the mean NLL keeps falling as T -> 0, so it has no finite "
            "minimiser: every example's true-class logit is the largest in its "
            "row (or ties for it)"
        )
    # Logits of extreme scale are scaled by a power of 2 so that max |u| is
    # in [0.5, 1), which keeps the squares and sums below finite; other logits
    # are left alone, since scaling down could round tiny differences to 0.
    # The scale is kept as a power of two, 2**exponent, and applied with
    # ldexp: 2**1024, the scale of a largest difference of 2**1023, is
    # beyond float64, while T itself may not be.
    _, top = np.frexp(-u.min())
    if not -_SCALE_EXPONENT < top < _SCALE_EXPONENT:
        u = np.ldexp(u, -int(top))
        exponent += int(top)

    def scaled(x: float) -> np.floating:
        """``x`` in the logits' own units: times 2**exponent."""
        with np.errstate(over="ignore"):
            return np.ldexp(u.dtype.type(x), exponent)

    u_true = u[np.arange(u.shape[0]), labels]
    if not u_true.any():  # differences below the float range were rounded to 0
        raise ValueError(
            "the mean NLL keeps falling as T -> 0, so it has no finite "
            "minimiser: every example's true-class logit is the largest in its "
            "row (or ties for it) at floating-point resolution"
        )
    # f'(0) = -margin. Its sign decides whether T = inf is the answer, so it
    # must not be decided by rounding: see Notes for the bound.
    margin = _accurate_sum(u_true - u.mean(axis=1)) / u.shape[0]
    unit_roundoff = float(np.finfo(u.dtype).eps) / 2
    bound = 2 * (u.shape[1] + 4) * unit_roundoff * float(-u.min())
    if margin <= bound:
        if margin <= 0:
            detail = f"mean of z[y] - mean(z) = {scaled(margin)!s} <= 0"
        else:
            detail = (
                f"mean of z[y] - mean(z) = {_short(scaled(margin))} is not above "
                f"its rounding-error bound {_short(scaled(bound))}"
            )
        raise ValueError(
            "the mean NLL keeps falling as T -> inf (to within rounding error), "
            "so it has no finite minimiser: the true-class logits are on "
            f"average not above their rows' means ({detail})"
        )

    # Grow a bracket [lo, hi] with f'(lo) < 0 < f'(hi) from beta = 1.
    beta = 1.0
    slope, curve = _slopes(beta, u, u_true)
    lo, hi = (beta, np.inf) if slope < 0 else (0.0, beta)
    while slope != 0 and (np.isinf(hi) or lo == 0):
        beta = beta * 2 if np.isinf(hi) else beta / 2
        if not 0 < beta < np.inf:
            way = "0" if np.isinf(hi) else "inf"
            raise ValueError(
                f"the mean NLL keeps falling as T -> {way} beyond the floating-"
                f"point range: its minimiser is not representable"
            )
        slope, curve = _slopes(beta, u, u_true)
        if slope < 0:
            lo = beta
        elif slope > 0:
            hi = beta

    # Newton on beta, safeguarded by bisection of the bracket.
    for _ in range(_MAX_ITER):
        if slope == 0:
            break
        step = slope / curve if curve > 0 else np.inf
        if abs(step) <= _RTOL * beta:  # converged: take the last, tiny step
            beta -= step
            break
        if hi - lo <= _RTOL * beta:  # the bracket has closed in on the root
            beta = 0.5 * (lo + hi)
            break
        candidate = beta - step
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        beta = candidate
        slope, curve = _slopes(beta, u, u_true)
        if slope < 0:
            lo = beta
        elif slope > 0:
            hi = beta
    temperature = scaled(u.dtype.type(1) / u.dtype.type(beta))
    with np.errstate(over="ignore"):
        result = float(temperature)
    if not 0 < result < np.inf:  # longdouble logits beyond the float64 range
        raise ValueError(
            f"the fitted temperature T = {temperature!s} is outside the range of "
            f"the float64 that fit_temperature returns"
        )
    return result
