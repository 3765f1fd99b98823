"""Contrastive learning: the InfoNCE loss of a batch of positive pairs.

:func:`info_nce` is the loss behind CPC, SimCLR and CLIP: row ``i`` of the
queries and row ``i`` of the keys are two views of one example, and each query
must pick its own key out of the batch. It is the cross-entropy of the matrix
of similarities divided by a temperature, with the label of row ``i`` being
``i``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._temperature import Tempered, check_flag, check_temperature, tempered
from ._validation import (
    as_array,
    check_mean_batch,
    check_reduction,
    compute_dtype,
    format_index,
    raise_first,
    reduce,
)

__all__ = ["info_nce"]


def _matrix(x: npt.ArrayLike, name: str) -> tuple[np.ndarray, np.dtype]:
    """``x`` as a 2-D array of real numbers, and the dtype to compute in."""
    arr = as_array(x, name)
    dtype = compute_dtype(arr.dtype, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D, of shape (n_samples, n_features), got shape "
            f"{arr.shape}"
        )
    return arr, dtype


def _first_nonfinite(x: np.ndarray, name: str):
    """The first entry of ``x`` that is NaN or infinite, as ``(row, error)``."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    index = np.unravel_index(int(np.argmax(bad)), x.shape)
    return int(index[0]), ValueError(
        f"{name}{format_index(index)} = {x[index]} is not finite"
    )


