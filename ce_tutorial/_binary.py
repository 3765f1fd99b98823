r"""Binary and multi-label cross-entropy: the sigmoid family and its losses.

A yes/no question about an example has a **label** :math:`y \in \{0, 1\}` (or
a soft target in [0, 1]) and a **logit** :math:`z`; the predicted probability
of "yes" is :math:`\hat{y} = \sigma(z) = 1 / (1 + e^{-z})`. A multi-label
problem asks :math:`K` such questions of every example, so ``z`` and ``y``
have shape ``(N, K)``, and every entry is its own binary problem.

- :func:`sigmoid` and :func:`log_sigmoid`, accurate for any real ``z``;
- :func:`binary_cross_entropy`, the loss from probabilities;
- :func:`binary_cross_entropy_from_logits`, the stable loss from logits, with
  PyTorch's ``pos_weight``, and :func:`binary_cross_entropy_grad`, its
  derivative.

Unlike the softmax losses, ``z = ±inf`` is allowed here: it is a certain
prediction, which costs 0 when it agrees with the label and ``inf`` when it
contradicts it.

The arithmetic runs in at least float64, and in longdouble when a target or
``pos_weight`` is longdouble, so that no input is rounded before it is used;
which terms carry weight (``y > 0`` and ``pos_weight > 0``, ``y < 1``) is
decided on the inputs as given. A target of 1e-4000 against a certain, wrong
prediction costs ``inf``, however small, and a product such as
``pos_weight * y = 1e-400`` is never rounded to 0 before it multiplies an
infinite term. A result beyond the range of the output's dtype is ``inf``,
and no overflow warning leaks, from casts or sums.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._validation import (
    as_array,
    check_mean_batch,
    check_reduction,
    check_target_dtype,
    compute_dtype,
    format_index,
    mean_of,
    sum_of,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_from_logits",
    "binary_cross_entropy_grad",
    "log_sigmoid",
    "sigmoid",
]

TARGET_RULE = "targets must be 0/1 labels or probabilities of the positive class"


# --- validation -------------------------------------------------------------


def _raise_at_first(bad: np.ndarray, x: np.ndarray, name: str, why: str) -> None:
    """Raise ``ValueError("name[i, j] = value why")`` at the first True of ``bad``."""
    if np.any(bad):
        idx = np.unravel_index(int(np.argmax(bad)), np.shape(bad))
        where = format_index(idx) if idx else ""
        raise ValueError(f"{name}{where} = {x[idx]!s} {why}")


def _wide(dtype: np.dtype, *others: np.ndarray | None) -> np.dtype:
    """The dtype the arithmetic runs in: at least float64, and at least as
    wide as every floating array of ``others`` (targets, ``pos_weight``), so
    that no input is rounded before it is used: a longdouble target of
    1e-4000 stays positive, a longdouble weight of 1e400 stays finite."""
    for other in others:
        if other is not None and other.dtype.kind == "f":
            dtype = np.promote_types(dtype, other.dtype)
    return np.promote_types(dtype, np.float64)


def _prepare_logits(z: npt.ArrayLike, name: str = "z") -> tuple[np.ndarray, np.dtype]:
    """Return real logits without NaN, as given, and the dtype of the result."""
    arr = as_array(z, name)
    dtype = compute_dtype(arr.dtype, name)
    _raise_at_first(
        np.isnan(arr), arr, name, "is NaN; logits must be real numbers or ±inf"
    )
    return arr, dtype


def _narrow(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` cast to the result's ``dtype``; beyond its range is ``inf``, silently."""
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def _prepare_probabilities(
    y_hat: npt.ArrayLike, name: str = "y_hat"
) -> tuple[np.ndarray, np.dtype]:
    """Return probabilities in [0, 1], as given, and the dtype of the result."""
    arr = as_array(y_hat, name)
    dtype = compute_dtype(arr.dtype, name)
    _raise_at_first(
        ~((arr >= 0) & (arr <= 1)),
        arr,
        name,
        "is not in [0, 1]; predicted probabilities must lie in [0, 1]",
    )
    return arr, dtype


