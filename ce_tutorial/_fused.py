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

The function is cut into the steps of one chunk: :func:`_prepare` checks
every input once; :func:`_chunk_logits` computes a chunk's logits (bias and
soft-capping included); :func:`_chunk_forward` its losses;
:func:`_chunk_backward` turns the logits in place into their gradient; and
:func:`_accumulate` adds that chunk's share to the gradients of the inputs.

References
----------
.. [1] E. Wijmans, B. Huval, A. Hertzberg, V. Koltun and P. Krähenbühl,
   "Cut your losses in large-vocabulary language models", arXiv:2411.09009,
   2024.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._validation import (
    as_array,
    as_labels,
    check_ignore_index,
    check_kept_rows,
    check_mean_batch,
    check_reduction,
    check_target_dtype,
    compute_dtype,
    find_label_error,
    ignored_rows,
    raise_first,
)

__all__ = ["linear_cross_entropy"]

# The memory budget of the one chunk buffer, which holds a chunk's logits (and
# then, in place, their gradient). Large chunks keep the three matrix products
# efficient: each product of a chunk repacks all of W inside BLAS, a cost that
# a chunk of few rows does not amortise. The cap of 1/MAX_CHUNK_FRACTION of the
# rows keeps the buffer under a tenth of the N x V logits, and all the memory of
# the call (buffer, grad_weight slice, vectors) under an eighth; when d is
# large, a chunk may still have up to d/WIDTH_PER_CHUNK_ROW rows, a buffer of
# at most an eighth of the V x d weights, because a chunk of few rows makes the
# grad_weight update (inner dimension = the chunk's rows) slow. Constants,
# never changed at run time: the module has no mutable state.
CHUNK_BYTES = 64 << 20
MAX_CHUNK_FRACTION = 11
WIDTH_PER_CHUNK_ROW = 8
# grad_weight is accumulated over chunks in slices of vocabulary rows: each
# slice's product is a temporary of at most about V/VOCAB_BLOCKS rows and at
# most an eighth of the chunk buffer, never a V x d one. Few, large slices keep
# the number of BLAS calls small, which matters when BLAS runs several
# threads: each call ends with the threads waiting for each other. With 4,
# the eighth-of-the-buffer bound is the one that binds at the benchmarked
# shapes (6 slices per chunk at 2048 x 128 x 6405 where 16 made 16).
VOCAB_BLOCKS = 4
# The scale of each row of the logits' gradient is applied to the chunk's
# features (R x d) instead of the buffer (R x V) when V >= FOLD_WIDTH * d.
FOLD_WIDTH = 16
# With soft-capping, the capped logits are exponentiated in blocks of at most
# 1/CAP_BLOCKS of a chunk's rows, into one scratch array of that size.
CAP_BLOCKS = 16


