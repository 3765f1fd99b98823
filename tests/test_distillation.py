"""The distillation loss and its gradient (``ce_tutorial._distillation``)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ce_tutorial as ct
from ce_tutorial import distillation_grad, distillation_loss

from . import strategies as cst
from .differences import central_differences
from .reference import DIGITS, exact_mpf

EPS64 = np.finfo(np.float64).eps
MAX64 = np.finfo(np.float64).max
TEMPERATURES = [0.1, 0.5, 1.0, 2.0, 4.0, 20.0]


@st.composite
def pairs(draw, bound: float = 30.0):
    """Student and teacher logits of the same shape (N, C), |z| <= bound."""
    s = draw(cst.logits(bound=bound))
    t = draw(cst.logits(bound=bound, shape=s.shape))
    return s, t


def reference(s_row, t_row, temperature) -> tuple[mpmath.mpf, mpmath.mpf]:
    """The loss T^2 KL at 50 digits, and the scale of its rounding error.

    The scale is ``T^2 sum_j p_j (|log p_j| + |log y_hat_j|) + T^2``: each
    log-probability is accurate to a few ulps of its own size, and the loss
    is a p-weighted sum of their differences.
    """
    with mpmath.workdps(DIGITS):
        T = exact_mpf(temperature)

        def log_softmax(row):
            v = [exact_mpf(x) / T if np.isfinite(x) else None for x in row]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(x) for x in v if x is not None))
            return [x - lse if x is not None else None for x in v]

        lp, lq = log_softmax(t_row), log_softmax(s_row)
        kl, scale = mpmath.mpf(0), mpmath.mpf(1)
        for a, b in zip(lp, lq, strict=True):
            if a is None:
                continue  # the teacher masks this class: no mass
            if b is None:
                return mpmath.inf, mpmath.inf
            kl += mpmath.exp(a) * (a - b)
            scale += mpmath.exp(a) * (abs(a) + abs(b))
        return T**2 * kl, T**2 * scale


def assert_matches_reference(s, t, temperature, k: float = 8.0):
    ours = distillation_loss(s, t, temperature, reduction="none")
    for value, s_row, t_row in zip(ours, s, t, strict=True):
        exact, scale = reference(s_row, t_row, temperature)
        if exact == mpmath.inf or exact > MAX64:
            assert value == np.inf
            continue
        error = abs(mpmath.mpf(float(value)) - exact)
        assert error <= k * EPS64 * scale, (float(value), float(exact))


def softmax_t(z, temperature):
    return ct.softmax(np.asarray(z) / temperature)


# --- hand values and identities -------------------------------------------------


def test_hand_value_two_classes():
    # teacher (0, log 3): p = (1/4, 3/4); student (0, 0): y_hat = (1/2, 1/2).
    # KL = 1/4 log(1/2) + 3/4 log(3/2), at T = 1.
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    loss = distillation_loss([[0.0, 0.0]], [[0.0, math.log(3.0)]])
    assert loss == pytest.approx(expected, rel=1e-14)
    # At T = 2 the teacher's logits must be doubled for the same p: T^2 KL.
    loss = distillation_loss([[0.0, 0.0]], [[0.0, 2 * math.log(3.0)]], 2.0)
    assert loss == pytest.approx(4 * expected, rel=1e-14)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_loss_is_t_squared_times_kl_divergence(temperature):
    rng = np.random.default_rng(1)
    s, t = rng.normal(scale=3.0, size=(2, 5, 4))
    p, y_hat = softmax_t(t, temperature), softmax_t(s, temperature)
    expected = temperature**2 * ct.kl_divergence(p, y_hat)
    ours = distillation_loss(s, t, temperature, reduction="none")
    np.testing.assert_allclose(ours, expected, rtol=1e-11)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_loss_is_soft_cross_entropy_minus_teacher_entropy(temperature):
    # T^2 (H(p, y_hat) - H(p)): the same as training on the soft targets p.
    rng = np.random.default_rng(2)
    s, t = rng.normal(scale=3.0, size=(2, 6, 5))
    p = softmax_t(t, temperature)
    ce = ct.cross_entropy_from_logits(s / temperature, p)
    expected = temperature**2 * (ce - ct.entropy(p))
    ours = distillation_loss(s, t, temperature, reduction="none")
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-13)


def test_reductions():
    rng = np.random.default_rng(3)
    s, t = rng.normal(size=(2, 7, 3))
    none = distillation_loss(s, t, 1.5, reduction="none")
    assert none.shape == (7,)
    assert distillation_loss(s, t, 1.5, reduction="sum") == pytest.approx(none.sum())
    assert distillation_loss(s, t, 1.5) == pytest.approx(none.mean())
    assert distillation_loss(s, t, 1.5, "mean") == distillation_loss(s, t, 1.5)


def test_a_row_shift_changes_nothing():
    rng = np.random.default_rng(4)
    s, t = rng.normal(size=(2, 5, 4))
    shift = rng.normal(scale=100.0, size=(5, 1))
    base = distillation_loss(s, t, 2.0, reduction="none")
    np.testing.assert_allclose(
        distillation_loss(s + shift, t - shift, 2.0, reduction="none"),
        base,
        rtol=1e-10,
        atol=1e-12,
    )


def test_one_class_gives_zero():
    assert distillation_loss([[3.0], [-1e308]], [[-7.0], [5.0]], 0.5, "sum") == 0.0


# --- properties -------------------------------------------------------------------


@given(pairs(), st.sampled_from(TEMPERATURES))
def test_loss_is_non_negative_and_finite(pair, temperature):
    s, t = pair
    loss = distillation_loss(s, t, temperature, reduction="none")
    assert np.all(loss >= 0)
    assert np.all(np.isfinite(loss))


@given(cst.logits(bound=1e300), st.sampled_from([1e-300, *TEMPERATURES, 1e300]))
def test_loss_is_exactly_zero_when_student_equals_teacher(z, temperature):
    assert np.all(distillation_loss(z, z, temperature, reduction="none") == 0.0)
    assert np.all(distillation_grad(z, z, temperature) == 0.0)


@given(pairs(), st.sampled_from(TEMPERATURES))
def test_loss_matches_mpmath(pair, temperature):
    assert_matches_reference(*pair, temperature)


@pytest.mark.parametrize(
    ("s_row", "t_row", "temperature", "expected"),
    [
        # log y_hat_1 = -2e308 is below the range; the loss, 1e308, is not.
        ([1e308, -1e308], [0.0, 0.0], 1.0, 1e308 + 0.5 * math.log(0.5)),
        ([0.0, 0.0], [1e308, -1e308], 1.0, math.log(2.0)),
        # T < 1 with huge logits: s / T overflows, the loss T^2 KL does not.
        ([1e308, -1e308, 0.0], [-1e308, 1e308, 0.0], 0.5, None),
        ([1.7e308, 0.0], [0.0, 1.7e308], 0.25, None),
        # a tiny temperature: KL = 1e300, T^2 KL = 1e-300
        ([1.0, 0.0], [0.0, 1.0], 1e-300, 1e-300),
        # a large one: T^2 KL tends to a finite limit
        ([1.0, 0.0], [0.0, 1.0], 1e3, None),
        ([5.0, -3.0, 0.5], [-2.0, 4.0, 0.0], 50.0, None),
        # nearly equal student and teacher: a tiny KL
        ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0 + 1e-9], 1.0, None),
        # masked classes
        ([0.0, -np.inf, 1.0], [2.0, -np.inf, 0.0], 2.0, None),
        ([0.0, 3.0, 1.0], [2.0, -np.inf, 0.0], 0.7, None),
    ],
)
def test_extreme_logits_against_mpmath(s_row, t_row, temperature, expected):
    s, t = np.array([s_row]), np.array([t_row])
    assert_matches_reference(s, t, temperature)
    if expected is not None:
        loss = distillation_loss(s, t, temperature)
        assert loss == pytest.approx(expected, rel=1e-14)


@given(pairs(bound=20.0), st.sampled_from([0.5, 1.0, 3.0]), cst.reductions)
def test_gradient_matches_central_differences(pair, temperature, reduction):
    s, t = pair
    grad = distillation_grad(s, t, temperature, reduction)
    reduced = "sum" if reduction == "none" else reduction
    h = 1e-6

    def loss(z):
        return distillation_loss(z, t, temperature, reduced)

    numerical = central_differences(loss, s, h)
    # Rounding in loss(up) - loss(down), over 2h, plus the h^2 truncation
    # (the third derivative is at most about 1 / T).
    size = distillation_loss(s, t, temperature, "sum") + s.size
    tol = 16 * EPS64 * size / h + h**2 / temperature
    assert np.max(np.abs(grad - numerical)) <= tol


@given(pairs(), st.sampled_from(TEMPERATURES))
def test_gradient_is_t_times_the_difference_of_softmaxes(pair, temperature):
    s, t = pair
    expected = temperature * (softmax_t(s, temperature) - softmax_t(t, temperature))
    grad = distillation_grad(s, t, temperature, reduction="none")
    np.testing.assert_allclose(grad, expected, rtol=0, atol=8 * EPS64 * temperature)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=16 * EPS64 * temperature)
    assert np.array_equal(distillation_grad(s, t, temperature, "sum"), grad)
    mean = distillation_grad(s, t, temperature, "mean")
    np.testing.assert_allclose(mean, grad / s.shape[0], rtol=1e-15, atol=0)


def test_gradient_of_kl_alone_falls_as_one_over_t_squared():
    # The gradient of KL is T(y_hat - p) / T^2; at large T, T (y_hat - p)
    # tends to ((z - mean z) - (t - mean t)) / C, so the KL's falls as 1/T^2.
    rng = np.random.default_rng(5)
    s, t = rng.normal(scale=2.0, size=(2, 4, 6))
    limit = (
        (s - s.mean(axis=1, keepdims=True)) - (t - t.mean(axis=1, keepdims=True))
    ) / 6
    for temperature in (1e2, 1e3, 1e4):
        grad = distillation_grad(s, t, temperature, reduction="none")
        # the next term of the expansion is O(1 / T)
        assert np.max(np.abs(grad - limit)) < 20 / temperature
        kl_grad = grad / temperature**2
        assert np.max(np.abs(kl_grad * temperature**2 - limit)) < 20 / temperature


def test_gradient_with_masked_classes():
    s = np.array([[0.0, -np.inf, 1.0]])
    t = np.array([[2.0, -np.inf, 0.0]])
    grad = distillation_grad(s, t, 2.0)
    assert grad[0, 1] == 0.0
    kept = distillation_grad(s[:, [0, 2]], t[:, [0, 2]], 2.0)
    np.testing.assert_array_equal(grad[:, [0, 2]], kept)
    assert distillation_loss(s, t, 2.0) == distillation_loss(
        s[:, [0, 2]], t[:, [0, 2]], 2.0
    )


def test_a_class_masked_by_the_student_only_is_an_infinite_loss():
    s = np.array([[0.0, 1.0], [0.0, -np.inf]])
    t = np.array([[0.0, 1.0], [0.0, -800.0]])  # p_1 = e^-800 rounds to 0, yet > 0
    assert list(distillation_loss(s, t, 1.0, reduction="none")) == [0.0, np.inf]
    with pytest.raises(
        ValueError,
        match=r"student_logits\[1, 1\] is -inf but teacher_logits\[1, 1\] = -800\.0 "
        r"is not: the loss is infinite and has no gradient",
    ):
        distillation_grad(s, t)


# --- dtypes, shapes and inputs ----------------------------------------------------


@pytest.mark.parametrize(
    ("s_dtype", "t_dtype", "expected"),
    [
        (np.float32, np.float32, np.float32),
        (np.float16, np.float16, np.float32),
        (np.float32, np.float64, np.float64),
        (np.int64, np.int32, np.float64),
        (np.longdouble, np.float64, np.longdouble),
    ],
)
def test_dtype_of_the_result(s_dtype, t_dtype, expected):
    s = np.array([[1, 2, 0]], dtype=s_dtype)
    t = np.array([[0, 2, 1]], dtype=t_dtype)
    for reduction in ("none", "mean", "sum"):
        assert distillation_loss(s, t, 2.0, reduction).dtype == expected
        assert distillation_grad(s, t, 2.0, reduction).dtype == expected


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(6)
    s, t = rng.normal(scale=3.0, size=(2, 10, 5)).astype(np.float32)
    ours = distillation_loss(s, t, 2.0, "none")
    wide = distillation_loss(s.astype(np.float64), t.astype(np.float64), 2.0, "none")
    np.testing.assert_allclose(ours, wide, rtol=1e-5, atol=1e-6)


def test_empty_batch():
    empty = np.zeros((0, 3))
    assert distillation_loss(empty, empty, reduction="none").shape == (0,)
    assert distillation_loss(empty, empty, reduction="sum") == 0.0
    assert distillation_grad(empty, empty, reduction="sum").shape == (0, 3)
    for func in (distillation_loss, distillation_grad):
        with pytest.raises(ValueError, match=r"reduction='mean' is undefined"):
            func(empty, empty, reduction="mean")


def test_inputs_are_never_modified():
    rng = np.random.default_rng(7)
    s, t = rng.normal(size=(2, 4, 3))
    s[0, 0], t[1, 2] = 1e308, -1e308
    before = s.copy(), t.copy()
    s.flags.writeable = t.flags.writeable = False  # any write would raise
    for reduction in ("none", "mean", "sum"):
        distillation_loss(s, t, 0.5, reduction)
        distillation_grad(s, t, 0.5, reduction)
    np.testing.assert_array_equal(s, before[0])
    np.testing.assert_array_equal(t, before[1])


def test_lists_are_accepted():
    assert distillation_loss([[0.0, 1.0]], [[1.0, 0.0]]) == pytest.approx(
        float(np.tanh(0.5))  # KL of (s, 1 - s) and (1 - s, s) with s = sigmoid(1)
    )


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "t", "error", "pattern"),
    [
        (
            [[1.0, 2.0]],
            [[1.0, 2.0, 3.0]],
            ValueError,
            r"student_logits has shape \(1, 2\) but teacher_logits has shape "
            r"\(1, 3\)",
        ),
        ([1.0, 2.0], [1.0, 2.0], ValueError, r"student_logits must be 2-D"),
        ([[1.0, 2.0]], [1.0, 2.0], ValueError, r"teacher_logits must be 2-D"),
        (np.zeros((2, 0)), np.zeros((2, 0)), ValueError, r"at least one class"),
        (
            [[1.0, np.nan]],
            [[0.0, 0.0]],
            ValueError,
            r"student_logits\[0\] contains NaN",
        ),
        (
            [[1.0, 0.0]],
            [[np.inf, 0.0]],
            ValueError,
            r"teacher_logits\[0\] contains \+inf",
        ),
        (
            [[1.0, 0.0], [-np.inf, -np.inf]],
            [[0.0, 0.0], [0.0, 0.0]],
            ValueError,
            r"student_logits\[1\] is -inf in every class",
        ),
        ([[True, False]], [[1.0, 0.0]], TypeError, r"student_logits must hold real"),
        ([[1.0, 0.0]], [[1j, 0.0]], TypeError, r"teacher_logits must hold real"),
        ([[1.0, 0.0]], [["a", "b"]], TypeError, r"teacher_logits must hold real"),
    ],
)
def test_bad_logits_name_the_argument(s, t, error, pattern):
    for func in (distillation_loss, distillation_grad):
        with pytest.raises(error, match=pattern):
            func(s, t)


def test_the_earliest_bad_row_is_reported():
    s = np.zeros((3, 2))
    t = np.zeros((3, 2))
    s[2, 0] = np.nan
    t[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"teacher_logits\[1\] contains NaN"):
        distillation_loss(s, t)
    t[1, 1] = 0.0
    t[2, 1] = np.nan  # a tie: the student's, as the first argument
    with pytest.raises(ValueError, match=r"student_logits\[2\] contains NaN"):
        distillation_loss(s, t)


@pytest.mark.parametrize("temperature", [0.0, -1.0, np.nan, np.inf])
def test_bad_temperature_is_a_value_error(temperature):
    for func in (distillation_loss, distillation_grad):
        with pytest.raises(
            ValueError, match=r"temperature must be positive and finite"
        ):
            func([[1.0, 0.0]], [[0.0, 1.0]], temperature)


@pytest.mark.parametrize("temperature", ["2", None, True, np.array([2.0])])
def test_temperature_of_the_wrong_type_is_a_type_error(temperature):
    for func in (distillation_loss, distillation_grad):
        with pytest.raises(TypeError, match=r"temperature must be a real number"):
            func([[1.0, 0.0]], [[0.0, 1.0]], temperature)


def test_a_temperature_that_float32_cannot_hold():
    z = np.ones((1, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"temperature = 1e-50 is 0\.0 in float32"):
        distillation_loss(z, z, 1e-50)


@pytest.mark.parametrize("reduction", ["batchmean", None, "MEAN"])
def test_unknown_reduction(reduction):
    for func in (distillation_loss, distillation_grad):
        with pytest.raises(ValueError, match=r"reduction must be one of"):
            func([[1.0, 0.0]], [[0.0, 1.0]], 1.0, reduction)
