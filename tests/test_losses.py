"""The losses (``ce_tutorial._losses``): likelihood, NLL, cross-entropy, gradient."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.special
from hypothesis import assume, given
from hypothesis import strategies as st
from sklearn.metrics import log_loss

import ce_tutorial as ct

from . import strategies as cst
from .reference import cross_entropy_rows, label_losses_rows, ulp_error_bound

# The source's toy example: two examples, three classes; the true class of the
# first got 0.1, that of the second 0.5.
Y_HAT = np.array([[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]])
Y = np.array([0, 2])
EPS64 = np.finfo(np.float64).eps


def assert_positive_zero(x):
    """``x`` is exactly 0.0 everywhere, never -0.0."""
    x = np.asarray(x)
    assert (x == 0.0).all()
    assert not np.signbit(x).any()


# --- the toy example, by hand -------------------------------------------------


def test_toy_example_cross_entropy():
    loss = ct.cross_entropy(Y_HAT, Y)
    assert loss == pytest.approx([-math.log(0.1), -math.log(0.5)], rel=1e-12)
    assert repr(loss) == "array([2.30258509, 0.69314718])"


def test_toy_example_reductions():
    # mean = (log 10 + log 2) / 2 = log(20) / 2; sum = log 20 = -log 0.05
    assert ct.cross_entropy(Y_HAT, Y, reduction="mean") == pytest.approx(
        math.log(20) / 2, rel=1e-12
    )
    assert ct.cross_entropy(Y_HAT, Y, reduction="sum") == pytest.approx(
        -math.log(0.05), rel=1e-12
    )


def test_toy_example_likelihood_and_nll():
    lik = ct.likelihood(Y_HAT, Y)
    assert isinstance(lik, np.floating)
    assert lik == pytest.approx(0.05, rel=1e-15)
    nll = ct.negative_log_likelihood(Y_HAT, Y)
    assert isinstance(nll, np.floating)
    assert nll == pytest.approx(-math.log(0.05), rel=1e-12)
    assert nll == pytest.approx(-math.log(lik), rel=1e-12)


def test_toy_example_from_logits():
    # Logits log(y_hat) have softmax y_hat, so the loss is the same.
    logits = np.log(Y_HAT)
    assert ct.cross_entropy_from_logits(logits, Y) == pytest.approx(
        [-math.log(0.1), -math.log(0.5)], rel=1e-12
    )
    # Adding a constant per row changes nothing.
    shifted = logits + np.array([[100.0], [-30.0]])
    assert ct.cross_entropy_from_logits(shifted, Y) == pytest.approx(
        [-math.log(0.1), -math.log(0.5)], rel=1e-12
    )


def test_toy_example_gradient():
    # softmax(log y_hat) - one_hot(y), divided by 2 for the mean.
    grad = ct.cross_entropy_grad(np.log(Y_HAT), Y)
    expected = np.array([[0.1 - 1, 0.3, 0.6], [0.2, 0.3, 0.5 - 1]]) / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)


def test_gradient_hand_values_and_reductions():
    z = [[0.0, 0.0], [0.0, 0.0]]
    mean = ct.cross_entropy_grad(z, [0, 1])
    np.testing.assert_array_equal(mean, [[-0.25, 0.25], [0.25, -0.25]])
    total = ct.cross_entropy_grad(z, [0, 1], reduction="sum")
    np.testing.assert_array_equal(total, [[-0.5, 0.5], [0.5, -0.5]])
    np.testing.assert_array_equal(ct.cross_entropy_grad(z, [0, 1], "none"), total)


def test_cross_entropy_with_target_distributions_by_hand():
    q = [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    y_hat = [[0.25, 0.75, 0.0], [0.2, 0.3, 0.5]]
    expected = [
        -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)),
        -math.log(0.5),
    ]
    assert ct.cross_entropy(y_hat, q) == pytest.approx(expected, rel=1e-12)
    logits = np.log(np.array([[0.25, 0.75, 1.0], [0.2, 0.3, 0.5]]))
    logits[0, 2] = -np.inf
    assert ct.cross_entropy_from_logits(logits, q) == pytest.approx(expected, rel=1e-12)


def test_label_smoothing_by_hand():
    # Targets 0.9 on the true class, 0.05 elsewhere, for uniform predictions:
    # the loss is log 3 whatever the targets.
    q = [[0.9, 0.05, 0.05]]
    assert ct.cross_entropy_from_logits([[2.0, 2.0, 2.0]], q) == pytest.approx(
        [math.log(3)], rel=1e-14
    )
    # For predictions [0.5, 0.25, 0.25]: 0.9 log 2 + 0.1 log 4 = 1.1 log 2.
    assert ct.cross_entropy([[0.5, 0.25, 0.25]], q) == pytest.approx(
        [1.1 * math.log(2)], rel=1e-14
    )


# --- one_hot --------------------------------------------------------------------


def test_one_hot_by_hand():
    encoded = ct.one_hot([0, 2, 1, 2], 3)
    expected = [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]
    np.testing.assert_array_equal(encoded, np.array(expected, dtype=np.float64))
    assert encoded.dtype == np.float64


@given(st.integers(1, 8).flatmap(lambda c: st.tuples(st.just(c), cst.labels_for(5, c))))
def test_one_hot_round_trips_through_argmax(c_and_y):
    c, y = c_and_y
    encoded = ct.one_hot(y, c)
    assert encoded.shape == (5, c)
    np.testing.assert_array_equal(encoded.argmax(axis=1), y)
    np.testing.assert_array_equal(encoded.sum(axis=1), np.ones(5))


# --- zero probability, exact predictions ---------------------------------------


def test_zero_probability_for_the_true_class_is_infinite_without_warning():
    y_hat = [[0.0, 1.0], [0.5, 0.5]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            ct.cross_entropy(y_hat, [0, 1]), [np.inf, math.log(2)]
        )
        assert ct.cross_entropy(y_hat, [0, 1], reduction="mean") == np.inf
        assert ct.negative_log_likelihood(y_hat, [0, 1]) == np.inf
        assert ct.likelihood(y_hat, [0, 1]) == 0.0
        # Target mass on a class with probability 0 is infinite as well.
        assert ct.cross_entropy(y_hat, [[0.5, 0.5], [0.5, 0.5]])[0] == np.inf


def test_zero_probability_off_the_target_costs_nothing():
    # 0 log 0 = 0: no NaN from 0 * inf.
    loss = ct.cross_entropy([[0.0, 1.0]], [[0.0, 1.0]])
    assert_positive_zero(loss)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exact_one_hot_prediction_gives_positive_zero(dtype):
    y_hat = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    y = np.array([1, 0])
    for reduction in ("none", "sum", "mean"):
        assert_positive_zero(ct.cross_entropy(y_hat, y, reduction=reduction))
        assert_positive_zero(ct.cross_entropy(y_hat, y_hat, reduction=reduction))
    assert_positive_zero(ct.negative_log_likelihood(y_hat, y))
    assert ct.likelihood(y_hat, y) == 1.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_certain_logits_give_positive_zero(dtype):
    z = np.array([[0.0, -np.inf, -np.inf], [1000.0, 0.0, -5.0]], dtype=dtype)
    y = np.array([0, 0])
    for reduction in ("none", "sum", "mean"):
        assert_positive_zero(ct.cross_entropy_from_logits(z, y, reduction=reduction))
        assert_positive_zero(
            ct.cross_entropy_from_logits(z, ct.one_hot(y, 3), reduction=reduction)
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_confident_correct_predictions_never_give_a_negative_loss(dtype):
    # The true loss log(1 + e^-a) is positive for every margin a; rounding
    # must not push it below zero (it did once, at a ~ 37, by -1.1e-16).
    margins = np.linspace(0.0, 400.0, 8001)
    z = np.stack([margins, np.zeros_like(margins)], axis=1).astype(dtype)
    y = np.zeros(len(margins), dtype=int)
    for target in (y, ct.one_hot(y, 2)):
        loss = ct.cross_entropy_from_logits(z, target)
        assert (loss >= 0).all()
        assert not np.signbit(loss).any()
    assert (ct.logsumexp(z) >= z.max(axis=1)).all()


# --- masked classes ---------------------------------------------------------------


@pytest.mark.parametrize("targets", ["labels", "distributions"])
def test_a_masked_class_adds_nothing(targets):
    rng = np.random.default_rng(4)
    z = rng.normal(scale=3.0, size=(6, 5))
    y = np.array([0, 1, 2, 4, 0, 4])
    if targets == "distributions":
        y = cst.normalise(rng.uniform(size=(6, 5)))
        y[:, 3] = 0.0
        y = cst.normalise(y)
    masked = z.copy()
    masked[:, 3] = -np.inf
    dropped = np.delete(z, 3, axis=1)
    if y.ndim == 1:  # class 4 becomes class 3 once column 3 is gone
        y_dropped = np.where(y > 3, y - 1, y)
    else:
        y_dropped = np.delete(y, 3, axis=1)
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(masked, y),
        ct.cross_entropy_from_logits(dropped, y_dropped),
        rtol=4 * EPS64,
    )
    grad = ct.cross_entropy_grad(masked, y)
    assert (grad[:, 3] == 0).all()
    np.testing.assert_allclose(
        np.delete(grad, 3, axis=1),
        ct.cross_entropy_grad(dropped, y_dropped),
        rtol=4 * EPS64,
        atol=1e-300,
    )


def test_a_masked_true_class_gives_infinity_without_warning():
    z = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = ct.cross_entropy_from_logits(z, [1, 0])
        assert loss[0] == np.inf
        assert np.isfinite(loss[1])
        q = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
        assert ct.cross_entropy_from_logits(z, q)[0] == np.inf


def test_the_gradient_of_an_infinite_loss_is_an_error():
    z = np.array([[0.0, 1.0, 2.0], [0.0, -np.inf, 1.0]])
    with pytest.raises(
        ValueError, match=r"logits\[1, 1\] is -inf for the true class y\[1\] = 1"
    ):
        ct.cross_entropy_grad(z, [0, 1])
    q = np.array([[1.0, 0.0, 0.0], [0.0, 0.25, 0.75]])
    with pytest.raises(
        ValueError, match=r"logits\[1, 1\] is -inf but y\[1, 1\] = 0.25 > 0"
    ):
        ct.cross_entropy_grad(z, q)


# --- dtypes -----------------------------------------------------------------------


def _loss_calls(z, y_hat):
    y = np.array([0, 1])
    q = np.array([[0.5, 0.5], [0.25, 0.75]])
    for reduction in ("none", "mean", "sum"):
        for target in (y, q):
            yield ct.cross_entropy(y_hat, target, reduction=reduction)
            yield ct.cross_entropy_from_logits(z, target, reduction=reduction)
            yield ct.cross_entropy_grad(z, target, reduction=reduction)


def test_float32_in_float32_out():
    z = np.array([[1.0, -2.0], [0.5, 3.0]], dtype=np.float32)
    y_hat = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    for out, want in zip(
        _loss_calls(z, y_hat),
        _loss_calls(z.astype(float), y_hat.astype(float)),
        strict=True,
    ):
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)


def test_integer_inputs_compute_in_float64():
    z = np.array([[1, -2], [0, 3]])
    y_hat = np.array([[0, 1], [1, 0]])
    for out, want in zip(
        _loss_calls(z, y_hat),
        _loss_calls(z.astype(float), y_hat.astype(float)),
        strict=True,
    ):
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, want)


def test_float16_logits_compute_in_float32_without_overflow():
    z16 = np.array([[12.0, 0.0]], dtype=np.float16)
    z64 = np.array([[12.0, 0.0]])
    scale = 12.0  # |logsumexp|
    tol = 4 * np.finfo(np.float32).eps * scale
    for y in ([0], [1], [[0.5, 0.5]]):
        loss = ct.cross_entropy_from_logits(z16, y)
        assert loss.dtype == np.float32
        assert np.isfinite(loss).all()
        np.testing.assert_array_less(
            np.abs(loss - ct.cross_entropy_from_logits(z64, y)), tol
        )
        grad = ct.cross_entropy_grad(z16, y)
        assert grad.dtype == np.float32
        np.testing.assert_array_less(np.abs(grad - ct.cross_entropy_grad(z64, y)), tol)
    # The true value of the loss for class 1: 12 + log(1 + e^-12).
    assert ct.cross_entropy_from_logits(z16, [1])[0] == pytest.approx(
        12 + math.log1p(math.exp(-12)), rel=1e-6
    )


def test_float16_probabilities_compute_in_float32():
    y_hat = np.array([[0.25, 0.75]], dtype=np.float16)
    loss = ct.cross_entropy(y_hat, [1])
    assert loss.dtype == np.float32
    assert loss[0] == pytest.approx(-math.log(0.75), rel=1e-6)


# --- streaming over blocks of rows ------------------------------------------------


# The two functions that stream over logits and validate them block by block.
each_logit_function = pytest.mark.parametrize(
    "f",
    [ct.cross_entropy_from_logits, ct.cross_entropy_grad],
    ids=lambda f: f.__name__,
)


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(5)
    z = rng.normal(scale=4.0, size=(5000, 37))
    y = rng.integers(0, 37, size=5000)
    q = cst.normalise(rng.uniform(size=(5000, 37)))
    return z, y, q


def test_many_rows_of_labels_match_mpmath_to_a_few_ulps(big):
    # Relative to each loss, however small: SciPy's log_softmax is accurate only
    # relative to the log-sum (683 ulps off on row 4220's loss of 0.0029).
    z, y, _ = big
    ref, _ = cross_entropy_rows(z, y)
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(z, y),
        [float(r) for r in ref],
        rtol=4 * np.finfo(np.float64).eps,
        atol=0,
    )


def test_many_rows_match_a_direct_computation(big):
    z, y, q = big
    lp = scipy.special.log_softmax(z, axis=1)
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(z, q), -(q * lp).sum(axis=1), rtol=1e-13
    )
    p = scipy.special.softmax(z, axis=1)
    np.testing.assert_allclose(
        ct.cross_entropy_grad(z, y, reduction="sum"),
        p - ct.one_hot(y, 37),
        rtol=1e-12,
        atol=1e-15,
    )


@each_logit_function
@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (np.nan, r"logits\[4321\] contains NaN"),
        (np.inf, r"logits\[4321\] contains \+inf"),
    ],
)
def test_a_bad_logit_in_a_late_block_names_the_global_row(big, f, value, pattern):
    z, y, q = big
    z = z.copy()
    z[4321, 30] = value
    for target in (y, q):
        with pytest.raises(ValueError, match=pattern):
            f(z, target)


@each_logit_function
def test_a_masked_row_in_a_late_block_names_the_global_row(big, f):
    z, y, _ = big
    z = z.copy()
    z[4321] = -np.inf
    with pytest.raises(ValueError, match=r"logits\[4321\] is -inf in every class"):
        f(z, y)


@each_logit_function
def test_a_bad_target_in_a_late_block_names_the_global_row(big, f):
    z, _, q = big
    bad = q.copy()
    bad[4321, 5] = -0.125
    with pytest.raises(ValueError, match=r"y\[4321, 5\] = -0.125 is negative"):
        f(z, bad)
    bad = q.copy()
    bad[4321] *= 2
    with pytest.raises(ValueError, match=r"y\[4321\] sums to 2\.0"):
        f(z, bad)
    bad = q.copy()
    bad[4999, 36] = np.nan
    with pytest.raises(ValueError, match=r"y\[4999, 36\] = nan is not finite"):
        f(z, bad)


def test_a_bad_label_in_a_large_batch_names_its_index(big):
    z, y, _ = big
    bad = y.copy()
    bad[4321] = -1
    with pytest.raises(ValueError, match=r"y\[4321\] = -1 is out of range"):
        ct.cross_entropy_from_logits(z, bad)


def test_a_bad_probability_in_a_large_batch_names_its_index(big):
    z, y, _ = big
    p = scipy.special.softmax(z, axis=1)
    p[4321, 7] = -1e-3
    with pytest.raises(ValueError, match=r"y_hat\[4321, 7\] = -0.001 is negative"):
        ct.cross_entropy(p, y)


# --- the two routes of the label loss ---------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "row", "label"),
    [
        # exp(88) is finite in float32 but a thousand of them overflow
        (np.float32, [88.0] * 1000, 0),
        # the same in float64
        (np.float64, [709.0] * 3, 1),
        # exp(-100) is subnormal in float32: the fast route would lose digits
        (np.float32, [-100.0, -100.5], 0),
        # exp(-750) underflows to 0 in float64
        (np.float64, [-750.0, -745.0, -760.0], 2),
        # the true class alone is out of the fast route's range
        (np.float64, [800.0, 0.0], 0),
        (np.float32, [100.0, 99.0, 98.0], 1),
    ],
)
def test_rows_beyond_the_fast_range_take_the_shifted_route_accurately(
    dtype, row, label
):
    z = np.array([row], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = ct.cross_entropy_from_logits(z, [label])
    assert loss.dtype == dtype
    (ref,) = label_losses_rows(z, np.array([label]))
    assert abs(float(loss[0]) - float(ref)) <= 2 * np.finfo(dtype).eps * float(ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_loss_with_no_competitor_is_exactly_zero(dtype):
    z = np.array([[3.0, -np.inf, -np.inf], [-np.inf, -7.0, -np.inf]], dtype=dtype)
    assert_positive_zero(ct.cross_entropy_from_logits(z, [0, 1]))
    assert_positive_zero(ct.cross_entropy_from_logits(np.array([[5.0]], dtype), [0]))


@pytest.mark.parametrize(("dtype", "margin"), [(np.float64, 40.0), (np.float32, 12.0)])
def test_a_confident_loss_is_accurate_relative_to_its_size(dtype, margin):
    # log(1 + tiny) in floating point returns a multiple of eps (or 0): a loss
    # computed that way is 1% off in float32 here, and 0 in float64.
    z = np.array([[margin, 0.0]], dtype=dtype)
    loss = ct.cross_entropy_from_logits(z, [0])
    (expected,) = label_losses_rows(z, np.array([0]))
    assert float(expected) < 1e-5
    assert loss[0] == pytest.approx(float(expected), rel=2 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_confident_losses_match_mpmath_relative_to_their_size(dtype, data):
    z, y = data.draw(cst.confident_logits_and_labels(dtype=dtype))
    loss = ct.cross_entropy_from_logits(z, y)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    for i, ref in enumerate(label_losses_rows(z, y)):
        if ref < tiny:  # a subnormal result cannot be accurate relative to itself
            continue
        assert abs(float(loss[i]) - float(ref)) <= 4 * eps * float(ref), (i, ref)


def test_a_valid_row_on_the_shifted_route_does_not_hide_a_later_bad_row(big):
    z, y, _ = big
    z = z.copy()
    z[10] = 1000.0  # valid, but beyond the fast route's range
    z[4321, 30] = np.nan
    with pytest.raises(ValueError, match=r"logits\[4321\] contains NaN"):
        ct.cross_entropy_from_logits(z, y)
    z[100] = -np.inf
    with pytest.raises(ValueError, match=r"logits\[100\] is -inf in every class"):
        ct.cross_entropy_from_logits(z, y)


# --- properties -------------------------------------------------------------------


@given(
    st.one_of(
        cst.logits_and_labels(),
        cst.confident_logits_and_labels(),
        cst.confident_logits_and_labels(dtype=np.float32),
    ),
    cst.reductions,
)
def test_loss_is_non_negative(zy, reduction):
    z, y = zy
    assert (np.asarray(ct.cross_entropy_from_logits(z, y, reduction)) >= 0).all()
    p = ct.softmax(z)
    assert (np.asarray(ct.cross_entropy(p, y, reduction)) >= 0).all()


@given(cst.logits_and_targets(), cst.reductions)
def test_loss_with_targets_is_non_negative(zq, reduction):
    z, q = zq
    assert (np.asarray(ct.cross_entropy_from_logits(z, q, reduction)) >= 0).all()


@pytest.mark.parametrize(
    "strategy",
    [cst.logits_and_labels(bound=30.0), cst.logits_and_targets(bound=30.0)],
    ids=["labels", "targets"],
)
@given(data=st.data())
def test_loss_from_logits_equals_loss_of_softmax(strategy, data):
    # With |z| <= 30 every probability is at least e^-60 / 8: nothing underflows.
    z, y = data.draw(strategy)
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(z, y),
        ct.cross_entropy(ct.softmax(z), y),
        rtol=1e-12,
        atol=8 * EPS64,
    )


@given(cst.logits_and_labels(), cst.reductions)
def test_labels_and_one_hot_targets_agree(zy, reduction):
    z, y = zy
    q = ct.one_hot(y, z.shape[1])
    # Targets take the max-shifted route: rounding z_j - m costs each exponential
    # up to |z_j - m| * eps / 2 of its value, a relative error that labels, which
    # exponentiate the logits themselves, do not have. Hence the per-row bound.
    from_labels = ct.cross_entropy_from_logits(z, y)
    from_targets = ct.cross_entropy_from_logits(z, q)
    spread = (z.max(axis=1, keepdims=True) - z).max(axis=1)
    bound = (4 + spread / 2) * EPS64 * from_targets
    assert (np.abs(from_labels - from_targets) <= bound).all()
    np.testing.assert_allclose(
        ct.cross_entropy_grad(z, y, reduction),
        ct.cross_entropy_grad(z, q, reduction),
        rtol=4 * EPS64,
        atol=4 * EPS64,
    )
    p = ct.softmax(z)
    np.testing.assert_allclose(
        ct.cross_entropy(p, y, reduction),
        ct.cross_entropy(p, q, reduction),
        rtol=4 * EPS64,
        atol=0,
    )


@given(cst.logits_and_labels(), cst.reductions)
def test_mean_and_sum_reduce_the_per_example_losses(zy, reduction):
    z, y = zy
    none = ct.cross_entropy_from_logits(z, y, "none")
    assert none.shape == (z.shape[0],)
    reduced = ct.cross_entropy_from_logits(z, y, reduction)
    if reduction == "none":
        np.testing.assert_array_equal(reduced, none)
    else:
        want = none.mean() if reduction == "mean" else none.sum()
        assert np.ndim(reduced) == 0
        assert reduced == pytest.approx(want, rel=4 * EPS64, abs=0)
    p = ct.softmax(z)
    none_p = ct.cross_entropy(p, y, "none")
    assert ct.cross_entropy(p, y, "mean") == pytest.approx(none_p.mean(), rel=4 * EPS64)
    assert ct.cross_entropy(p, y, "sum") == pytest.approx(none_p.sum(), rel=4 * EPS64)
    assert ct.negative_log_likelihood(p, y) == pytest.approx(
        none_p.sum(), rel=4 * EPS64
    )


@given(cst.logits_and_labels())
def test_gradient_reductions(zy):
    z, y = zy
    total = ct.cross_entropy_grad(z, y, "sum")
    np.testing.assert_array_equal(ct.cross_entropy_grad(z, y, "none"), total)
    np.testing.assert_allclose(
        ct.cross_entropy_grad(z, y, "mean"), total / z.shape[0], rtol=4 * EPS64
    )
    # Each row of the gradient sums to zero.
    np.testing.assert_allclose(total.sum(axis=1), 0.0, atol=(z.shape[1] + 2) * EPS64)


def _central_differences(loss, z, step):
    """d loss(z)[i] / d z[i, j] by central differences, row by row."""
    grad = np.empty_like(z)
    for i, j in np.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[i, j] += step
        down[i, j] -= step
        # Divide by the step actually taken, after rounding.
        grad[i, j] = (loss(up)[i] - loss(down)[i]) / (up[i, j] - down[i, j])
    return grad


@pytest.mark.parametrize(
    "strategy",
    [cst.logits_and_labels(bound=10.0), cst.logits_and_targets(bound=10.0)],
    ids=["labels", "targets"],
)
@given(data=st.data())
def test_gradient_matches_central_differences(strategy, data):
    z, y = data.draw(strategy)
    # Truncation error ~ step^2 |f'''| / 6 <= 1e-11, rounding ~ eps |f| / step
    # <= 2e-16 * 30 / 1e-5 < 1e-9: a 1e-7 tolerance leaves a wide margin and
    # still catches any real mistake (an error of one sample's softmax is 1e-3).
    numeric = _central_differences(
        lambda v: ct.cross_entropy_from_logits(v, y), z, step=1e-5
    )
    np.testing.assert_allclose(
        ct.cross_entropy_grad(z, y, "sum"), numeric, rtol=0, atol=1e-7
    )


@st.composite
def probabilities_and_labels(draw):
    """Probabilities in [0.05 / 8.5, 1 - 0.05 / 8.5] and labels, C >= 2."""
    y_hat = draw(cst.distributions(min_weight=0.05, min_classes=2))
    return y_hat, draw(cst.labels_for(*y_hat.shape))


@given(probabilities_and_labels())
def test_agrees_with_sklearn_log_loss(py):
    # Every probability is far from 0 and 1, where log_loss's clipping to
    # [eps, 1 - eps] does nothing.
    y_hat, y = py
    ref = log_loss(y, y_hat, labels=range(y_hat.shape[1]))
    assert ct.cross_entropy(y_hat, y, "mean") == pytest.approx(ref, rel=1e-12)
    z = np.log(y_hat)
    assert ct.cross_entropy_from_logits(z, y, "mean") == pytest.approx(ref, rel=1e-12)


@given(probabilities_and_labels())
def test_agrees_with_sklearn_log_loss_for_soft_targets(py):
    # log_loss accepts one-hot "probability" targets as a label indicator matrix.
    y_hat, y = py
    q = ct.one_hot(y, y_hat.shape[1])
    ref = log_loss(q, y_hat)
    assert ct.cross_entropy(y_hat, q, "mean") == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize(
    ("dtype", "bound"),
    # the fast route throughout (float32, 80), and both routes in one batch
    [(np.float64, 1000.0), (np.float32, 80.0), (np.float32, 300.0)],
)
@given(data=st.data())
def test_loss_from_logits_agrees_with_mpmath(dtype, bound, data):
    z, y = data.draw(cst.logits_and_labels(dtype=dtype, bound=bound))
    loss = ct.cross_entropy_from_logits(z, y)
    assert loss.dtype == dtype
    refs, lse = cross_entropy_rows(z, y)
    for i, ref in enumerate(refs):
        error, bound_ = ulp_error_bound(loss[i], ref, lse[i], dtype)
        assert error <= bound_, (i, loss[i], ref)


@given(cst.logits_and_labels(bound=30.0))
def test_nll_is_minus_log_likelihood(zy):
    z, y = zy
    p = ct.softmax(z)
    lik = ct.likelihood(p, y)
    assume(lik > 1e-300)  # the product has not underflowed
    assert ct.negative_log_likelihood(p, y) == pytest.approx(
        -math.log(lik), rel=1e-12, abs=64 * EPS64
    )


# --- ignore_index -------------------------------------------------------------

# The toy example plus a padding row labelled -100, whose logits would cost a
# lot (log(1 + e^4 + e^5) = 5.32...) if the row were counted.
PADDED_LOGITS = np.vstack([np.log(Y_HAT), [[-5.0, -1.0, 0.0]]])
PADDED_Y = np.array([0, 2, -100])


def test_ignore_index_by_hand_for_each_reduction():
    def loss(r):
        return ct.cross_entropy_from_logits(
            PADDED_LOGITS, PADDED_Y, r, ignore_index=-100
        )

    none = loss("none")
    assert none[:2] == pytest.approx([math.log(10), math.log(2)], rel=1e-12)
    assert_positive_zero(none[2])
    # sum = log 10 + log 2 = log 20; the mean divides by the 2 kept rows, not 3.
    assert loss("sum") == pytest.approx(math.log(20), rel=1e-12)
    assert loss("mean") == pytest.approx(math.log(20) / 2, rel=1e-12)


def test_ignore_index_gradient_by_hand_for_each_reduction():
    z = [[0.0, 0.0], [0.0, 0.0], [5.0, 1.0]]
    y = [0, 1, -100]
    total = [[-0.5, 0.5], [0.5, -0.5], [0.0, 0.0]]
    for r in ("none", "sum"):
        grad = ct.cross_entropy_grad(z, y, r, ignore_index=-100)
        np.testing.assert_array_equal(grad, total)
        assert_positive_zero(grad[2])
    mean = ct.cross_entropy_grad(z, y, "mean", ignore_index=-100)
    np.testing.assert_array_equal(mean, np.array(total) / 2)  # 2 kept rows
    assert_positive_zero(mean[2])


def test_an_in_range_ignore_index_skips_that_class():
    # ignore_index = 0 skips the first row (class 0), as PyTorch would.
    loss = ct.cross_entropy_from_logits(np.log(Y_HAT), Y, "mean", ignore_index=0)
    assert loss == pytest.approx(math.log(2), rel=1e-14)
    grad = ct.cross_entropy_grad(np.log(Y_HAT), Y, "mean", ignore_index=0)
    np.testing.assert_allclose(grad, [[0, 0, 0], [0.2, 0.3, -0.5]], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_every_row_ignored(dtype):
    z = PADDED_LOGITS.astype(dtype)
    y = np.full(3, -100)
    out_dtype = np.promote_types(dtype, np.float32)
    none = ct.cross_entropy_from_logits(z, y, "none", ignore_index=-100)
    assert none.dtype == out_dtype
    assert_positive_zero(none)
    total = ct.cross_entropy_from_logits(z, y, "sum", ignore_index=-100)
    assert total.dtype == out_dtype
    assert_positive_zero(total)
    for r in ("none", "sum"):
        grad = ct.cross_entropy_grad(z, y, r, ignore_index=-100)
        assert grad.dtype == out_dtype
        assert grad.shape == z.shape
        assert_positive_zero(grad)
    for f in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
        with pytest.raises(ValueError, match=r"every label equals ignore_index"):
            f(z, y, "mean", ignore_index=-100)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ignore_index_keeps_the_dtype_and_never_modifies_inputs(dtype):
    z = PADDED_LOGITS.astype(dtype)
    y = PADDED_Y.copy()
    z_before, y_before = z.copy(), y.copy()
    z.flags.writeable = y.flags.writeable = False  # any write would raise
    for r in ("none", "mean", "sum"):
        loss = ct.cross_entropy_from_logits(z, y, r, ignore_index=-100)
        grad = ct.cross_entropy_grad(z, y, r, ignore_index=-100)
        assert loss.dtype == grad.dtype == dtype
    np.testing.assert_array_equal(z, z_before, strict=True)
    np.testing.assert_array_equal(y, y_before, strict=True)


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (np.nan, r"logits\[2\] contains NaN"),
        (np.inf, r"logits\[2\] contains \+inf"),
        (-np.inf, r"logits\[2\] is -inf in every class"),
    ],
)
@each_logit_function
def test_a_skipped_row_is_still_validated(f, value, pattern):
    z = PADDED_LOGITS.copy()
    if value == -np.inf:
        z[2] = value  # the whole row
    else:
        z[2, 1] = value
    with pytest.raises(ValueError, match=pattern):
        f(z, PADDED_Y, ignore_index=-100)


def test_a_masked_class_in_a_skipped_row_is_not_a_masked_true_class():
    # A skipped row has no true class: -inf anywhere in it (class 0 included,
    # which the kernel reads in its place) is a masked class, not an infinite
    # loss, and no warning is raised (pytest turns warnings into errors).
    z = PADDED_LOGITS.copy()
    z[2, 0] = -np.inf
    for r in ("none", "mean", "sum"):
        want = ct.cross_entropy_from_logits(z[:2], PADDED_Y[:2], r)
        got = ct.cross_entropy_from_logits(z, PADDED_Y, r, ignore_index=-100)
        np.testing.assert_array_equal(np.atleast_1d(got)[:2], np.atleast_1d(want))
        grad = ct.cross_entropy_grad(z, PADDED_Y, r, ignore_index=-100)
        np.testing.assert_array_equal(grad[:2], ct.cross_entropy_grad(z[:2], Y, r))
        assert_positive_zero(grad[2])


@st.composite
def logits_and_padded_labels(draw, dtype=np.float64, bound=50.0):
    """Logits, labels with some rows set to ``ignore_index``, and the kept mask.

    ``ignore_index`` is -100, -1, or a class in range (whose rows are then
    all skipped, whether drawn as padding or not).
    """
    z, y = draw(cst.logits_and_labels(dtype=dtype, bound=bound))
    n, c = z.shape
    ignore_index = draw(st.sampled_from([-100, -1]) | st.integers(0, c - 1))
    padding = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    y[np.array(padding, dtype=bool)] = ignore_index
    return z, y, ignore_index, y != ignore_index


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_ignoring_rows_equals_dropping_them(dtype, data):
    z, y, ignore_index, kept = data.draw(logits_and_padded_labels(dtype=dtype))
    eps = float(np.finfo(dtype).eps)
    none = ct.cross_entropy_from_logits(z, y, "none", ignore_index=ignore_index)
    assert none.dtype == dtype
    # Row by row, the kept losses are the very same numbers.
    np.testing.assert_array_equal(
        none[kept], ct.cross_entropy_from_logits(z[kept], y[kept]), strict=True
    )
    assert_positive_zero(none[~kept])
    total = ct.cross_entropy_from_logits(z, y, "sum", ignore_index=ignore_index)
    assert total.dtype == dtype
    # Only the order of the sum may differ; the losses are non-negative, so the
    # rounding error is at most (N - 1) eps of the sum.
    want = ct.cross_entropy_from_logits(z[kept], y[kept], "sum")
    assert total == pytest.approx(want, rel=len(y) * eps, abs=0)
    for r in ("none", "sum", "mean"):
        if r == "mean" and not kept.any():
            continue
        grad = ct.cross_entropy_grad(z, y, r, ignore_index=ignore_index)
        np.testing.assert_array_equal(
            grad[kept], ct.cross_entropy_grad(z[kept], y[kept], r), strict=True
        )
        assert_positive_zero(grad[~kept])
    if kept.any():
        mean = ct.cross_entropy_from_logits(z, y, "mean", ignore_index=ignore_index)
        assert mean.dtype == dtype
        assert mean == pytest.approx(total / kept.sum(), rel=2 * eps, abs=0)


@given(cst.logits_and_labels(), cst.reductions)
def test_ignore_index_that_matches_no_label_changes_nothing(zy, reduction):
    z, y = zy
    for f in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
        np.testing.assert_array_equal(
            f(z, y, reduction, ignore_index=-100), f(z, y, reduction), strict=True
        )


@given(logits_and_padded_labels(bound=10.0))
def test_ignore_index_gradient_matches_central_differences(zyk):
    z, y, ignore_index, kept = zyk
    assume(kept.any())

    def mean_loss(v):
        return np.atleast_1d(
            ct.cross_entropy_from_logits(v, y, "mean", ignore_index=ignore_index)
        )

    # d L_mean / d z[i, j] for every entry, skipped rows included (their
    # derivative must come out 0). The mean is of losses <= 2 * 10 + log 8, so
    # the error bound of test_gradient_matches_central_differences applies.
    step = 1e-5
    numeric = np.empty_like(z)
    for i, j in np.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[i, j] += step
        down[i, j] -= step
        numeric[i, j] = (mean_loss(up)[0] - mean_loss(down)[0]) / (
            up[i, j] - down[i, j]
        )
    grad = ct.cross_entropy_grad(z, y, "mean", ignore_index=ignore_index)
    np.testing.assert_allclose(grad, numeric, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(numeric[~kept], 0.0)


@pytest.mark.parametrize("fn", [ct.likelihood, ct.negative_log_likelihood])
def test_labels_only_functions_do_not_suggest_target_distributions(fn):
    # cross_entropy accepts target distributions, and its dtype error says how
    # to pass them; likelihood and negative_log_likelihood refuse them, so
    # their error points to cross_entropy instead.
    y_hat = np.array([[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]])
    with pytest.raises(TypeError, match="for target distributions use cross_entropy"):
        fn(y_hat, np.array([0.0, 2.0]))
    with pytest.raises(TypeError, match="pass target distributions as a 2-D array"):
        ct.cross_entropy(y_hat, np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="y must be integer class labels"):
        fn(y_hat, np.eye(3)[[0, 2]])
