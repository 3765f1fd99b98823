"""PyTorch's options of ``F.cross_entropy``, checked against PyTorch itself.

Every combination of ``weight``, ``label_smoothing``, ``ignore_index``,
targets (integer labels or probability targets), inputs of two, three and four
dimensions (the classes on axis 1) and the three reductions: the loss of
:func:`ce_tutorial.cross_entropy_from_logits` against ``F.cross_entropy``, and
:func:`ce_tutorial.cross_entropy_grad` against autograd. Where PyTorch refuses
a combination (``ignore_index`` with probability targets), ce_tutorial raises
too, and the test pins down what PyTorch does.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import ce_tutorial as ct

from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional

REDUCTIONS = ["none", "mean", "sum"]
SHAPES = {"2d": (7, 4), "3d": (3, 4, 5), "4d": (2, 3, 3, 4)}
# Relative tolerances: about 450 ulps of float64 and 8 of float32 (sums of
# many terms in different orders); the gradient's entries are below the
# largest weight in size, so the same numbers serve as absolute ones.
TOLERANCE = {np.float64: 1e-13, np.float32: 2e-6}


def _case(shape, targets, weighted, smoothing, ignore, dtype, seed):
    """Random logits, targets and options for one combination."""
    rng = np.random.default_rng(seed)
    n_classes = shape[1]
    z = rng.normal(scale=2.0, size=shape).astype(dtype)
    lead = (shape[0], *shape[2:])
    if targets == "labels":
        y = rng.integers(0, n_classes, size=lead)
        if ignore is not None:
            y[rng.uniform(size=lead) < 0.3] = ignore
            y.flat[0] = 0  # at least one kept row
    else:
        y = rng.dirichlet(np.ones(n_classes), size=lead)  # (..., C)
        y = np.moveaxis(y, -1, 1).astype(dtype)  # classes on axis 1
    w = None
    if weighted:
        w = rng.uniform(0.2, 2.0, size=n_classes).astype(dtype)
        w[-1] = 0.0  # a class that counts for nothing
    options = {"weight": w, "label_smoothing": smoothing}
    if ignore is not None:
        options["ignore_index"] = ignore
    return z, y, options


def _torch(z, y, reduction, options):
    """PyTorch's loss and the autograd gradient of its (summed) value."""
    zt = torch.tensor(z, requires_grad=True)
    yt = torch.tensor(y)
    kwargs = {"reduction": reduction, "label_smoothing": options["label_smoothing"]}
    if options["weight"] is not None:
        kwargs["weight"] = torch.tensor(options["weight"])
    if "ignore_index" in options:
        kwargs["ignore_index"] = options["ignore_index"]
    loss = F.cross_entropy(zt, yt, **kwargs)
    loss.sum().backward()  # for "none", row i of the gradient is d loss_i / d z_i
    return loss.detach().numpy(), zt.grad.numpy()


