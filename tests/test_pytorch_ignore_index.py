"""``ignore_index`` of ``cross_entropy_from_logits`` and ``cross_entropy_grad``,
checked against PyTorch's ``F.cross_entropy(..., ignore_index=-100)``.

The losses are compared for every reduction, and the gradients against
autograd. Where the two libraries part ways on purpose (a mean over no kept
row, NaN in a skipped row, ``ignore_index`` with probability targets), the
test pins down what PyTorch does, as the docstrings state it.
"""

from __future__ import annotations

import numpy as np
import pytest

import ce_tutorial as ct

from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional

REDUCTIONS = ["none", "mean", "sum"]
# Relative tolerances, about 8 ulps of float32 and 450 of float64 (the sums
# add thousands of terms in different orders). The gradient's entries are at
# most 1 in size, so the same numbers serve as its absolute tolerances.
TOLERANCE = {np.float64: 1e-13, np.float32: 1e-6}


def _case(n, c, dtype, seed, ignore_index=-100, fraction=0.3):
    """Logits, labels with about ``fraction`` of them set to ``ignore_index``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, c)).astype(dtype)
    y = rng.integers(0, c, size=n)
    y[rng.uniform(size=n) < fraction] = ignore_index
    return z, y


def _torch(z, y, reduction, ignore_index=-100):
    """PyTorch's loss and the autograd gradient of its reduced value."""
    zt = torch.tensor(z, requires_grad=True)
    loss = F.cross_entropy(
        zt, torch.tensor(y), reduction=reduction, ignore_index=ignore_index
    )
    # For "none", the gradient of the sum: row i of it is d loss_i / d z_i.
    loss.sum().backward()
    return loss.detach().numpy(), zt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("n", "c", "seed"), [(7, 3, 0), (300, 50, 1), (2000, 17, 2)])
def test_loss_and_gradient_agree_with_pytorch(dtype, reduction, n, c, seed):
    z, y = _case(n, c, dtype, seed)
    want_loss, want_grad = _torch(z, y, reduction)
    loss = ct.cross_entropy_from_logits(z, y, reduction, ignore_index=-100)
    grad = ct.cross_entropy_grad(z, y, reduction, ignore_index=-100)
    tol = TOLERANCE[dtype]
    assert loss.dtype == grad.dtype == dtype
    # PyTorch's log_softmax, z - m - log(s), is accurate to a few ulps of the
    # logits' size, not of a small loss (ours is: see the module's
    # docstring). In float32, row 1160's loss of 0.00403 differs between the
    # two by 2e-5 of itself, ours being within an ulp of the float64 value.
    # Hence the absolute term.
    scale = float(np.abs(z).max())
    np.testing.assert_allclose(loss, want_loss, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol)
    # Both libraries give a skipped row exactly zero loss and zero gradient.
    skipped = y == -100
    np.testing.assert_array_equal(want_grad[skipped], 0.0)
    np.testing.assert_array_equal(grad[skipped], 0.0)
    if reduction == "none":
        np.testing.assert_array_equal(want_loss[skipped], 0.0)
        np.testing.assert_array_equal(loss[skipped], 0.0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_an_in_range_ignore_index_skips_that_class_as_in_pytorch(reduction):
    z, y = _case(50, 4, np.float64, seed=3, fraction=0.0)
    want_loss, want_grad = _torch(z, y, reduction, ignore_index=1)
    assert (y == 1).any()
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(z, y, reduction, ignore_index=1),
        want_loss,
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        ct.cross_entropy_grad(z, y, reduction, ignore_index=1),
        want_grad,
        rtol=1e-13,
        atol=1e-13,
    )


def test_every_row_skipped_pytorch_mean_is_nan_and_ours_raises():
    z, y = _case(5, 3, np.float64, seed=4, fraction=1.0)
    assert (y == -100).all()
    assert np.isnan(_torch(z, y, "mean")[0])
    with pytest.raises(ValueError, match=r"every label equals ignore_index = -100"):
        ct.cross_entropy_from_logits(z, y, "mean", ignore_index=-100)
    for reduction in ("none", "sum"):
        want_loss, want_grad = _torch(z, y, reduction)
        np.testing.assert_array_equal(
            ct.cross_entropy_from_logits(z, y, reduction, ignore_index=-100),
            want_loss,
        )
        np.testing.assert_array_equal(
            ct.cross_entropy_grad(z, y, reduction, ignore_index=-100), want_grad
        )


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (np.nan, r"logits\[2\] contains NaN"),
        (np.inf, r"logits\[2\] contains \+inf"),
        (-np.inf, r"logits\[2\] is -inf in every class"),
    ],
)
def test_pytorch_gives_nan_gradients_for_bad_logits_in_a_skipped_row(value, pattern):
    # The docstrings' reason to validate skipped rows: PyTorch's loss does not
    # depend on them, but its gradient of such a row is NaN.
    z, y = _case(4, 3, np.float64, seed=5, fraction=0.0)
    y[2] = -100
    if value == -np.inf:
        z[2] = value  # the whole row
    else:
        z[2, 1] = value
    loss, grad = _torch(z, y, "mean")
    assert np.isfinite(loss)
    assert np.isnan(grad[2]).all()
    for f in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
        with pytest.raises(ValueError, match=pattern):
            f(z, y, "mean", ignore_index=-100)


def test_pytorch_ignore_index_with_probability_targets():
    # PyTorch raises for ignore_index >= 0 and accepts a negative one, which
    # skips nothing; ce_tutorial refuses both.
    z = torch.zeros(2, 3)
    p = torch.full((2, 3), 1 / 3)
    plain = F.cross_entropy(z, p)
    assert F.cross_entropy(z, p, ignore_index=-100).item() == plain.item()
    with pytest.raises(RuntimeError, match=r"ignore_index is not supported"):
        F.cross_entropy(z, p, ignore_index=0)
    for ignore_index in (-100, 0):
        with pytest.raises(ValueError, match=r"applies to integer labels only"):
            ct.cross_entropy_from_logits(
                z.numpy(), p.numpy(), ignore_index=ignore_index
            )
