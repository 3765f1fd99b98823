"""The likelihood, the negative log-likelihood and the cross-entropy loss.

Two families of functions, matching the two things a classifier may output:

- on **probabilities** ``y_hat`` (rows that sum to 1): :func:`likelihood`,
  :func:`negative_log_likelihood` and :func:`cross_entropy`, the functions of
  the book's first chapters;
- on **logits** (unnormalised scores): :func:`cross_entropy_from_logits` and
  :func:`cross_entropy_grad`, the forms used to train models.

Targets ``y`` are either integer class labels of shape ``(n_samples,)`` or
target distributions of shape ``(n_samples, n_classes)``. The functions on
logits also take PyTorch's options (``weight``, ``ignore_index``,
``label_smoothing``) and inputs with more dimensions, the classes on axis 1;
their targets are prepared by :mod:`ce_tutorial._targets`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._softmax import row_sums, shifted_log_sum, softmax
from ._streaming import stream_rows
from ._targets import LogitTargets, prepare_logit_targets, raise_in_row_order
from ._validation import (
    as_array,
    as_labels,
    check_label_dtype_and_shape,
    check_labels,
    check_matrix,
    check_num_classes,
    check_one_hot_size,
    check_probabilities,
    check_reduction,
    class_axis_index,
    compute_dtype,
    find_label_error,
    find_logit_error,
    find_value_error,
    format_index,
    raise_first,
    reduce,
    sum_tolerance,
)

__all__ = [
    "cross_entropy",
    "cross_entropy_from_logits",
    "cross_entropy_grad",
    "likelihood",
    "negative_log_likelihood",
    "one_hot",
]


def _probabilities(
    y_hat: npt.ArrayLike, name: str = "y_hat"
) -> tuple[np.ndarray, float]:
    """Predicted probabilities in their compute dtype, and their sum tolerance.

    Only the dtype and the shape (n_samples, n_classes) are checked here.
    """
    p = as_array(y_hat, name)
    dtype = compute_dtype(p.dtype, name)
    check_matrix(p, name)
    return p.astype(dtype, copy=False), sum_tolerance(p.dtype, p.shape[1])


def _prepare_probabilities(y_hat: npt.ArrayLike, name: str = "y_hat") -> np.ndarray:
    """Validate predicted probabilities of shape (n_samples, n_classes)."""
    p, tol = _probabilities(y_hat, name)
    check_probabilities(p, name, tol)
    return p


def _prepare_targets(
    y: npt.ArrayLike, shape: tuple[int, int], name: str = "y", *, values: bool = True
) -> np.ndarray:
    """Check ``y`` against predictions of ``shape``; return it as an array.

    1-D ``y`` are integer labels; their dtype and shape are checked here, and
    their values too unless ``values`` is false (the caller then checks
    them). 2-D ``y`` are target distributions; only their dtype and shape
    are checked here, their values by the caller.
    """
    arr = as_labels(y, name)
    if arr.ndim == 1:
        check_label_dtype_and_shape(arr, shape[0], name)
        if values:
            check_labels(arr, shape[0], shape[1], name)
        return arr
    if arr.ndim == 2:
        compute_dtype(arr.dtype, name)
        if arr.shape != shape:
            raise ValueError(
                f"{name} has shape {arr.shape}, but the predictions have shape "
                f"{shape}; target distributions must have the same shape"
            )
        return arr
    raise ValueError(
        f"{name} must be integer labels of shape (n_samples,) or target "
        f"distributions of shape (n_samples, n_classes), got shape {arr.shape}"
    )


def _target_error(q: np.ndarray, offset: int = 0, name: str = "y"):
    """The first bad row of target distributions ``q``, as ``(row, error)``."""
    tol = sum_tolerance(q.dtype, q.shape[-1])
    return find_value_error(q, name, tol, offset, upper=False)


# likelihood and negative_log_likelihood take labels only: their dtype error
# must not suggest target distributions, which they refuse.
LABELS_ONLY_HINT = " (labels only; for target distributions use cross_entropy)"


def _labels_only(y: npt.ArrayLike, n_samples: int, n_classes: int) -> np.ndarray:
    """Labels ``y`` of shape (n_samples,), dtype and shape checked, not values."""
    arr = as_labels(y, "y")
    if arr.ndim != 1:
        raise ValueError(
            f"y must be integer class labels of shape (n_samples,), got shape "
            f"{arr.shape}"
        )
    check_label_dtype_and_shape(arr, n_samples, hint=LABELS_ONLY_HINT)
    return arr


def _true_class_probabilities(y_hat: npt.ArrayLike, y: npt.ArrayLike) -> np.ndarray:
    """Validate ``y_hat`` and labels ``y``; return ``y_hat[i, y[i]]``.

    The first bad row of either is reported; on a tie, ``y_hat``'s.
    """
    p, tol = _probabilities(y_hat)
    labels = _labels_only(y, *p.shape)
    raise_first(find_value_error(p, "y_hat", tol), find_label_error(labels, p.shape[1]))
    return p[np.arange(p.shape[0]), labels]


def one_hot(y: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Encode integer class labels as rows of zeros with a single one.

    Parameters
    ----------
    y : array_like of int, shape (n_samples,)
        Class labels, each in ``0 <= y < num_classes``.
    num_classes : int
        The number of classes ``C``, at least 1.

    Returns
    -------
    encoded : ndarray of float64, shape (n_samples, num_classes)
        ``encoded[i, y[i]] == 1.0`` and every other entry is 0.0.

    Raises
    ------
    TypeError
        If ``y`` is not integer (bool, float, strings) or ``num_classes`` is not
        an integer.
    ValueError
        If ``y`` is not 1-D, a label is out of range (negative labels included,
        and Python integers beyond int64), ``num_classes < 1``, or the result
        would not fit in this machine's physical memory (the message names
        ``num_classes`` and the bytes it would take).

    Examples
    --------
    >>> from ce_tutorial import one_hot
    >>> one_hot([0, 2], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    c = check_num_classes(num_classes)
    labels = as_labels(y, "y")
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D, of shape (n_samples,), got {labels.shape}")
    check_labels(labels, labels.shape[0], c)
    check_one_hot_size(labels.shape[0], c)
    encoded = np.zeros((labels.shape[0], c))
    encoded[np.arange(labels.shape[0]), labels] = 1.0
    return encoded


def likelihood(y_hat: npt.ArrayLike, y: npt.ArrayLike) -> np.floating:
    r"""The probability a model gives to all the observed labels at once.

    Under the assumption that each label depends only on its own input and
    the labels are independent given the inputs,

    .. math:: P(Y \mid X) = \prod_{i=0}^{N-1} P(y^{(i)} \mid \mathbf{x}^{(i)})
        = \prod_{i=0}^{N-1} \hat{y}^{(i)}_{y^{(i)}}.

    Parameters
    ----------
    y_hat : array_like of shape (n_samples, n_classes)
        Predicted probabilities; each row sums to 1.
    y : array_like of int, shape (n_samples,)
        The true class of each example.

    Returns
    -------
    likelihood : float
        A NumPy scalar in [0, 1]; 1.0 for an empty batch (the empty product).

    Raises
    ------
    TypeError
        If ``y`` is not integer, or ``y_hat`` is not real-valued.
    ValueError
        If ``y_hat`` is not 2-D, holds a value outside [0, 1] or a row that
        does not sum to 1, or a label is out of range.

    Notes
    -----
    The product of thousands of probabilities underflows to 0.0 in floating
    point, which is one reason to work with its logarithm instead: see
    :func:`negative_log_likelihood`.

    Examples
    --------
    >>> from ce_tutorial import likelihood
    >>> y_hat = [[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]]
    >>> print(likelihood(y_hat, [0, 2]))
    0.05
    """
    return np.prod(_true_class_probabilities(y_hat, y))


def negative_log_likelihood(y_hat: npt.ArrayLike, y: npt.ArrayLike) -> np.floating:
    r"""The negative log of :func:`likelihood`, computed as a sum of logs.

    .. math:: -\log P(Y \mid X) = \sum_{i=0}^{N-1} -\log \hat{y}^{(i)}_{y^{(i)}}.

    Parameters
    ----------
    y_hat : array_like of shape (n_samples, n_classes)
        Predicted probabilities; each row sums to 1.
    y : array_like of int, shape (n_samples,)
        The true class of each example.

    Returns
    -------
    nll : float
        A NumPy scalar, ``>= 0``; ``inf`` if a true class has probability 0,
        and 0.0 for an empty batch.

    Raises
    ------
    TypeError
        If ``y`` is not integer, or ``y_hat`` is not real-valued.
    ValueError
        If ``y_hat`` is not 2-D, holds a value outside [0, 1] or a row that
        does not sum to 1, or a label is out of range.

    See Also
    --------
    cross_entropy : the same quantity per example, or averaged.

    Examples
    --------
    >>> from ce_tutorial import negative_log_likelihood
    >>> y_hat = [[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]]
    >>> print(round(negative_log_likelihood(y_hat, [0, 2]), 8))
    2.99573227
    """
    picked = _true_class_probabilities(y_hat, y)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the honest answer
        return np.sum(0.0 - np.log(picked))


def cross_entropy(
    y_hat: npt.ArrayLike, y: npt.ArrayLike, reduction: str = "none"
) -> np.ndarray | np.floating:
    r"""The cross-entropy loss of predicted probabilities.

    For integer labels, the loss of example :math:`i` is
    :math:`-\log \hat{y}^{(i)}_{y^{(i)}}`; for target distributions
    :math:`\mathbf{p}^{(i)}`, it is :math:`-\sum_j p^{(i)}_j \log \hat{y}^{(i)}_j`,
    with :math:`0 \log 0 = 0`.

    Parameters
    ----------
    y_hat : array_like of shape (n_samples, n_classes)
        Predicted probabilities: finite, within [0, 1], each row summing to 1
        within ``(32 + sqrt(n_classes))`` times the machine epsilon of float32
        (or of their dtype, if coarser): 4.2e-6 for 10 classes, so that
        float32 probabilities converted to float64 pass, and a row off by
        1e-4 does not. Nothing is renormalised or clipped.
    y : array_like of int, shape (n_samples,), or of shape (n_samples, n_classes)
        Integer class labels in ``0 <= y < n_classes`` (negative labels are an
        error, never an index from the end), or target distributions: finite,
        non-negative rows summing to 1.
    reduction : {"none", "mean", "sum"}, default="none"
        Return the per-example losses, their mean, or their sum.

    Returns
    -------
    loss : ndarray of shape (n_samples,), or scalar
        In the dtype of ``y_hat`` (integer input gives float64, float16 gives
        float32). A true class with probability 0 gives ``inf``, without a
        warning; an exactly right one-hot prediction gives exactly 0.0.

    Raises
    ------
    TypeError
        If labels are not integer, or an input is not real-valued.
    ValueError
        If a shape, value or ``reduction`` breaks the rules above, or
        ``reduction="mean"`` meets an empty batch.

    See Also
    --------
    cross_entropy_from_logits : the same loss from unnormalised scores.
    sklearn.metrics.log_loss : the mean loss, from probabilities.

    Examples
    --------
    The toy example of the book: the first example's true class got 0.1, the
    second one's 0.5.

    >>> import numpy as np
    >>> from ce_tutorial import cross_entropy
    >>> y_hat = np.array([[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]])
    >>> y = np.array([0, 2])
    >>> cross_entropy(y_hat, y)
    array([2.30258509, 0.69314718])

    A negative label is rejected instead of silently reading the last column:

    >>> cross_entropy(y_hat, [0, -1])
    Traceback (most recent call last):
        ...
    ValueError: y[1] = -1 is out of range for 3 classes (0 <= y < 3)
    """
    reduction = check_reduction(reduction)
    p, tol = _probabilities(y_hat)
    targets = _prepare_targets(y, p.shape, values=False)
    # The first bad row of either argument is reported; on a tie, y_hat's.
    raise_first(
        find_value_error(p, "y_hat", tol),
        find_label_error(targets, p.shape[1])
        if targets.ndim == 1
        else _target_error(targets),
    )
    with np.errstate(divide="ignore"):  # log(0) = -inf is the honest answer
        if targets.ndim == 1:
            losses = 0.0 - np.log(p[np.arange(p.shape[0]), targets])
        else:
            terms = 0.0 - np.log(p)
            losses = _weighted_terms(terms, targets > 0, targets).sum(axis=1)
    return reduce(losses, reduction)


def cross_entropy_from_logits(
    logits: npt.ArrayLike,
    y: npt.ArrayLike,
    reduction: str = "none",
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
) -> np.ndarray | np.floating:
    r"""The cross-entropy loss computed stably from unnormalised scores.

    For integer labels the loss of example :math:`i` is

    .. math:: \ell_i = \operatorname{logsumexp}(z_i) - z_{i, y_i}
        = (m_i - z_{i, y_i}) + \log \sum_j e^{z_{ij} - m_i},
        \qquad m_i = \max_j z_{ij},

    and for target distributions :math:`p` it is
    :math:`\sum_j p_{ij} (\operatorname{logsumexp}(z_i) - z_{ij})`. The
    options are those of PyTorch's ``F.cross_entropy``, with its semantics.

    Parameters
    ----------
    logits : array_like of shape (N, C) or (N, C, d1, ..., dK)
        Real-valued scores, the classes on axis 1 as in PyTorch (a sequence
        model's ``(N, C, S)``, a segmentation's ``(N, C, H, W)``). ``-inf``
        marks a masked class: it adds nothing to the loss, unless it is the
        true class (or carries target mass), which gives ``inf``. Integer
        logits compute in float64, float16 in float32.
    y : array_like of int of shape (N, d1, ..., dK), or of the shape of ``logits``
        Integer class labels in ``0 <= y < n_classes`` (or equal to
        ``ignore_index``), or target distributions along axis 1: finite,
        non-negative, summing to 1 (see :func:`cross_entropy` for the
        tolerance).
    reduction : {"none", "mean", "sum"}, default="none"
        Return the per-example losses (of shape ``(n_samples, d1, ..., dK)``),
        their mean, or their sum. ``"mean"`` divides by the number of
        positions :math:`M = N d_1 \cdots d_K`, except with labels: then by
        the number of kept rows, or with ``weight`` by the sum of their
        classes' weights (see Notes).
    weight : array_like of shape (n_classes,), optional
        A weight :math:`\omega_c \ge 0` for each class, finite. The loss of
        a labelled example is multiplied by the weight of its class; a
        target distribution's term for class :math:`c` by :math:`\omega_c`.
    ignore_index : int or None, default=None
        A label value that marks a row to skip, as in PyTorch's
        ``F.cross_entropy`` (whose default is -100): typically the padding
        positions of a batch of sequences. A skipped row's loss is 0.0 under
        ``"none"``, ``"sum"`` adds only the kept rows, and ``"mean"`` divides
        by their number (or their weights' sum). Any integer is accepted; a
        class in range, such as 0, skips every row of that class. None (the
        default) skips nothing, and a negative label is then an error.
        Integer labels only.
    label_smoothing : float in [0, 1], default=0.0
        The smoothing amount :math:`\varepsilon`: the target becomes
        :math:`(1 - \varepsilon)\,p_i + \varepsilon / C`, where :math:`p_i`
        is the one-hot label or the target distribution.

    Returns
    -------
    loss : ndarray of shape (n_samples, d1, ..., dK), or scalar
        In the compute dtype of ``logits`` (float32 in, float32 out).

    Raises
    ------
    TypeError
        If labels are not integer, an input is not real-valued,
        ``ignore_index`` is neither an integer nor None (``True`` and
        ``-100.0`` are refused), or ``label_smoothing`` is not a real number.
    ValueError
        If ``logits`` has fewer than two dimensions or no class, holds NaN or
        ``+inf``, or has a row that is ``-inf`` everywhere (skipped rows
        included); if ``y``, ``weight`` (negative, not finite, not of shape
        ``(n_classes,)``), ``label_smoothing`` (outside [0, 1]) or
        ``reduction`` breaks the rules above; if ``reduction="mean"`` meets
        an empty batch, a batch where every label equals ``ignore_index``, or
        kept rows whose classes' weights sum to 0; or if ``ignore_index`` is
        given with target distributions.

    Notes
    -----
    **Weights, smoothing and the mean** follow PyTorch. Every loss is
    :math:`\ell_i = \sum_c a_{ic} (\operatorname{logsumexp}(z_i) - z_{ic})`
    with :math:`a_{ic} = \omega_c ((1 - \varepsilon) p_{ic} + \varepsilon /
    C)`. With labels, and :math:`\mathcal{R}` the kept rows (those with
    :math:`y_i \ne` ``ignore_index``),

    .. math:: L_{\text{sum}} = \sum_{i \in \mathcal{R}} \ell_i, \qquad
        L_{\text{mean}} = \frac{\sum_{i \in \mathcal{R}} \ell_i}
        {\sum_{i \in \mathcal{R}} \omega_{y_i}},

    a weighted average (without ``weight``, the mean over the kept rows).
    With target distributions ``"mean"`` divides by :math:`M` instead,
    whatever the weights: the two rules give different numbers for the
    same weighted losses, as in PyTorch. PyTorch returns ``nan`` for a mean
    with nothing to divide by; this function raises, since a NaN loss only
    shows up later, as NaN weights. A class whose coefficient :math:`a_{ic}`
    is 0 adds nothing, even where its logit is ``-inf`` (PyTorch gives NaN
    for :math:`0 \cdot (-\infty)` there). PyTorch accepts negative class
    weights; this function refuses them.

    A skipped row's logits are still validated: NaN, ``+inf`` or a row of
    ``-inf`` raises there too, naming the row. PyTorch's loss does not depend
    on those logits, but its autograd gradient of such a row is NaN, and the
    row comes from the same forward pass as the kept ones: such a value is a
    bug upstream either way. Passing ``ignore_index`` with target
    distributions raises ``ValueError``, whatever its value: PyTorch raises
    for a non-negative ``ignore_index`` with probability targets and accepts
    a negative one, which then skips nothing.

    The loss is computed one block of rows at a time, so the extra memory is a
    small buffer, never a full ``log_softmax`` of the logits. With more than
    two dimensions, each block's rows are gathered from their strided
    positions, so the class axis is never moved by copying the whole input.

    For integer labels without smoothing, each row is shifted by its own
    true-class logit rather than by its maximum:

    .. math:: \ell_i = \log\Bigl(1 + e^{-z_{i y_i}} \sum_{j \ne y_i} e^{z_{ij}}\Bigr),

    computed with ``log1p``. That takes one ``exp`` and one sum over each block,
    with no pass to find the maximum and none to subtract it, and it keeps the
    tiny loss of a confident, correct prediction accurate relative to its own
    size. Rows where this shortcut would overflow or lose precision (a logit
    above about 88 in float32 or 709 in float64, other classes' exponentials
    so small that underflow may have lost some, a true-class logit beyond
    about :math:`\pm 708`), and rows with NaN, ``+inf`` or a masked true
    class, are recomputed with the row maximum :math:`m_i` as the shift, as
    :math:`(m_i - z_{i y_i}) + \operatorname{logsumexp}(z_i - m_i)`: two
    non-negative terms, so nothing cancels. That route also validates them.
    A class weight multiplies the loss afterwards, in at least float64.

    Target distributions, and labels with smoothing, take the max-shifted
    route: :math:`\sum_c a_{ic} ((m_i - z_{ic}) + \log \sum_j e^{z_{ij} -
    m_i})`, a sum of non-negative terms. Where :math:`m_i - z_{ic}` alone
    would overflow (logits near the dtype's largest value, of both signs),
    the row is recomputed in halves, so that a finite loss is never returned
    as ``inf``. Which classes carry mass is decided before the coefficients
    are cast to the logits' dtype: a weight of ``1e-50`` on a masked class
    gives ``inf`` in float32 too.

    Errors name the earliest bad row of ``logits`` or ``y``, whatever the
    number of threads; on a tie, the logits'.

    See Also
    --------
    cross_entropy : the same loss from probabilities.
    cross_entropy_grad : its gradient with respect to the logits.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import cross_entropy_from_logits
    >>> logits = np.log([[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]])
    >>> cross_entropy_from_logits(logits, [0, 2])
    array([2.30258509, 0.69314718])

    Huge scores are no problem, and a masked class costs nothing:

    >>> cross_entropy_from_logits([[1000.0, 0.0, -np.inf]], [0])
    array([0.])

    Padding marked with the label -100 is skipped, and the mean is over the
    two real rows:

    >>> padded = np.vstack([logits, [[5.0, 1.0, 0.0]]])
    >>> cross_entropy_from_logits(padded, [0, 2, -100], ignore_index=-100)
    array([2.30258509, 0.69314718, 0.        ])
    >>> print(cross_entropy_from_logits(
    ...     padded, [0, 2, -100], reduction="mean", ignore_index=-100
    ... ))
    1.4978661367769954

    Class weights make the mean a weighted average; label smoothing moves
    0.1 of the target mass to the uniform distribution:

    >>> w = np.array([2.0, 1.0, 1.0])
    >>> print(round(cross_entropy_from_logits(logits, [0, 2], "mean", weight=w), 8))
    1.76610579
    >>> cross_entropy_from_logits(logits, [0, 2], label_smoothing=0.1).round(8)
    array([2.20623937, 0.74071773])

    A sequence model's logits of shape ``(N, C, S)`` and labels ``(N, S)``:

    >>> z = np.zeros((2, 3, 4))
    >>> cross_entropy_from_logits(z, np.zeros((2, 4), dtype=int)).shape
    (2, 4)
    """
    reduction = check_reduction(reduction)
    t = prepare_logit_targets(
        logits,
        y,
        reduction,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    if t.labels is not None and t.smoothing == 0.0:
        losses = _label_losses(t)
        if t.weight is not None:
            _weigh_by_label(losses, t)
    else:
        losses = _coefficient_losses(t)
    if reduction == "none":
        return losses.reshape(t.lead)
    return reduce(losses, reduction, t.divisor() if reduction == "mean" else None)


def _weigh_by_label(losses: np.ndarray, t: LogitTargets) -> None:
    """Multiply each kept row's loss by its class's weight, in place.

    The products are taken in at least float64 and rounded once; a weight of
    0 gives 0 even where the loss is ``inf`` (a masked true class).
    """
    step = 1 << 16
    for a in range(0, t.n_rows, step):
        b = min(a + step, t.n_rows)
        labels = t.labels[a:b]
        skip = t.skipped(a, b)
        if skip is not None:
            labels = np.where(skip, 0, labels)
        w = t.weight[labels]
        with np.errstate(over="ignore", invalid="ignore"):
            product = losses[a:b].astype(w.dtype) * w
        product[w == 0] = 0.0
        if skip is not None:
            product[skip] = 0.0
        with np.errstate(over="ignore"):
            losses[a:b] = product


def _weighted_terms(
    terms: np.ndarray, mass: np.ndarray, coef: np.ndarray
) -> np.ndarray:
    """Multiply ``terms`` by the coefficients ``coef`` in place; ``0 * inf = 0``.

    ``terms`` are non-negative (``inf`` where a class is masked); ``mass``
    says which coefficients are positive, decided before any cast or
    product could round one to 0. Entries without mass become 0, even where
    the term is infinite. Where the cast of ``coef`` to the dtype of
    ``terms`` rounds a coefficient with mass to 0 (``1e-50`` in float32),
    the product is taken in at least float64: an infinite term stays
    infinite, and a finite one gets its (tiny) product.
    """
    terms[~mass] = 0.0  # 0 log 0 = 0, also where the term is infinite
    q = coef.astype(terms.dtype, copy=False)
    with np.errstate(over="ignore"):  # a product beyond the dtype's range is inf
        lost = mass & (q == 0)
        if lost.any():
            wide = np.promote_types(coef.dtype, np.float64)
            kept = terms[lost].astype(wide)
            with np.errstate(invalid="ignore"):  # inf * 0: set to inf below
                product = coef[lost].astype(wide) * kept
            product[np.isinf(kept)] = np.inf
            terms[lost] = product
            np.multiply(terms, q, out=terms, where=~lost)
            return terms
        terms *= q
    return terms


def _coefficient_losses(t: LogitTargets) -> np.ndarray:
    r"""Losses :math:`\sum_c a_{ic} (\operatorname{logsumexp}(z_i) - z_{ic})`.

    For target distributions, and labels with smoothing, in one streaming
    pass. Each block is validated (its logits, and its targets) before it
    is used, and shifted by its row maxima: the terms are
    :math:`(m_i - z_{ic}) + \log s_i \ge 0`, so nothing cancels.
    """
    losses = np.empty(t.n_rows, dtype=t.dtype)

    def kernel(a: int, b: int, w: np.ndarray) -> None:
        block, out = t.rows[a:b], losses[a:b]

        def check(m: np.ndarray) -> None:
            # The block's first bad row, of the logits or of the targets.
            targets = None if t.dist is None else t.target_error(a, b)
            raise_first(find_logit_error(m, t.locator(a), a), targets)

        m, log_s = shifted_log_sum(block, t.dtype, None, w, check=check)
        if t.plain:  # the targets themselves are the coefficients
            coef = t.dist[a:b]
            mass = coef > 0
        else:
            mass, coef = t.coefficients(a, b)
        with np.errstate(over="ignore"):  # m - z may exceed the dtype's max
            np.subtract(m[:, None], block, out=w)  # +inf where masked
            w += log_s[:, None]
        _weighted_terms(w, mass, coef)  # a masked class without mass adds 0
        with np.errstate(over="ignore"):
            row_sums(w, out=out)
        # A loss of inf is right only if a class with mass is masked;
        # otherwise m - z or a product overflowed on the way to a finite loss.
        rows = np.flatnonzero(np.isinf(out))
        if rows.size:
            out[rows] = _halved_losses(
                block[rows], mass[rows], coef[rows], m[rows], log_s[rows], t.dtype
            )

    stream_rows(t.n_rows, t.n_classes, t.dtype, kernel, fraction=t.fraction)
    return losses


def _halved_losses(
    block: np.ndarray,
    mass: np.ndarray,
    coef: np.ndarray,
    m: np.ndarray,
    log_s: np.ndarray,
    dtype: np.dtype,
) -> np.ndarray:
    r"""Losses of a few rows whose direct form overflowed.

    The loss :math:`\sum_j a_j (m - z_j + \log s)` is finite whenever no
    class with mass is masked, but ``m - z_j`` alone can exceed the dtype's
    range: ``m = 1e308, z_j = -1e308``. Here it is computed as
    ``2 * sum_j a_j (m/2 - z_j/2 + log(s)/2)``, where every halved term is
    in range; halving a number this large is exact, and so is doubling the
    sum back. The products are taken in at least float64, with the
    coefficients as given. A loss that is still inf is beyond the dtype's
    range (or has a masked class with mass), and inf is its correctly
    rounded value.
    """
    wide = np.promote_types(np.promote_types(dtype, np.float64), coef.dtype)
    zb = block.astype(dtype, copy=False)
    with np.errstate(over="ignore"):
        half = (m[:, None] / 2 - zb / 2) + (log_s[:, None] / 2)
        terms = _weighted_terms(half.astype(wide), mass, coef.astype(wide))
        return (2 * terms.sum(axis=1)).astype(dtype)


def _label_losses(t: LogitTargets) -> np.ndarray:
    r"""The losses of valid integer ``labels``, in one streaming pass.

    Rows whose label equals ``skip_label`` (``ignore_index`` in the labels'
    dtype, or None) get a loss of 0.0. Each block computes them with the
    label 0 in their place, on a block-sized copy of its labels (``labels``
    is never written to), and then sets their losses to 0.0; their logits
    are validated all the same.

    With :math:`x_i = e^{-z_{i y_i}} \sum_{j \ne y_i} e^{z_{ij}}`, the loss
    is :math:`\ell_i = \log(1 + x_i)`: shifting row ``i`` by its own
    true-class logit instead of its maximum needs no pass to find the
    maximum and no pass to subtract it, and ``log1p`` keeps the small losses
    of confident, correct predictions accurate to a few ulps *relative* to
    their size.

    Each block takes two passes over its logits, ``exp`` and the row sums; the
    rest is arithmetic on one number per row, done in at least float64 so
    that ``exp(-z_iy)`` adds no rounding error worth counting to a float32
    loss. A row takes the max-shifted route of :func:`_shifted_label_losses`
    instead, which also validates it, when any of its numbers leaves the
    range where this shortcut is exact to rounding: an exponential that
    overflows or is lost to underflow, NaN, ``+inf``, or a masked true class.
    Every invalid row is among those, so invalid logits still raise, naming
    the first bad row.
    """
    z, labels, dtype, skip_label = t.rows, t.labels, t.dtype, t.skip_label
    n, c = z.shape
    info = np.finfo(dtype)
    wide = np.promote_types(dtype, np.float64)
    wide_max = np.finfo(wide).max
    # |z_iy| below this keeps exp(-z_iy) a finite, normal number in ``wide``.
    true_limit = -np.log(np.finfo(wide).tiny) - 1
    # Terms that underflow are each below ``tiny``; above this sum, all C of
    # them together are worth less than a quarter of an ulp of the sum.
    sum_floor = 4 * c * info.tiny / info.eps
    losses = np.empty(n, dtype=dtype)

    def kernel(a: int, b: int, w: np.ndarray) -> None:
        block, picked, rest = z[a:b], labels[a:b], losses[a:b]
        skip = None if skip_label is None else picked == skip_label
        if skip is not None and not skip.any():
            skip = None  # nothing to skip in this block: no copy
        if skip is not None:
            picked = np.where(skip, 0, picked).astype(labels.dtype, copy=False)
        rows = np.arange(b - a)
        # Overflow and NaN are not errors here: the checks below find them.
        with np.errstate(all="ignore"):
            np.exp(block, out=w, dtype=dtype)
            # The block is in cache now. One vector of row length at a time,
            # worked on in place, keeps the per-row scratch memory small.
            x = block[rows, picked].astype(wide, copy=False)  # z_iy
            w[rows, picked] = 0.0
            row_sums(w, out=rest)
            # NaN fails every comparison, so a row holding one is never exact.
            exact = rest >= sum_floor
            exact &= x <= true_limit
            exact &= x >= -true_limit
            np.negative(x, out=x)
            np.exp(x, out=x)
            x *= rest  # inf if the sum overflowed, NaN if it holds NaN
            exact &= x <= wide_max
            np.log1p(x, out=rest)
        if not exact.all():
            bad = np.flatnonzero(~exact)
            rest[bad] = _shifted_label_losses(
                block, bad, picked[bad], dtype, lambda i: t.locate(a + bad[i]), w
            )
        if skip is not None:
            rest[skip] = 0.0

    stream_rows(n, c, dtype, kernel, fraction=t.fraction)
    return losses


def _shifted_label_losses(
    block: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    dtype: np.dtype,
    locate,
    work: np.ndarray,
) -> np.ndarray:
    """The losses of rows ``rows`` of ``block``, shifted by their maxima.

    Validates those rows. The loss is ``(m - z[y]) + (logsumexp(z) - m)``:
    two terms that are never negative, so nothing cancels, and the second is
    accurate relative to its size (see :func:`shifted_log_sum`), as the whole
    loss is when the true class has the maximum and the first term is 0.

    The rows are gathered into ``work`` (the block's scratch buffer, free
    again once the fast route is done with it) and worked on in place there,
    so that a block whose rows all take this route needs no more memory than
    one whose rows take none.
    """
    k = rows.size
    true = block[rows, labels].astype(dtype, copy=False)
    own = work[:k]
    if block.dtype == dtype:
        np.take(block, rows, axis=0, out=own, mode="clip")  # in range: no buffer
    else:
        own[...] = block[rows]
    m, log_s = shifted_log_sum(own, dtype, locate, own)  # m is not a view
    with np.errstate(over="ignore"):  # a gap beyond the dtype's range is inf
        return (m - true) + log_s


def cross_entropy_grad(
    logits: npt.ArrayLike,
    y: npt.ArrayLike,
    reduction: str = "mean",
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""The gradient of :func:`cross_entropy_from_logits` with respect to logits.

    .. math:: \frac{\partial \ell_i}{\partial z_{ic}}
        = A_i \operatorname{softmax}(z_i)_c - a_{ic},
        \qquad A_i = \sum_c a_{ic},

    with the coefficients :math:`a_{ic} = \omega_c ((1 - \varepsilon)
    p_{ic} + \varepsilon / C)` of :func:`cross_entropy_from_logits`:
    :math:`\operatorname{softmax}(z_i) - p_i` without weights or smoothing,
    where :math:`p_i` is the one-hot encoding of :math:`y_i` (or the target
    distribution).

    Parameters
    ----------
    logits : array_like of shape (N, C) or (N, C, d1, ..., dK)
        Real-valued scores, as for :func:`cross_entropy_from_logits`.
    y : array_like of int of shape (N, d1, ..., dK), or of the shape of ``logits``
        Integer class labels (or ``ignore_index``) or target distributions.
    reduction : {"none", "mean", "sum"}, default="mean"
        The reduction of the loss being differentiated: ``"mean"`` divides by
        what :func:`cross_entropy_from_logits` divides by (the number of
        positions, of kept rows, or the sum of their classes' weights);
        ``"sum"`` does not. ``"none"`` returns, in row ``i``, the gradient of
        the loss of example ``i``, which depends on row ``i`` alone, so it
        equals the ``"sum"`` gradient.
    weight : array_like of shape (n_classes,), optional
        Class weights, as for :func:`cross_entropy_from_logits`.
    ignore_index : int or None, default=None
        A label value that marks a row to skip, as for
        :func:`cross_entropy_from_logits`: that row's gradient is 0.0
        everywhere, and ``"mean"`` divides by the number of kept rows (or
        their weights' sum). Integer labels only.
    label_smoothing : float in [0, 1], default=0.0
        The smoothing amount, as for :func:`cross_entropy_from_logits`.

    Returns
    -------
    grad : ndarray of the shape of ``logits``
        In the compute dtype of ``logits``. Each row sums to 0.

    Raises
    ------
    TypeError
        As :func:`cross_entropy_from_logits`.
    ValueError
        As :func:`cross_entropy_from_logits`; also if a class with a positive
        coefficient (the true class, a class with target mass, or any class
        of positive weight under label smoothing) of a kept row is masked by
        ``-inf``, since the loss is then infinite and has no gradient.

    Notes
    -----
    With ``ignore_index``, :math:`\mathcal{R}` the set of kept rows and
    :math:`D` the divisor of the mean,

    .. math:: \frac{\partial L_{\text{mean}}}{\partial z_{ic}}
        = \frac{[i \in \mathcal{R}]}{D}
        \bigl(A_i \operatorname{softmax}(z_i)_c - a_{ic}\bigr),

    so the kept rows' gradient is the one of the batch with the skipped rows
    left out, and the skipped rows' is 0. As in
    :func:`cross_entropy_from_logits`, a skipped row's logits are still
    validated (NaN, ``+inf`` or a row of ``-inf`` raise); a ``-inf`` in a
    skipped row is never a masked true class, since the row has none. The
    gradient is computed in the layout of ``logits``: for more than two
    dimensions the result is a view whose class axis is 1.

    Examples
    --------
    >>> from ce_tutorial import cross_entropy_grad
    >>> cross_entropy_grad([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])

    A skipped row gets a zero gradient, and the mean is over the two others:

    >>> cross_entropy_grad(
    ...     [[0.0, 0.0], [0.0, 0.0], [5.0, 1.0]], [0, 1, -100], ignore_index=-100
    ... )
    array([[-0.25,  0.25],
           [ 0.25, -0.25],
           [ 0.  ,  0.  ]])

    With smoothing, a certain, correct prediction is pushed back:

    >>> cross_entropy_grad([[0.0, 0.0]], [0], "sum", label_smoothing=0.2)
    array([[-0.4,  0.4]])
    """
    reduction = check_reduction(reduction)
    t = prepare_logit_targets(
        logits,
        y,
        reduction,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    if t.dist is not None:
        raise_in_row_order(t, t.target_error(0, t.n_rows))
    grad = softmax(t.logits, axis=1)  # validates the logits
    # The rows of the gradient, as a view: softmax along axis 1 returns its
    # (N, d1, ..., dK, C) result with the class axis moved back to 1.
    rows = np.moveaxis(grad, 1, -1).reshape(t.n_rows, t.n_classes)
    step = max(1, (1 << 20) // (8 * t.n_classes))
    for a in range(0, t.n_rows, step):
        b = min(a + step, t.n_rows)
        if t.labels is not None and t.plain:
            _label_grad_block(rows[a:b], t, a, b)
        else:
            _coefficient_grad_block(rows[a:b], t, a, b)
    if reduction == "mean":
        grad /= grad.dtype.type(t.divisor())
    return grad


def _label_grad_block(g: np.ndarray, t: LogitTargets, a: int, b: int) -> None:
    """Rows ``a:b`` of the gradient of plain labels: ``softmax - one_hot``."""
    labels = t.labels[a:b]
    skip = t.skipped(a, b)
    if skip is not None:  # skipped rows take class 0 (on a copy), then are zeroed
        labels = np.where(skip, 0, labels)
    rows = np.arange(b - a)
    masked = np.isneginf(t.rows[a:b][rows, labels])
    if skip is not None:
        masked &= ~skip
    if masked.any():
        i = int(np.argmax(masked))
        at, j = _entry(t, a + i, labels[i]), int(labels[i])
        where = format_index(np.unravel_index(a + i, t.lead))
        raise ValueError(
            f"logits{at} is -inf for the true class y{where} = {j}: the loss "
            f"is infinite and has no gradient"
        )
    g[rows, labels] -= 1
    if skip is not None:
        g[skip] = 0.0


def _coefficient_grad_block(g: np.ndarray, t: LogitTargets, a: int, b: int) -> None:
    """Rows ``a:b`` of the gradient ``A_i softmax(z_i) - a_i``, in place."""
    mass, coef = t.coefficients(a, b)
    masked = mass & np.isneginf(t.rows[a:b])
    if masked.any():
        i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)
        raise ValueError(
            f"logits{_entry(t, a + i, j)} is -inf but {_why_mass(t, a + i, j)}: "
            f"the loss is infinite and has no gradient"
        )
    # In the coefficients' wide dtype, rounded once: a weight beyond the
    # range of float32 logits gives inf, never inf * 0 = NaN.
    wide = g.astype(coef.dtype)
    wide *= coef.sum(axis=1)[:, None]
    wide -= coef
    with np.errstate(over="ignore"):
        g[...] = wide
    skip = t.skipped(a, b) if t.labels is not None else None
    if skip is not None:
        g[skip] = 0.0


def _entry(t: LogitTargets, row: int, col: int) -> str:
    """The index of class ``col`` of row ``row`` in the logits' own shape."""
    return class_axis_index(t.lead, row, col)


def _why_mass(t: LogitTargets, row: int, col: int) -> str:
    """Why class ``col`` of row ``row`` has a positive coefficient."""
    if t.labels is None:
        value = t.dist[row : row + 1][0, col]
        if value > 0 and t.smoothing < 1.0:
            return f"y{_entry(t, row, col)} = {value!s} > 0"
    elif t.labels[row] == col and t.smoothing < 1.0:
        where = format_index(np.unravel_index(row, t.lead))
        return f"it is the true class y{where} = {col}"
    return (
        f"label_smoothing = {t.smoothing} gives class {col} a target mass of "
        f"{t.smoothing / t.n_classes:.3g} > 0"
    )
