"""Targets of the losses on logits (``ce_tutorial._targets``).

``weight``, ``label_smoothing`` and inputs of more than two dimensions, by
hand, against the flattened two-dimensional computation, and against central
differences; their contract, message by message. The comparison with PyTorch
itself is in ``tests/test_pytorch_options.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ce_tutorial as ct
from ce_tutorial import _softmax

from .differences import central_differences

REDUCTIONS = ["none", "mean", "sum"]
Z = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [-0.5, 0.2, 1.5], [1.0, 1.0, 1.0]])
LABELS = np.array([0, 2, 2, 1])
WEIGHT = np.array([1.0, 2.0, 0.25])


def _nll(z, y):
    """-log softmax(z)[y], by hand."""
    lse = np.log(np.exp(z).sum(axis=1))
    return lse - z[np.arange(len(y)), y]


# --- by hand ------------------------------------------------------------------


def test_weight_by_hand_for_each_reduction():
    w = WEIGHT[LABELS]
    losses = _nll(Z, LABELS)
    got = ct.cross_entropy_from_logits(Z, LABELS, weight=WEIGHT)
    np.testing.assert_allclose(got, w * losses, rtol=1e-15)
    total = ct.cross_entropy_from_logits(Z, LABELS, "sum", weight=WEIGHT)
    assert total == pytest.approx((w * losses).sum(), rel=1e-15)
    mean = ct.cross_entropy_from_logits(Z, LABELS, "mean", weight=WEIGHT)
    assert mean == pytest.approx((w * losses).sum() / w.sum(), rel=1e-15)
    # The weighted mean is not the mean of the weighted losses.
    assert abs(mean - (w * losses).mean()) > 0.1


def test_weight_with_target_distributions_divides_by_n():
    p = ct.one_hot(LABELS, 3)
    got = ct.cross_entropy_from_logits(Z, p, "mean", weight=WEIGHT)
    assert got == pytest.approx((WEIGHT[LABELS] * _nll(Z, LABELS)).mean(), rel=1e-15)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_by_hand(smoothing):
    log_p = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    want = (1 - smoothing) * _nll(Z, LABELS) - smoothing * log_p.mean(axis=1)
    got = ct.cross_entropy_from_logits(Z, LABELS, label_smoothing=smoothing)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    # The same as the smoothed target distribution.
    p = (1 - smoothing) * ct.one_hot(LABELS, 3) + smoothing / 3
    np.testing.assert_allclose(ct.cross_entropy_from_logits(Z, p), want, rtol=1e-14)


def test_smoothing_weight_and_ignore_index_by_hand():
    y = np.array([0, -100, 2, 1])
    keep = y != -100
    smoothing = 0.2
    log_p = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    safe = np.where(keep, y, 0)
    per = (1 - smoothing) * WEIGHT[safe] * -log_p[np.arange(4), safe]
    per += smoothing / 3 * (WEIGHT * -log_p).sum(axis=1)
    per[~keep] = 0.0
    options = {"weight": WEIGHT, "ignore_index": -100, "label_smoothing": smoothing}
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(Z, y, **options), per, rtol=1e-14
    )
    mean = ct.cross_entropy_from_logits(Z, y, "mean", **options)
    assert mean == pytest.approx(per.sum() / WEIGHT[y[keep]].sum(), rel=1e-14)


def test_default_options_change_nothing():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 7))
    y = rng.integers(0, 7, size=50)
    q = rng.dirichlet(np.ones(7), size=50)
    for target in (y, q):
        for reduction in REDUCTIONS:
            plain = ct.cross_entropy_from_logits(z, target, reduction)
            ones = ct.cross_entropy_from_logits(
                z, target, reduction, weight=np.ones(7), label_smoothing=0.0
            )
            np.testing.assert_array_equal(ones, plain)
            np.testing.assert_array_equal(
                ct.cross_entropy_grad(z, target, reduction, weight=np.ones(7)),
                ct.cross_entropy_grad(z, target, reduction),
            )


def test_a_zero_weight_class_adds_nothing_even_when_masked():
    z = np.array([[1.0, 0.0, -np.inf]])
    w = np.array([1.0, 1.0, 0.0])
    # The true class 2 has weight 0 and is masked; smoothing puts 0.1 / 3 of
    # the mass on classes 0 and 1, whose weight is 1.
    got = ct.cross_entropy_from_logits(z, [2], weight=w, label_smoothing=0.1)
    lse = np.log(np.e + 1.0)
    assert got[0] == pytest.approx(0.1 / 3 * ((lse - 1.0) + lse), rel=1e-15)
    grad = ct.cross_entropy_grad(z, [2], "sum", weight=w, label_smoothing=0.1)
    assert np.all(np.isfinite(grad)) and grad[0, 2] == 0.0
    # Without smoothing nothing has mass: the loss and its gradient are 0.
    assert ct.cross_entropy_from_logits(z, [2], weight=w)[0] == 0.0
    np.testing.assert_array_equal(ct.cross_entropy_grad(z, [2], "sum", weight=w), 0.0)


def test_tiny_coefficients_on_a_masked_class_still_give_inf_in_float32():
    z = np.float32([[0.0, -np.inf]])
    w = np.array([1.0, 1e-50])
    # 1e-50 rounds to 0 in float32; the mass it stands for is still there.
    got = ct.cross_entropy_from_logits(z, [0], weight=w, label_smoothing=0.5)
    assert got.dtype == np.float32
    assert got[0] == np.inf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_options_keep_the_dtype_and_never_modify_inputs(dtype):
    z = Z.astype(dtype)
    y, w = LABELS.copy(), WEIGHT.astype(dtype)
    before = (z.copy(), y.copy(), w.copy())
    for reduction in REDUCTIONS:
        loss = ct.cross_entropy_from_logits(
            z, y, reduction, weight=w, label_smoothing=0.1
        )
        grad = ct.cross_entropy_grad(z, y, reduction, weight=w, label_smoothing=0.1)
        assert np.asarray(loss).dtype == grad.dtype == dtype
    for a, b in zip((z, y, w), before, strict=True):
        np.testing.assert_array_equal(a, b)


# --- more than two dimensions ---------------------------------------------------


def _flat(z, y):
    """The (M, C) rows and (M,) or (M, C) targets of a classes-on-axis-1 input."""
    rows = np.moveaxis(z, 1, -1).reshape(-1, z.shape[1])
    if y.ndim == z.ndim:
        return rows, np.moveaxis(y, 1, -1).reshape(-1, z.shape[1])
    return rows, y.reshape(-1)


def _k_dim_case(shape, targets, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=shape)
    lead = (shape[0], *shape[2:])
    if targets == "labels":
        y = rng.integers(0, shape[1], size=lead)
        y[rng.uniform(size=lead) < 0.2] = -100
        y.flat[0] = 1
        return z, y, {"ignore_index": -100}
    y = np.moveaxis(rng.dirichlet(np.ones(shape[1]), size=lead), -1, 1)
    return z, y, {}


LAYOUTS = {
    "contiguous": lambda z: z,
    "transposed": lambda z: np.ascontiguousarray(np.swapaxes(z, 0, -1)).swapaxes(0, -1),
    "reversed": lambda z: np.ascontiguousarray(z[::-1])[::-1],
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "shape", [(3, 4, 5), (2, 3, 4, 5), (2, 3, 1, 2, 3), (2, 3, 300), (1, 2, 17, 20)]
)
@pytest.mark.parametrize("targets", ["labels", "distributions"])
@pytest.mark.parametrize("options", [{}, {"weight": [0.5, 1.0, 2.0], "sm": 0.1}])
def test_k_dimensional_input_equals_its_flattened_rows(layout, shape, targets, options):
    z, y, extra = _k_dim_case(shape, targets, seed=len(shape))
    z = LAYOUTS[layout](z)
    kwargs = dict(extra)
    if options:
        kwargs["weight"] = np.resize(options["weight"], shape[1])
        kwargs["label_smoothing"] = options["sm"]
    rows, flat = _flat(z, y)
    for reduction in REDUCTIONS:
        got = ct.cross_entropy_from_logits(z, y, reduction, **kwargs)
        want = ct.cross_entropy_from_logits(rows, flat, reduction, **kwargs)
        if reduction == "none":
            assert got.shape == (shape[0], *shape[2:])
            want = want.reshape(got.shape)
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
        grad = ct.cross_entropy_grad(z, y, reduction, **kwargs)
        want_grad = ct.cross_entropy_grad(rows, flat, reduction, **kwargs)
        assert grad.shape == z.shape
        np.testing.assert_allclose(
            np.moveaxis(grad, 1, -1).reshape(rows.shape), want_grad, rtol=1e-15
        )


def test_k_dimensional_rows_are_copied_by_runs_or_gathered(monkeypatch):
    z = np.random.default_rng(1).normal(size=(3, 4, 5, 6))
    moved = np.moveaxis(z, 1, -1)
    assert _softmax._GatheredRows(moved).runs is None  # runs of 30: too short
    monkeypatch.setattr(_softmax._GatheredRows, "MIN_RUN", 1)
    runs = _softmax._GatheredRows(moved)
    assert runs.runs is not None  # a C-contiguous input: copied by runs
    strided = _softmax._GatheredRows(np.moveaxis(z[:, :, ::2, ::-1], 1, -1))
    assert strided.runs is None  # no view merges those axes: gathered by index
    want = moved.reshape(-1, 4)
    for a, b in [(0, 1), (0, 90), (7, 38), (29, 31), (89, 90)]:
        np.testing.assert_array_equal(runs[a:b], want[a:b])
    want = np.moveaxis(z[:, :, ::2, ::-1], 1, -1).reshape(-1, 4)
    np.testing.assert_array_equal(strided[5:40], want[5:40])


def test_k_dimensional_errors_name_the_position():
    z = np.zeros((2, 3, 4))
    y = np.zeros((2, 4), dtype=int)
    bad = z.copy()
    bad[1, 0, 2] = np.nan
    for f in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
        with pytest.raises(ValueError, match=r"logits\[1, :, 2\] contains NaN"):
            f(bad, y)
        wrong = y.copy()
        wrong[1, 3] = 3
        with pytest.raises(ValueError, match=r"y\[1, 3\] = 3 is out of range"):
            f(z, wrong)
        q = np.full((2, 3, 4), 1 / 3)
        q[0, :, 1] = [0.5, 0.5, 0.5]
        with pytest.raises(ValueError, match=r"y\[0, :, 1\] sums to 1\.5"):
            f(z, q)
        q[0, :, 1] = [1.5, -0.5, 0.0]
        with pytest.raises(ValueError, match=r"y\[0, 1, 1\] = -0\.5 is negative"):
            f(z, q)
    masked = z.copy()
    masked[0, 2, 1] = -np.inf
    y[0, 1] = 2
    with pytest.raises(
        ValueError,
        match=r"logits\[0, 2, 1\] is -inf for the true class y\[0, 1\] = 2",
    ):
        ct.cross_entropy_grad(masked, y)


def test_the_earliest_bad_position_is_named_across_arguments():
    z = np.zeros((2, 3, 4))
    z[1, 0, 0] = np.nan  # position 4
    y = np.zeros((2, 4), dtype=int)
    y[0, 3] = 9  # position 3: earlier
    with pytest.raises(ValueError, match=r"y\[0, 3\] = 9"):
        ct.cross_entropy_from_logits(z, y)
    y[0, 3] = 0
    y[1, 1] = 9  # position 5: later than the NaN
    with pytest.raises(ValueError, match=r"logits\[1, :, 0\] contains NaN"):
        ct.cross_entropy_from_logits(z, y)


# --- the gradient is the loss's ---------------------------------------------------


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["labels", "distributions"]),
    st.sampled_from(REDUCTIONS),
    st.booleans(),
    st.sampled_from([0.0, 0.3]),
)
def test_the_gradient_matches_central_differences(
    seed, targets, reduction, weighted, smoothing
):
    z, y, kwargs = _k_dim_case((2, 3, 2), targets, seed)
    if weighted:
        kwargs["weight"] = np.random.default_rng(seed).uniform(0.5, 2.0, size=3)
    kwargs["label_smoothing"] = smoothing
    grad = ct.cross_entropy_grad(z, y, reduction, **kwargs)
    h = 1e-6
    numeric = central_differences(
        lambda v: ct.cross_entropy_from_logits(v, y, reduction, **kwargs), z, h
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# --- contract -----------------------------------------------------------------------

OPTION_ERRORS = [
    ({"weight": [1.0, 2.0]}, ValueError, r"weight has shape \(2,\), but the logits"),
    ({"weight": [[1.0, 2.0, 3.0]]}, ValueError, r"weight has shape \(1, 3\)"),
    ({"weight": [1.0, -2.0, 3.0]}, ValueError, r"weight\[1\] = -2\.0 is not a finite"),
    ({"weight": [1.0, np.nan, 3.0]}, ValueError, r"weight\[1\] = nan is not a finite"),
    ({"weight": [1.0, 1.0, np.inf]}, ValueError, r"weight\[2\] = inf is not a finite"),
    ({"weight": [True, False, True]}, TypeError, r"weight must hold real numbers"),
    ({"weight": [1j, 1.0, 1.0]}, TypeError, r"weight must hold real numbers"),
    ({"weight": np.array([1, 2, 3], "m8[s]")}, TypeError, r"weight must hold real"),
    ({"label_smoothing": True}, TypeError, r"label_smoothing must be a real number"),
    ({"label_smoothing": "0.1"}, TypeError, r"label_smoothing must be a real number"),
    ({"label_smoothing": None}, TypeError, r"label_smoothing must be a real number"),
    ({"label_smoothing": -0.1}, ValueError, r"label_smoothing must be in \[0, 1\]"),
    ({"label_smoothing": 1.01}, ValueError, r"label_smoothing must be in \[0, 1\]"),
    ({"label_smoothing": math.nan}, ValueError, r"label_smoothing must be in \[0, 1\]"),
]


@pytest.mark.parametrize("f", [ct.cross_entropy_from_logits, ct.cross_entropy_grad])
@pytest.mark.parametrize(("options", "error", "pattern"), OPTION_ERRORS)
def test_bad_options_raise_naming_the_argument(f, options, error, pattern):
    with pytest.raises(error, match=pattern):
        f(Z[:2], LABELS[:2], **options)


def test_a_mean_over_zero_weight_is_an_error_not_nan():
    w = np.array([0.0, 1.0, 1.0])
    for f in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
        with pytest.raises(ValueError, match=r"classes sum to 0"):
            f(Z[:1], [0], "mean", weight=w)
        # "sum" and "none" are defined: all zero.
        assert np.all(f(Z[:1], [0], "sum", weight=w) == 0.0)


def test_k_dimensional_memory_stays_under_a_quarter_of_the_input():
    from .memory import traced_peak

    rng = np.random.default_rng(2)
    z = np.ascontiguousarray(rng.standard_normal((2_000, 100, 10)).swapaxes(1, 2))
    y = rng.integers(0, 10, size=(2_000, 100))
    q = np.moveaxis(rng.dirichlet(np.ones(10), size=(2_000, 100)), -1, 1).copy()
    long_z = rng.standard_normal((8, 10, 25_000))  # copied by runs of 25,000
    long_y = rng.integers(0, 10, size=(8, 25_000))
    assert long_z.nbytes == z.nbytes
    calls = [
        lambda: ct.cross_entropy_from_logits(long_z, long_y),
        lambda: ct.cross_entropy_from_logits(long_z, long_y, label_smoothing=0.2),
        lambda: ct.cross_entropy_from_logits(z, y),
        lambda: ct.cross_entropy_from_logits(z, y, "sum", label_smoothing=0.1),
        lambda: ct.cross_entropy_from_logits(z, q, weight=np.ones(10)),
        lambda: ct.cross_entropy_from_logits(z, q, "mean"),
    ]
    for n_threads in (1, 8):
        previous = ct.set_num_threads(n_threads)
        try:
            for call in calls:
                peak, _ = traced_peak(call)
                assert peak <= 0.25 * z.nbytes
        finally:
            ct.set_num_threads(previous)
