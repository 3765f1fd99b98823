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


def torch_options_head(h, w, y, reduction, ignore_index, bias, z_loss, softcap):
    """The same head written in PyTorch: F.linear with a bias, soft-capping
    ``c tanh(u / c)``, the cross-entropy plus ``z_loss * logsumexp**2`` per kept
    row, reduced over the kept rows; gradients by autograd."""
    ht = torch.tensor(h, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, requires_grad=True)
    yt = torch.tensor(y)
    z = F.linear(ht, wt, bt)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    kept = (
        torch.ones(len(y), dtype=torch.bool) if ignore_index is None else yt != IGNORE
    )
    ce = F.cross_entropy(z, yt, reduction="none", ignore_index=IGNORE)
    per_row = ce + z_loss * torch.logsumexp(z, dim=1) ** 2
    per_row = torch.where(kept, per_row, torch.zeros_like(per_row))
    if reduction == "none":
        return per_row.detach().numpy(), None
    loss = per_row.sum() if reduction == "sum" else per_row.sum() / kept.sum()
    loss.backward()
    grads = [ht.grad.numpy(), wt.grad.numpy()]
    if bt is not None:
        grads.append(bt.grad.numpy())
    return loss.item(), grads


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    ("bias", "z_loss", "softcap"),
    [(True, 0.0, None), (False, 1e-2, None), (False, 0.0, 3.0), (True, 1e-2, 3.0)],
    ids=["bias", "z_loss", "softcap", "all"],
)
@pytest.mark.parametrize(
    ("dtype", "rtol"), [(np.float64, 1e-12), (np.float32, 2e-5)], ids=["f64", "f32"]
)
def test_options_match_torch_autograd(reduction, bias, z_loss, softcap, dtype, rtol):
    h, w, y = make(dtype, padded=True, seed=1)
    b = np.random.default_rng(2).normal(size=w.shape[0]).astype(dtype) if bias else None
    want, want_grads = torch_options_head(
        h, w, y, reduction, IGNORE, b, z_loss, softcap
    )
    kwargs = {"bias": b, "z_loss": z_loss, "softcap": softcap}
    if reduction == "none":
        got = linear_cross_entropy(h, w, y, "none", IGNORE, **kwargs)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
        return
    loss, *grads = linear_cross_entropy(h, w, y, reduction, IGNORE, True, **kwargs)
    assert loss.dtype == dtype
    assert loss == pytest.approx(want, rel=rtol)
    assert len(grads) == len(want_grads)
    for ours, theirs in zip(grads, want_grads, strict=True):
        assert ours.dtype == dtype
        np.testing.assert_allclose(
            ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max()
        )
