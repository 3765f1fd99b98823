"""What the book says about PyTorch's binary cross-entropy, checked against torch.

The binary chapter (book/binary.ipynb) shows PyTorch code without running it;
these tests run that code and compare it with ``ce_tutorial``, and assert the
numbers the chapter quotes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ce_tutorial as ct

from . import strategies as cst
from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional

REDUCTIONS = ["none", "mean", "sum"]
# Two results each within a few ulps of the true value differ by at most this.
EPS8 = 8 * np.finfo(np.float64).eps


def t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64))


@st.composite
def batches(draw, soft: bool):
    """Logits of shape (N, K) with |z| <= 30, targets and a pos_weight of (K,)."""
    z = draw(cst.logits(bound=30.0))
    if soft:
        y = draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0.0, 1.0)))
    else:
        y = draw(hnp.arrays(np.int64, z.shape, elements=st.integers(0, 1)))
    w = draw(hnp.arrays(np.float64, (z.shape[1],), elements=st.floats(0.0, 10.0)))
    return z, y, w


def assert_close(ours, theirs):
    """Equal up to PyTorch's rounding.

    PyTorch computes ``(1 - y) z + (1 + (w - 1) y) (max(-z, 0) + log1p(e^-|z|))``,
    whose terms cancel for negative ``z``: with ``|z| <= 30`` and ``w <= 10`` it
    can be off by a few ulps of 300, about 6e-14, in absolute terms.
    """
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=5e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(batches(soft=False) | batches(soft=True), st.booleans())
def test_with_logits_matches_pytorch(reduction, batch, weighted):
    z, y, w = batch
    pos_weight = w if weighted else None
    theirs = F.binary_cross_entropy_with_logits(
        t(z),
        t(y),
        reduction=reduction,
        pos_weight=t(w) if weighted else None,
    )
    ours = ct.binary_cross_entropy_from_logits(z, y, pos_weight, reduction)
    assert_close(ours, theirs.numpy())
    # the module form computes the same
    module = torch.nn.BCEWithLogitsLoss(
        reduction=reduction, pos_weight=t(w) if weighted else None
    )
    assert_close(ours, module(t(z), t(y)).numpy())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@given(batches(soft=False) | batches(soft=True), st.booleans())
def test_gradient_matches_autograd(reduction, batch, weighted):
    z, y, w = batch
    z_t = t(z).requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(
        z_t, t(y), reduction=reduction, pos_weight=t(w) if weighted else None
    )
    loss.backward()
    ours = ct.binary_cross_entropy_grad(z, y, w if weighted else None, reduction)
    np.testing.assert_allclose(ours, z_t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_sigmoid_and_log_sigmoid_match_pytorch():
    z = np.linspace(-700.0, 700.0, 2801)
    np.testing.assert_allclose(
        ct.sigmoid(z), torch.sigmoid(t(z)).numpy(), rtol=EPS8, atol=0
    )
    np.testing.assert_allclose(
        ct.log_sigmoid(z), F.logsigmoid(t(z)).numpy(), rtol=EPS8, atol=0
    )


def test_probability_loss_clamps_log_at_minus_100():
    # F.binary_cross_entropy clamps each log at -100: a certain, wrong
    # prediction costs 100, where the package returns inf.
    y_hat = t([0.0, 1.0])
    y = t([1.0, 0.0])
    theirs = F.binary_cross_entropy(y_hat, y, reduction="none")
    np.testing.assert_array_equal(theirs.numpy(), [100.0, 100.0])
    ours = ct.binary_cross_entropy([0.0, 1.0], [1.0, 0.0])
    np.testing.assert_array_equal(ours, [np.inf, np.inf])


def test_probability_loss_matches_pytorch_away_from_the_clamp():
    rng = np.random.default_rng(3)
    y_hat = rng.uniform(1e-6, 1 - 1e-6, size=(20, 3))
    y = rng.uniform(size=(20, 3))
    for reduction in REDUCTIONS:
        theirs = F.binary_cross_entropy(t(y_hat), t(y), reduction=reduction)
        ours = ct.binary_cross_entropy(y_hat, y, reduction)
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)


# --- the numbers and statements of book/binary.ipynb, "The libraries" ---------

Z_BOOK = [[2.0, -1.0, 0.5], [-0.5, 3.0, -2.0]]
Y_BOOK = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
POS_WEIGHT_BOOK = [1.0, 2.0, 5.0]


def test_the_chapters_multilabel_numbers():
    z, y, w = t(Z_BOOK), t(Y_BOOK), t(POS_WEIGHT_BOOK)
    mean = F.binary_cross_entropy_with_logits(z, y)
    mean_weighted = F.binary_cross_entropy_with_logits(z, y, pos_weight=w)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=w, reduction="sum")
    quoted = [0.5940, 2.3361, 14.0165]
    theirs = [mean.item(), mean_weighted.item(), loss_fn(z, y).item()]
    assert [round(v, 4) for v in theirs] == quoted
    ours = [
        ct.binary_cross_entropy_from_logits(Z_BOOK, Y_BOOK, reduction="mean"),
        ct.binary_cross_entropy_from_logits(Z_BOOK, Y_BOOK, POS_WEIGHT_BOOK, "mean"),
        ct.binary_cross_entropy_from_logits(Z_BOOK, Y_BOOK, POS_WEIGHT_BOOK, "sum"),
    ]
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)


def test_integer_targets_are_rejected_by_pytorch():
    with pytest.raises(RuntimeError, match=r"can't be cast"):
        F.binary_cross_entropy_with_logits(t(Z_BOOK), t(Y_BOOK).long())


def test_pytorch_gives_nan_at_infinite_logits_except_one_wrong_case():
    # The chapter: nan for z = inf with y = 1 and for z = -inf whatever y;
    # inf for z = inf with y < 1.
    inf = float("inf")
    z = t([inf, -inf, -inf, -inf, inf, inf])
    y = t([1.0, 0.0, 1.0, 0.3, 0.0, 0.3])
    theirs = F.binary_cross_entropy_with_logits(z, y, reduction="none").numpy()
    assert np.isnan(theirs[:4]).all()
    np.testing.assert_array_equal(theirs[4:], [np.inf, np.inf])
    ours = ct.binary_cross_entropy_from_logits(z.numpy(), y.numpy())
    np.testing.assert_array_equal(ours, [0.0, 0.0, np.inf, np.inf, np.inf, np.inf])
