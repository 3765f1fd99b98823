"""Knowledge distillation: a student fitted to a teacher's softened probabilities.

- :func:`distillation_loss`, :math:`T^2\\,\\mathrm{KL}(\\operatorname{softmax}
  (\\mathbf{t} / T) \\,\\|\\, \\operatorname{softmax}(\\mathbf{z} / T))` per
  example, the loss of Hinton et al. (2015), with ``"mean"`` as PyTorch's
  ``"batchmean"``;
- :func:`distillation_grad`, its gradient with respect to the student's
  logits, :math:`T\\,(\\operatorname{softmax}(\\mathbf{z} / T) -
  \\operatorname{softmax}(\\mathbf{t} / T))`.

``-inf`` marks a masked class, as elsewhere in the package: a class the
teacher masks carries no target mass, and a class the student masks while the
teacher does not makes the loss infinite.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._temperature import Tempered, check_temperature, logit_error, tempered
from ._validation import (
    as_array,
    check_matrix,
    check_mean_batch,
    check_reduction,
    compute_dtype,
    raise_first,
    reduce,
)

__all__ = ["distillation_grad", "distillation_loss"]


def _prepare(
    student_logits: npt.ArrayLike, teacher_logits: npt.ArrayLike, temperature: object
) -> tuple[np.ndarray, np.ndarray, np.floating]:
    """Validate both logit matrices and the temperature; cast to one dtype."""
    s = as_array(student_logits, "student_logits")
    t = as_array(teacher_logits, "teacher_logits")
    dtype = np.result_type(
        compute_dtype(s.dtype, "student_logits"),
        compute_dtype(t.dtype, "teacher_logits"),
    )
    check_matrix(s, "student_logits")
    check_matrix(t, "teacher_logits")
    if s.shape != t.shape:
        raise ValueError(
            f"student_logits has shape {s.shape} but teacher_logits has shape "
            f"{t.shape}: both must be (n_samples, n_classes), one row per example"
        )
    T = check_temperature(temperature, dtype)
    s, t = s.astype(dtype, copy=False), t.astype(dtype, copy=False)
    raise_first(logit_error(s, "student_logits"), logit_error(t, "teacher_logits"))
    return s, t, T


def _infinite_rows(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rows where the student masks a class that the teacher does not.

    A finite teacher logit gives its class a positive probability, however
    small it rounds, so the KL divergence of that row is infinite.
    """
    return (np.isneginf(s) & np.isfinite(t)).any(axis=1)


def _halved_losses(
    s: np.ndarray,
    t: np.ndarray,
    T: np.floating,
    student: Tempered,
    teacher: Tempered,
    p: np.ndarray,
) -> np.ndarray:
    r"""The losses of rows whose sum of terms overflowed, in logit units.

    :math:`T\,\log\operatorname{softmax}(z / T)_j = (z_j - m) - T \log s`, and
    the loss is :math:`T \sum_j p_j` times the difference of that for the
    teacher and the student. :math:`z_j - m` can exceed the dtype's range
    (``1e308`` and ``-1e308`` in one row), so every term is halved first,
    which is exact, and the sum is doubled back at the end.
    """
    half = T / 2

    def half_log_probabilities(z, parts):
        return (z / 2 - parts.m[:, None] / 2) - half * parts.log_s[:, None]

    with np.errstate(over="ignore", invalid="ignore"):
        terms = p * (
            half_log_probabilities(t, teacher) - half_log_probabilities(s, student)
        )
        terms[p == 0] = 0.0
        return (terms.sum(axis=1) * T) * 2