def _prepare_targets(
    y: npt.ArrayLike, shape: tuple[int, ...], other: str
) -> np.ndarray:
    """Check binary targets against predictions of ``shape``; return them as given.

    bool, integer 0/1 and floats in [0, 1] are accepted; NaN, anything outside
    [0, 1] and non-real dtypes (timedelta included) are not.
    """
    arr = as_array(y, "y")
    check_target_dtype(arr, "y", "binary targets")
    if arr.shape != shape:
        raise ValueError(
            f"y has shape {arr.shape}, but {other} has shape {shape}; "
            f"binary targets must have the same shape as the predictions"
        )
    if arr.dtype != np.bool_:
        _raise_at_first(
            ~((arr >= 0) & (arr <= 1)), arr, "y", f"is not in [0, 1]; {TARGET_RULE}"
        )
    return arr


def _prepare_pos_weight(
    pos_weight: npt.ArrayLike | None, shape: tuple[int, ...]
) -> np.ndarray | None:
    """Check ``pos_weight`` against logits of ``shape``; return it as given."""
    if pos_weight is None:
        return None
    arr = as_array(pos_weight, "pos_weight")
    compute_dtype(arr.dtype, "pos_weight")  # real numbers only
    if len(shape) == 0:
        raise ValueError(
            "pos_weight needs z with at least one axis, whose last axis holds "
            "the K tags, got a scalar z"
        )
    k = shape[-1]
    if arr.shape != (k,):
        raise ValueError(
            f"pos_weight has shape {arr.shape}, but z has shape {shape}: expected "
            f"shape ({k},), one weight per tag of the last axis"
        )
    _raise_at_first(
        ~((arr >= 0) & (arr < np.inf)),
        arr,
        "pos_weight",
        "is not a finite, non-negative number; positive weights must be finite "
        "and >= 0",
    )
    return arr


def _reduce(
    losses: np.ndarray, reduction: str, dtype: np.dtype
) -> np.ndarray | np.floating:
    """Reduce elementwise ``losses`` (computed wide) over every entry; cast.

    The sum and the mean are taken in the wide dtype, without overflow
    before the division (:func:`mean_of`), and rounded once; a result
    beyond the dtype's range is ``inf``, without a warning.
    """
    if reduction == "none":
        return _narrow(losses, dtype)[()]
    check_mean_batch(reduction, losses.size)
    flat = losses.reshape(-1)
    total = sum_of(flat) if reduction == "sum" else mean_of(flat)
    return _narrow(np.asarray(total), dtype)[()]


def _weighted(mass: np.ndarray, value: np.ndarray, *weights: np.ndarray) -> np.ndarray:
    """``value`` times every one of ``weights``, in order; 0 where not ``mass``.

    ``mass`` says where all the weights are positive, decided on the inputs
    as given: a target that puts no weight on an outcome is not charged for
    that outcome's log-probability, even when it is ``-inf`` (the convention
    :math:`0 \\log 0 = 0` of the cross-entropy), and one that does is, however
    small its weight. The products are taken in ``value``'s dtype, which is
    at least as wide as every weight (see :func:`_wide`), value first: a
    product that overflows is beyond that range (``inf`` is its correctly
    rounded value), and no weight is rounded to 0 before it multiplies an
    infinite value. No warning leaks.
    """
    out = np.zeros(np.broadcast_shapes(mass.shape, value.shape), value.dtype)
    with np.errstate(over="ignore", under="ignore"):
        np.copyto(out, value, where=mass)
        for w in weights:
            np.multiply(out, w, out=out, where=mass)
    return out