COMBINATIONS = [
    pytest.param(shape, targets, weighted, smoothing, ignore, id=name)
    for shape, targets, weighted, smoothing, ignore in itertools.product(
        SHAPES, ["labels", "probabilities"], [False, True], [0.0, 0.2], [None, -100]
    )
    if not (targets == "probabilities" and ignore is not None)
    for name in [
        f"{shape}-{targets}-{'weight' if weighted else 'noweight'}-"
        f"smoothing{smoothing}-ignore{ignore}"
    ]
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("shape", "targets", "weighted", "smoothing", "ignore"), COMBINATIONS
)
def test_every_combination_agrees_with_pytorch(
    shape, targets, weighted, smoothing, ignore, reduction
):
    for seed in range(3):
        z, y, options = _case(
            SHAPES[shape], targets, weighted, smoothing, ignore, np.float64, seed
        )
        want_loss, want_grad = _torch(z, y, reduction, options)
        loss = ct.cross_entropy_from_logits(z, y, reduction, **options)
        grad = ct.cross_entropy_grad(z, y, reduction, **options)
        assert np.shape(loss) == want_loss.shape
        assert grad.shape == z.shape
        np.testing.assert_allclose(loss, want_loss, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_float32_with_every_option_agrees_with_pytorch(targets, reduction):
    ignore = -100 if targets == "labels" else None
    z, y, options = _case(SHAPES["3d"], targets, True, 0.1, ignore, np.float32, 5)
    want_loss, want_grad = _torch(z, y, reduction, options)
    loss = ct.cross_entropy_from_logits(z, y, reduction, **options)
    grad = ct.cross_entropy_grad(z, y, reduction, **options)
    assert loss.dtype == grad.dtype == np.float32
    tol = TOLERANCE[np.float32]
    np.testing.assert_allclose(loss, want_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_the_two_mean_rules_of_weight_as_in_pytorch(reduction):
    # Labels: the mean divides by the kept rows' weights; probability targets:
    # by N, although the per-example weighted losses are the same.
    z, y, options = _case((6, 3), "labels", True, 0.0, None, np.float64, 11)
    onehot = ct.one_hot(y, 3)
    by_label, _ = _torch(z, y, reduction, options)
    by_probability, _ = _torch(z, onehot, reduction, options)
    ours_label = ct.cross_entropy_from_logits(z, y, reduction, **options)
    ours_probability = ct.cross_entropy_from_logits(z, onehot, reduction, **options)
    np.testing.assert_allclose(ours_label, by_label, rtol=1e-14)
    np.testing.assert_allclose(ours_probability, by_probability, rtol=1e-14)
    w = options["weight"][y]
    if reduction == "mean":
        assert by_label == pytest.approx(by_probability * len(y) / w.sum(), rel=1e-14)
        assert not np.isclose(by_label, by_probability)
    else:
        np.testing.assert_allclose(by_label, by_probability, rtol=1e-14)


def test_ignore_index_with_probability_targets_is_refused_as_in_pytorch():
    z, p, _ = _case((4, 3), "probabilities", False, 0.0, None, np.float64, 2)
    # PyTorch raises for a non-negative ignore_index and ignores a negative one.
    with pytest.raises(RuntimeError, match=r"ignore_index is not supported"):
        F.cross_entropy(torch.tensor(z), torch.tensor(p), ignore_index=0)
    plain = F.cross_entropy(torch.tensor(z), torch.tensor(p))
    assert F.cross_entropy(torch.tensor(z), torch.tensor(p), ignore_index=-100) == plain
    for ignore in (0, -100):
        for f in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
            with pytest.raises(ValueError, match=r"applies to integer labels only"):
                f(z, p, ignore_index=ignore, label_smoothing=0.1)


def test_label_smoothing_outside_0_1_is_refused():
    z, y = np.zeros((2, 3)), np.array([0, 1])
    zt, yt = torch.tensor(z), torch.tensor(y)
    # PyTorch refuses an amount above 1, and accepts a negative one, which
    # makes the target negative; ce_tutorial refuses both.
    with pytest.raises(RuntimeError, match=r"label_smoothing must be between 0\.0"):
        F.cross_entropy(zt, yt, label_smoothing=1.5)
    assert torch.isfinite(F.cross_entropy(zt, yt, label_smoothing=-0.1))
    for smoothing in (-0.1, 1.5):
        for f in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
            with pytest.raises(
                ValueError,
                match=rf"label_smoothing must be in \[0, 1\], got {smoothing}",
            ):
                f(z, y, label_smoothing=smoothing)


def test_a_weight_of_the_wrong_length_is_refused_as_in_pytorch():
    z, y = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(RuntimeError, match=r"weight tensor should be defined"):
        F.cross_entropy(torch.tensor(z), torch.tensor(y), weight=torch.ones(2).double())
    with pytest.raises(
        ValueError, match=r"weight has shape \(2,\), but the logits have 3"
    ):
        ct.cross_entropy_from_logits(z, y, weight=[1.0, 1.0])


def test_where_pytorch_returns_nan_ce_tutorial_raises():
    # Every kept label's class has weight 0: PyTorch's mean is 0 / 0.
    z, y = np.zeros((2, 3)), np.array([0, 0])
    w = np.array([0.0, 1.0, 1.0])
    nan = F.cross_entropy(torch.tensor(z), torch.tensor(y), weight=torch.tensor(w))
    assert torch.isnan(nan)
    with pytest.raises(ValueError, match=r"weights of the kept rows' classes sum to 0"):
        ct.cross_entropy_from_logits(z, y, "mean", weight=w)
    # A masked class of weight 0 under smoothing: PyTorch's 0 * -inf is NaN;
    # here a class that counts for nothing adds nothing.
    zm = np.array([[1.0, 0.0, -np.inf]])
    w = np.array([1.0, 1.0, 0.0])
    torch_loss = F.cross_entropy(
        torch.tensor(zm), torch.tensor([0]), weight=torch.tensor(w), label_smoothing=0.1
    )
    assert torch.isnan(torch_loss)
    ours = ct.cross_entropy_from_logits(zm, [0], "sum", weight=w, label_smoothing=0.1)
    z_finite = np.array([[1.0, 0.0, -1e30]])
    want = F.cross_entropy(
        torch.tensor(z_finite),
        torch.tensor([0]),
        weight=torch.tensor(w),
        label_smoothing=0.1,
        reduction="sum",
    )
    assert ours == pytest.approx(want.item(), rel=1e-14)


def test_smoothing_with_a_masked_class_is_infinite_in_both():
    zm = np.array([[1.0, 0.0, -np.inf]])
    want = F.cross_entropy(torch.tensor(zm), torch.tensor([0]), label_smoothing=0.1)
    assert torch.isinf(want)
    assert ct.cross_entropy_from_logits(zm, [0], label_smoothing=0.1)[0] == np.inf
    with pytest.raises(ValueError, match=r"logits\[0, 2\] is -inf but label_smoothing"):
        ct.cross_entropy_grad(zm, [0], label_smoothing=0.1)


def test_float32_softmax_rows_of_a_large_vocabulary_are_valid_targets():
    # PyTorch's float32 softmax over 50,257 classes: row sums off by tens of
    # float32 ulps, which the row-sum rule accepts, in float32 and float64.
    rng = np.random.default_rng(3)
    z = torch.tensor(rng.normal(scale=3.0, size=(8, 50_257)).astype(np.float32))
    p32 = torch.softmax(z, dim=1).numpy()
    for p in (p32, p32.astype(np.float64)):
        ct.cross_entropy_from_logits(np.zeros(p.shape, p.dtype), p)
        ct.entropy(p)
