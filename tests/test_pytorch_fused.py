"""linear_cross_entropy against PyTorch autograd on the unfused head.

PyTorch's ``F.cross_entropy(F.linear(h, W), y, ignore_index=...)``, followed by
``backward()``, is the computation that the fused head replaces. Its loss and
both gradients must agree with ours, for every reduction, with and without
padding, in float64 (tight) and float32.
"""

from __future__ import annotations

import numpy as np
import pytest

from ce_tutorial import linear_cross_entropy

from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional

IGNORE = -100


def torch_head(h, w, y, reduction, ignore_index):
    ht = torch.tensor(h, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}
    loss = F.cross_entropy(
        F.linear(ht, wt), torch.tensor(y), reduction=reduction, **kwargs
    )
    if reduction == "none":
        return loss.detach().numpy(), None, None
    loss.backward()
    return loss.item(), ht.grad.numpy(), wt.grad.numpy()


def make(dtype, padded, seed=0, n=300, d=24, v=1000):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, d)).astype(dtype)
    w = rng.normal(scale=0.5, size=(v, d)).astype(dtype)
    y = rng.integers(0, v, size=n)
    if padded:
        y[rng.uniform(size=n) < 0.3] = IGNORE
    return h, w, y


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
@pytest.mark.parametrize(
    ("dtype", "rtol"), [(np.float64, 1e-12), (np.float32, 2e-5)], ids=["f64", "f32"]
)
def test_matches_torch_autograd(reduction, padded, dtype, rtol):
    h, w, y = make(dtype, padded)
    ignore_index = IGNORE if padded else None
    want, want_gh, want_gw = torch_head(h, w, y, reduction, ignore_index)
    if reduction == "none":
        got = linear_cross_entropy(h, w, y, "none", ignore_index=ignore_index)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
        if padded:
            assert np.all(got[y == IGNORE] == 0) and np.all(want[y == IGNORE] == 0)
        return
    loss, gh, gw = linear_cross_entropy(
        h, w, y, reduction, ignore_index=ignore_index, return_grad=True
    )
    assert loss.dtype == gh.dtype == gw.dtype == dtype
    assert loss == pytest.approx(want, rel=rtol)
    scale = np.abs(want_gw).max()
    np.testing.assert_allclose(
        gh, want_gh, rtol=rtol, atol=rtol * np.abs(want_gh).max()
    )
    np.testing.assert_allclose(gw, want_gw, rtol=rtol, atol=rtol * scale)


def test_all_padding_torch_gives_nan_we_raise():
    h, w, _ = make(np.float64, False, n=4)
    y = np.full(4, IGNORE)
    want, _, _ = torch_head(h, w, y, "mean", IGNORE)
    assert np.isnan(want)
    with pytest.raises(ValueError, match=r"every label equals ignore_index = -100"):
        linear_cross_entropy(h, w, y, ignore_index=IGNORE)
    # "sum" is defined on both sides: 0, with zero gradients.
    want, want_gh, want_gw = torch_head(h, w, y, "sum", IGNORE)
    loss, gh, gw = linear_cross_entropy(h, w, y, "sum", IGNORE, return_grad=True)
    assert loss == want == 0.0
    np.testing.assert_array_equal(gh, want_gh)
    np.testing.assert_array_equal(gw, want_gw)