def _softplus_pair(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Return :math:`\operatorname{softplus}(\pm z)`, the pair ``(z, -z)``.

    Both share :math:`s = \log(1 + e^{-|z|})`: ``exp`` of a non-positive
    number cannot overflow, and ``log1p`` keeps :math:`s` accurate relative to
    its size when :math:`e^{-|z|}` is tiny. Each result is then a sum of two
    non-negative numbers, :math:`\max(\pm z, 0) + s`, so nothing cancels.
    """
    s = np.log1p(np.exp(-np.abs(z)))
    return np.maximum(z, 0) + s, np.maximum(-z, 0) + s


def _sigmoid_wide(z: np.ndarray) -> np.ndarray:
    """The sigmoid of widened, NaN-free ``z``; ``exp`` of ``-|z|`` only."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _masses(
    y: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Where the positive and the negative terms carry weight, and the
    positive term's weights: ``(y,)`` or ``(y, pos_weight)``.

    Decided on ``y`` and ``w`` as given: ``y > 0`` (and ``w > 0``), and
    ``y < 1``, so that a weight that a product would round to 0 still counts.
    """
    positive = y > 0
    if w is not None:
        positive = positive & (w > 0)
    return positive, y < 1, (y,) if w is None else (y, w)


# --- public functions -----------------------------------------------------------


def sigmoid(z: npt.ArrayLike) -> np.ndarray | np.floating:
    r"""The logistic sigmoid, :math:`\sigma(z) = 1 / (1 + e^{-z})`, elementwise.

    Parameters
    ----------
    z : array_like of any shape
        Real logits; ``±inf`` is allowed (``sigmoid(-inf) = 0``,
        ``sigmoid(inf) = 1``).

    Returns
    -------
    y_hat : ndarray of the shape of ``z``, or a NumPy scalar for a scalar ``z``
        Values in [0, 1]. float32 in gives float32 out, float16 gives float32,
        integers give float64.

    Raises
    ------
    TypeError
        If ``z`` is not real-valued (bool, complex, strings).
    ValueError
        If ``z`` holds NaN.

    Notes
    -----
    Only :math:`e^{-|z|} \le 1` is ever computed, so nothing overflows:

    .. math:: \sigma(z) = \frac{1}{1 + e^{-|z|}} \quad (z \ge 0), \qquad
        \sigma(z) = \frac{e^{-|z|}}{1 + e^{-|z|}} \quad (z < 0).

    Both forms are accurate relative to their size; float16 and float32
    inputs are computed in float64 and rounded once.

    See Also
    --------
    scipy.special.expit : the same function, without the input checks.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import sigmoid
    >>> sigmoid([-2.0, 0.0, 2.0])
    array([0.11920292, 0.5       , 0.88079708])

    ``1 / (1 + np.exp(-z))`` overflows, with a warning, for ``z = -800``;
    this does not:

    >>> sigmoid([-800.0, 800.0, np.inf])
    array([0., 1., 1.])
    """
    arr, dtype = _prepare_logits(z)
    return _sigmoid_wide(arr.astype(_wide(dtype))).astype(dtype)[()]


def log_sigmoid(z: npt.ArrayLike) -> np.ndarray | np.floating:
    r"""The log of the sigmoid, :math:`\log \sigma(z) = -\operatorname{softplus}(-z)`.

    Parameters
    ----------
    z : array_like of any shape
        Real logits; ``±inf`` is allowed (``log_sigmoid(-inf) = -inf``,
        ``log_sigmoid(inf) = 0``).

    Returns
    -------
    log_y_hat : ndarray of the shape of ``z``, or a NumPy scalar for a scalar ``z``
        Values in :math:`[-\infty, 0]`, accurate relative to their own size:
        ``log_sigmoid(40)`` is about ``-4.2e-18``, where ``np.log(sigmoid(40))``
        gives 0. float32 in gives float32 out, float16 gives float32,
        integers give float64.

    Raises
    ------
    TypeError
        If ``z`` is not real-valued.
    ValueError
        If ``z`` holds NaN.

    Notes
    -----
    .. math:: \log \sigma(z) = -\operatorname{softplus}(-z)
        = -\bigl(\max(-z, 0) + \log(1 + e^{-|z|})\bigr),

    with ``log1p`` for the last term. Both terms in the bracket are
    non-negative, so nothing cancels. float16 and float32 inputs are computed
    in float64 and rounded once.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import log_sigmoid, sigmoid
    >>> log_sigmoid([-1000.0, 0.0, 40.0])
    array([-1.00000000e+03, -6.93147181e-01, -4.24835426e-18])
    >>> np.log(sigmoid(40.0))  # sigmoid(40) rounds to 1.0
    np.float64(0.0)
    """
    arr, dtype = _prepare_logits(z)
    _, softplus_neg = _softplus_pair(arr.astype(_wide(dtype)))
    return (0.0 - softplus_neg).astype(dtype)[()]


def binary_cross_entropy(
    y_hat: npt.ArrayLike, y: npt.ArrayLike, reduction: str = "none"
) -> np.ndarray | np.floating:
    r"""The binary cross-entropy of predicted probabilities, elementwise.

    .. math:: \ell = -\bigl[y \log \hat{y} + (1 - y) \log(1 - \hat{y})\bigr],

    with :math:`0 \log 0 = 0`: a term whose weight (:math:`y` or
    :math:`1 - y`) is 0 contributes 0, even where its log is :math:`-\infty`.

    Parameters
    ----------
    y_hat : array_like of any shape
        Predicted probabilities of the positive class, each within [0, 1].
        Nothing is clipped.
    y : array_like of the same shape as ``y_hat``
        Targets: bool, integer 0/1, or floats in [0, 1] (soft targets).
    reduction : {"none", "mean", "sum"}, default="none"
        Return the elementwise losses, their mean over **every** entry (for an
        ``(N, K)`` array, over all :math:`N K` entries, as PyTorch does), or
        their sum.

    Returns
    -------
    loss : ndarray of the shape of ``y_hat``, or a NumPy scalar
        In the compute dtype of ``y_hat`` (float32 in, float32 out; integers
        give float64). ``y_hat = 0`` with ``y = 1`` gives ``inf``, and so does
        ``y_hat = 1`` with ``y = 0``, without a warning.

    Raises
    ------
    TypeError
        If ``y_hat`` or ``y`` is not real-valued (``y_hat`` may not be bool).
    ValueError
        If ``y_hat`` or ``y`` holds NaN or a value outside [0, 1], if their
        shapes differ, if ``reduction`` is not one of the three, or if
        ``reduction="mean"`` meets an empty array.

    Notes
    -----
    :math:`\log(1 - \hat{y})` is computed as ``log1p(-y_hat)``, accurate even
    for tiny :math:`\hat{y}`. float16 and float32 inputs are computed in
    float64 and rounded once. ``torch.nn.functional.binary_cross_entropy``
    clamps each log at -100, so it returns 100, not ``inf``, for a certain,
    wrong prediction.

    See Also
    --------
    binary_cross_entropy_from_logits : the same loss from logits, stably.
    sklearn.metrics.log_loss : the mean loss, from 1-D probabilities.

    Examples
    --------
    >>> from ce_tutorial import binary_cross_entropy
    >>> binary_cross_entropy([0.9, 0.9, 0.5], [1, 0, 1])
    array([0.10536052, 2.30258509, 0.69314718])
    >>> binary_cross_entropy([0.0, 1.0, 0.0], [1, 1, 0])
    array([inf,  0.,  0.])
    """
    reduction = check_reduction(reduction)
    arr, dtype = _prepare_probabilities(y_hat)
    y = _prepare_targets(y, arr.shape, "y_hat")
    wide = _wide(dtype, y)
    p, t = arr.astype(wide), y.astype(wide)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the honest answer
        neg_log_p = 0.0 - np.log(p)
        neg_log_not_p = 0.0 - np.log1p(-p)
    losses = _weighted(y > 0, neg_log_p, t)
    losses += _weighted(y < 1, neg_log_not_p, 1 - t)
    return _reduce(losses, reduction, dtype)


def binary_cross_entropy_from_logits(
    z: npt.ArrayLike,
    y: npt.ArrayLike,
    pos_weight: npt.ArrayLike | None = None,
    reduction: str = "none",
) -> np.ndarray | np.floating:
    r"""The binary cross-entropy computed stably from logits, elementwise.

    With :math:`w` the positive weight of the entry's tag (1 without
    ``pos_weight``),

    .. math:: \ell = -\bigl[w\, y \log \sigma(z) + (1 - y) \log(1 - \sigma(z))\bigr]
        = w\, y \operatorname{softplus}(-z) + (1 - y) \operatorname{softplus}(z),

    since :math:`\log \sigma(z) = -\operatorname{softplus}(-z)` and
    :math:`\log(1 - \sigma(z)) = -\operatorname{softplus}(z)`.

    Parameters
    ----------
    z : array_like of any shape, e.g. (N,) or (N, K)
        Real logits. ``±inf`` is a certain prediction and is allowed: it costs
        0 where it agrees with the target and ``inf`` where it contradicts it,
        never NaN.
    y : array_like of the same shape as ``z``
        Targets: bool, integer 0/1, or floats in [0, 1] (soft targets).
    pos_weight : array_like of shape (K,), optional
        A weight for the positive term of each tag on the last axis of ``z``,
        finite and :math:`\ge 0`, with the meaning of PyTorch's ``pos_weight``:
        an integer weight :math:`w` counts every positive entry of that tag
        :math:`w` times.
    reduction : {"none", "mean", "sum"}, default="none"
        Return the elementwise losses, their mean over **every** entry (all
        :math:`N K` of an ``(N, K)`` array, as PyTorch does), or their sum.

    Returns
    -------
    loss : ndarray of the shape of ``z``, or a NumPy scalar
        In the compute dtype of ``z`` (float32 in, float32 out; float16 gives
        float32, integers give float64).

    Raises
    ------
    TypeError
        If ``z``, ``y`` or ``pos_weight`` is not real-valued (``z`` and
        ``pos_weight`` may not be bool).
    ValueError
        If ``z`` holds NaN; if ``y`` holds NaN, a value outside [0, 1], or has
        a shape other than ``z``'s; if ``pos_weight`` is negative, not finite,
        or not of shape (K,); if ``reduction`` is not one of the three, or
        ``reduction="mean"`` meets an empty array.

    Notes
    -----
    Both softplus terms are computed from one :math:`s = \log(1 + e^{-|z|})`
    (``log1p`` of ``exp`` of a non-positive number), as

    .. math:: \operatorname{softplus}(\pm z) = \max(\pm z, 0) + s,

    and the loss is a sum of non-negative terms, so nothing cancels: for
    hard labels the result is accurate relative to the loss itself, so the
    tiny loss of a confident, correct prediction keeps its digits (the
    textbook form :math:`\max(z, 0) - z y + s` computes the same value for
    hard labels, but loses digits to cancellation for soft targets near 1).
    A term whose weight (:math:`w y` or :math:`1 - y`) is 0 contributes 0,
    even where its softplus is infinite. float16 and float32 inputs are
    computed in float64 and rounded once; a loss beyond the dtype's range
    (a huge ``pos_weight`` times a huge logit) is ``inf``.

    See Also
    --------
    binary_cross_entropy : the same loss from probabilities.
    binary_cross_entropy_grad : its derivative with respect to ``z``.
    cross_entropy_from_logits : the softmax loss; over the logits ``[0, z]``
        with label ``y`` it equals this one.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import binary_cross_entropy_from_logits
    >>> binary_cross_entropy_from_logits([2.0, 2.0, 0.0], [1, 0, 1])
    array([0.12692801, 2.12692801, 0.69314718])

    Large and infinite logits are no problem:

    >>> binary_cross_entropy_from_logits([40.0, -1000.0, np.inf, np.inf], [1, 1, 1, 0])
    array([4.24835426e-18, 1.00000000e+03, 0.00000000e+00,            inf])

    Two tags, the second one's positives counted three times:

    >>> z = np.zeros((2, 2))
    >>> y = np.array([[1, 1], [0, 1]])
    >>> binary_cross_entropy_from_logits(z, y, pos_weight=[1.0, 3.0]).round(4)
    array([[0.6931, 2.0794],
           [0.6931, 2.0794]])
    """
    reduction = check_reduction(reduction)
    zw, y, w, dtype = _prepare_logit_inputs(z, y, pos_weight)
    positive, negative, weights = _masses(y, w)
    softplus_pos, softplus_neg = _softplus_pair(zw)
    wide = zw.dtype
    losses = _weighted(positive, softplus_neg, *(x.astype(wide) for x in weights))
    with np.errstate(over="ignore"):  # a sum beyond the range is inf
        losses += _weighted(negative, softplus_pos, 1 - y.astype(wide))
    return _reduce(losses, reduction, dtype)


def _prepare_logit_inputs(
    z: npt.ArrayLike, y: npt.ArrayLike, pos_weight: npt.ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.dtype]:
    """Validate; return the widened logits, ``y`` and ``pos_weight`` as
    given, and the result's dtype. The wide dtype holds every input exactly
    (see :func:`_wide`)."""
    arr, dtype = _prepare_logits(z)
    y = _prepare_targets(y, arr.shape, "z")
    w = _prepare_pos_weight(pos_weight, arr.shape)
    return arr.astype(_wide(dtype, y, w)), y, w, dtype


def binary_cross_entropy_grad(
    z: npt.ArrayLike,
    y: npt.ArrayLike,
    pos_weight: npt.ArrayLike | None = None,
    reduction: str = "mean",
) -> np.ndarray:
    r"""The derivative of :func:`binary_cross_entropy_from_logits` with respect to z.

    .. math:: \frac{\partial \ell}{\partial z}
        = (1 - y)\, \sigma(z) - w\, y\, \sigma(-z),

    which is :math:`\sigma(z) - y` without ``pos_weight`` (:math:`w = 1`).

    Parameters
    ----------
    z : array_like of any shape, e.g. (N,) or (N, K)
        Real logits, as for :func:`binary_cross_entropy_from_logits`.
    y : array_like of the same shape as ``z``
        Targets: bool, integer 0/1, or floats in [0, 1].
    pos_weight : array_like of shape (K,), optional
        The positive weight of each tag on the last axis, finite and >= 0.
    reduction : {"none", "mean", "sum"}, default="mean"
        The reduction of the loss being differentiated. ``"mean"`` divides by
        the number of entries, ``z.size`` (:math:`N K`); ``"sum"`` does not.
        ``"none"`` returns the derivative of each entry's own loss, which
        depends on that entry alone, so it equals the ``"sum"`` gradient.

    Returns
    -------
    grad : ndarray of the shape of ``z``
        In the compute dtype of ``z``. An infinite logit that agrees with its
        target (``z = inf`` with ``y = 1``) has derivative 0, the limit.

    Raises
    ------
    TypeError
        If ``z``, ``y`` or ``pos_weight`` is not real-valued.
    ValueError
        As :func:`binary_cross_entropy_from_logits`; also if an infinite logit
        contradicts its target (``z = inf`` with ``y < 1``, or ``z = -inf``
        with a positive term), since the loss is then infinite and has no
        gradient.

    Notes
    -----
    The form :math:`(1 - y) \sigma(z) - w y \sigma(-z)` keeps full relative
    accuracy for hard labels: for :math:`y = 1` it is :math:`-\sigma(-z)`,
    where :math:`\sigma(z) - 1` would round to 0 once :math:`\sigma(z)`
    rounds to 1. For soft targets the two terms can cancel, and the result is
    accurate relative to the larger of them.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import binary_cross_entropy_grad
    >>> binary_cross_entropy_grad([0.0, 0.0, 2.0], [1, 0, 1], reduction="sum")
    array([-0.5       ,  0.5       , -0.11920292])
    >>> binary_cross_entropy_grad([40.0], [1], reduction="sum")  # -sigmoid(-40)
    array([-4.24835426e-18])
    """
    reduction = check_reduction(reduction)
    zw, y, w, dtype = _prepare_logit_inputs(z, y, pos_weight)
    check_mean_batch(reduction, zw.size)
    positive, negative, weights = _masses(y, w)
    wrong = ((zw == np.inf) & negative) | ((zw == -np.inf) & positive)
    if np.any(wrong):
        idx = np.unravel_index(int(np.argmax(wrong)), wrong.shape)
        where = format_index(idx) if idx else ""
        raise ValueError(
            f"z{where} = {zw[idx]!s} contradicts y{where} = {y[idx]!s}: "
            f"the loss is infinite and has no gradient"
        )
    wide = zw.dtype
    grad = _weighted(negative, _sigmoid_wide(zw), 1 - y.astype(wide))
    with np.errstate(over="ignore"):  # only a weight beyond the range overflows
        grad -= _weighted(
            positive, _sigmoid_wide(-zw), *(x.astype(wide) for x in weights)
        )
        if reduction == "mean":
            grad /= zw.size
    return np.asarray(_narrow(grad, dtype))