def _unit_rows(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    r"""Rows of ``x`` scaled to length 1, and their lengths, without overflow.

    Each row is divided by its largest absolute entry :math:`a` first, so that
    the sum of squares lies in :math:`[1, d]`: :math:`\|x\| = a \|x / a\|`
    neither overflows for entries near ``1e308`` nor underflows for entries
    near ``1e-300``. A row of zeros has no direction: ``ValueError``.
    """
    if x.shape[1] == 0 and x.shape[0]:
        raise ValueError(
            f"{name} has shape {x.shape}: normalize=True needs at least one "
            f"feature (column) to give the rows a direction"
        )
    scale = np.abs(x).max(axis=1, initial=0.0)
    zero = scale == 0
    if zero.any():
        i = int(np.argmax(zero))
        raise ValueError(
            f"{name}[{i}] is all zeros: normalize=True needs every row to have a "
            f"direction (a non-zero length)"
        )
    scaled = x / scale[:, None]
    length = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    with np.errstate(over="ignore"):  # a length beyond the dtype's range
        return scaled / length[:, None], scale * length


def _direction_loss(parts: Tempered) -> np.ndarray:
    r"""Per-row cross-entropy with label ``i`` for row ``i``: ``log s - shifted_ii``.

    Both terms are non-negative, so nothing cancels.
    """
    n = parts.log_s.shape[0]
    diagonal = parts.shifted[np.arange(n), np.arange(n)]
    with np.errstate(over="ignore"):
        return parts.log_s - diagonal


def _direction_grad(parts: Tempered) -> np.ndarray:
    r"""``softmax(row) - onehot(i)`` for every row: the gradient by the logits.

    The diagonal is computed as :math:`-\sum_{j \ne i} \hat{y}_{ij}` rather
    than :math:`\hat{y}_{ii} - 1`, which keeps it accurate when
    :math:`\hat{y}_{ii}` is close to 1.
    """
    n = parts.log_s.shape[0]
    grad = np.exp(parts.shifted - parts.log_s[:, None])
    diagonal = np.arange(n)
    grad[diagonal, diagonal] = 0.0
    grad[diagonal, diagonal] = -grad.sum(axis=1)
    return grad


def _through_normalisation(
    grad_unit: np.ndarray, unit: np.ndarray, length: np.ndarray
) -> np.ndarray:
    r"""The gradient by ``x`` from the gradient by ``x / |x|``.

    .. math:: \frac{\partial L}{\partial \mathbf{x}}
        = \frac{\mathbf{g} - (\mathbf{g} \cdot \hat{\mathbf{x}})\,
        \hat{\mathbf{x}}}{\|\mathbf{x}\|}.
    """
    radial = np.einsum("ij,ij->i", grad_unit, unit)
    with np.errstate(over="ignore"):  # a row of length near 0: a huge gradient
        return (grad_unit - radial[:, None] * unit) / length[:, None]


def info_nce(
    queries: npt.ArrayLike,
    keys: npt.ArrayLike,
    temperature: float = 0.1,
    normalize: bool = True,
    symmetric: bool = False,
    reduction: str = "mean",
    return_grad: bool = False,
) -> np.ndarray | np.floating | tuple[np.ndarray | np.floating, np.ndarray, np.ndarray]:
    r"""The InfoNCE (contrastive) loss of a batch of positive pairs.

    Row :math:`i` of ``queries`` and row :math:`i` of ``keys`` are two views
    of example :math:`i`; every other key of the batch is a negative for
    query :math:`i`. With the rows scaled to length 1 (if ``normalize``), the
    logits of query :math:`i` are its similarities with every key, divided by
    the temperature, and its loss is the cross-entropy with label :math:`i`:

    .. math:: z_{ij} = \frac{\mathbf{a}^{(i)} \cdot \mathbf{a}'^{(j)}}{T},
        \qquad
        \ell^{(i)} = -\log \frac{e^{z_{ii}}}{\sum_{j=0}^{N-1} e^{z_{ij}}}
        = \operatorname{logsumexp}_j(z_{ij}) - z_{ii},

    where :math:`\mathbf{a}^{(i)}` is query :math:`i` and
    :math:`\mathbf{a}'^{(j)}` key :math:`j`.

    Parameters
    ----------
    queries : array_like of shape (n_samples, n_features)
        The embeddings of the first view, one row per example. Integer input
        computes in float64, float16 in float32.
    keys : array_like of shape (n_samples, n_features)
        The embeddings of the second view, row ``i`` the partner of query ``i``.
    temperature : float, default=0.1
        :math:`T > 0`. Smaller values sharpen the softmax over the batch.
    normalize : bool, default=True
        Scale every row of both to length 1 first, so that the similarities
        are cosines in :math:`[-1, 1]`, as in SimCLR and CLIP.
    symmetric : bool, default=False
        Average the loss of each query picking its key (the rows of the
        logits) with that of each key picking its query (the columns), as
        CLIP does: :math:`\ell^{(i)} = \frac{1}{2}\bigl(\operatorname{
        logsumexp}_j(z_{ij}) - z_{ii} + \operatorname{logsumexp}_j(z_{ji}) -
        z_{ii}\bigr)`.
    reduction : {"none", "mean", "sum"}, default="mean"
        Return the per-example losses, their mean or their sum.
    return_grad : bool, default=False
        Also return the gradients of the (reduced) loss with respect to
        ``queries`` and ``keys``, through the normalisation. Needs
        ``reduction="mean"`` or ``"sum"``: each example's loss depends on
        every key, so per-example gradients do not fit in one array.

    Returns
    -------
    loss : ndarray of shape (n_samples,), or scalar
        Non-negative, in the dtype of the computation.
    grad_queries : ndarray of shape (n_samples, n_features)
        Only with ``return_grad``.
    grad_keys : ndarray of shape (n_samples, n_features)
        Only with ``return_grad``.

    Raises
    ------
    TypeError
        If an input is not real-valued, ``temperature`` is not a real number,
        or ``normalize``, ``symmetric`` or ``return_grad`` is not a bool.
    ValueError
        If ``queries`` or ``keys`` is not 2-D, their shapes differ, an entry
        is NaN or infinite, a row is all zeros with ``normalize=True``, a
        similarity overflows (``normalize=False`` with huge entries),
        ``temperature`` is not positive and finite, ``reduction`` is unknown,
        ``reduction="mean"`` meets an empty batch, or ``return_grad`` is
        asked for with ``reduction="none"``.

    Notes
    -----
    The batch's :math:`N` keys are the :math:`C = N` classes of each query's
    classification problem, so this is
    ``cross_entropy_from_logits(z, range(N))`` for the matrix of logits
    :math:`z`, and PyTorch's ``F.cross_entropy(z, torch.arange(N))``. Its
    gradient with respect to the logits is :math:`(\operatorname{softmax}(z)
    - I) / N` for ``"mean"``; by the chain rule, the gradient with respect to
    the unit queries :math:`Q` (rows :math:`\mathbf{a}^{(i)} / \|\mathbf{a}^{(i)}\|`)
    and unit keys :math:`K` is

    .. math:: \frac{\partial L}{\partial Q} = \frac{G K}{T}, \qquad
        \frac{\partial L}{\partial K} = \frac{G^\top Q}{T},
        \qquad G = \frac{\partial L}{\partial z},

    and through the normalisation :math:`\hat{\mathbf{x}} = \mathbf{x} /
    \|\mathbf{x}\|` a gradient :math:`\mathbf{g}` becomes
    :math:`(\mathbf{g} - (\mathbf{g} \cdot \hat{\mathbf{x}})\hat{\mathbf{x}})
    / \|\mathbf{x}\|`: only the part across the direction remains.

    Each row of logits is shifted by its maximum *before* the division by
    :math:`T`, so a small temperature does not overflow, and both terms of
    :math:`\ell^{(i)} = \log \sum_j e^{(z_{ij} - m_i)} + (m_i - z_{ii})` are
    non-negative, so nothing cancels. The memory used is a few
    :math:`N \times N` arrays.

    References
    ----------
    .. [1] A. van den Oord, Y. Li and O. Vinyals, "Representation learning
       with contrastive predictive coding", arXiv:1807.03748, 2018.
    .. [2] A. Radford et al., "Learning transferable visual models from
       natural language supervision", ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import info_nce
    >>> queries = [[1.0, 0.0], [0.0, 1.0]]
    >>> keys = [[2.0, 0.0], [0.0, 3.0]]
    >>> print(round(info_nce(queries, keys, temperature=0.5), 8))
    0.12692801

    That is :math:`\log(1 + e^{-2})`: each query's own key has cosine 1, the
    other key cosine 0. Swapping the keys makes every query pick the wrong
    one:

    >>> print(round(info_nce(queries, keys[::-1], temperature=0.5), 8))
    2.12692801
    >>> loss, grad_q, grad_k = info_nce(queries, keys, 0.5, return_grad=True)
    >>> grad_q
    array([[0.        , 0.11920292],
           [0.11920292, 0.        ]])

    A step against the gradient turns each query away from the other key. The
    gradient has no part along the query itself: scaling a query does not
    change its cosines.
    """
    reduction = check_reduction(reduction)
    normalize = check_flag(normalize, "normalize")
    symmetric = check_flag(symmetric, "symmetric")
    return_grad = check_flag(return_grad, "return_grad")
    q, q_dtype = _matrix(queries, "queries")
    k, k_dtype = _matrix(keys, "keys")
    if q.shape != k.shape:
        raise ValueError(
            f"queries has shape {q.shape} but keys has shape {k.shape}: row i of "
            f"each is a positive pair, so the shapes must match"
        )
    dtype = np.result_type(q_dtype, k_dtype)
    T = check_temperature(temperature, dtype)
    q, k = q.astype(dtype, copy=False), k.astype(dtype, copy=False)
    raise_first(_first_nonfinite(q, "queries"), _first_nonfinite(k, "keys"))
    n = q.shape[0]
    check_mean_batch(reduction, n)
    if return_grad and reduction == "none":
        raise ValueError(
            "return_grad=True needs reduction='mean' or 'sum': each example's "
            "loss depends on every key, so per-example gradients do not fit in "
            "one array"
        )
    if normalize:
        (q_unit, q_length), (k_unit, k_length) = (
            _unit_rows(q, "queries"),
            _unit_rows(k, "keys"),
        )
    else:
        q_unit, k_unit = q, k
    with np.errstate(over="ignore", invalid="ignore"):
        similarity = q_unit @ k_unit.T
    if not np.isfinite(similarity).all():
        i, j = np.unravel_index(int(np.argmax(~np.isfinite(similarity))), (n, n))
        raise ValueError(
            f"the similarity queries[{i}] . keys[{j}] overflows {dtype}: scale "
            f"the embeddings down, or use normalize=True"
        )
    rows = tempered(similarity, T)
    losses = _direction_loss(rows)
    cols = tempered(similarity.T, T) if symmetric else None
    if symmetric:
        losses = (losses + _direction_loss(cols)) / 2
    loss = reduce(losses, reduction)
    if not return_grad:
        return loss
    grad = _direction_grad(rows)
    if symmetric:
        grad = (grad + _direction_grad(cols).T) / 2
    if reduction == "mean":
        grad /= n
    with np.errstate(over="ignore"):  # a tiny T: a gradient beyond the range
        grad_q = (grad @ k_unit) / T
        grad_k = (grad.T @ q_unit) / T
    if normalize:
        grad_q = _through_normalisation(grad_q, q_unit, q_length)
        grad_k = _through_normalisation(grad_k, k_unit, k_length)
    return loss, grad_q, grad_k