def distillation_loss(
    student_logits: npt.ArrayLike,
    teacher_logits: npt.ArrayLike,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> np.ndarray | np.floating:
    r"""The knowledge-distillation loss of a student against a teacher.

    Per example, :math:`T^2` times the KL divergence from the teacher's
    softened distribution to the student's:

    .. math:: \ell = T^2\, \mathrm{KL}(\mathbf{p} \,\|\, \hat{\mathbf{y}})
        = T^2 \sum_j p_j \,(\log p_j - \log \hat{y}_j),
        \qquad \mathbf{p} = \operatorname{softmax}(\mathbf{t} / T),
        \quad \hat{\mathbf{y}} = \operatorname{softmax}(\mathbf{z} / T),

    with :math:`\mathbf{z}` the student's logits and :math:`\mathbf{t}` the
    teacher's.

    Parameters
    ----------
    student_logits : array_like of shape (n_samples, n_classes)
        The student's scores :math:`\mathbf{z}`. ``-inf`` masks a class.
        Integer logits compute in float64, float16 in float32.
    teacher_logits : array_like of shape (n_samples, n_classes)
        The teacher's scores :math:`\mathbf{t}`, for the same examples.
    temperature : float, default=1.0
        :math:`T > 0`, the same for both. Larger values soften both
        distributions.
    reduction : {"none", "mean", "sum"}, default="mean"
        Return the per-example losses, their mean over the examples (PyTorch's
        ``reduction="batchmean"``, not its ``"mean"``, which also divides by
        the number of classes), or their sum.

    Returns
    -------
    loss : ndarray of shape (n_samples,), or scalar
        Non-negative, in the dtype of the computation (float32 for two
        float32 inputs, otherwise the wider of the two). 0 where the student's
        row equals the teacher's, ``inf`` where the student masks a class that
        the teacher does not.

    Raises
    ------
    TypeError
        If the logits are not real-valued, or ``temperature`` is not a real
        number.
    ValueError
        If either logit array is not 2-D or has no classes, the shapes differ,
        a row holds NaN or ``+inf`` or is ``-inf`` everywhere, ``temperature``
        is not positive and finite (in the dtype of the computation),
        ``reduction`` is unknown, or ``reduction="mean"`` meets an empty
        batch.

    Notes
    -----
    By :math:`H(\mathbf{p}, \hat{\mathbf{y}}) = H(\mathbf{p}) +
    \mathrm{KL}(\mathbf{p} \,\|\, \hat{\mathbf{y}})`, this is :math:`T^2`
    times the cross-entropy of the student against the soft targets
    :math:`\mathbf{p}`, minus a term that does not depend on the student: the
    two have the same gradient, :func:`distillation_grad`. The factor
    :math:`T^2` keeps that gradient's size roughly independent of :math:`T`
    [1]_.

    Each log-probability is computed as :math:`(z_j - m)/T - \log
    \sum_k e^{(z_k - m)/T}`, with :math:`m` the row's maximum subtracted
    *before* dividing by :math:`T`, so that neither large logits nor a small
    temperature overflow; rows whose terms overflow anyway (logits spanning
    more than the dtype's range) are recomputed in halves. The result is
    accurate to a few units of rounding relative to
    :math:`T^2 \sum_j p_j (|\log p_j| + |\log \hat{y}_j|)`; where the student
    nearly equals the teacher, the KL divergence is a small difference of
    such terms, and rounding can leave it slightly below its true value. A
    result that rounds below 0 is returned as 0. For a very large
    :math:`T` the KL divergence shrinks as :math:`1/T^2` while its rounding
    error does not, so the relative error grows as :math:`T^2`: for float64
    logits of a few units, about 9 digits are right at :math:`T = 10^4`
    and 5 at :math:`T = 10^6`.

    PyTorch computes the same loss as ``F.kl_div(F.log_softmax(z / T, 1),
    F.log_softmax(t / T, 1), reduction="batchmean", log_target=True) * T**2``.

    The memory used is a few arrays of the logits' size.

    References
    ----------
    .. [1] G. Hinton, O. Vinyals and J. Dean, "Distilling the knowledge in a
       neural network", NIPS Deep Learning Workshop, 2015.

    Examples
    --------
    >>> from ce_tutorial import distillation_loss
    >>> teacher = [[2.0, 1.0, 0.1], [0.5, 0.5, 3.0]]
    >>> student = [[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]
    >>> distillation_loss(student, teacher, temperature=2.0, reduction="none")
    array([0.28947344, 0.18056385])
    >>> print(distillation_loss(teacher, teacher, temperature=2.0))
    0.0

    Large logits are no problem, where ``log(softmax(...))`` gives ``inf``:

    >>> print(distillation_loss([[1000.0, 0.0]], [[0.0, 1000.0]]))
    1000.0
    """
    reduction = check_reduction(reduction)
    s, t, T = _prepare(student_logits, teacher_logits, temperature)
    check_mean_batch(reduction, s.shape[0])
    student, teacher = tempered(s, T), tempered(t, T)
    log_p = teacher.shifted - teacher.log_s[:, None]
    log_y_hat = student.shifted - student.log_s[:, None]
    p = np.exp(log_p)
    # 0 * inf (a masked class, or an underflowed probability) is a 0 term.
    with np.errstate(over="ignore", invalid="ignore"):
        terms = p * (log_p - log_y_hat)
    terms[p == 0] = 0.0
    kl = terms.sum(axis=1)
    infinite = _infinite_rows(s, t)
    over = np.isinf(kl) & ~infinite
    with np.errstate(over="ignore"):
        losses = (kl * T) * T  # (KL T) T: overflows only if the loss does
    if over.any():
        losses[over] = _halved_losses(
            s[over],
            t[over],
            T,
            Tempered(*(x[over] for x in student)),
            Tempered(*(x[over] for x in teacher)),
            p[over],
        )
    losses[infinite] = np.inf
    np.maximum(losses, 0, out=losses)  # KL >= 0: a rounded -1e-17 is 0
    return reduce(losses, reduction)


def distillation_grad(
    student_logits: npt.ArrayLike,
    teacher_logits: npt.ArrayLike,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> np.ndarray:
    r"""The gradient of :func:`distillation_loss` with respect to the student's logits.

    .. math:: \frac{\partial \ell}{\partial z_j}
        = T \bigl(\operatorname{softmax}(\mathbf{z} / T)_j
        - \operatorname{softmax}(\mathbf{t} / T)_j\bigr),

    divided by ``n_samples`` for ``reduction="mean"``.

    Parameters
    ----------
    student_logits : array_like of shape (n_samples, n_classes)
        The student's scores :math:`\mathbf{z}`, as for
        :func:`distillation_loss`.
    teacher_logits : array_like of shape (n_samples, n_classes)
        The teacher's scores :math:`\mathbf{t}`.
    temperature : float, default=1.0
        :math:`T > 0`.
    reduction : {"none", "mean", "sum"}, default="mean"
        The reduction of the loss being differentiated. ``"none"`` returns, in
        row ``i``, the gradient of example ``i``'s loss, which depends on row
        ``i`` alone, so it equals the ``"sum"`` gradient.

    Returns
    -------
    grad : ndarray of shape (n_samples, n_classes)
        In the dtype of the computation. Each row sums to 0 (up to rounding).

    Raises
    ------
    TypeError
        As :func:`distillation_loss`.
    ValueError
        As :func:`distillation_loss`; also if the student masks (``-inf``) a
        class that the teacher does not, where the loss is infinite and has no
        gradient.

    Notes
    -----
    The teacher's entropy does not depend on :math:`\mathbf{z}`, so this is
    :math:`T^2` times the gradient of the cross-entropy
    :math:`H(\mathbf{p}, \operatorname{softmax}(\mathbf{z}/T))`, which is
    :math:`(\hat{\mathbf{y}} - \mathbf{p}) / T` by the chain rule. Both
    probabilities are computed as in :func:`distillation_loss`, accurate to
    a few units of rounding, so the gradient is accurate to a few units of
    rounding times :math:`T`, in absolute terms.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import distillation_grad
    >>> distillation_grad([[0.0, 0.0]], [[0.0, 2.0 * np.log(3.0)]], temperature=2.0)
    array([[ 0.5, -0.5]])
    """
    reduction = check_reduction(reduction)
    s, t, T = _prepare(student_logits, teacher_logits, temperature)
    check_mean_batch(reduction, s.shape[0])
    infinite = _infinite_rows(s, t)
    if infinite.any():
        i = int(np.argmax(infinite))
        j = int(np.argmax(np.isneginf(s[i]) & np.isfinite(t[i])))
        raise ValueError(
            f"student_logits[{i}, {j}] is -inf but teacher_logits[{i}, {j}] = "
            f"{t[i, j]} is not: the loss is infinite and has no gradient"
        )
    student, teacher = tempered(s, T), tempered(t, T)
    y_hat = np.exp(student.shifted - student.log_s[:, None])
    p = np.exp(teacher.shifted - teacher.log_s[:, None])
    grad = (y_hat - p) * T
    if reduction == "mean":
        grad /= s.shape[0]
    return grad
