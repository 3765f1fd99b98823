r"""The fused language-model head: a linear layer and its cross-entropy in one.

A language model ends with a linear layer that turns each token's features
:math:`\mathbf{h}^{(i)} \in \mathbb{R}^d` into logits
:math:`\mathbf{z}^{(i)} = W \mathbf{h}^{(i)}` over a vocabulary of :math:`V`
tokens, :math:`W \in \mathbb{R}^{V \times d}`, and then takes the
cross-entropy of those logits. Done in two steps, the :math:`N \times V`
logits of a batch are materialised, and a framework holds about three
arrays of that size at its peak: PyTorch's ``F.linear`` and
``F.cross_entropy`` save the log-probabilities (not the logits, which are
freed unless the caller keeps them), and the backward pass adds their
gradient and the gradient with respect to the logits. :func:`linear_cross_entropy` walks
over the batch in chunks of rows instead and never holds more than one
chunk of logits, as Liger-Kernel's ``FusedLinearCrossEntropy`` and Cut
Cross-Entropy [1]_ do on GPUs.

References
----------
.. [1] E. Wijmans, B. Huval, A. Hertzberg, V. Koltun and P. Krähenbühl,
   "Cut your losses in large-vocabulary language models", arXiv:2411.09009,
   2024.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._validation import (
    as_array,
    as_labels,
    check_ignore_index,
    check_kept_rows,
    check_mean_batch,
    check_reduction,
    compute_dtype,
    find_label_error,
    ignored_rows,
    raise_first,
)

__all__ = ["linear_cross_entropy"]

# The memory budget of the one chunk buffer, which holds a chunk's logits (and
# then, in place, their gradient). Large chunks keep the three matrix products
# efficient and make the per-chunk work on grad_weight (one pass over V x d
# numbers) rare. The cap of 1/MAX_CHUNK_FRACTION of the rows keeps the buffer
# near a sixteenth of the N x V logits; when d is large, a chunk may still have
# up to d/WIDTH_PER_CHUNK_ROW rows, a buffer of at most an eighth of the V x d
# weights, because a chunk of few rows makes the grad_weight update (inner
# dimension = the chunk's rows) slow. Constants, never changed at run time: the
# module has no mutable state.
CHUNK_BYTES = 32 << 20
MAX_CHUNK_FRACTION = 16
WIDTH_PER_CHUNK_ROW = 8
# grad_weight is accumulated over chunks in slices of vocabulary rows: each
# slice's product is a temporary of at most about V/VOCAB_BLOCKS rows and at most
# a quarter of the chunk buffer, never a V x d one. Few, large slices keep the
# number of BLAS calls small, which matters when BLAS runs several threads: each
# call ends with the threads waiting for each other. (Since a chunk has at least
# d/WIDTH_PER_CHUNK_ROW rows when the budget allows, the quarter-buffer cap
# leaves at least about V/32 rows per slice.)
VOCAB_BLOCKS = 8


def chunk_rows(n_rows: int, vocab: int, itemsize: int, d: int = 0) -> int:
    """The number of rows of one chunk: the rule documented in the Notes."""
    by_budget = CHUNK_BYTES // max(1, vocab * itemsize)
    by_fraction = -(-n_rows // MAX_CHUNK_FRACTION)
    by_width = d // WIDTH_PER_CHUNK_ROW
    return max(1, min(n_rows, by_budget, max(by_fraction, by_width)))


def vocab_block_rows(rows: int, vocab: int, d: int) -> int:
    """Vocabulary rows per slice of the grad_weight update: at most
    ``ceil(vocab / VOCAB_BLOCKS)``, and at most a quarter of the chunk buffer."""
    by_count = -(-vocab // VOCAB_BLOCKS)
    by_chunk = rows * vocab // max(1, 4 * d)
    return max(1, min(by_count, by_chunk))


def _check_matrix(x: np.ndarray, name: str, shape_name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, of shape {shape_name}, got {x.shape}")


def _check_finite(x: np.ndarray, name: str) -> None:
    """Raise if ``x`` holds NaN or +-inf, naming ``name`` and the first entry.

    The minimum and the maximum are finite exactly when every entry is (NaN
    propagates through both), and they need no temporary array.
    """
    if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
        return
    i, j = np.unravel_index(int(np.argmin(np.isfinite(x))), x.shape)
    raise ValueError(
        f"{name}[{i}, {j}] = {x[i, j]} is not finite; {name} must hold finite numbers"
    )


def _check_labels(
    y: np.ndarray, n_samples: int, vocab: int, ignore_index: int | None
) -> np.ndarray:
    """Validate labels; return the boolean mask of the rows that count.

    The range check and its message are those of
    ``cross_entropy_from_logits``.
    """
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n_samples,):
        raise ValueError(
            f"y has shape {y.shape}, but features has {n_samples} rows: "
            f"expected shape ({n_samples},)"
        )
    raise_first(find_label_error(y, vocab, "y", ignore_index))
    skipped = ignored_rows(y, ignore_index)
    return np.ones(n_samples, dtype=bool) if skipped is None else ~skipped


def linear_cross_entropy(
    features: npt.ArrayLike,
    weight: npt.ArrayLike,
    y: npt.ArrayLike,
    reduction: str = "mean",
    ignore_index: int | None = None,
    return_grad: bool = False,
) -> np.ndarray | np.floating | tuple[np.floating, np.ndarray, np.ndarray]:
    r"""The cross-entropy of ``features @ weight.T``, without the full logits.

    Example :math:`i` has features :math:`\mathbf{h}^{(i)}` (row ``i`` of
    ``features``) and logits :math:`\mathbf{z}^{(i)} = W \mathbf{h}^{(i)}`, one
    per token of a vocabulary of :math:`V`; its loss is

    .. math:: \ell^{(i)} = \log \sum_{k=0}^{V-1} e^{z^{(i)}_k} - z^{(i)}_{y^{(i)}},

    the same as ``cross_entropy_from_logits(features @ weight.T, y)``. The
    :math:`N \times V` matrix of logits is never formed.

    Parameters
    ----------
    features : array_like of shape (n_samples, d)
        The features :math:`\mathbf{h}^{(i)}` of the ``n_samples`` tokens,
        e.g. a language model's last hidden states. Finite real numbers.
    weight : array_like of shape (V, d)
        The output layer's weights :math:`W`, one row per token, in the
        convention of PyTorch's ``nn.Linear`` (``logits = features @
        weight.T``). Finite real numbers; ``V >= 1``.
    y : array_like of int, shape (n_samples,)
        The label of each token, ``0 <= y < V``, or ``ignore_index``.
    reduction : {"none", "mean", "sum"}, default="mean"
        Return the per-example losses, their mean over the rows that count, or
        their sum.
    ignore_index : int or None, default=None
        ``None``: every label must satisfy ``0 <= y < V``. An integer: rows
        whose label equals it are skipped, as with PyTorch's ``ignore_index``
        (padding tokens, usually ``-100``). A skipped row's loss is 0 under
        ``"none"``; ``"sum"`` adds only the kept rows; ``"mean"`` divides by
        their number; skipped rows get a zero gradient.
    return_grad : bool, default=False
        Also return the gradients of the reduced loss.

    Returns
    -------
    loss : ndarray of shape (n_samples,), or scalar
        The losses, their mean or their sum, in the compute dtype: float32
        in, float32 out; float16 computes in float32, integers in float64.
        The mean and the sum are accumulated in float64.
    grad_features : ndarray of shape (n_samples, d)
        Only with ``return_grad=True``: :math:`\partial L / \partial
        \mathbf{h}^{(i)}`, in the compute dtype.
    grad_weight : ndarray of shape (V, d)
        Only with ``return_grad=True``: :math:`\partial L / \partial W`.

    Raises
    ------
    TypeError
        If ``features`` or ``weight`` is not real-valued, ``y`` is not
        integer, ``ignore_index`` is not an integer or None, or
        ``return_grad`` is not a bool.
    ValueError
        If ``features`` or ``weight`` is not 2-D or holds NaN or inf (the
        message names which), their widths ``d`` differ, ``V = 0``, ``y``
        has the wrong shape or a label outside ``0 <= y < V`` that is not
        ``ignore_index``, ``reduction`` is unknown, ``return_grad=True`` with
        ``reduction="none"``, ``reduction="mean"`` has no row to average
        (an empty batch, or every row skipped; PyTorch returns NaN there), or
        the logits overflow the compute dtype.

    See Also
    --------
    cross_entropy_from_logits : the same loss from logits that already exist.
    cross_entropy_grad : the gradient with respect to the logits.

    Notes
    -----
    **The chunks.** The rows are taken in chunks :math:`\mathcal{I}_g` of at
    most :math:`R` rows (the blocks of the streaming loss). For chunk
    :math:`g`, one buffer of :math:`R \times V` numbers receives the logits
    :math:`Z_g = \Phi_g W^\top`, where :math:`\Phi_g` stacks the chunk's
    features :math:`\mathbf{h}^{(i)}` as rows; each row's maximum
    :math:`z^{(i)}_{\max}` and log-sum-exp
    :math:`z^{(i)}_{\max} + \log \sum_k e^{z^{(i)}_k - z^{(i)}_{\max}}` give
    the losses. With ``return_grad``, the buffer is then turned in place into
    the gradient with respect to the logits,

    .. math:: G_g = c \, (\operatorname{softmax}(Z_g) - \operatorname{onehot}(y_g)),

    row by row, with :math:`c = 1/N_\text{kept}` for the mean, 1 for the sum,
    and 0 on skipped rows, and the chain rule through :math:`Z = \Phi W^\top`
    gives

    .. math:: \frac{\partial L}{\partial \Phi_g} = G_g W, \qquad
        \frac{\partial L}{\partial W} = \sum_g G_g^\top \Phi_g .

    :math:`G_g W` is written straight into its rows of ``grad_features``.
    :math:`G_g^\top \Phi_g` is added into ``grad_weight`` one slice of
    vocabulary rows at a time (the first chunk writes it directly), so no
    :math:`V \times d` temporary is made. A slice has
    :math:`v = \max(1, \min(\lceil V/8 \rceil, \lfloor R V / (4 d) \rfloor))`
    rows, at most a quarter of the chunk buffer, and a chunk's update takes
    :math:`\lceil V / v \rceil` products: eight or so for most shapes (five
    for :math:`V = 9`), more when :math:`d` is large next to :math:`R`. Few
    products, each large enough to use several BLAS threads well.

    **Skipped rows.** Rows whose label is ``ignore_index`` are still checked:
    their logits are computed with their chunk, and a skipped row whose
    logits overflow raises, as in :func:`cross_entropy_from_logits`.

    **The memory budget.** With :math:`b` bytes per number, a chunk has

    .. math:: R = \max\Bigl(1, \min\Bigl(N, \Bigl\lfloor \frac{32\,\text{MiB}}{V b}
        \Bigr\rfloor, \max\bigl(\lceil N / 16 \rceil, \lfloor d / 8 \rfloor\bigr)
        \Bigr)\Bigr)

    rows: at most 32 MiB of logits, and at most a sixteenth of the batch,
    unless :math:`d` is so large that a sixteenth of the batch is fewer than
    :math:`d/8` rows; then the chunk may have up to :math:`d/8` rows, a
    buffer of at most an eighth of the size of :math:`W`, because chunks of
    few rows make the ``grad_weight`` update slow. The extra memory beyond the
    returned arrays is that buffer, one slice of the ``grad_weight`` update
    (at most a quarter of the buffer, or one row of :math:`W` if that is
    more), a few vectors of
    length :math:`N` and some 100 kB of small objects. When
    :math:`N \ge 1024`, :math:`N \ge 2d` and :math:`V \ge 1000`, the buffer
    is at most :math:`\lceil N/16 \rceil / N \le 1/16 + 1/N` of the logits
    and the slice at most a quarter of that: about 8% of the
    :math:`N \times V` logits in all with the rest, under an eighth (the
    32 MiB budget only lowers it). For smaller batches the fraction is
    larger, since a chunk has at least one row and :math:`\lceil N/16 \rceil`
    rounds up (at :math:`N = 4` a chunk is a quarter of the batch), and the
    fixed costs weigh more; so it is when :math:`d` is large next to
    :math:`N`, where the buffer is bounded by :math:`W` instead (when
    :math:`d/8 \ge N`, the whole batch is one chunk, about 1.3 times the
    logits in all, which are then at most an eighth of the size of
    :math:`W`). BLAS's own
    workspace, a few MB that ``tracemalloc`` does not see, comes on top.
    Inputs that are not C-contiguous or not in the compute dtype are copied
    once first.

    **Threads.** The work is three matrix products per chunk, run by NumPy's
    BLAS, and BLAS owns the threads: the package's own thread pool (see
    :func:`set_num_threads`) is not used here, so the two never
    oversubscribe the cores. Limit BLAS with e.g. ``threadpoolctl``. The
    function keeps no state between calls, so it is safe to call from
    several threads and in forked processes.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import cross_entropy_from_logits, linear_cross_entropy
    >>> features = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    >>> y = [0, 1, 2]
    >>> loss = linear_cross_entropy(features, weight, y)
    >>> print(f"{loss:.6f}")
    1.009408
    >>> print(f"{cross_entropy_from_logits(features @ weight.T, y).mean():.6f}")
    1.009408

    Padding is skipped with ``ignore_index``, and the gradients come along:

    >>> loss, grad_h, grad_w = linear_cross_entropy(
    ...     features, weight, [0, -100, 2], ignore_index=-100, return_grad=True
    ... )
    >>> print(f"{loss:.6f}")
    1.134800
    >>> grad_h[1]
    array([0., 0.])
    """
    reduction = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    if not isinstance(return_grad, bool | np.bool_):
        raise TypeError(f"return_grad must be a bool, got {return_grad!r}")
    if return_grad and reduction == "none":
        raise ValueError(
            "return_grad=True needs a scalar loss: use reduction='mean' or 'sum', "
            "not 'none'"
        )
    h = as_array(features, "features")
    w = as_array(weight, "weight")
    dtype = np.promote_types(
        compute_dtype(h.dtype, "features"), compute_dtype(w.dtype, "weight")
    )
    _check_matrix(h, "features", "(n_samples, d)")
    _check_matrix(w, "weight", "(V, d)")
    (n, d), vocab = h.shape, w.shape[0]
    if w.shape[1] != d:
        raise ValueError(
            f"features has shape {h.shape} and weight has shape {w.shape}: their "
            f"widths d must match ({d} != {w.shape[1]})"
        )
    if vocab < 1:
        raise ValueError(
            f"weight has shape {w.shape}: at least one row (V >= 1) is needed"
        )
    labels = as_labels(y, "y")
    kept = _check_labels(labels, n, vocab, ignore_index)
    # Copies only if needed; the caller's arrays are never written to.
    h = np.ascontiguousarray(h, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    _check_finite(h, "features")
    _check_finite(w, "weight")
    n_kept = int(np.count_nonzero(kept))
    if reduction == "mean":
        check_mean_batch(reduction, n)
        check_kept_rows(reduction, n_kept, ignore_index)
    scale = 1.0 / n_kept if reduction == "mean" else 1.0
    losses = np.zeros(n, dtype=dtype) if reduction == "none" else None
    total = 0.0  # the sum of the kept losses, in float64
    rows = chunk_rows(n, vocab, dtype.itemsize, d)
    if return_grad:
        grad_h = np.empty((n, d), dtype=dtype)
        grad_w = np.zeros((vocab, d), dtype=dtype)  # stays 0 if n = 0
        v_block = vocab_block_rows(rows, vocab, d)
        partial = np.empty((min(v_block, vocab), d), dtype=dtype)
    buffer = np.empty((min(rows, n), vocab), dtype=dtype)
    wide = np.promote_types(dtype, np.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        z = buffer[: stop - start]
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            np.matmul(h[start:stop], w.T, out=z)
        keep = kept[start:stop]
        local = np.arange(stop - start)[keep]
        picked = labels[start:stop][keep]
        m = z.max(axis=1)
        true = z[local, picked].astype(wide)
        if not (np.isfinite(m).all() and np.isfinite(true).all()):
            bad = ~np.isfinite(m)
            bad[local] |= ~np.isfinite(true)
            raise ValueError(
                f"the logits features @ weight.T of row {start + int(np.argmax(bad))} "
                f"overflow {dtype}: scale the inputs down or pass float64"
            )
        np.subtract(z, m[:, None], out=z)
        np.exp(z, out=z)
        s = z.sum(axis=1, dtype=wide)
        # The gap m - z_y first: m + log(s) would round away a small loss.
        chunk_losses = (m[keep].astype(wide) - true) + np.log(s[keep])
        total += float(chunk_losses.sum())
        if losses is not None:
            losses[start:stop][keep] = chunk_losses
        if not return_grad:
            continue
        # z holds exp(z - m); scale each row into s * (softmax - onehot).
        coef = np.where(keep, scale / s, 0.0).astype(dtype)
        z *= coef[:, None]
        z[local, picked] -= dtype.type(scale)
        np.matmul(z, w, out=grad_h[start:stop])
        hc = h[start:stop]
        for v in range(0, vocab, v_block):
            if start == 0:  # the first chunk writes grad_weight directly
                np.matmul(z[:, v : v + v_block].T, hc, out=grad_w[v : v + v_block])
                continue
            block = partial[: min(v_block, vocab - v)]
            np.matmul(z[:, v : v + v_block].T, hc, out=block)
            grad_w[v : v + v_block] += block
    if reduction == "none":
        return losses
    loss = dtype.type(total * scale)
    if return_grad:
        return loss, grad_h, grad_w
    return loss