def chunk_rows(n_rows: int, vocab: int, itemsize: int, d: int = 0) -> int:
    """The number of rows of one chunk: the rule documented in the Notes."""
    by_budget = CHUNK_BYTES // max(1, vocab * itemsize)
    by_fraction = -(-n_rows // MAX_CHUNK_FRACTION)
    by_width = d // WIDTH_PER_CHUNK_ROW
    return max(1, min(n_rows, by_budget, max(by_fraction, by_width)))


def vocab_block_rows(rows: int, vocab: int, d: int) -> int:
    """Vocabulary rows per slice of the grad_weight update: at most
    ``ceil(vocab / VOCAB_BLOCKS)``, and at most an eighth of the chunk buffer."""
    by_count = -(-vocab // VOCAB_BLOCKS)
    by_chunk = rows * vocab // max(1, 8 * d)
    return max(1, min(by_count, by_chunk))


def unshifted_limit(dtype: np.dtype) -> float:
    """``log(max) / 4`` of ``dtype``: rows whose logits stay within it skip the shift.

    Then ``exp`` of every logit, their sum over a vocabulary of up to
    ``exp(log(max) / 2)`` entries, and ``exp(-z_y)`` are all finite, and a
    term lost to underflow is worth less than ``tiny * exp(limit)``.
    """
    return float(np.log(np.finfo(dtype).max)) / 4


def bound_limit(dtype: np.dtype, vocab: int) -> float:
    """How large a bound on every logit of a row may be for that row to need
    neither its maximum nor a shift: ``V exp(limit)`` is finite in ``dtype``,
    and ``V exp(limit) exp(unshifted_limit)`` in at least float64."""
    log_v = float(np.log(vocab))
    log_max = float(np.log(np.finfo(dtype).max))
    log_wide = float(np.log(np.finfo(np.promote_types(dtype, np.float64)).max))
    return min(log_max - log_v - 1, log_wide - log_v - unshifted_limit(dtype) - 1)


def _row_bounds(h: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    r"""A bound on :math:`|z_{ij}|` for every row :math:`i`, by Cauchy-Schwarz:
    :math:`\|\mathbf{h}^{(i)}\| \max_j \|\mathbf{w}_j\| + \max_j |b_j|`, with
    room for the rounding of the products. Computed without a temporary of
    the inputs' size; an overflow gives ``inf``, a bound no row passes."""
    with np.errstate(over="ignore", invalid="ignore"):
        h_norm = np.sqrt(np.einsum("ij,ij->i", h, h))
        w_norm = np.sqrt(np.einsum("ij,ij->i", w, w).max(initial=0))
        room = 1 + 4 * (h.shape[1] + 2) * float(np.finfo(h.dtype).eps)
        bound = (h_norm.astype(np.float64) * float(w_norm)) * room
        if bias is not None:
            bound += float(np.abs(bias).max(initial=0)) * room
    return bound


# --- checking the inputs ------------------------------------------------------


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
    index = np.unravel_index(int(np.argmin(np.isfinite(x))), x.shape)
    where = ", ".join(str(int(i)) for i in index)
    raise ValueError(
        f"{name}[{where}] = {x[index]} is not finite; {name} must hold finite numbers"
    )


def _check_labels(
    y: np.ndarray, n_samples: int, vocab: int, ignore_index: int | None
) -> np.ndarray:
    """Check the labels; return the boolean mask of the rows that count.

    The dtype goes through the package's one gate, ``check_target_dtype``
    (bool, timedelta64, datetime64, floats and objects are refused, although
    NumPy counts timedelta64 as an integer type). The labels must have shape
    ``(n_samples,)`` and lie in ``[0, vocab)`` or equal ``ignore_index``; the
    range check and its message are those of ``cross_entropy_from_logits``.
    """
    check_target_dtype(y, "y", "labels")
    if y.shape != (n_samples,):
        raise ValueError(
            f"y has shape {y.shape}, but features has {n_samples} rows: "
            f"expected shape ({n_samples},)"
        )
    raise_first(find_label_error(y, vocab, "y", ignore_index))
    skipped = ignored_rows(y, ignore_index)
    return np.ones(n_samples, dtype=bool) if skipped is None else ~skipped


def _check_scalar(value: object, name: str, rule: str) -> float:
    """A real, finite number, as a float; ``rule`` names the allowed range."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number ({rule}), got {value!r}")
    if not np.isfinite(float(value)):
        raise ValueError(f"{name} must be finite ({rule}), got {value!r}")
    return float(value)


def _check_options(
    reduction: object,
    ignore_index: object,
    return_grad: object,
    z_loss: object,
    softcap: object,
) -> tuple[str, int | None, float, float | None]:
    """Check the options that are not arrays; return them normalised."""
    reduction = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    if not isinstance(return_grad, bool | np.bool_):
        raise TypeError(f"return_grad must be a bool, got {return_grad!r}")
    if return_grad and reduction == "none":
        raise ValueError(
            "return_grad=True needs a scalar loss: use reduction='mean' or 'sum', "
            "not 'none'"
        )
    lam = _check_scalar(z_loss, "z_loss", "z_loss >= 0")
    if lam < 0:
        raise ValueError(f"z_loss must be >= 0, got {z_loss!r}")
    cap = None
    if softcap is not None:
        cap = _check_scalar(softcap, "softcap", "None or softcap > 0")
        if cap <= 0:
            raise ValueError(f"softcap must be None or > 0, got {softcap!r}")
    return reduction, ignore_index, lam, cap


def _check_bias(bias: npt.ArrayLike, vocab: int) -> np.ndarray:
    b = as_array(bias, "bias")
    compute_dtype(b.dtype, "bias")  # real numbers only
    if b.shape != (vocab,):
        raise ValueError(
            f"bias has shape {b.shape}, but weight has {vocab} rows: "
            f"expected shape ({vocab},)"
        )
    return b


@dataclass(frozen=True)
class _Head:
    """The checked inputs of one call, in the compute dtype."""

    h: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    labels: np.ndarray
    kept: np.ndarray
    n_kept: int
    dtype: np.dtype
    wide: np.dtype  # at least float64: per-row arithmetic and the total
    reduction: str
    scale: float  # dL / d(loss of a kept row): 1 / n_kept for the mean, else 1
    z_loss: float
    softcap: float | None
    bounds: np.ndarray  # a bound on every |logit| of each row, see _row_bounds
    w_max: float  # the largest |weight|


def _prepare(
    features, weight, y, bias, reduction, ignore_index, z_loss, softcap
) -> _Head:
    """Check every input; return them as C-contiguous arrays of one dtype."""
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
    b = None if bias is None else _check_bias(bias, vocab)
    if b is not None:
        dtype = np.promote_types(dtype, compute_dtype(b.dtype, "bias"))
    labels = as_labels(y, "y")
    kept = _check_labels(labels, n, vocab, ignore_index)
    # Copies only if needed; the caller's arrays are never written to.
    h = np.ascontiguousarray(h, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    _check_finite(h, "features")
    _check_finite(w, "weight")
    if b is not None:
        b = np.ascontiguousarray(b, dtype=dtype)
        _check_finite(b, "bias")
    n_kept = int(np.count_nonzero(kept))
    if reduction == "mean":
        check_mean_batch(reduction, n)
        check_kept_rows(reduction, n_kept, ignore_index)
    w_max = float(max(-w.min(initial=0), w.max(initial=0))) if w.size else 0.0
    return _Head(
        h=h,
        w=w,
        bias=b,
        labels=labels,
        kept=kept,
        n_kept=n_kept,
        dtype=dtype,
        wide=np.promote_types(dtype, np.float64),
        reduction=reduction,
        scale=1.0 / n_kept if reduction == "mean" else 1.0,
        z_loss=z_loss,
        softcap=softcap,
        bounds=_row_bounds(h, w, b),
        w_max=w_max,
    )


# --- one chunk ----------------------------------------------------------------


@dataclass
class _Rows:
    """What the forward pass of a chunk leaves for its backward pass.

    ``local`` and ``picked`` index the kept rows and their labels within the
    chunk; the other vectors have one entry per kept row, in ``wide`` unless
    said otherwise.
    """

    local: np.ndarray
    picked: np.ndarray
    shift: np.ndarray  # per row of the chunk, dtype: 0 or the row's maximum
    e_true: np.ndarray  # exp(z_y - shift)
    rest: np.ndarray  # the sum of exp(z_j - shift) over j != y
    lse: np.ndarray  # logsumexp of the row's logits
    losses: np.ndarray
    t_true: np.ndarray | None = None  # with softcap: tanh of the true raw logit


def _chunk_logits(head: _Head, start: int, stop: int, z: np.ndarray) -> None:
    """Write the chunk's logits into ``z``: ``h W^T + b``, or with soft-capping
    ``tanh((h W^T + b) / c)``, the capped logits divided by ``c``."""
    with np.errstate(over="ignore", invalid="ignore"):  # checked by the forward
        np.matmul(head.h[start:stop], head.w.T, out=z)
        if head.bias is not None:
            z += head.bias
        if head.softcap is not None:
            z /= head.dtype.type(head.softcap)
            np.tanh(z, out=z)


def _overflow_error(head: _Head, row: int) -> ValueError:
    what = "features @ weight.T" + (" + bias" if head.bias is not None else "")
    return ValueError(
        f"the logits {what} of row {row} overflow {head.dtype}: scale the "
        f"inputs down or pass float64"
    )


def _shifts(head: _Head, m: np.ndarray, true: np.ndarray, local) -> np.ndarray:
    """0 for the rows that are exponentiated as they are, else the row maximum.

    A row needs no shift when its maximum and its true-class logit lie within
    :func:`unshifted_limit` of 0; the pass that subtracts the maxima is then
    skipped for the whole chunk.
    """
    limit = unshifted_limit(head.dtype)
    far = np.abs(m) > limit
    far[local] |= true < -limit
    return np.where(far, m, head.dtype.type(0))


def _capped_exp(head, t, shift, shifted, r0, r1, out) -> np.ndarray:
    """``exp(c t - shift)`` of rows ``r0:r1`` of the capped logits ``t``."""
    e = out[: r1 - r0]
    np.multiply(t[r0:r1], head.dtype.type(head.softcap), out=e)
    # z - shift below -max is -inf, whose exp, 0, is the right answer.
    with np.errstate(over="ignore", under="ignore"):
        if shifted:
            e -= shift[r0:r1, None]
        return np.exp(e, out=e)


def _row_blocks(n_rows: int) -> list[tuple[int, int]]:
    """Contiguous blocks of at most ``ceil(n_rows / CAP_BLOCKS)`` rows."""
    step = max(1, -(-n_rows // CAP_BLOCKS))
    return [(r0, min(r0 + step, n_rows)) for r0 in range(0, n_rows, step)]


def _exp_rest(head, z, shift, shifted, rows, scratch) -> np.ndarray:
    """Sum ``exp(z_j - shift)`` over each row but its true class.

    Without soft-capping, ``z`` is exponentiated in place (the true class's
    entry left at 0, for the backward pass). With it, ``z`` keeps the capped
    logits and the exponentials go through ``scratch``, a few rows at a time.
    """
    local, picked = rows
    if head.softcap is None:
        # z - shift below -max is -inf, whose exp, 0, is the right answer.
        with np.errstate(over="ignore", under="ignore"):
            if shifted:
                z -= shift[:, None]
            np.exp(z, out=z)
        z[local, picked] = 0.0
        return np.add.reduce(z, axis=1)
    rest = np.empty(z.shape[0], dtype=head.dtype)
    label = np.zeros(z.shape[0], dtype=np.intp)  # any column, for skipped rows
    label[local] = picked
    kept = np.zeros(z.shape[0], dtype=bool)
    kept[local] = True
    for r0, r1 in _row_blocks(z.shape[0]):
        e = _capped_exp(head, z, shift, shifted, r0, r1, scratch)
        inside = np.flatnonzero(kept[r0:r1])
        e[inside, label[r0:r1][inside]] = 0.0
        np.add.reduce(e, axis=1, out=rest[r0:r1])
    return rest


def _chunk_forward(head: _Head, z: np.ndarray, start: int, stop: int, scratch) -> _Rows:
    """The losses of the chunk whose logits are in ``z``; validates them.

    With :math:`r` the sum of :math:`e^{z_j - \\text{shift}}` over the
    other classes and :math:`t = z_y - \\text{shift}`, the loss is
    :math:`\\log(1 + r e^{-t})` (``log1p``: accurate relative to its size),
    or :math:`-t + \\log(e^{t} + r)` when :math:`e^{-t}` would be too large,
    which happens only for shifted rows whose loss is then large.
    """
    dtype, wide = head.dtype, head.wide
    keep = head.kept[start:stop]
    local = np.flatnonzero(keep)
    picked = head.labels[start:stop][keep]
    cap = dtype.type(1 if head.softcap is None else head.softcap)
    t_true = z[local, picked]
    true = t_true * cap
    bound = head.bounds[start:stop].max(initial=0)
    if (
        head.softcap is None
        and bound <= bound_limit(dtype, z.shape[1])
        and not (true < -unshifted_limit(dtype)).any()
    ):
        # Every logit is known to be small: no maximum, no shift, no overflow.
        shift, shifted = np.zeros(z.shape[0], dtype=dtype), False
    else:
        m = z.max(axis=1) * cap
        if not (np.isfinite(m).all() and np.isfinite(true).all()):
            bad = ~np.isfinite(m)
            bad[local] |= ~np.isfinite(true)
            raise _overflow_error(head, start + int(np.argmax(bad)))
        shift = _shifts(head, m, true, local)
        shifted = bool(shift.any())
    rest_all = _exp_rest(head, z, shift, shifted, (local, picked), scratch)
    with np.errstate(over="ignore", under="ignore"):
        t = true.astype(wide) - shift[local].astype(wide)
        rest = rest_all[local].astype(wide)
        e_true = np.exp(t)
        near = t >= -unshifted_limit(wide)
        x = rest * np.exp(-np.where(near, t, 0))
        losses = np.where(near, np.log1p(x), np.log(e_true + rest) - t)
        lse = shift[local].astype(wide) + np.log(e_true + rest)
        if head.z_loss:
            losses += head.z_loss * lse * lse
    return _Rows(
        local,
        picked,
        shift,
        e_true,
        rest,
        lse,
        losses,
        None if head.softcap is None else t_true,
    )


def _chunk_backward(
    head: _Head, z: np.ndarray, rows: _Rows, scratch
) -> np.ndarray | None:
    r"""Turn the chunk's buffer into :math:`G = \partial L / \partial Z`, or
    into :math:`G` with its rows divided by ``coef``, which is then returned.

    Row :math:`i` of :math:`G` is :math:`c_i \bigl((1 + 2\lambda \,
    \mathrm{lse}_i) \operatorname{softmax}(\mathbf{z}^{(i)}) -
    \operatorname{onehot}(y^{(i)})\bigr)`, with :math:`c_i` the reduction's
    scale (0 on skipped rows). So row :math:`i` is a multiple,
    ``coef[i]`` :math:`= c_i (1 + 2 \lambda \, \mathrm{lse}_i) / S_i`, of the
    exponentials already in the buffer, except at the true class, whose entry
    is computed as :math:`(2 \lambda \, \mathrm{lse}_i \, e_y - r) / (1 + 2
    \lambda \, \mathrm{lse}_i)` times ``coef[i]``, without the cancellation of
    :math:`p_y - 1`. That multiple is left to :func:`_accumulate`, which
    applies it to matrices of :math:`d` columns instead of this one of
    :math:`V` (a pass saved), unless a product with the unscaled rows could
    overflow. With soft-capping, every entry is multiplied by :math:`1 - t^2`,
    the derivative of :math:`c \tanh(u / c)`, here.
    """
    dtype = head.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        total = rows.e_true + rows.rest
        factor = 1 + 2 * head.z_loss * rows.lse
        coef = np.zeros(z.shape[0], dtype=dtype)
        coef[rows.local] = head.scale * factor / total
        g_true = (2 * head.z_loss * rows.lse * rows.e_true - rows.rest) / factor
        g_true = g_true.astype(dtype)
        if head.softcap is not None:
            _capped_backward(head, z, rows, coef, scratch)
            g_true *= coef[rows.local] * (1 - rows.t_true * rows.t_true)
            z[rows.local, rows.picked] = g_true
            return None
        z[rows.local, rows.picked] = g_true
        # Folding needs a scaled copy of the chunk's features, R x d: only
        # when that is small next to the buffer. Row i of the buffer sums to
        # about S_i, so a product with W stays finite when S_i max|W| does.
        small = FOLD_WIDTH * head.h.shape[1] <= z.shape[1]
        if small and 4 * float(total.max(initial=0)) * head.w_max < np.finfo(dtype).max:
            return coef
        z *= coef[:, None]  # NaN, if any, is checked at the end
    return None


def _capped_backward(head, t, rows, coef, scratch) -> None:
    """``t <- coef * exp(c t - shift) * (1 - t^2)``, a few rows at a time."""
    shifted = bool(rows.shift.any())
    for r0, r1 in _row_blocks(t.shape[0]):
        e = _capped_exp(head, t, rows.shift, shifted, r0, r1, scratch)
        e *= coef[r0:r1, None]
        block = t[r0:r1]
        np.multiply(block, block, out=block)
        np.subtract(head.dtype.type(1), block, out=block)
        block *= e


@dataclass
class _Grads:
    """The gradients being accumulated, and the scratch slice of grad_weight."""

    h: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    slice_rows: int
    partial: np.ndarray


def _accumulate(
    head: _Head, g: np.ndarray, start: int, stop: int, grads, coef=None
) -> None:
    r"""Add the chunk's share, :math:`G_g W` and :math:`G_g^\top \Phi_g`.

    :math:`G_g W` is written straight into its rows of ``grad_features``.
    The first chunk writes :math:`G_g^\top \Phi_g` into ``grad_weight`` in
    one product; the others add theirs one slice of vocabulary rows at a
    time, so that no :math:`V \times d` temporary is made. The bias's
    gradient gains the column sums of :math:`G_g`. If ``coef`` is given,
    :math:`G_g` is the buffer ``g`` with row ``i`` multiplied by ``coef[i]``:
    the rows of :math:`G_g W` are scaled after the product, and those of
    :math:`\Phi_g` before the other.
    """
    hc = head.h[start:stop]
    out = grads.h[start:stop]
    with np.errstate(over="ignore", invalid="ignore"):  # NaN checked at the end
        _grad_features(g, head.w, out, grads.partial)
        if coef is not None:
            out *= coef[:, None]
            hc = hc * coef[:, None]
        if start == 0:  # one product, straight into grad_weight
            np.matmul(g.T, hc, out=grads.w)
        step = grads.slice_rows
        for v in range(0, g.shape[1] if start else 0, step):
            block = grads.partial[: min(step, g.shape[1] - v)]
            np.matmul(g[:, v : v + step].T, hc, out=block)
            grads.w[v : v + step] += block
        if grads.bias is not None:
            grads.bias += np.add.reduce(g, axis=0) if coef is None else coef @ g


def _grad_features(g: np.ndarray, w: np.ndarray, out: np.ndarray, scratch) -> None:
    """``out <- g @ w``, computed as ``(w.T @ g.T).T`` when ``scratch`` has room.

    Both are the same product; OpenBLAS threads the second one better for a
    chunk of few rows and a long inner dimension ``V``, and much better when
    another process holds a core (see benchmarks/README.md). The transpose
    back into ``out`` is a pass over ``R x d`` numbers, not ``R x V``.
    """
    if scratch.size < out.size:
        np.matmul(g, w, out=out)
        return
    transposed = scratch.reshape(-1)[: out.size].reshape(out.shape[::-1])
    np.matmul(w.T, g.T, out=transposed)
    out[...] = transposed.T


class _Total:
    """The sum of the kept losses, in ``wide``, safe from overflow.

    A sum that overflows while every loss is finite is kept a second time,
    scaled by ``2**-64`` (exactly), so that the mean of finite losses is
    finite: three losses of 1e308 average to 1e308.
    """

    SCALE = 2.0**-64

    def __init__(self, wide: np.dtype):
        self.plain = wide.type(0)
        self.scaled = wide.type(0)
        self.any_inf = False

    def add(self, losses: np.ndarray) -> None:
        with np.errstate(over="ignore", under="ignore"):
            self.plain += losses.sum()
            self.scaled += (losses * self.SCALE).sum()
        self.any_inf = self.any_inf or bool(np.isinf(losses).any())

    def reduce(self, head: _Head) -> np.floating:
        value = self.plain
        with np.errstate(over="ignore"):
            if head.reduction == "mean":
                if np.isfinite(value) or self.any_inf:
                    value = value / head.n_kept
                else:
                    value = self.scaled / head.n_kept / self.SCALE
            return head.dtype.type(value)


def _check_gradients(head: _Head, grads: _Grads) -> None:
    """NaN in a gradient means an intermediate sum overflowed: raise."""
    found = [("grad_features", grads.h), ("grad_weight", grads.w)]
    if grads.bias is not None:
        found.append(("grad_bias", grads.bias))
    for name, g in found:
        if g.size and np.isnan(g.max()):
            raise ValueError(
                f"{name} overflows {head.dtype} (an intermediate sum left its "
                f"range): scale the inputs down or pass float64"
            )


def linear_cross_entropy(
    features: npt.ArrayLike,
    weight: npt.ArrayLike,
    y: npt.ArrayLike,
    reduction: str = "mean",
    ignore_index: int | None = None,
    return_grad: bool = False,
    *,
    bias: npt.ArrayLike | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> np.ndarray | np.floating | tuple:
    r"""The cross-entropy of ``features @ weight.T``, without the full logits.

    Example :math:`i` has features :math:`\mathbf{h}^{(i)}` (row ``i`` of
    ``features``) and logits :math:`\mathbf{z}^{(i)} = W \mathbf{h}^{(i)}`, one
    per token of a vocabulary of :math:`V`; its loss is

    .. math:: \ell^{(i)} = \log \sum_{k=0}^{V-1} e^{z^{(i)}_k} - z^{(i)}_{y^{(i)}},

    the same as ``cross_entropy_from_logits(features @ weight.T, y)``. The
    :math:`N \times V` matrix of logits is never formed. Three options of
    large-vocabulary training change the logits or the loss: a ``bias``,
    an auxiliary ``z_loss`` and logit soft-capping (``softcap``).

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
    bias : array_like of shape (V,), optional
        Added to every row's logits, :math:`\mathbf{z} = W \mathbf{h} +
        \mathbf{b}`. Finite real numbers.
    z_loss : float, default=0.0
        :math:`\lambda \ge 0`: each kept row's loss gains
        :math:`\lambda \, (\log Z)^2`, with :math:`\log Z =
        \log \sum_k e^{z_k}` the log-sum-exp of its logits (PaLM's auxiliary
        loss, which keeps :math:`\log Z` near 0).
    softcap : float or None, default=None
        ``None``, or :math:`c > 0`: the logits are soft-capped to
        :math:`c \tanh(z / c)`, within :math:`(-c, c)`, before everything
        else (bias included in :math:`z`), as in Gemma 2.

    Returns
    -------
    loss : ndarray of shape (n_samples,), or scalar
        The losses, their mean or their sum, in the compute dtype: float32
        in, float32 out; float16 computes in float32, integers in float64.
        The mean and the sum are accumulated in at least float64.
    grad_features : ndarray of shape (n_samples, d)
        Only with ``return_grad=True``: :math:`\partial L / \partial
        \mathbf{h}^{(i)}`, in the compute dtype.
    grad_weight : ndarray of shape (V, d)
        Only with ``return_grad=True``: :math:`\partial L / \partial W`.
    grad_bias : ndarray of shape (V,)
        Only with ``return_grad=True`` and a ``bias``: :math:`\partial L /
        \partial \mathbf{b}`.

    Raises
    ------
    TypeError
        If ``features``, ``weight`` or ``bias`` is not real-valued, ``y`` is
        not integer (bool, timedelta64, datetime64 and float labels are not),
        ``ignore_index`` is not an integer or None, ``return_grad`` is not a
        bool, or ``z_loss`` or ``softcap`` is not a real number.
    ValueError
        If ``features`` or ``weight`` is not 2-D or holds NaN or inf (the
        message names which), their widths ``d`` differ, ``V = 0``, ``bias``
        has a shape other than ``(V,)`` or holds NaN or inf, ``y`` has the
        wrong shape or a label outside ``0 <= y < V`` that is not
        ``ignore_index``, ``reduction`` is unknown, ``return_grad=True`` with
        ``reduction="none"``, ``reduction="mean"`` has no row to average
        (an empty batch, or every row skipped; PyTorch returns NaN there),
        ``z_loss`` is negative or not finite, ``softcap`` is not finite or
        ``<= 0``, the logits overflow the compute dtype, or a gradient's
        intermediate sums do.

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
    features :math:`\mathbf{h}^{(i)}` as rows, and the bias. Each row's loss
    is computed from :math:`t = z_y - \text{shift}` and the sum :math:`r` of
    :math:`e^{z_k - \text{shift}}` over the other classes, as
    :math:`\log(1 + r e^{-t})` with ``log1p``, the form
    :func:`cross_entropy_from_logits` uses: a tiny loss (a confident, right
    prediction) keeps its relative accuracy, where :math:`(m - z_y) +
    \log s` would round it to 0. The shift is 0 when the row's largest logit
    :math:`m` and :math:`z_y` lie within :math:`\log(\text{max}) / 4` of 0
    (88.7 / 4 in float32), which saves a pass; otherwise it is :math:`m`.
    With ``return_grad``, the buffer is then turned in place into the
    gradient with respect to the logits,

    .. math:: G_g = c \, \bigl((1 + 2 \lambda \log Z) \operatorname{softmax}(Z_g)
        - \operatorname{onehot}(y_g)\bigr),

    row by row, with :math:`c = 1/N_\text{kept}` for the mean, 1 for the sum,
    and 0 on skipped rows (:math:`\lambda` is ``z_loss``), and the chain rule
    through :math:`Z = \Phi W^\top + \mathbf{1} \mathbf{b}^\top` gives

    .. math:: \frac{\partial L}{\partial \Phi_g} = G_g W, \qquad
        \frac{\partial L}{\partial W} = \sum_g G_g^\top \Phi_g, \qquad
        \frac{\partial L}{\partial \mathbf{b}} = \sum_g G_g^\top \mathbf{1}.

    :math:`G_g W` is written straight into its rows of ``grad_features``.
    :math:`G_g^\top \Phi_g` is added into ``grad_weight`` one slice of
    vocabulary rows at a time (the first chunk writes it directly, in one
    product), so no :math:`V \times d` temporary is made. A slice has
    :math:`v = \max(1, \min(\lceil V/4 \rceil, \lfloor R V / (8 d) \rfloor))`
    rows, at most an eighth of the chunk buffer.

    **Soft-capping.** With ``softcap`` :math:`= c`, the buffer holds
    :math:`t = \tanh(u / c)` of the raw logits :math:`u`, the logits are
    :math:`c\,t`, and their exponentials go through a scratch array of
    :math:`\lceil R / 16 \rceil` rows. The chain rule multiplies
    :math:`G_g` by :math:`\partial (c \tanh(u/c)) / \partial u = 1 - t^2`.

    **Skipped rows.** Rows whose label is ``ignore_index`` are still checked:
    their logits are computed with their chunk, and a skipped row whose
    logits overflow raises, as in :func:`cross_entropy_from_logits`.

    **Overflow.** The logits overflowing raise ``ValueError``. A loss, a sum
    or a gradient entry whose true value lies beyond the compute dtype is
    ``inf``, without a warning; the mean of finite losses is finite (a sum
    that overflows is kept scaled as well). A gradient whose intermediate
    sums overflow into NaN raises.

    **The memory budget.** With :math:`b` bytes per number, a chunk has

    .. math:: R = \max\Bigl(1, \min\Bigl(N, \Bigl\lfloor \frac{64\,\text{MiB}}{V b}
        \Bigr\rfloor, \max\bigl(\lceil N / 11 \rceil, \lfloor d / 8 \rfloor\bigr)
        \Bigr)\Bigr)

    rows: at most 64 MiB of logits, and at most an eleventh of the batch,
    unless :math:`d` is so large that an eleventh of the batch is fewer than
    :math:`d/8` rows; then the chunk may have up to :math:`d/8` rows, a
    buffer of at most an eighth of the size of :math:`W`, because chunks of
    few rows make the ``grad_weight`` update slow. The extra memory beyond
    the returned arrays is that buffer, one slice of the ``grad_weight``
    update (at most an eighth of the buffer, or one row of :math:`W` if that
    is more), with ``softcap`` a scratch array of a sixteenth of the buffer,
    a few vectors of length :math:`N` and some 100 kB of small objects. When
    :math:`N \ge 1024`, :math:`N \ge 2d` and :math:`V \ge 1000`, the buffer
    is at most :math:`\lceil N/11 \rceil / N \le 1/11 + 1/N` of the logits,
    and the whole under an eighth (the 64 MiB budget only lowers it). For
    smaller batches the fraction is larger, since a chunk has at least one
    row and :math:`\lceil N/11 \rceil` rounds up, and the fixed costs weigh
    more; so it is when :math:`d` is large next to :math:`N`, where the
    buffer is bounded by :math:`W` instead (when :math:`d/8 \ge N`, the whole
    batch is one chunk, about 1.2 times the logits in all, which are then at
    most an eighth of the size of :math:`W`). BLAS's own workspace, a few MB
    that ``tracemalloc`` does not see, comes on top.
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

    A bias is added to every row's logits, and its gradient comes fourth:

    >>> bias = np.array([0.5, 0.0, -0.5])
    >>> loss, grad_h, grad_w, grad_b = linear_cross_entropy(
    ...     features, weight, y, bias=bias, return_grad=True
    ... )
    >>> print(f"{loss:.6f}")
    1.133466
    >>> print(f"{cross_entropy_from_logits(features @ weight.T + bias, y).mean():.6f}")
    1.133466
    >>> grad_b.round(6)
    array([ 0.160549,  0.023349, -0.183898])

    The z-loss adds :math:`\lambda (\log Z)^2` to each row's loss:

    >>> from ce_tutorial import logsumexp
    >>> log_z = logsumexp(features @ weight.T, axis=1)
    >>> plain = linear_cross_entropy(features, weight, y)
    >>> print(f"{linear_cross_entropy(features, weight, y, z_loss=1e-2):.6f}")
    1.052936
    >>> print(f"{plain + 1e-2 * np.mean(log_z**2):.6f}")
    1.052936

    Soft-capping bounds every logit within :math:`(-c, c)`; a large logit of
    100 counts as about 30 with ``softcap=30``:

    >>> big = np.array([[100.0, 0.0]])
    >>> print(f"{linear_cross_entropy(big, np.eye(2), [1], softcap=30.0):.4f}")
    29.9237
    >>> print(f"{30 * np.tanh(100 / 30):.4f}")
    29.9237

    A confident, right prediction keeps its tiny loss, :math:`\log(1 +
    e^{-40})`, where :math:`m + \log s - z_y` would give 0:

    >>> linear_cross_entropy([[1.0]], [[40.0], [0.0]], [0], "none")
    array([4.24835426e-18])
    """
    reduction, ignore_index, lam, cap = _check_options(
        reduction, ignore_index, return_grad, z_loss, softcap
    )
    head = _prepare(features, weight, y, bias, reduction, ignore_index, lam, cap)
    (n, d), vocab, dtype = head.h.shape, head.w.shape[0], head.dtype
    rows = chunk_rows(n, vocab, dtype.itemsize, d)
    buffer = np.empty((min(rows, n), vocab), dtype=dtype)
    scratch = None
    if cap is not None:
        scratch = np.empty((_row_blocks(min(rows, n))[0][1], vocab), dtype=dtype)
    losses = np.zeros(n, dtype=dtype) if reduction == "none" else None
    total = _Total(head.wide)
    grads = None
    if return_grad:
        slice_rows = vocab_block_rows(rows, vocab, d)
        grads = _Grads(
            h=np.empty((n, d), dtype=dtype),
            w=np.zeros((vocab, d), dtype=dtype),  # stays 0 if n = 0
            bias=None if bias is None else np.zeros(vocab, dtype=dtype),
            slice_rows=slice_rows,
            partial=np.empty((min(slice_rows, vocab), d), dtype=dtype),
        )
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        z = buffer[: stop - start]
        _chunk_logits(head, start, stop, z)
        found = _chunk_forward(head, z, start, stop, scratch)
        total.add(found.losses)
        if losses is not None:
            with np.errstate(over="ignore"):
                losses[start:stop][found.local] = found.losses
        if grads is not None:
            coef = _chunk_backward(head, z, found, scratch)
            _accumulate(head, z, start, stop, grads, coef)
    if reduction == "none":
        return losses
    loss = total.reduce(head)
    if grads is None:
        return loss
    _check_gradients(head, grads)
    if grads.bias is None:
        return loss, grads.h, grads.w
    return loss, grads.h, grads.w, grads.bias
